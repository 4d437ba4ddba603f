//! `exosphere verify`: checks a catalog (or a backup file) and the file store it refers to,
//! beside a running server: the database's integrity, and every referenced file present with
//! the hash the catalog records. Prints each problem with what to do about it, and fails if
//! there is any.

use std::path::Path;

use anyhow::{Context as _, bail};
use exosphere_blobs::{BlobKey, BlobStore};
use exosphere_catalog::files::{FileRef, Origin, for_each_file};
use exosphere_catalog_sqlite::backup::{check_backup, manifest_files};

use super::{at, blob_store, count_progress, existing_catalog, runtime, sqlite_data_dir};
use crate::cli::VerifyArgs;

/// What checking the files found.
#[derive(Debug, Default)]
struct Findings {
    /// Files present with the hash the catalog records (or without one recorded).
    good: u64,
    /// Mirrored files not in the store: a cache, fetched again on request.
    not_cached: u64,
    /// Files published here that the store does not hold.
    missing: Vec<String>,
    /// Files whose bytes do not have the recorded hash: key, origin, recorded, found.
    wrong: Vec<(String, Origin, String, String)>,
}

/// Verifies the data directory's catalog, or `--backup FILE`, against the file store.
pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let data_dir = sqlite_data_dir(
        &args.data_dir,
        "verify",
        "check a PostgreSQL catalog's database with pg_amcheck, and test its backups by \
         restoring them (pg_restore, or point-in-time recovery from a base backup)",
    )?;
    let mut files = Vec::new();
    let (subject, problems) = match &args.backup {
        Some(path) => {
            let checked = check_backup(path)
                .with_context(|| format!("cannot verify the backup {}", path.display()))?;
            manifest_files(path, &mut |file| {
                files.push(file);
                Ok(())
            })?;
            println!(
                "Backup {}: taken {} by Exosphere {}, head sequence {}, {} files in its manifest.",
                path.display(),
                at(checked.info.taken_ms),
                checked.info.exosphere,
                checked.info.head_seq,
                checked.info.files
            );
            (format!("the backup {}", path.display()), checked.problems)
        }
        None => {
            let store = existing_catalog(data_dir)?;
            let problems = store.integrity_problems()?;
            for_each_file(&store, &mut |file| {
                files.push(file);
                Ok(())
            })?;
            (format!("the catalog in {}", data_dir.display()), problems)
        }
    };
    for problem in &problems {
        println!("database: {problem}");
    }
    let blobs = blob_store(&args.files, data_dir)?;
    let found = runtime()?.block_on(check_files(&blobs, &files))?;
    for key in &found.missing {
        println!("missing: {key} (published here; the file store holds no copy)");
    }
    for (key, origin, recorded, actual) in &found.wrong {
        println!(
            "wrong hash: {key} ({}; the catalog records {recorded}, the file has {actual})",
            origin.as_str()
        );
    }
    println!(
        "Checked {subject}: database {}; {} files referenced: {} good, {} mirrored not cached \
         (fetched on request), {} missing, {} with a wrong hash.",
        if problems.is_empty() { "ok" } else { "DAMAGED" },
        files.len(),
        found.good,
        found.not_cached,
        found.missing.len(),
        found.wrong.len()
    );
    verdict(data_dir, args.backup.as_deref(), &problems, &found)
}

/// Reads every referenced file back (when the store has it) and compares its hash.
async fn check_files(blobs: &BlobStore, files: &[FileRef]) -> anyhow::Result<Findings> {
    let bar = count_progress("{spinner} checking {pos} files, {per_sec}");
    let mut found = Findings::default();
    for file in files {
        bar.inc(1);
        let stored = match BlobKey::new(&file.key) {
            Ok(key) => blobs
                .digest(&key)
                .await
                .with_context(|| format!("cannot read {} from the file store", file.key))?,
            Err(_) => None,
        };
        match (stored, file.origin) {
            (None, Origin::Published) => found.missing.push(file.key.clone()),
            (None, Origin::Mirrored) => found.not_cached += 1,
            (Some(stored), origin) => match &file.sha256 {
                Some(recorded) if *recorded != stored.sha256 => {
                    found
                        .wrong
                        .push((file.key.clone(), origin, recorded.clone(), stored.sha256))
                }
                _ => found.good += 1,
            },
        }
    }
    bar.finish_and_clear();
    Ok(found)
}

/// Ok when nothing is wrong; otherwise an error that names the next command to run.
fn verdict(
    data_dir: &Path,
    backup: Option<&Path>,
    problems: &[String],
    found: &Findings,
) -> anyhow::Result<()> {
    let mut next = Vec::new();
    if !problems.is_empty() {
        next.push(match backup {
            Some(_) => "this backup file is damaged: do not restore it; restore an older one, \
                        or take a new one with `exosphere backup`"
                .to_owned(),
            None => format!(
                "the catalog database is damaged: stop the server and restore the last good \
                 backup with `exosphere restore --input FILE --data-dir {} --force`",
                data_dir.display()
            ),
        });
    }
    let published_wrong = found
        .wrong
        .iter()
        .filter(|(_, origin, ..)| *origin == Origin::Published)
        .count();
    if !found.missing.is_empty() || published_wrong > 0 {
        next.push(format!(
            "{} published files are missing or damaged: copy them back from the file store's \
             backup (same keys), then run `exosphere verify` again",
            found.missing.len() + published_wrong
        ));
    }
    if found.wrong.len() > published_wrong {
        next.push(format!(
            "{} cached mirrored files are damaged: `exosphere mirror verify --data-dir {}` \
             deletes them so they are fetched again",
            found.wrong.len() - published_wrong,
            data_dir.display()
        ));
    }
    if next.is_empty() {
        return Ok(());
    }
    bail!("verification failed: {}", next.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str, sha256: &str, origin: Origin) -> FileRef {
        FileRef {
            key: key.to_owned(),
            sha256: Some(sha256.to_owned()),
            origin,
        }
    }

    #[tokio::test]
    async fn published_files_must_be_there_and_mirrored_ones_only_right() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::local(dir.path()).unwrap();
        let put = |key: &str, bytes: &[u8]| {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        };
        put("packages/a/1/x/a.tgz", b"hello world");
        put("packages/a/1/y/bad.tgz", b"hello world");
        put("mirror/ab/good.tgz", b"hello world");
        put("mirror/cd/bad.tgz", b"hello world");
        // echo -n 'hello world' | sha256sum | xxd -r -p | base64
        let hash = "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=";
        let files = [
            file("packages/a/1/x/a.tgz", hash, Origin::Published),
            file("packages/a/1/y/bad.tgz", "other", Origin::Published),
            file("packages/a/1/z/gone.tgz", hash, Origin::Published),
            file("mirror/ab/good.tgz", hash, Origin::Mirrored),
            file("mirror/cd/bad.tgz", "other", Origin::Mirrored),
            file("mirror/ef/not-fetched.tgz", hash, Origin::Mirrored),
            FileRef {
                key: "packages/a/1/w/no-hash.tgz".into(),
                sha256: None,
                origin: Origin::Published,
            },
        ];
        put("packages/a/1/w/no-hash.tgz", b"anything");
        let found = check_files(&blobs, &files).await.unwrap();
        assert_eq!((found.good, found.not_cached), (3, 1));
        assert_eq!(found.missing, ["packages/a/1/z/gone.tgz"]);
        let wrong: Vec<_> = found
            .wrong
            .iter()
            .map(|(key, origin, recorded, actual)| {
                (key.as_str(), *origin, recorded.as_str(), actual.as_str())
            })
            .collect();
        assert_eq!(
            wrong,
            [
                ("packages/a/1/y/bad.tgz", Origin::Published, "other", hash),
                ("mirror/cd/bad.tgz", Origin::Mirrored, "other", hash),
            ]
        );

        let error = verdict(Path::new("/d"), None, &[], &found)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("2 published files are missing or damaged"),
            "{error}"
        );
        assert!(
            error.contains(
                "1 cached mirrored files are damaged: `exosphere mirror verify --data-dir /d`"
            ),
            "{error}"
        );
        let damaged = ["page 3 is never used".to_owned()];
        let error = verdict(Path::new("/d"), None, &damaged, &Findings::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`exosphere restore --input FILE --data-dir /d --force`"),
            "{error}"
        );
        let error = verdict(
            Path::new("/d"),
            Some(Path::new("b")),
            &damaged,
            &Findings::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("this backup file is damaged"), "{error}");
        assert!(verdict(Path::new("/d"), None, &[], &Findings::default()).is_ok());
    }
}
