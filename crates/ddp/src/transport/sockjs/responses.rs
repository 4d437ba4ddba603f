//! The plain answers a SockJS endpoint gives to requests it cannot serve: `400`, `404`,
//! `405`, and the `500` SockJS answers a client's malformed request with.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse as _, Response};

use crate::transport::DeliberateStatus;

/// Why a request to a WebSocket URL is no WebSocket handshake.
pub(super) const NOT_AN_UPGRADE: &str = "Can \"Upgrade\" only to \"WebSocket\".";

/// `400 Bad Request` saying `reason`.
pub(super) fn bad_request(reason: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response()
}

/// `404 Not Found` with no body.
pub(super) fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// `405 Method Not Allowed` with `Allow` and nothing else.
pub(super) fn method_not_allowed(allowed: &'static str) -> Response {
    let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
    response.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static(allowed),
    );
    response
}

/// The answer SockJS servers give to a bad request on a transport: 500 and a reason.
pub(super) fn server_error(reason: &str) -> Response {
    DeliberateStatus::ClientError.mark(
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(CONTENT_TYPE, "text/plain; charset=UTF-8")],
            reason.to_owned(),
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_are_marked_deliberate() {
        let response = server_error("Broken JSON encoding.");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.extensions().get::<DeliberateStatus>(),
            Some(&DeliberateStatus::ClientError)
        );
    }
}
