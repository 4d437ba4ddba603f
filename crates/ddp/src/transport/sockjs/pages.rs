//! The static parts of a SockJS endpoint: the greeting, `/info` and the iframe page.

use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse as _, Response};
use serde_json::json;

use super::config::SockJsConfig;
use super::endpoint::Endpoint;
use super::headers::{cache_for_a_year, cors, no_cache, options};
use super::responses::method_not_allowed;

/// `GET <prefix>`: the greeting SockJS clients and load balancers check.
pub(super) fn greeting() -> Response {
    (
        [(CONTENT_TYPE, "text/plain; charset=UTF-8")],
        "Welcome to SockJS!\n",
    )
        .into_response()
}

/// `GET <prefix>/info`: what the endpoint offers, and fresh entropy for the browser.
pub(super) fn info(endpoint: &Endpoint, request: &Parts) -> Response {
    match request.method {
        Method::GET => {}
        Method::OPTIONS => return options(endpoint, request, "OPTIONS, GET"),
        _ => return method_not_allowed("OPTIONS, GET"),
    }
    let body = json!({
        "websocket": endpoint.websocket,
        "origins": ["*:*"],
        "cookie_needed": endpoint.cookie_needed,
        "entropy": rand::random::<u32>(),
    });
    let mut response = (
        [(CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response();
    no_cache(response.headers_mut());
    cors(response.headers_mut(), request);
    response
}

/// Whether `page` names the iframe page: `iframe.html` or `iframe-<version>.html`, the
/// version free of slashes.
pub(super) fn is_iframe(page: &str) -> bool {
    page.strip_prefix("iframe")
        .and_then(|rest| rest.strip_suffix(".html"))
        .is_some_and(|version| {
            version.is_empty() || (version.starts_with('-') && !version.contains('/'))
        })
}

/// The iframe page some transports load for cross-domain tricks; strongly cacheable, with
/// an `ETag` that only changes with the client script's URL and integrity hash. With a
/// hash, the script tag carries it (and `crossorigin`, without which a browser does not
/// check a script from another origin).
pub(super) fn iframe(config: &SockJsConfig, request: &Parts) -> Response {
    let integrity = config.script_integrity().map_or_else(String::new, |hash| {
        format!(
            r#" integrity="{}" crossorigin="anonymous""#,
            hash.replace('"', "%22")
        )
    });
    let page = format!(
        r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{}"{integrity}></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#,
        config.client_url.replace('"', "%22")
    );
    let etag = format!("\"{:016x}\"", fnv1a(page.as_bytes()));
    let mut response = if request
        .headers
        .get(IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(CONTENT_TYPE, "text/html; charset=UTF-8")], page).into_response()
    };
    let headers = response.headers_mut();
    cache_for_a_year(headers);
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    response
}

/// A stable 64-bit FNV-1a hash, for the iframe page's `ETag`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::super::config::{DEFAULT_CLIENT_INTEGRITY, DEFAULT_CLIENT_URL, ScriptIntegrity};
    use super::*;

    async fn iframe_page(config: &SockJsConfig) -> String {
        let (parts, ()) = axum::http::Request::new(()).into_parts();
        let body = iframe(config, &parts).into_body();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("a body");
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    #[tokio::test]
    async fn the_iframe_page_pins_its_script_when_a_hash_is_known() {
        let pinned = iframe_page(&SockJsConfig::default()).await;
        assert!(
            pinned.contains(&format!(
                r#"<script src="{DEFAULT_CLIENT_URL}" integrity="{DEFAULT_CLIENT_INTEGRITY}" crossorigin="anonymous"></script>"#
            )),
            "{pinned}"
        );
        let own = SockJsConfig {
            client_url: "/static/sockjs.min.js".to_owned(),
            ..SockJsConfig::default()
        };
        assert!(
            iframe_page(&own)
                .await
                .contains(r#"<script src="/static/sockjs.min.js"></script>"#),
            "another script does not get the default script's hash"
        );
        let hashed = SockJsConfig {
            client_integrity: ScriptIntegrity::Given("sha384-abc=".to_owned()),
            ..own
        };
        assert!(
            iframe_page(&hashed)
                .await
                .contains(r#"integrity="sha384-abc=" crossorigin="anonymous""#)
        );
    }

    #[test]
    fn iframe_urls() {
        for good in [
            "iframe.html",
            "iframe-a.html",
            "iframe-.html",
            "iframe-0.1.2abc-dirty.2144.html",
        ] {
            assert!(is_iframe(good), "{good}");
        }
        for bad in [
            "iframe.htm",
            "iframe",
            "IFRAME.HTML",
            "iframe.HTML",
            "iframe.xml",
            "iframe-/.html",
            "iframea.html",
        ] {
            assert!(!is_iframe(bad), "{bad}");
        }
    }
}
