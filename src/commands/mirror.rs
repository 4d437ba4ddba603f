//! `exosphere mirror ...`: the upstream mirror's state as the catalog holds it, applying a
//! catalog the mirror held for an operator, asking for a sync now, fetching the files some
//! releases or apps need ahead of time, claiming an upstream name for publishing here,
//! re-checking cached files, and carrying a mirror to a closed network in a bundle. All work beside a running server: they are catalog
//! transactions, and prefetching goes through the server's own file URLs.

use std::path::Path;

use anyhow::{Context as _, bail};
use exosphere_catalog::mirror::Claim;
use exosphere_catalog::mirror::MirrorState;
use exosphere_catalog::{Collection, Lookup, Refusal, write_or_refuse};
use exosphere_meteor::names::{is_package_name, is_track_name};
use exosphere_mirror::bundle;
use exosphere_mirror::prefetch::{self, Fetched, Selection};
use exosphere_mirror::{ApplyOutcome, apply_staged, key_of, served_url};
use serde_json::json;

use crate::cli::{DataDirArg, FileStoreArgs, MirrorCommand, PrefetchArgs};
use crate::commands::audit::record;
use crate::commands::{
    at, blob_store, catalog_location, count_progress, open_catalog, runtime, total_progress,
};
use crate::service::records::{load, now_ms, save};
use crate::service::rules::owner_named;
use crate::service::tx::Fail;

/// Runs one `exosphere mirror` subcommand.
pub fn run(command: MirrorCommand) -> anyhow::Result<()> {
    match command {
        MirrorCommand::Status { data_dir, json } => status(&data_dir, json),
        MirrorCommand::Accept { data_dir } => accept(&data_dir),
        MirrorCommand::Prefetch(args) => prefetch(&args),
        MirrorCommand::SyncNow { data_dir } => sync_now(&data_dir),
        MirrorCommand::Verify { data_dir, files } => verify(&data_dir, &files),
        MirrorCommand::ExportBundle {
            data_dir,
            files,
            output,
        } => export_bundle(&data_dir, &files, &output),
        MirrorCommand::ImportBundle {
            data_dir,
            files,
            public_url,
            only_with_files,
            bundle,
        } => import_bundle(&data_dir, &files, &public_url, only_with_files, &bundle),
        MirrorCommand::Claim {
            data_dir,
            track,
            name,
            maintainers,
        } => claim(&data_dir, track, &name, &maintainers),
    }
}

fn status(dirs: &DataDirArg, as_json: bool) -> anyhow::Result<()> {
    let store = open_catalog(dirs)?;
    let Some(state) = store.mirror_state()? else {
        if as_json {
            println!("{}", json!({"mirror": null}));
        } else {
            println!(
                "No mirror has run on {}: start one with `exosphere serve --upstream URL`.",
                catalog_location(dirs)
            );
        }
        return Ok(());
    };
    if as_json {
        println!("{}", status_json(&state));
        return Ok(());
    }
    println!("Upstream: {}", state.upstream);
    println!(
        "Served catalog: {}",
        if state.token.is_some() {
            "mirrored"
        } else {
            "not yet mirrored (the first full sync is under way)"
        }
    );
    match (&state.held, &state.staging_token, &state.token) {
        (Some(reason), _, _) => println!("Held for an operator: {reason}"),
        (None, Some(_), Some(_)) => {
            println!("A full resync is under way beside the served catalog.")
        }
        _ => {}
    }
    match state.last_success_ms {
        Some(ms) => println!("Last successful sync: {}", at(ms)),
        None => println!("Last successful sync: never"),
    }
    if let Some((ms, error)) = &state.last_error {
        println!("Last error ({}): {error}", at(*ms));
    }
    let mut claims = Vec::new();
    store.write(&mut |writer| {
        claims = writer.mirror().claims()?;
        Ok(())
    })?;
    if !claims.is_empty() {
        let names: Vec<String> = claims
            .iter()
            .map(|claim| format!("{} {}", claim.kind(), claim.name()))
            .collect();
        println!("Claimed for publishing here: {}", names.join(", "));
    }
    Ok(())
}

/// The state as `mirror status --json` prints it.
fn status_json(state: &MirrorState) -> serde_json::Value {
    json!({"mirror": {
        "upstream": state.upstream,
        "mirrored": state.token.is_some(),
        "resyncing": state.staging_token.is_some() && state.token.is_some(),
        "held": state.held,
        "last_success_ms": state.last_success_ms,
        "last_error": state.last_error.as_ref().map(|(ms, error)| json!({"at_ms": ms, "error": error})),
    }})
}

fn sync_now(dirs: &DataDirArg) -> anyhow::Result<()> {
    let store = open_catalog(dirs)?;
    write_or_refuse(&*store, |writer| {
        let Some(mut state) = writer.mirror().state()? else {
            return Err(Refusal::Refused(
                "no mirror has run on this catalog: start one with `exosphere serve \
                 --upstream URL`",
            ));
        };
        state.sync_requested_ms = Some(chrono::Utc::now().timestamp_millis());
        writer.mirror().put_state(&state)?;
        Ok(())
    })?;
    println!("Asked the mirror to sync now; `exosphere mirror status` shows when it did.");
    Ok(())
}

fn accept(dirs: &DataDirArg) -> anyhow::Result<()> {
    let store = open_catalog(dirs)?;
    let outcome = write_or_refuse(&*store, |writer| {
        let Some(mut state) = writer.mirror().state()? else {
            return Err(Refusal::Refused("no mirror has run on this catalog"));
        };
        if state.held.is_none() {
            return Err(Refusal::Refused(
                "the mirror holds no catalog for an operator (see `exosphere mirror status`)",
            ));
        }
        let outcome = apply_staged(writer, &mut state, 1.0, true)?;
        writer.mirror().put_state(&state)?;
        Ok(outcome)
    })?;
    match outcome {
        ApplyOutcome::Applied { records, shadowed } => {
            println!(
                "Applied the held upstream catalog: {records} records served, {shadowed} left \
                 out because a local package or track holds their name."
            );
            Ok(())
        }
        ApplyOutcome::Held(reason) => bail!("the held catalog was not applied: {reason}"),
    }
}

/// A `TRACK@VERSION` or `NAME@VERSION` pair.
fn at_version(text: &str, what: &str) -> anyhow::Result<(String, String)> {
    match text.trim().split_once('@') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => {
            Ok((name.to_owned(), version.to_owned()))
        }
        _ => bail!("{text:?} is not a {what} (NAME@VERSION)"),
    }
}

/// What an app directory needs: its release (`.meteor/release`, unless `none`) and the
/// package versions of `.meteor/versions`.
fn app_needs(dir: &Path, selection: &mut Selection) -> anyhow::Result<()> {
    let meteor = dir.join(".meteor");
    let read = |name: &str| {
        std::fs::read_to_string(meteor.join(name)).with_context(|| {
            format!(
                "cannot read {}: --app takes a Meteor app's directory",
                meteor.join(name).display()
            )
        })
    };
    let release = read("release")?;
    let release = release.trim();
    if !release.is_empty() && release != "none" {
        selection.releases.push(at_version(release, "release")?);
    }
    for line in read("versions")?.lines().map(str::trim) {
        if !line.is_empty() && !line.starts_with('#') {
            selection
                .packages
                .push(at_version(line, "package version")?);
        }
    }
    Ok(())
}

fn prefetch(args: &PrefetchArgs) -> anyhow::Result<()> {
    let mut selection = Selection {
        everything: args.all,
        architectures: args.architectures.clone(),
        ..Selection::default()
    };
    for release in &args.releases {
        selection.releases.push(at_version(release, "release")?);
    }
    for app in &args.apps {
        app_needs(app, &mut selection)?;
    }
    if !args.all && selection.releases.is_empty() && selection.packages.is_empty() {
        bail!("say what to prefetch: --release TRACK@VERSION, --app DIR or --all");
    }
    let store = open_catalog(&args.data_dir)?;
    let plan = prefetch::plan(&*store, &selection)?;
    for missing in &plan.missing {
        eprintln!("warning: the mirrored catalog has no {missing}; nothing fetched for it");
    }
    let urls: Vec<String> = plan
        .urls
        .iter()
        .map(|url| match (&args.server, key_of(url)) {
            (Some(server), Some(key)) => served_url(server, key),
            _ => url.clone(),
        })
        .collect();
    let count = urls.len() as u64;
    let bar = total_progress(
        count,
        "{spinner} prefetching [{bar:30}] {pos}/{len} files, {msg}, ~{eta} left",
    );
    let runtime = runtime()?;
    let mut bytes = 0u64;
    let results = runtime.block_on(prefetch::fetch(
        urls,
        args.parallel as usize,
        args.attempts,
        |_, fetched| {
            if let Fetched::Done(size) = fetched {
                bytes += size;
            }
            bar.set_message(format!("{:.1} MB", bytes as f64 / 1e6));
            bar.inc(1);
        },
    ));
    bar.finish_and_clear();
    let failed: Vec<&(String, Fetched)> = results
        .iter()
        .filter(|(_, fetched)| matches!(fetched, Fetched::Failed(_)))
        .collect();
    println!(
        "Prefetched {} of {count} files ({:.1} MB); they are served while the upstream is down.",
        count - failed.len() as u64,
        bytes as f64 / 1e6
    );
    for (url, fetched) in &failed {
        if let Fetched::Failed(error) = fetched {
            eprintln!("failed: {url}: {error}");
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} files could not be fetched; run the same command again to retry them",
            failed.len()
        );
    }
    Ok(())
}

fn claim(dirs: &DataDirArg, track: bool, name: &str, maintainers: &[String]) -> anyhow::Result<()> {
    let (claim, collection) = if track {
        if !is_track_name(name) {
            bail!("{name:?} is not a release track name");
        }
        (Claim::Track(name.to_owned()), Collection::ReleaseTracks)
    } else {
        if !is_package_name(name) {
            bail!("{name:?} is not a package name");
        }
        (Claim::Package(name.to_owned()), Collection::Packages)
    };
    let store = open_catalog(dirs)?;
    let refuse = |fail: Fail| match fail {
        Fail::Client(error) => Refusal::Refused(error.reason.unwrap_or_default()),
        Fail::Store(error) => Refusal::Store(error),
    };
    let served = write_or_refuse(&*store, |writer| {
        let mut entries = Vec::new();
        for maintainer in maintainers {
            let owner = owner_named(writer, maintainer)
                .map_err(refuse)?
                .ok_or_else(|| {
                    Refusal::Refused(format!(
                        "there is no user or organization named {maintainer}: add one with \
                     `exosphere user add` or `exosphere org add`"
                    ))
                })?;
            entries.push(owner.entry());
        }
        writer.mirror().claim(&claim)?;
        let detail = json!({"of": claim.kind(), "maintainers": maintainers});
        record(writer, "mirror.claim", name, Some(name), detail)?;
        let key = if track {
            Lookup::ReleaseTrack(name)
        } else {
            Lookup::Package(name)
        };
        let Some(mut record) = load(writer, &key).map_err(refuse)? else {
            return Ok(false);
        };
        record.insert("maintainers".into(), entries.into());
        save(writer, collection, record, now_ms()).map_err(refuse)?;
        Ok(true)
    })?;
    let what = claim.kind();
    if served {
        println!(
            "Claimed {what} {name}: the mirror serves no upstream record of it from now on; \
             its record lists {} as maintainers.",
            maintainers.join(", ")
        );
    } else {
        println!(
            "Claimed {what} {name}: the mirror will serve no upstream record of it; it is not \
             in the catalog yet, so create it by publishing (`meteor publish --create`)."
        );
    }
    Ok(())
}

fn export_bundle(dirs: &DataDirArg, files: &FileStoreArgs, output: &Path) -> anyhow::Result<()> {
    let store = open_catalog(dirs)?;
    let blobs = blob_store(files, &dirs.data_dir)?;
    let summary = runtime()?.block_on(bundle::export(&*store, &blobs, output))?;
    println!(
        "Wrote {} records and {} files ({:.1} MB) to {}; load them on the other machine with \
         `exosphere mirror import-bundle --public-url URL {}`.",
        summary.records,
        summary.files,
        summary.bytes as f64 / 1e6,
        output.display(),
        output.display()
    );
    Ok(())
}

fn import_bundle(
    dirs: &DataDirArg,
    files: &FileStoreArgs,
    public_url: &str,
    only_with_files: bool,
    dir: &Path,
) -> anyhow::Result<()> {
    let store = open_catalog(dirs)?;
    let blobs = blob_store(files, &dirs.data_dir)?;
    let summary = runtime()?.block_on(bundle::import(
        &*store,
        &blobs,
        dir,
        public_url,
        only_with_files,
    ))?;
    println!(
        "Loaded {} records and {} files ({:.1} MB){}; serve them with `exosphere serve \
         --public-url {public_url}`.",
        summary.records,
        summary.files,
        summary.bytes as f64 / 1e6,
        if summary.left_out > 0 {
            format!(
                ", leaving out {} records whose files are not in the bundle",
                summary.left_out
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

fn verify(dirs: &DataDirArg, files: &FileStoreArgs) -> anyhow::Result<()> {
    let store = open_catalog(dirs)?;
    let blobs = blob_store(files, &dirs.data_dir)?;
    let bar = count_progress("{spinner} verifying {pos} cached files, {per_sec}");
    let found = runtime()?.block_on(bundle::verify(&*store, &blobs, |_| bar.inc(1)))?;
    bar.finish_and_clear();
    for key in &found.bad {
        eprintln!("damaged, deleted (it is fetched again on its next request): {key}");
    }
    println!(
        "Verified {} cached mirrored files: {} matched their hash, {} did not.",
        found.good + found.bad.len() as u64,
        found.good,
        found.bad.len()
    );
    if !found.bad.is_empty() {
        bail!("{} cached files were damaged", found.bad.len());
    }
    Ok(())
}
