//! HTTP requests to the server's router, as `exosphere serve` answers them: every route's
//! path and query parameters (`/stats/v1/<day>`, `/api/v1/stats/packages/<name>?from&to&
//! interval`, `/packages/<key>`, `/mirror/files/<key>`, `/uploads/<secret>`, `/healthz`, the
//! SockJS info and greeting pages), `Range` headers and bodies. The input is a request as
//! text: `METHOD TARGET`, header lines, a blank line, the body.
//!
//! No answer is an unintended `500`, none takes longer than ten seconds, a `206` serves
//! bytes within the file, and a body is as long as its `Content-Length`. SockJS sessions are
//! left to `sockjs_payload` (their long polls wait on purpose).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use exosphere::server::{self, Config};
use exosphere::service::upload_slots::UploadSlots;
use exosphere::service::{LoginLimits, LoginThrottle, Publishing};
use exosphere_blobs::{BlobKey, BlobStore};
use exosphere_catalog::{CatalogStore, dump};
use exosphere_ddp::DeliberateStatus;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// The published file every `/packages/` request may hit: 1000 bytes.
const FILE: &str = "packages/acme-widget-1.3.0.tgz";
const FILE_SIZE: usize = 1000;

/// The router over a store holding `fuzz/catalog.ndjson` and one published file, with the
/// runtime it runs on and the directory it lives in.
struct Server {
    runtime: tokio::runtime::Runtime,
    router: Router,
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let router = runtime.block_on(async {
            let store =
                exosphere_catalog_sqlite::open_sqlite(&dir.path().join("db")).expect("a store");
            dump::import(&store, include_str!("../catalog.ndjson").as_bytes())
                .expect("the catalog imports");
            let store: Arc<dyn CatalogStore> = Arc::new(store);
            let blobs = BlobStore::local(&dir.path().join("files")).expect("a file store");
            let key = BlobKey::new(FILE).expect("a key");
            let bytes: Vec<u8> = (0..FILE_SIZE).map(|i| i as u8).collect();
            let body =
                futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
            let patience = exosphere_blobs::Patience {
                idle: Duration::from_secs(60),
                min_rate: 0,
                deadline: tokio::time::Instant::now() + Duration::from_secs(60),
            };
            blobs
                .put_stream(&key, body, u64::MAX, patience)
                .await
                .expect("the file is stored");
            let publishing = Publishing {
                store: Arc::clone(&store),
                blobs,
                public_url: "http://127.0.0.1:3000".to_owned(),
                max_upload_size: 1 << 20,
                upload_ttl: Duration::from_secs(3600),
                max_open_publishes: 10,
                upload_slots: UploadSlots::new(4, 2),
                upload_idle_timeout: Duration::from_secs(5),
                upload_min_rate: 0,
                login_throttle: Arc::new(LoginThrottle::new(LoginLimits::default())),
                server: store
                    .join_servers()
                    .expect("a SQLite catalog seats its one server")
                    .id()
                    .to_owned(),
            };
            let state = server::start(store, Some(publishing), &Config::default())
                .expect("the server starts");
            exosphere::http::router(state)
        });
        Server {
            runtime,
            router,
            _dir: dir,
        }
    })
}

/// The request `data` spells, or `None` when it is not one hyper would accept.
fn request(data: &[u8]) -> Option<Request<Body>> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &data[data.len()..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let (method, target) = lines.next()?.split_once(' ')?;
    let path = target.split('?').next().unwrap_or_default();
    let sockjs_page = matches!(path, "/sockjs" | "/sockjs/" | "/sockjs/info");
    if path.contains("sockjs") && !sockjs_page {
        return None;
    }
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(target);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    let mut request = builder.body(Body::from(body.to_vec())).ok()?;
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    Some(request)
}

/// `bytes a-b/size` as numbers.
fn content_range(value: &str) -> (u64, u64, u64) {
    let parse = || {
        let (range, size) = value.strip_prefix("bytes ")?.split_once('/')?;
        let (first, last) = range.split_once('-')?;
        Some((first.parse().ok()?, last.parse().ok()?, size.parse().ok()?))
    };
    parse().unwrap_or_else(|| panic!("a bad Content-Range {value:?}"))
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = request(data) else {
        return;
    };
    let described = format!("{} {}", request.method(), request.uri());
    let server = server();
    server.runtime.block_on(async {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            server.router.clone().oneshot(request),
        );
        let response = answer
            .await
            .unwrap_or_else(|_| panic!("{described} hangs"))
            .expect("the router is infallible");
        let status = response.status();
        assert!(
            !status.is_server_error()
                || status == StatusCode::SERVICE_UNAVAILABLE
                || response.extensions().get::<DeliberateStatus>().is_some(),
            "{described}: {status}"
        );
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
                .map(str::to_owned)
        };
        let length = header(header::CONTENT_LENGTH).map(|value| value.parse::<u64>().unwrap());
        if status == StatusCode::PARTIAL_CONTENT {
            let range = header(header::CONTENT_RANGE).expect("a 206 has a Content-Range");
            let (first, last, size) = content_range(&range);
            assert!(first <= last && last < size, "{described}: {range}");
            assert_eq!(length, Some(last - first + 1), "{described}: {range}");
        }
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_else(|e| panic!("{described}: the body fails: {e}"));
        if let Some(length) = length {
            assert_eq!(body.len() as u64, length, "{described}");
        }
    });
});
