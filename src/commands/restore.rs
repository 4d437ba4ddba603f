//! `exosphere restore`: puts a backup file in place as a data directory's catalog, with the
//! server stopped, in a new data epoch so that clients which synced past the backup start
//! over instead of skipping the records that reuse their sequence numbers.

use std::fs::File;
use std::io::BufReader;

use anyhow::{Context as _, bail};
use exosphere_catalog::CatalogStore as _;
use exosphere_catalog_sqlite::DATABASE_FILE;
use exosphere_catalog_sqlite::backup::{check_backup, install, prepare_restore};

use super::{at, byte_progress, open_sqlite_catalog, sqlite_data_dir};
use crate::cli::RestoreArgs;
use crate::serve_lock;

/// Restores `--input` into `--data-dir`; the catalog there is replaced only with `--force`
/// and then kept aside, and nothing changes unless the backup is sound.
pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let data_dir = sqlite_data_dir(
        &args.data_dir,
        "restore",
        "restore a PostgreSQL catalog with pg_restore into an empty database, or by \
         point-in-time recovery from a base backup and its WAL archive",
    )?;
    let input = &args.input;
    // Held to the end: no server may start on the directory while its catalog is swapped.
    let _lock = serve_lock::acquire(data_dir).with_context(|| {
        format!(
            "cannot restore into {}: stop the server first",
            data_dir.display()
        )
    })?;
    if data_dir.join(DATABASE_FILE).exists() && !args.force {
        bail!(
            "{} already holds a catalog; nothing was changed. To replace it with the backup, \
             run `exosphere restore --input {} --data-dir {} --force` (the current catalog is \
             kept beside it as {DATABASE_FILE}.replaced-<time>)",
            data_dir.display(),
            input.display(),
            data_dir.display()
        );
    }

    // The backup is copied next to the catalog, checked there and made ready; only the last
    // step touches the live catalog.
    let staging = tempfile::Builder::new()
        .prefix(".exosphere-restore-")
        .tempdir_in(data_dir)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                data_dir.display()
            )
        })?;
    let staged = staging.path().join(DATABASE_FILE);
    let source = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let size = source.metadata().map(|meta| meta.len()).ok();
    let bar = byte_progress(size, "copying the backup");
    let mut target =
        File::create(&staged).with_context(|| format!("cannot create {}", staged.display()))?;
    std::io::copy(&mut bar.wrap_read(BufReader::new(source)), &mut target)
        .with_context(|| format!("cannot copy {}", input.display()))?;
    target
        .sync_all()
        .context("cannot write the copy of the backup")?;
    drop(target);
    bar.finish_and_clear();

    let checked = check_backup(&staged).with_context(|| {
        format!(
            "{} cannot be restored; nothing was changed",
            input.display()
        )
    })?;
    if let Some(first) = checked.problems.first() {
        bail!(
            "{} is damaged ({} problems found by integrity_check, the first: {first}); nothing \
             was changed. Restore an older backup, or take a new one with `exosphere backup`",
            input.display(),
            checked.problems.len()
        );
    }
    prepare_restore(&staged).context("cannot prepare the backup for restoring")?;
    let restored = open_sqlite_catalog(staging.path())?;
    restored
        .write(&mut |writer| writer.start_epoch())
        .context("cannot start a new data epoch in the restored catalog")?;
    let epoch = restored.state()?.epoch;
    drop(restored);
    if let Ok(live) = std::fs::metadata(data_dir.join(DATABASE_FILE)) {
        std::fs::set_permissions(&staged, live.permissions())
            .context("cannot give the restored catalog the replaced one's permissions")?;
    }
    let suffix = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let aside = install(&staged, data_dir, &suffix)
        .with_context(|| format!("cannot put the restored catalog in {}", data_dir.display()))?;

    let info = &checked.info;
    println!(
        "Restored {} (taken {} by Exosphere {}, head sequence {}) into {}, in the new data \
         epoch {epoch}: every client gets resetData once on its next sync.",
        input.display(),
        at(info.taken_ms),
        info.exosphere,
        info.head_seq,
        data_dir.display(),
    );
    if let Some(aside) = aside {
        println!(
            "The catalog it replaced is kept as {}; delete it once the restored server runs well.",
            aside.display()
        );
    }
    println!(
        "Next: restore the package files from the file store's backup if needed, then run \
         `exosphere verify --data-dir {}` before starting the server.",
        data_dir.display()
    );
    Ok(())
}
