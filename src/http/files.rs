//! Package files over HTTP: the upload URLs `createPackageVersion`, `createPackageBuild`
//! and `createReadme` hand out (spec §5.2), and downloads of published files (spec §8.1).
//!
//! An upload URL carries its own authorization (the tool sends no credentials): a random
//! secret whose hash names a single-use, expiring ticket. The body streams into a staging
//! blob and is hashed on the way; it becomes visible under its final name only when the
//! publish call has checked that hash. Downloads answer `200` with an exact
//! `Content-Length`, or `206` for `Range: bytes=N-` (old tools resume by appending), and
//! never redirect: the tool would save a redirect body as the tarball.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exosphere_blobs::{BlobError, BlobKey};
use exosphere_catalog::accounts::{Upload, UploadState, secret_hash};
use exosphere_ddp::{DdpError, ErrorCode};

use super::AppState;
use crate::service::Publishing;
use crate::service::publishing::{blob_key, looks_like_secret, now_ms};

/// `PUT /uploads/<secret>`: stores the body for the ticket, once.
pub async fn upload(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(publishing) = state.publishing.clone() else {
        return text(StatusCode::NOT_FOUND, "this server does not accept uploads");
    };
    if !looks_like_secret(&secret) {
        return text(StatusCode::NOT_FOUND, "unknown upload URL");
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let hash = secret_hash(&secret);
    let claim = {
        let hash = hash.clone();
        publishing
            .transact(move |writer| {
                let upload = writer
                    .accounts()
                    .upload(&hash)?
                    .ok_or_else(|| DdpError::new(404, "This upload URL is unknown or expired"))?;
                if upload.expires <= now_ms() {
                    return Err(DdpError::new(410, "This upload URL expired; publish again").into());
                }
                if upload.state != UploadState::Open {
                    return Err(DdpError::new(409, "This upload URL was already used").into());
                }
                if declared.is_some_and(|size| size > upload.max_size) {
                    return Err(too_large(upload.max_size).into());
                }
                let claimed = Upload {
                    state: UploadState::Receiving,
                    ..upload.clone()
                };
                writer.accounts().put_upload(&hash, &claimed)?;
                Ok(upload)
            })
            .await
    };
    let upload = match claim {
        Ok(upload) => upload,
        Err(error) => return refusal(&error),
    };
    let staging = match blob_key(&upload.staging) {
        Ok(key) => key,
        Err(error) => return refusal(&error),
    };
    let stored = publishing
        .blobs
        .put_stream(&staging, body.into_data_stream(), upload.max_size)
        .await;
    let (state_after, answer) = match stored {
        Ok(stored) => (
            UploadState::Received {
                size: stored.size,
                sha256: stored.sha256,
            },
            text(StatusCode::OK, ""),
        ),
        Err(error) => {
            let answer = match &error {
                BlobError::TooLarge { limit } => refusal(&too_large(*limit)),
                BlobError::Body(reason) => text(StatusCode::BAD_REQUEST, reason),
                other => {
                    tracing::error!(error = %other, "storing an upload failed");
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot store the file right now",
                    )
                }
            };
            if let Err(error) = publishing.blobs.delete(&staging).await {
                tracing::warn!(%error, "cannot delete a failed upload");
            }
            (UploadState::Open, answer)
        }
    };
    let finished = Upload {
        state: state_after,
        ..upload
    };
    let recorded = publishing
        .transact(move |writer| Ok(writer.accounts().put_upload(&hash, &finished)?))
        .await;
    match recorded {
        Ok(()) => answer,
        Err(error) => refusal(&error),
    }
}

/// A request path as logs may show it: an upload URL's secret is its authorization, so
/// `/uploads/<secret>` is logged as `/uploads/…`.
pub fn loggable_path(path: &str) -> &str {
    if path.starts_with("/uploads/") {
        "/uploads/…"
    } else {
        path
    }
}

/// The refusal for a body over the limit.
fn too_large(limit: u64) -> DdpError {
    DdpError::new(
        413,
        format!("The file is larger than this server's upload limit of {limit} bytes"),
    )
}

/// `GET /packages/<key>`: a published file, whole or from `Range: bytes=N-`.
pub async fn download(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(publishing) = state.publishing.clone() else {
        return text(StatusCode::NOT_FOUND, "no such file");
    };
    let Ok(key) = BlobKey::new(&format!("packages/{key}")) else {
        return text(StatusCode::NOT_FOUND, "no such file");
    };
    let start = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(range_start);
    serve_blob(&publishing, &key, start.unwrap_or(0)).await
}

async fn serve_blob(publishing: &Publishing, key: &BlobKey, start: u64) -> Response {
    let download = match publishing.blobs.get(key, start).await {
        Ok(Some(download)) => download,
        Ok(None) => return text(StatusCode::NOT_FOUND, "no such file"),
        Err(BlobError::RangeNotSatisfiable { size, .. }) => {
            let mut response = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
        Err(error) => {
            tracing::error!(%error, "reading a package file failed");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read the file right now",
            );
        }
    };
    let length = download.size - download.start;
    let content_type = if key.as_str().ends_with(".md") {
        "text/markdown; charset=utf-8"
    } else if key.as_str().ends_with(".tgz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    };
    let mut response = Response::new(Body::from_stream(download.body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // A published file never changes: every new upload gets a new name.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if download.start > 0 {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let range = format!(
            "bytes {}-{}/{}",
            download.start,
            download.size - 1,
            download.size
        );
        if let Ok(value) = HeaderValue::from_str(&range) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    response
}

/// The start of a `Range: bytes=N-` header (the only form the tool sends); other forms
/// are ignored and get the whole file, as HTTP allows.
fn range_start(value: &str) -> Option<u64> {
    value
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// A plain-text answer; the tool shows the body of a failed upload as the error.
fn text(status: StatusCode, body: &str) -> Response {
    let body = if body.is_empty() {
        String::new()
    } else {
        format!("{body}\n")
    };
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// A refusal from a catalog transaction as HTTP: its numeric code when it is an HTTP
/// error status, 500 otherwise, with the reason as body.
fn refusal(error: &DdpError) -> Response {
    let status = match error.error {
        ErrorCode::Number(code) => u16::try_from(code)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .filter(|status| status.is_client_error() || status.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        ErrorCode::Text(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, error.reason.as_deref().unwrap_or("error"))
}

#[cfg(test)]
mod tests {
    use super::{loggable_path, range_start};

    #[test]
    fn upload_secrets_are_not_logged() {
        assert_eq!(loggable_path("/uploads/abcdefSECRET"), "/uploads/…");
        assert_eq!(loggable_path("/packages/a/b.tgz"), "/packages/a/b.tgz");
    }

    #[test]
    fn only_open_ended_byte_ranges_are_honoured() {
        assert_eq!(range_start("bytes=100-"), Some(100));
        assert_eq!(range_start("bytes=0-"), Some(0));
        assert_eq!(range_start("bytes=0-10"), None);
        assert_eq!(range_start("bytes=-10"), None);
        assert_eq!(range_start("items=1-"), None);
    }
}
