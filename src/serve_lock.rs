//! One `exosphere serve` per data directory. Startup puts every upload ticket left
//! *receiving* back to open and deletes the temporary files of cut-off uploads, which is
//! right only if no other server is receiving into the same directory: a second server
//! (a blue-green overlap, a unit started twice) would reopen tickets the first one is
//! still filling, and two bodies could race into one staging key. So `serve` holds an
//! exclusive lock on [`LOCK_FILE`] for its whole life; the operating system drops it when
//! the process ends, however it ends. `import`, `export`, `backup`, `verify`, `stats rollup`
//! and the account commands do not take it: they are safe beside a running server.
//! `restore` takes it for as long as it swaps the catalog file, so it refuses to run beside
//! a server and no server starts on a half-restored directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use anyhow::Context as _;

/// The lock file's name in the data directory; it holds the owner's process id.
pub const LOCK_FILE: &str = "serve.lock";

/// The held lock: keep it alive for as long as the server runs.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

/// Takes the data directory's serve lock (creating the directory if missing) and writes
/// this process's id into it; fails at once, naming the holder's process id, if another
/// `serve` holds it.
pub fn acquire(data_dir: &Path) -> anyhow::Result<ServeLock> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join(LOCK_FILE);
    // Not truncated on open: the text is the running holder's pid until the lock is ours.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            // The pid is only a hint for the message; an unreadable one is left out.
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let pid = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            anyhow::bail!(
                "another exosphere serve is using {}{pid}; only one server may use a data \
                 directory at a time (import, export and stats rollup may run beside it)",
                data_dir.display()
            );
        }
        Err(TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(ServeLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::{LOCK_FILE, acquire};

    #[test]
    fn a_second_lock_on_one_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        let pid = std::process::id().to_string();
        let error = acquire(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("another exosphere serve is using"),
            "{error}"
        );
        assert!(error.contains(&format!("(pid {pid})")), "{error}");
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.trim(), pid);
        drop(first);
        assert!(acquire(dir.path()).is_ok());
    }
}
