//! `exosphere deps`: a package version's dependencies or dependents, flat or as a tree.

use std::io::{self, Write as _};

use anyhow::Context as _;
use exosphere_index::{DepNode, Reference};

use super::query::{Table, open_index, print_json, split_version};
use crate::cli::DepsArgs;

/// Prints the dependencies (or dependents) as a table, an indented tree, or JSON.
pub fn run(args: DepsArgs) -> anyhow::Result<()> {
    let index = open_index(&args.index)?;
    let (name, version) = split_version(&args.package);
    let depth = match (args.tree, args.depth) {
        (false, _) => 1,
        (true, depth) => depth.unwrap_or(u32::MAX),
    };
    let report = index.deps(name, version, args.reverse, depth)?;
    if args.json {
        return print_json(&report);
    }
    let what = if report.reverse {
        "dependents"
    } else {
        "dependencies"
    };
    if args.tree {
        let mut out = io::stdout().lock();
        writeln!(out, "{}@{}", report.name, report.version).context("cannot write")?;
        write_tree(&mut out, &report.nodes, "").context("cannot write")?;
        if report.nodes.is_empty() {
            writeln!(out, "(no {what})").context("cannot write")?;
        }
        return Ok(());
    }
    let mut table = if report.reverse {
        Table::new(&["DEPENDENT", "VERSION", "CONSTRAINT", "FLAGS"])
    } else {
        Table::new(&["DEPENDENCY", "CONSTRAINT", "RESOLVES TO", "FLAGS"])
    };
    for node in &report.nodes {
        let version = node.version.clone().unwrap_or_else(|| "-".into());
        let constraint = node.constraint.clone().unwrap_or_else(|| "any".into());
        let (second, third) = if report.reverse {
            (version, constraint)
        } else {
            (constraint, version)
        };
        table.row(vec![
            node.name.clone(),
            second,
            third,
            flags(node.weak, &node.references),
        ]);
    }
    table.print(&format!("{}@{} has no {what}", report.name, report.version))
}

/// Writes tree nodes with box-drawing prefixes, as `cargo tree` does.
fn write_tree(out: &mut impl io::Write, nodes: &[DepNode], prefix: &str) -> io::Result<()> {
    for (i, node) in nodes.iter().enumerate() {
        let last = i + 1 == nodes.len();
        let version = node.version.as_deref().unwrap_or("?");
        let constraint = node.constraint.as_deref().unwrap_or("any");
        let flags = flags(node.weak, &node.references);
        let repeated = if node.repeated { " (*)" } else { "" };
        writeln!(
            out,
            "{prefix}{}{}@{version} ({constraint}){}{flags}{repeated}",
            if last { "└── " } else { "├── " },
            node.name,
            if flags.is_empty() { "" } else { " " },
        )?;
        let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
        write_tree(out, &node.children, &child_prefix)?;
    }
    Ok(())
}

/// The edge's flags: `weak` for the whole edge, else the flags of each architecture, with the
/// architectures an edge is limited to (`os`, `web.browser`, … when not every one).
fn flags(weak: bool, references: &[Reference]) -> String {
    let mut parts = Vec::new();
    if weak {
        parts.push("weak".to_owned());
    }
    for (flag, set) in [
        (
            "weak",
            references
                .iter()
                .filter(|r| r.weak && !weak)
                .collect::<Vec<_>>(),
        ),
        (
            "unordered",
            references.iter().filter(|r| r.unordered).collect(),
        ),
        ("implied", references.iter().filter(|r| r.implied).collect()),
    ] {
        if set.is_empty() {
            continue;
        }
        if set.len() == references.len() {
            parts.push(flag.to_owned());
        } else {
            let arches: Vec<&str> = set.iter().map(|r| r.arch.as_str()).collect();
            parts.push(format!("{flag} on {}", arches.join(",")));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(arch: &str, weak: bool, unordered: bool, implied: bool) -> Reference {
        Reference {
            arch: arch.into(),
            weak,
            unordered,
            implied,
        }
    }

    #[test]
    fn flags_name_the_architectures_they_apply_to() {
        let all_weak = [
            reference("os", true, false, false),
            reference("web.browser", true, false, false),
        ];
        assert_eq!(flags(true, &all_weak), "weak");
        let mixed = [
            reference("os", true, false, true),
            reference("web.browser", false, true, true),
        ];
        assert_eq!(
            flags(false, &mixed),
            "weak on os, unordered on web.browser, implied"
        );
        assert_eq!(flags(false, &[reference("os", false, false, false)]), "");
    }
}
