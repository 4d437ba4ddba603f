//! A full disk and a read-only disk (issue 15 part 3), on small file systems the tests mount
//! (tmpfs): a publish, a usage report and an import get a clear error naming the disk, not a
//! hang or a bare "internal error"; syncs and downloads keep working; nothing committed is
//! lost; and once space is freed, or the file system is writable again, the same operations
//! succeed on the same server process, without a restart.
//!
//! Mounting needs root (or `CAP_SYS_ADMIN`); CI runs the tests as root. Without it they
//! fail saying so.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{Catalog, Ddp, PATIENCE, Server, exosphere, fixture, import};
use crate::crash::{Publish, Refused, STEPS, Step, SyncClient, assert_all_whole, publish_steps};
use crate::publish::{
    LARGE_LIMIT, accounts, file, login, new_package, publish_files, put, read_response, serve,
    serve_with_limit, staged_in, start_upload,
};
use crate::stats::{packages, recorded_day, rollup, stats_file};

/// A tmpfs of a few megabytes mounted on a fresh temporary directory, unmounted when
/// dropped, even when the test panics.
struct SmallDisk {
    /// The mount point.
    root: PathBuf,
    /// Holds the mount point's parent directory until the file system is unmounted.
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. `"64m"`); fails the test, saying it needs root, when
    /// mounting is not allowed.
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path().join("disk");
        std::fs::create_dir(&root).expect("the mount point");
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            &root,
        );
        SmallDisk { root, _dir: dir }
    }

    /// Fills every free byte with one filler file; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.root.join("filler");
        let mut filler = std::fs::File::create(&path).expect("the filler file");
        let block = vec![0xa5; 64 * 1024];
        let mut piece = block.len();
        while piece > 0 {
            match filler.write(&block[..piece]) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::StorageFull => piece /= 2,
                Err(error) => panic!("filling {}: {error}", path.display()),
            }
        }
        path
    }

    /// Makes the file system read-only (`true`) or writable again.
    fn set_read_only(&self, read_only: bool) {
        let options = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        mount(&["-o", options], &self.root);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.root).status();
    }
}

/// Runs `mount ARGS POINT`, failing with why when it is refused.
fn mount(args: &[&str], point: &Path) {
    let output = Command::new("mount")
        .args(args)
        .arg(point)
        .output()
        .expect("`mount` runs");
    assert!(
        output.status.success(),
        "the disk tests mount small file systems and need root (or CAP_SYS_ADMIN); CI runs \
         them as root. `mount {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Empties the catalog's write-ahead log into the database file and truncates it, as a
/// checkpoint does now and then. SQLite rewrites a WAL in place, so a write that fits in
/// its old frames needs no new disk space; truncated, every write needs some, which the
/// test can then refuse.
fn truncate_wal(data: &Path) {
    let catalog = rusqlite::Connection::open(data.join("catalog.sqlite3")).expect("catalog");
    let deadline = std::time::Instant::now() + PATIENCE;
    // A checkpoint a reader holds up answers "busy" (1) and truncates nothing; the server
    // reads now and then, so try again.
    while catalog
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            row.get::<_, i64>(0)
        })
        .expect("the checkpoint runs")
        != 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the write-ahead log could not be truncated"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Upload tickets the catalog marks as receiving a body.
fn tickets_receiving(data: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(
        data.join("catalog.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .and_then(|catalog| {
        catalog.query_row(
            "SELECT count(*) FROM uploads WHERE state = 'receiving'",
            [],
            |row| row.get(0),
        )
    })
    .expect("the upload tickets are read")
}

/// The publish of `name` in the logged-in session `ddp` until its first refused step:
/// that step and the server's answer, or `None` if every step went through.
async fn publish_until_refused(ddp: &mut Ddp, name: &str) -> Option<(Step, Refused)> {
    let mut publish = Publish::new(name, 0);
    for step in STEPS {
        if let Err(refused) = publish.try_run(ddp, step).await {
            return Some((step, refused));
        }
    }
    None
}

/// A data directory with the test accounts and one published package on `disk`, its
/// server, and a client that synced it.
async fn published_before(disk: &SmallDisk) -> (PathBuf, String, Server, SyncClient) {
    let data = disk.root.join("data");
    let (alice, _) = accounts(&data);
    let server = serve(&data, &[]);
    let (_, client) = publish_before(&server, &alice).await;
    (data, alice, server, client)
}

/// `acme:before` published in full by `alice` on `server`, and a client that synced it.
async fn publish_before(server: &Server, alice: &str) -> (Publish, SyncClient) {
    let mut before = Publish::new("acme:before", 0);
    publish_steps(
        server,
        alice,
        &mut before,
        &STEPS,
        &std::sync::Arc::default(),
    )
    .await;
    let mut client = SyncClient::new();
    client.catch_up(server).await;
    (before, client)
}

/// The tool's retry of the publish of `name` that a refusal stopped, from what it synced
/// (`synced`): the steps that are left, run to the end.
async fn retry_publish(server: &Server, alice: &str, name: &str, synced: &Catalog) -> Publish {
    let mut retry = Publish::new(name, 1);
    let steps = retry.remaining(synced);
    publish_steps(server, alice, &mut retry, steps, &std::sync::Arc::default()).await;
    retry
}

/// What `exosphere import` of the fixture into `data` printed when it failed (it must).
fn refused_import(data: &Path) -> String {
    let output = exosphere()
        .arg("import")
        .arg("--data-dir")
        .arg(data)
        .arg(fixture())
        .output()
        .expect("exosphere import runs");
    assert!(!output.status.success(), "the import went through");
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// Whether a refusal says plainly that the server's disk is full.
fn says_full(status: u16, reason: &str) -> bool {
    status == 507 && reason.contains("disk is full")
}

/// The disk fills up under a running server: an upload, a new publish, a usage report
/// and an import are answered "the disk is full" (507, and an import error naming the
/// data directory), syncs and downloads go on, nothing committed is lost, and once the
/// filler is deleted the same server process takes them all again, the refused upload's
/// URL included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_clearly_keeps_serving_and_recovers_once_freed() {
    let disk = SmallDisk::mount("64m");
    let (data, alice, server, mut client) = published_before(&disk).await;
    let mut pending = Publish::new("acme:pending", 0);
    let mut session = login(&server, &alice).await;
    for step in &STEPS[..2] {
        pending.try_run(&mut session, *step).await.unwrap();
    }
    truncate_wal(&data);
    let filler = disk.fill();

    let refused = pending
        .try_run(&mut session, Step::PutReadme)
        .await
        .unwrap_err();
    eprintln!("full: the upload was refused: {refused:?}");
    assert!(says_full(refused.status, &refused.reason), "{refused:?}");
    let (step, refused) = publish_until_refused(&mut session, "acme:full")
        .await
        .expect("a publish went through on a full disk");
    eprintln!("full: a new publish was refused at {step:?}: {refused:?}");
    assert!(says_full(refused.status, &refused.reason), "{refused:?}");
    // Logins are audited, so a login needs the disk too, and says so.
    let mut ddp = server.ddp().await;
    let answer = ddp.call("login", json!([{"resume": alice}])).await;
    let error = &answer["error"];
    let code = error["error"].as_u64().unwrap_or_default();
    assert!(
        says_full(code as u16, error["reason"].as_str().unwrap_or_default()),
        "{answer}"
    );
    let report = json!([
        "app-full",
        packages(&[("acme:before", "1.0.0", false, true)]),
        {}
    ]);
    // A usage report is refused likewise, or, when it fits in space the catalog's files
    // already hold (a failed write can leave its log longer), kept and counted.
    let answer = ddp.call("recordAppPackages", report.clone()).await;
    let kept = match answer.get("error") {
        None => true,
        Some(error) => {
            let code = error["error"].as_u64().unwrap_or_default();
            let reason = error["reason"].as_str().unwrap_or_default();
            assert!(says_full(code as u16, reason), "{answer}");
            false
        }
    };
    eprintln!("full: the usage report was kept: {kept}");
    let said = refused_import(&data);
    eprintln!("full: import said: {said}");
    assert!(
        said.contains("is full") && said.contains(data.to_str().unwrap()),
        "{said}"
    );
    let synced = client.assert_converges(&server).await;
    assert_all_whole(&server, &synced);

    std::fs::remove_file(&filler).expect("the filler is deleted");
    for step in &STEPS[2..] {
        pending.try_run(&mut session, *step).await.unwrap();
    }
    let retry = retry_publish(&server, &alice, "acme:full", &synced).await;
    if kept {
        let day = recorded_day(&data);
        rollup(&data, &["--date", &day.to_string()]);
        let rows = stats_file(&server, day).expect("the day was rolled up");
        assert!(
            rows.iter().any(|row| row["name"] == "acme:before"),
            "{rows:?}"
        );
    }
    let answer = ddp.call("recordAppPackages", report).await;
    assert!(answer.get("error").is_none(), "{answer}");
    import(&data, &fixture());
    let synced = client.assert_converges(&server).await;
    assert_all_whole(&server, &synced);
    assert!(pending.remaining(&synced).is_empty() && retry.remaining(&synced).is_empty());
}

/// The package files' own file system fills up, then turns read-only, under a running
/// server whose catalog disk is fine: uploads are answered "the disk is full" (507), then
/// "the disk is read-only" (503), downloads and syncs go on, and each time, once the disk
/// takes writes again, the same upload URLs work on the same server process. (The
/// catalog's file system itself cannot be remounted read-only under a running server:
/// Linux refuses while a file on it is open for writing, as the catalog always is.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_files_disk_refuses_uploads_clearly_and_recovers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let (alice, _) = accounts(&data);
    let files = SmallDisk::mount("16m");
    let files_dir = files.root.to_str().unwrap().to_owned();
    let server = serve(&data, &["--files-dir", &files_dir]);
    let (_, mut client) = publish_before(&server, &alice).await;
    let mut session = login(&server, &alice).await;

    let filler = files.fill();
    let mut full = Publish::new("acme:files-full", 0);
    let refused = refused_upload(&mut session, &mut full).await;
    eprintln!("files full: the upload was refused: {refused:?}");
    assert!(says_full(refused.status, &refused.reason), "{refused:?}");
    let synced = client.assert_converges(&server).await;
    assert_all_whole(&server, &synced);
    std::fs::remove_file(&filler).expect("the filler is deleted");
    for step in &STEPS[2..] {
        full.try_run(&mut session, *step).await.unwrap();
    }

    files.set_read_only(true);
    let mut read_only = Publish::new("acme:files-read-only", 0);
    let refused = refused_upload(&mut session, &mut read_only).await;
    eprintln!("files read-only: the upload was refused: {refused:?}");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.reason.contains("disk is read-only"), "{refused:?}");
    let synced = client.assert_converges(&server).await;
    assert_all_whole(&server, &synced);
    files.set_read_only(false);
    for step in &STEPS[2..] {
        read_only.try_run(&mut session, *step).await.unwrap();
    }

    let synced = client.assert_converges(&server).await;
    assert_all_whole(&server, &synced);
    assert!(full.remaining(&synced).is_empty() && read_only.remaining(&synced).is_empty());
}

/// Creates the package and version of `publish`, then its first upload, which must be
/// refused: the refusal.
async fn refused_upload(session: &mut Ddp, publish: &mut Publish) -> Refused {
    for step in &STEPS[..2] {
        publish.try_run(session, *step).await.unwrap();
    }
    publish
        .try_run(session, Step::PutReadme)
        .await
        .expect_err("an upload went through")
}

/// Starts the upload of `body` to `url` and sends its first `at` bytes, runs `then`, fills
/// `disk` and sends the rest (the server may answer and close before reading it all):
/// the server's answer, its text lower-cased, and the filler. Writes and the read time
/// out, so a server that stops reading without answering fails the test, not hangs it.
fn upload_while_the_disk_fills(
    url: &str,
    body: &[u8],
    at: usize,
    disk: &SmallDisk,
    then: impl FnOnce(),
) -> (u16, String, PathBuf) {
    let mut upload = start_upload(url, body.len());
    upload.set_write_timeout(Some(PATIENCE)).unwrap();
    upload.write_all(&body[..at]).unwrap();
    upload.flush().unwrap();
    then();
    let filler = disk.fill();
    let _ = upload.write_all(&body[at..]).and_then(|()| upload.flush());
    let (status, text) = read_response(upload);
    (status, text, filler)
}

/// What must follow an upload the full disk under `files` cut off: a 507 naming the full
/// disk, no partial file left to keep the disk full, and once the filler is deleted the
/// same upload URL takes the body and the publish of `token` completes.
async fn assert_the_url_works_once_freed(
    cut_off: (u16, String, PathBuf),
    files: &Path,
    session: &mut Ddp,
    (token, url, body): (&Value, &str, &[u8]),
) {
    let (status, text, filler) = cut_off;
    eprintln!("the upload the disk filled under was answered {status}: {text:?}");
    assert!(says_full(status, &text), "{status} {text}");
    assert_eq!(
        staged_in(files),
        Vec::<String>::new(),
        "a partial file was left"
    );
    std::fs::remove_file(&filler).expect("the filler is deleted");
    let (status, text) = put(url, body);
    assert_eq!(
        status, 200,
        "the same upload URL was refused once freed: {text}"
    );
    publish_files(session, token, body, None).await;
}

/// The package files' own disk fills up while an upload's body arrives, after part of it
/// was written: the upload is answered "the disk is full" (507) once the write fails, not
/// left hanging; its partial file is deleted; and once space is freed the same upload URL
/// takes the file and the publish completes (spec §5.1), on the same server process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_files_disk_fills_under_can_be_sent_again_once_freed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let (alice, _) = accounts(&data);
    let files = SmallDisk::mount("16m");
    let files_dir = files.root.to_str().unwrap().to_owned();
    let server = serve_with_limit(&data, LARGE_LIMIT, &["--files-dir", &files_dir]);
    let mut session = login(&server, &alice).await;
    let (token, url, _) = new_package(&mut session, "acme:overflow").await;
    let body = file("overflowing source", 12 << 20);
    // Past the store's first 5 MiB part, which is written to disk before the fill.
    let at = 6 << 20;
    let cut_off = upload_while_the_disk_fills(&url, &body, at, &files, || {
        wait_for_partial_file(&files.root, 5 << 20);
    });
    assert_the_url_works_once_freed(cut_off, &files.root, &mut session, (&token, &url, &body))
        .await;
}

/// The disk holding both the catalog and the package files fills up while an upload's
/// body arrives and stays full when its write fails, so the server cannot record in the
/// catalog that the upload ended: the URL must not stay marked as receiving (409 "already
/// used" until a restart); once space is freed the same URL takes the file and the
/// publish completes, on the same server process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_by_a_full_catalog_disk_can_be_sent_again_once_freed() {
    let disk = SmallDisk::mount("16m");
    let data = disk.root.join("data");
    let (alice, _) = accounts(&data);
    let server = serve(&data, &[]);
    let mut session = login(&server, &alice).await;
    let (token, url, _) = new_package(&mut session, "acme:stuck").await;
    let body = file("stuck source", 60_000);
    let cut_off = upload_while_the_disk_fills(&url, &body, 30_000, &disk, || truncate_wal(&data));
    assert_eq!(
        tickets_receiving(&data),
        1,
        "the catalog could not record the end of the upload, the case this test is for"
    );
    let files = data.join("files");
    assert_the_url_works_once_freed(cut_off, &files, &mut session, (&token, &url, &body)).await;
}

/// Waits until the temporary file of the upload being written under `files` holds at
/// least `bytes` bytes.
fn wait_for_partial_file(files: &Path, bytes: u64) {
    let deadline = std::time::Instant::now() + PATIENCE;
    let written = || {
        std::fs::read_dir(files.join("uploads"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| entry.metadata().is_ok_and(|meta| meta.len() >= bytes))
    };
    while !written() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload's first part never reached the disk"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// An ext4 file system in an image file, mounted through a loop device with
/// `errors=remount-ro`: on an error it turns read-only under the processes using it, as a
/// failing disk does. Linux keeps such a file system read-only until it is unmounted, so
/// recovering means stopping the server, checking the file system and mounting it again.
/// Unmounted when dropped, even when the test panics.
struct FailingDisk {
    /// The mount point.
    root: PathBuf,
    /// The file system's image.
    image: PathBuf,
    /// Holds the image and the mount point until the file system is unmounted.
    _dir: tempfile::TempDir,
}

impl FailingDisk {
    /// Makes a 64 MiB ext4 image and mounts it.
    fn mount() -> FailingDisk {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (root, image) = (dir.path().join("disk"), dir.path().join("disk.img"));
        std::fs::create_dir(&root).expect("the mount point");
        let made = std::fs::File::create(&image).and_then(|file| file.set_len(64 << 20));
        made.expect("the image file");
        let formatted = Command::new("mkfs.ext4")
            .arg("-q")
            .arg(&image)
            .status()
            .expect("mkfs.ext4 runs");
        assert!(formatted.success(), "mkfs.ext4 failed");
        let disk = FailingDisk {
            root,
            image,
            _dir: dir,
        };
        disk.attach();
        disk
    }

    /// Mounts the image on the mount point.
    fn attach(&self) {
        let image = self.image.to_str().unwrap();
        mount(&["-o", "loop,errors=remount-ro", image], &self.root);
    }

    /// Reports an error to the file system, as its driver does when the disk fails a
    /// write (ext4's `trigger_fs_error`); with `errors=remount-ro` it turns read-only.
    fn fail(&self) {
        let output = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&self.root)
            .output()
            .expect("findmnt runs");
        let source = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let device = source.rsplit('/').next().expect("a device name");
        let trigger = format!("/sys/fs/ext4/{device}/trigger_fs_error");
        std::fs::write(&trigger, "the test failed the disk")
            .unwrap_or_else(|error| panic!("{trigger}: {error}"));
        let probe = std::fs::File::create(self.root.join("probe"));
        assert!(
            probe.is_err_and(|e| e.kind() == std::io::ErrorKind::ReadOnlyFilesystem),
            "the file system did not turn read-only"
        );
    }

    /// What an operator does once the server is stopped: unmount, check and repair the
    /// file system, mount it again.
    fn repair(&self) {
        let unmounted = Command::new("umount")
            .arg(&self.root)
            .status()
            .expect("umount runs");
        assert!(unmounted.success(), "umount failed");
        let checked = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(&self.image)
            .output()
            .expect("e2fsck runs");
        assert!(
            checked.status.code().is_some_and(|code| code <= 1),
            "e2fsck could not repair the file system: {}",
            String::from_utf8_lossy(&checked.stdout)
        );
        self.attach();
    }
}

impl Drop for FailingDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.root).status();
    }
}

/// The catalog's disk turns read-only under a running server, as a failing disk does:
/// publishing, logins, usage reports and imports are answered "the disk is read-only"
/// (503, and an import error naming the data directory), syncs and downloads go on, and
/// nothing committed is lost: after the operator stops the server and repairs and
/// remounts the file system, the restarted server has every record and file, and the
/// refused publish goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_disk_turned_read_only_refuses_writes_clearly_and_loses_nothing() {
    let disk = FailingDisk::mount();
    let data = disk.root.join("data");
    let (alice, _) = accounts(&data);
    let server = serve(&data, &[]);
    let address = server.address().to_owned();
    let (before, mut client) = publish_before(&server, &alice).await;
    let mut session = login(&server, &alice).await;
    let mut pending = Publish::new("acme:pending", 0);
    for step in &STEPS[..2] {
        pending.try_run(&mut session, *step).await.unwrap();
    }

    disk.fail();
    let says_read_only = |status: u16, reason: &str| status == 503 && reason.contains("read-only");
    let refused = pending
        .try_run(&mut session, Step::PutReadme)
        .await
        .unwrap_err();
    eprintln!("read-only catalog: the upload was refused: {refused:?}");
    assert!(
        says_read_only(refused.status, &refused.reason),
        "{refused:?}"
    );
    let (step, refused) = publish_until_refused(&mut session, "acme:read-only")
        .await
        .expect("a publish went through on a read-only disk");
    eprintln!("read-only catalog: a new publish was refused at {step:?}: {refused:?}");
    assert!(
        says_read_only(refused.status, &refused.reason),
        "{refused:?}"
    );
    let mut ddp = server.ddp().await;
    let report = json!([
        "app-ro",
        packages(&[("acme:before", "1.0.0", false, true)]),
        {}
    ]);
    let answer = ddp.call("recordAppPackages", report).await;
    let error = &answer["error"];
    let code = error["error"].as_u64().unwrap_or_default();
    let reason = error["reason"].as_str().unwrap_or_default();
    assert!(says_read_only(code as u16, reason), "{answer}");
    let said = refused_import(&data);
    eprintln!("read-only catalog: import said: {said}");
    assert!(said.contains("read-only"), "{said}");
    let synced = client.assert_converges(&server).await;
    assert_all_whole(&server, &synced);

    drop((ddp, session, server));
    disk.repair();
    let server = crate::publish::serve_on(&address, &data, &[]);
    let synced = client.assert_converges(&server).await;
    assert_all_whole(&server, &synced);
    assert!(
        before.remaining(&synced).is_empty(),
        "the publish before was lost"
    );
    let retry = retry_publish(&server, &alice, "acme:read-only", &synced).await;
    let synced = client.assert_converges(&server).await;
    assert!(retry.remaining(&synced).is_empty());
}
