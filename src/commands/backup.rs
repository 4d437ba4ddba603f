//! `exosphere backup`: a consistent copy of the catalog database, taken while a server runs,
//! with a manifest of the package files it refers to, written atomically to one file
//! (`exosphere_catalog_sqlite::backup` describes the file).

use std::path::Path;

use anyhow::Context as _;
use exosphere_catalog::CatalogStore as _;
use exosphere_catalog::files::{Origin, for_each_file};
use exosphere_catalog_sqlite::DATABASE_FILE;
use exosphere_catalog_sqlite::backup::{BackupInfo, Manifest};

use super::{count_progress, existing_catalog, open_sqlite_catalog, sqlite_data_dir};
use crate::cli::BackupArgs;
use crate::service::records::now_ms;

/// Copies the catalog of `--data-dir` into `--output`, which appears whole or not at all.
pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    let data_dir = sqlite_data_dir(
        &args.data_dir,
        "backup",
        "back a PostgreSQL catalog up with pg_dump --format=custom, or with a base backup \
         (pg_basebackup) and WAL archiving for point-in-time recovery",
    )?;
    let output = &args.output;
    let store = existing_catalog(data_dir)?;
    let parent = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // The copy is made and completed under a temporary name beside FILE (so the final rename
    // stays on one file system), and the directory goes away with anything left in it.
    let staging = tempfile::Builder::new()
        .prefix(".exosphere-backup-")
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                parent.display()
            )
        })?;
    let copy = staging.path().join(DATABASE_FILE);
    let bar = count_progress("{spinner} {msg} {pos} files");
    bar.set_message("copying the catalog database");
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    store
        .snapshot_into(&copy)
        .with_context(|| format!("cannot copy the catalog of {}", data_dir.display()))?;
    drop(store);

    bar.set_message("listing the files it refers to:");
    let snapshot = open_sqlite_catalog(staging.path())?;
    let state = snapshot.state()?;
    let mut manifest = Manifest::create(&copy).context("cannot write the manifest")?;
    let (mut published, mut mirrored) = (0u64, 0u64);
    for_each_file(&snapshot, &mut |file| {
        match file.origin {
            Origin::Published => published += 1,
            Origin::Mirrored => mirrored += 1,
        }
        bar.inc(1);
        manifest.add(&file)
    })
    .context("cannot list the files the catalog refers to")?;
    drop(snapshot);
    let info = manifest
        .finish(BackupInfo {
            taken_ms: now_ms(),
            exosphere: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version: 0,
            epoch: state.epoch,
            head_seq: state.head_seq,
            files: 0,
        })
        .context("cannot finish the backup file")?;
    // The backup holds what the catalog holds (accounts, token hashes): it gets the catalog
    // file's permissions, not the umask's.
    let mode = std::fs::metadata(data_dir.join(DATABASE_FILE))
        .and_then(|live| std::fs::set_permissions(&copy, live.permissions()));
    mode.with_context(|| format!("cannot set the permissions of {}", output.display()))?;
    std::fs::rename(&copy, output)
        .and_then(|()| std::fs::File::open(parent)?.sync_all())
        .with_context(|| format!("cannot write {}", output.display()))?;
    bar.finish_and_clear();
    let size = std::fs::metadata(output)
        .map(|meta| meta.len())
        .unwrap_or(0);
    println!(
        "Backed up the catalog of {} to {} ({size} bytes): head sequence {}, data epoch {}, \
         {} files in its manifest ({published} published here, {mirrored} mirrored).",
        data_dir.display(),
        output.display(),
        info.head_seq,
        info.epoch,
        info.files,
    );
    println!(
        "Package files are not in it: copy the file store with its own tools (files never \
         change once written), then check both with `exosphere verify --backup {}`.",
        output.display()
    );
    Ok(())
}
