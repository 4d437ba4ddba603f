//! `exosphere show`: one package (or one version of it) from the local index.

use std::fmt::Write as _;

use anyhow::Context as _;
use exosphere_index::PackageInfo;

use super::query::{day, open_index, print_json, split_version};
use crate::cli::ShowArgs;

/// Prints the package as readable text or JSON.
pub fn run(args: ShowArgs) -> anyhow::Result<()> {
    let index = open_index(&args.index)?;
    let (name, version) = split_version(&args.package);
    let info = index.show(name, version)?;
    if args.json {
        return print_json(&info);
    }
    let mut out = String::new();
    render(&info, &mut out).context("cannot format")?;
    print!("{out}");
    Ok(())
}

/// The text form: a heading, key facts, then one section per list.
fn render(info: &PackageInfo, out: &mut String) -> std::fmt::Result {
    let v = &info.version;
    writeln!(out, "{}@{}", info.name, v.version)?;
    if let Some(description) = &v.description {
        writeln!(out, "{description}")?;
    }
    if let Some(message) = &v.deprecated {
        writeln!(out, "DEPRECATED: {message}")?;
    }
    writeln!(out)?;
    let facts = [
        ("Latest", Some(info.latest.clone())),
        ("Published", v.published.as_deref().map(|p| day(Some(p)))),
        ("Published by", v.published_by.clone()),
        (
            "Maintainers",
            Some(info.maintainers.join(", ")).filter(|m| !m.is_empty()),
        ),
        ("Homepage", info.homepage.clone()),
        ("Git", v.git.clone()),
    ];
    for (label, value) in facts {
        if let Some(value) = value {
            writeln!(out, "{:<13} {value}", format!("{label}:"))?;
        }
    }
    if !v.exports.is_empty() {
        writeln!(out, "\nExports:")?;
        for export in &v.exports {
            writeln!(
                out,
                "  {} ({})",
                export.name,
                export.architectures.join(", ")
            )?;
        }
    }
    writeln!(out, "\nBuilds:")?;
    if v.builds.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for build in &v.builds {
        writeln!(
            out,
            "  {}  {}",
            build.architectures,
            day(build.published.as_deref())
        )?;
    }
    writeln!(out, "\nDependencies:")?;
    if v.dependencies.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for dependency in &v.dependencies {
        let constraint = dependency.constraint.as_deref().unwrap_or("any version");
        let weak = if dependency.weak { " (weak)" } else { "" };
        writeln!(out, "  {} {constraint}{weak}", dependency.name)?;
    }
    writeln!(out, "\nReleases that include it:")?;
    if info.releases.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for release in &info.releases {
        writeln!(
            out,
            "  {}@{} ({}@{})",
            release.track, release.release, info.name, release.version
        )?;
    }
    let versions: Vec<&str> = info.versions.iter().map(|s| s.version.as_str()).collect();
    writeln!(
        out,
        "\nVersions ({}): {}",
        versions.len(),
        versions.join(", ")
    )?;
    if let Some(readme) = &v.long_description {
        writeln!(out, "\n{}", readme.trim_end())?;
    }
    Ok(())
}
