//! The pages' assets, embedded in the binary: the stylesheets and the logo (also the
//! favicon). They are served under `/assets/<hash>/<name>`, the hash taken over every
//! asset, so an answer never changes for a URL and may be cached for a year; a new build
//! whose assets differ links new URLs.

use std::hash::{Hash as _, Hasher as _};
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every asset: the site's stylesheet, the README renderer's highlighting classes
/// (`exosphere_readme::STYLESHEET`) and the logo.
const ASSETS: [Asset; 3] = [
    Asset {
        name: "site.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/site.css"),
    },
    Asset {
        name: "highlight.css",
        content_type: "text/css; charset=utf-8",
        body: exosphere_readme::STYLESHEET.as_bytes(),
    },
    Asset {
        name: "logo.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../assets/logo.svg"),
    },
];

/// The stylesheets every page links, in order.
const STYLESHEETS: [&str; 2] = ["site.css", "highlight.css"];

/// A year: the longest `max-age` caches honour, for URLs whose answer never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The hash in the assets' URLs: of every asset's name and bytes.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = std::hash::DefaultHasher::new();
        for asset in &ASSETS {
            asset.name.hash(&mut hasher);
            asset.body.hash(&mut hasher);
        }
        format!("{:016x}", hasher.finish())
    })
}

/// The URL of the asset `name`.
pub fn href(name: &str) -> String {
    format!("/assets/{}/{name}", version())
}

/// The URLs of the stylesheets every page links.
pub fn stylesheets() -> Vec<String> {
    STYLESHEETS.iter().map(|name| href(name)).collect()
}

/// `GET /assets/{version}/{name}`: an asset of this build, cached for a year; `404` for an
/// unknown name or another build's hash.
pub async fn serve(Path((asked, name)): Path<(String, String)>) -> Response {
    let found = ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .filter(|_| asked == version());
    let Some(asset) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    response
}
