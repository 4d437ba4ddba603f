//! The headers every SockJS answer shares: CORS, caching, the `JSESSIONID` cookie, and the
//! cacheable `OPTIONS` preflight built from them.

use std::time::SystemTime;

use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    CACHE_CONTROL, COOKIE, EXPIRES, ORIGIN, SET_COOKIE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};

use super::endpoint::Endpoint;

/// `OPTIONS` on a URL that allows `methods`: a cacheable CORS preflight answer.
pub(super) fn options(endpoint: &Endpoint, request: &Parts, methods: &'static str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cache_for_a_year(headers);
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("31536000"));
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    cors(headers, request);
    cookie(endpoint, headers, request);
    response
}

/// CORS for browsers on another origin: the request's `Origin` (even `null`) with
/// credentials, so `JSESSIONID` can travel, or `*` without; requested headers are allowed.
pub(super) fn cors(headers: &mut HeaderMap, request: &Parts) {
    match request.headers.get(ORIGIN) {
        Some(origin) => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        None => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
    if let Some(requested) = request
        .headers
        .get(ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|value| !value.is_empty())
    {
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
}

/// Private answers fetched with GET (or POST, which iOS caches) must never be cached.
pub(super) fn no_cache(headers: &mut HeaderMap) {
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, no-transform, must-revalidate, max-age=0"),
    );
}

/// Static answers are cached for a year.
pub(super) fn cache_for_a_year(headers: &mut HeaderMap) {
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000"),
    );
    headers.insert(EXPIRES, expires_in_a_year());
}

/// `Expires` one year from now, as an HTTP date.
pub(super) fn expires_in_a_year() -> HeaderValue {
    let when = SystemTime::now() + std::time::Duration::from_secs(31_536_000);
    HeaderValue::from_str(&httpdate::fmt_http_date(when))
        .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 2099 00:00:00 GMT"))
}

/// `JSESSIONID` for sticky load balancers, when the endpoint needs it: the client's own
/// value echoed, or `dummy`.
pub(super) fn cookie(endpoint: &Endpoint, headers: &mut HeaderMap, request: &Parts) {
    if !endpoint.cookie_needed {
        return;
    }
    let value = request
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("JSESSIONID="))
        .next()
        .unwrap_or("dummy");
    if let Ok(value) = HeaderValue::from_str(&format!("JSESSIONID={value}; path=/")) {
        headers.insert(SET_COOKIE, value);
    }
}
