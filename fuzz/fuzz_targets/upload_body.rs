//! Upload bodies (`PUT /uploads/<secret>`), stored as the server stores them: streamed
//! into the file store under the ticket's size limit. The first byte sets the limit, the
//! second the size of the body's chunks (as they arrive from the socket), the rest is the
//! body. A body within the limit is stored whole, with its true size and SHA-256, and
//! reads back the same; a larger one is refused and leaves nothing behind.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use exosphere_blobs::{BlobError, BlobKey, BlobStore, Patience, Span};
use futures_util::TryStreamExt;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// A runtime and a file store in a directory kept until the process ends.
fn setup() -> &'static (tokio::runtime::Runtime, BlobStore, tempfile::TempDir) {
    static SETUP: OnceLock<(tokio::runtime::Runtime, BlobStore, tempfile::TempDir)> =
        OnceLock::new();
    SETUP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let blobs = BlobStore::local(dir.path()).expect("a file store");
        (runtime, blobs, dir)
    })
}

fuzz_target!(|data: &[u8]| {
    let [limit, chunk, body @ ..] = data else {
        return;
    };
    let limit = u64::from(*limit) * 4;
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(usize::from(*chunk).max(1))
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let (runtime, blobs, _) = setup();
    let key = BlobKey::new("staging/fuzz").expect("a key");
    let patience = Patience {
        idle: Duration::from_secs(600),
        min_rate: 0,
        deadline: tokio::time::Instant::now() + Duration::from_secs(600),
    };
    runtime.block_on(async {
        let stored = blobs
            .put_stream(&key, futures_util::stream::iter(chunks), limit, patience)
            .await;
        let size = body.len() as u64;
        match stored {
            Ok(stored) => {
                assert!(size <= limit, "{size} bytes stored over a limit of {limit}");
                assert_eq!(stored.size, size);
                let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
                assert_eq!(stored.sha256, sha256);
                let download = blobs.get(&key, Span::Whole).await.unwrap().expect("stored");
                let read: Vec<Bytes> = download.body.try_collect().await.unwrap();
                assert_eq!(read.concat(), body);
            }
            Err(BlobError::TooLarge { limit: refused }) => {
                assert!(
                    size > limit && refused == limit,
                    "{size} refused at {limit}"
                );
                assert!(blobs.get(&key, Span::Whole).await.unwrap().is_none());
            }
            Err(error) => panic!("{error}"),
        }
        blobs.delete(&key).await.expect("a delete");
    });
});
