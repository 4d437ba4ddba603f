//! Package files over HTTP: the upload URLs `createPackageVersion`, `createPackageBuild`
//! and `createReadme` hand out (spec §5.2), downloads of published files (spec §8.1), and
//! downloads of mirrored files (`/mirror/files/<key>`, served by `exosphere_mirror`).
//!
//! An upload URL carries its own authorization (the tool sends no credentials): a random
//! secret whose hash names a single-use, expiring ticket. The body streams into a staging
//! blob and is hashed on the way; it becomes visible under its final name only when the
//! publish call has checked that hash. An upload that fails (too large, slower than
//! `--upload-min-rate` over a window of `--upload-idle-timeout`, cut off by the client)
//! keeps no partial file and leaves its URL usable for a retry; one still arriving when its
//! URL expires (`--upload-ttl`) is abandoned the same way, so a client trickling bytes
//! cannot hold an upload slot for long. A URL is marked as receiving by its upload slot,
//! given back however the upload ends, so it is usable again even when the catalog could
//! not record the end (its disk full at that moment).
//! Downloads answer `200` with an exact `Content-Length`, or `206` for one byte range (old
//! tools resume with `Range: bytes=N-` by appending), and never redirect: the tool would
//! save a redirect body as the tarball.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exosphere_blobs::{BlobError, BlobKey, Download, Patience, Span};
use exosphere_catalog::accounts::{Upload, UploadState, secret_hash};
use exosphere_catalog::files::PUBLISHED_PREFIX;
use exosphere_ddp::{DdpError, ErrorCode};
use exosphere_mirror::FileError;

use super::AppState;
use crate::service::Publishing;
use crate::service::records::now_ms;
use crate::service::secrets::looks_like_secret;
use crate::service::upload_slots::Busy;
use crate::service::uploads::blob_key;

/// `PUT /uploads/<secret>`: stores the body for the ticket, once. The ticket is looked up
/// read-only first, so an unknown, expired or used URL is answered without taking an
/// upload slot or a write transaction. Only then is a slot taken: at most
/// `--max-uploads-per-user` for the ticket's user across every server of the catalog (429
/// with `Retry-After` over it), `--max-concurrent-uploads` in this process (503 with
/// `Retry-After`), and one per ticket, on whichever server it arrives (409 with
/// `Retry-After` while another body for the same URL arrives). Any server of the catalog
/// takes the PUT of a URL another one handed out: the ticket is in the shared catalog and
/// the file goes to the shared file store. The work runs on its own task, so a client that
/// disconnects mid-body cannot cancel the clean-up that makes the URL usable again.
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
    let ticket = {
        let (store, hash) = (Arc::clone(&publishing.store), hash.clone());
        exosphere_task::blocking(move || store.upload_ticket(&hash)).await
    };
    let ticket = match ticket {
        Ok(Ok(ticket)) => ticket,
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot read an upload ticket");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check the upload URL right now; try again",
            );
        }
        Err(error) => {
            tracing::error!(%error, "an upload ticket lookup failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "the upload failed");
        }
    };
    let Some(ticket) = ticket else {
        return refusal(&unknown());
    };
    if let Err(error) = usable(&ticket.upload, declared) {
        return refusal(&error);
    }
    let slot = match publishing.upload_slots.try_take(&ticket.user_id, &hash) {
        Ok(slot) => slot,
        Err(busy) => return busy_answer(busy),
    };
    let receiving = exosphere_task::spawn(async move {
        let claim = Claim {
            hash,
            user_id: ticket.user_id,
            others_here: slot.others_of_user(),
        };
        let answer = receive(&publishing, claim, declared, body).await;
        drop(slot);
        answer
    });
    receiving.await.unwrap_or_else(|error| {
        tracing::error!(%error, "an upload task failed");
        text(StatusCode::INTERNAL_SERVER_ERROR, "the upload failed")
    })
}

/// Seconds a client refused for lack of an upload slot is asked to wait.
const RETRY_AFTER: &str = "5";

/// The answer to an upload refused for lack of a slot: 409 when its URL is receiving a
/// body already, 429 when its user already runs as many uploads as one user may (their own
/// doing), 503 when the server is full; all ask the client to retry and keep the URL valid.
fn busy_answer(busy: Busy) -> Response {
    let mut response = match busy {
        Busy::Ticket => text(
            StatusCode::CONFLICT,
            "This upload URL is receiving a file right now; try again once that upload has \
             ended (this upload URL stays valid)",
        ),
        Busy::User(running) => {
            tracing::warn!(
                running,
                "refused an upload: its user has every slot a user may"
            );
            text(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "You are already sending {running} uploads, the most this server takes \
                     from one user at once; try again when one has finished (this upload \
                     URL stays valid)"
                ),
            )
        }
        Busy::Server => {
            tracing::warn!("refused an upload: every upload slot is busy");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is receiving as many uploads as it allows; try again shortly \
                 (this upload URL stays valid)",
            )
        }
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    response
}

/// The refusal for a URL with no ticket (or one no pending publish lists).
fn unknown() -> DdpError {
    DdpError::new(404, "This upload URL is unknown or expired")
}

/// Whether a ticket can take an upload of `declared` bytes now: it has not expired, has
/// not received its file, and the declared size is within its limit. Checked read-only
/// before a slot is taken, and again when the ticket is claimed. A ticket marked
/// receiving counts as open here: on the server whose mark it is, only an upload slot says
/// whether a body is still arriving (the mark outlives an upload whose end the catalog
/// could not record, until that server's `reopen_unheld_uploads` job reopens it); another
/// running server's mark refuses the claim ([`receive`]).
fn usable(upload: &Upload, declared: Option<u64>) -> Result<(), DdpError> {
    if upload.expires <= now_ms() {
        return Err(DdpError::new(410, "This upload URL expired; publish again"));
    }
    if matches!(upload.state, UploadState::Received { .. }) {
        return Err(DdpError::new(409, "This upload URL was already used"));
    }
    if declared.is_some_and(|size| size > upload.max_size) {
        return Err(too_large(upload.max_size));
    }
    Ok(())
}

/// A ticket about to be claimed for one PUT, with what the caller's upload slot knows.
struct Claim {
    /// The hash of the ticket's URL secret.
    hash: String,
    /// The user whose pending publish lists the ticket.
    user_id: String,
    /// How many other uploads of that user this process receives now.
    others_here: usize,
}

/// Claims the ticket (marked receiving by this server's seat, unless another running
/// server receives it, 409, or the user's uploads on every server together reach
/// `--max-uploads-per-user`, 429), streams the body into its staging blob and records the
/// outcome: a received file, or on any failure (too large, idle, past the ticket's
/// expiry, the client went away) the ticket open again with no partial file kept. If the
/// ticket was retired while the body arrived (its publish started again or swept), it stays
/// retired and a received file is deleted and answered 410. If the outcome cannot be
/// recorded, a failed upload keeps its own answer and a received file is deleted and the
/// catalog's refusal answered; either way the URL takes a retry once the slot is given
/// back.
async fn receive(
    publishing: &Publishing,
    claim: Claim,
    declared: Option<u64>,
    body: Body,
) -> Response {
    let Claim {
        hash,
        user_id,
        others_here,
    } = claim;
    let claimed = {
        let hash = hash.clone();
        let server = publishing.server.clone();
        let per_user = publishing.upload_slots.per_user();
        publishing
            .transact(move |writer| {
                let upload = writer.accounts().upload(&hash)?.ok_or_else(unknown)?;
                usable(&upload, declared)?;
                let elsewhere = writer
                    .accounts()
                    .receiving_elsewhere(&server, &hash, &user_id)?;
                if elsewhere.ticket {
                    return Ok(Err(Busy::Ticket));
                }
                let running = usize::try_from(elsewhere.by_user)
                    .unwrap_or(usize::MAX)
                    .saturating_add(others_here);
                if running >= per_user {
                    return Ok(Err(Busy::User(running)));
                }
                writer.accounts().start_receiving(&hash, &server)?;
                Ok(Ok(upload))
            })
            .await
    };
    let upload = match claimed {
        Ok(Ok(upload)) => upload,
        Ok(Err(busy)) => return busy_answer(busy),
        Err(error) => return refusal(&error),
    };
    let staging = match blob_key(&upload.staging) {
        Ok(key) => key,
        Err(error) => return refusal(&error),
    };
    let left = u64::try_from(upload.expires.saturating_sub(now_ms())).unwrap_or(0);
    let patience = Patience {
        idle: publishing.upload_idle_timeout,
        min_rate: publishing.upload_min_rate,
        deadline: tokio::time::Instant::now() + Duration::from_millis(left),
    };
    let stored = publishing
        .blobs
        .put_stream(&staging, body.into_data_stream(), upload.max_size, patience)
        .await;
    let (outcome, answer) = match stored {
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
                BlobError::Idle { idle, min_bytes } => {
                    tracing::info!(
                        seconds = idle.as_secs(),
                        min_bytes,
                        "abandoned a stalled upload"
                    );
                    text(
                        StatusCode::REQUEST_TIMEOUT,
                        &format!(
                            "Abandoned: {error}. Upload the file again (this upload URL \
                             stays valid)"
                        ),
                    )
                }
                BlobError::Deadline => {
                    tracing::info!("abandoned an upload still arriving when its URL expired");
                    text(
                        StatusCode::REQUEST_TIMEOUT,
                        "The upload did not finish before its upload URL expired and was \
                         abandoned; publish again for a new one",
                    )
                }
                BlobError::Body(reason) => {
                    tracing::info!(%reason, "an upload was cut off");
                    text(StatusCode::BAD_REQUEST, reason)
                }
                other if other.disk_trouble().is_some() => {
                    tracing::error!(
                        error = %other,
                        "storing an upload failed: the disk of the package files is full or \
                         read-only; free space there or make it writable"
                    );
                    let (status, what) = match other.disk_trouble() {
                        Some(std::io::ErrorKind::ReadOnlyFilesystem) => {
                            (StatusCode::SERVICE_UNAVAILABLE, "is read-only")
                        }
                        _ => (StatusCode::INSUFFICIENT_STORAGE, "is full"),
                    };
                    text(
                        status,
                        &format!(
                            "The package server's disk {what}: the file was not kept. Try \
                             again later (this upload URL stays valid)"
                        ),
                    )
                }
                other => {
                    tracing::error!(error = %other, "storing an upload failed");
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot store the file right now",
                    )
                }
            };
            (UploadState::Open, answer)
        }
    };
    let received = matches!(outcome, UploadState::Received { .. });
    // Only the ticket as claimed is updated: a publish replaced or finished while the body
    // arrived retired it (or the sweep deleted it), and that must stand; another server
    // that claimed it meanwhile owns it and its staging blob.
    let server = publishing.server.clone();
    let recorded = publishing
        .transact(move |writer| {
            let accounts = writer.accounts();
            let now = now_ms();
            if accounts.end_receiving(&hash, &server, &outcome, now)? {
                return Ok(Ended::Recorded);
            }
            let withdrawn = accounts
                .upload(&hash)?
                .is_none_or(|upload| upload.expires <= now);
            Ok(if withdrawn {
                Ended::Withdrawn
            } else {
                Ended::TakenOver
            })
        })
        .await;
    if !received && !matches!(recorded, Ok(Ended::TakenOver)) {
        delete_staging(publishing, &staging).await;
    }
    match recorded {
        Ok(Ended::Recorded) => answer,
        // A failed upload's answer stands; its ticket is gone, expired or another's.
        Ok(_) if !received => answer,
        Ok(Ended::TakenOver) => {
            tracing::warn!(
                "an upload arrived after its URL passed to the other servers (this server's \
                 seat lapsed while its database connection was down); the file was not kept"
            );
            refusal(&DdpError::new(
                409,
                "This upload URL passed to another server while the file arrived, so the \
                 file was not kept; upload it again (this upload URL stays valid)",
            ))
        }
        Ok(Ended::Withdrawn) => {
            tracing::info!("an upload arrived after its publish was replaced or expired");
            delete_staging(publishing, &staging).await;
            refusal(&DdpError::new(
                410,
                "This upload URL was withdrawn while the file arrived (its publish was \
                 started again, or it expired); the file was not kept. Publish again.",
            ))
        }
        // The catalog could not record the end (its disk full, say): the ticket stays marked
        // receiving, which the slot given back makes harmless, so the URL takes a retry.
        Err(error) if !received => {
            tracing::warn!(%error, "cannot record that an upload ended; its URL takes a retry");
            answer
        }
        Err(error) => {
            delete_staging(publishing, &staging).await;
            refusal(&error)
        }
    }
}

/// How recording the end of an upload went ([`AccountWriter::end_receiving`]).
///
/// [`AccountWriter::end_receiving`]: exosphere_catalog::accounts::AccountWriter::end_receiving
enum Ended {
    /// The ticket was this server's claim and now records the outcome.
    Recorded,
    /// The ticket was retired, swept or expired while the body arrived: its staging blob
    /// is nobody's.
    Withdrawn,
    /// The ticket passed to the other servers meanwhile (this server's seat lapsed, so its
    /// mark looked abandoned: another server reopened or claimed it): the ticket and its
    /// staging blob are theirs.
    TakenOver,
}

/// Deletes a staging blob that will not be published; a failure is logged and left to the
/// sweep, which deletes the blob of every expired or retired ticket.
async fn delete_staging(publishing: &Publishing, staging: &BlobKey) {
    if let Err(error) = publishing.blobs.delete(staging).await {
        tracing::warn!(%error, "cannot delete a staging upload that will not be published");
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

/// `GET /packages/<key>`: a published file, whole or one byte range (see
/// [`Span::from_range_header`]).
pub async fn download(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(publishing) = state.publishing.clone() else {
        return text(StatusCode::NOT_FOUND, "no such file");
    };
    let Ok(key) = BlobKey::new(&format!("{PUBLISHED_PREFIX}{key}")) else {
        return text(StatusCode::NOT_FOUND, "no such file");
    };
    let span = requested_span(&headers);
    match publishing.blobs.get(&key, span).await {
        Ok(Some(download)) => file_response(key.as_str(), span, download),
        Ok(None) => text(StatusCode::NOT_FOUND, "no such file"),
        Err(BlobError::RangeNotSatisfiable { size }) => not_satisfiable(size),
        Err(error) => {
            tracing::error!(%error, "reading a package file failed");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read the file right now",
            )
        }
    }
}

/// `GET /mirror/files/<key>`: a file a mirrored record names, from the cache or streamed
/// from the upstream as it arrives (`exosphere_mirror::MirrorFiles`). An uncached file the
/// upstream cannot deliver now is a `502` saying why.
pub async fn mirrored(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(files) = state.mirror_files else {
        return text(StatusCode::NOT_FOUND, "no such file");
    };
    let span = requested_span(&headers);
    match files.open(&key, span).await {
        Ok(download) => file_response(&key, span, download),
        Err(FileError::NotMirrored) => text(StatusCode::NOT_FOUND, "no such file"),
        Err(FileError::RangeNotSatisfiable { size }) => not_satisfiable(size),
        Err(error @ FileError::Busy) => {
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, &error.to_string());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            response
        }
        Err(FileError::Unavailable(reason)) => text(
            StatusCode::BAD_GATEWAY,
            &format!(
                "this file is not cached here yet and the upstream cannot deliver it: {reason}"
            ),
        ),
        Err(FileError::Storage(error)) => {
            tracing::error!(%error, "serving a mirrored file failed");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read the file right now",
            )
        }
    }
}

/// The span of a request's `Range` header (see [`Span::from_range_header`]).
fn requested_span(headers: &HeaderMap) -> Span {
    headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map_or(Span::Whole, Span::from_range_header)
}

/// `416` with the file's size.
fn not_satisfiable(size: u64) -> Response {
    let mut response = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    response
}

/// A file's bytes as the tool needs them (spec §8.1): `200` with the exact length, or `206`
/// with `Content-Range` for a range.
fn file_response(key: &str, span: Span, download: Download) -> Response {
    let range = download.range.clone();
    let content_type = if key.ends_with(".md") {
        "text/markdown; charset=utf-8"
    } else if key.ends_with(".tgz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    };
    let mut response = Response::new(Body::from_stream(download.body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // A published file never changes: every new upload gets a new name; a mirrored file's
    // name comes from its upstream URL, whose file never changes either.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if span != Span::Whole {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let content_range = format!("bytes {}-{}/{}", range.start, range.end - 1, download.size);
        if let Ok(value) = HeaderValue::from_str(&content_range) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    response
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
    use super::loggable_path;

    #[test]
    fn upload_secrets_are_not_logged() {
        assert_eq!(loggable_path("/uploads/abcdefSECRET"), "/uploads/…");
        assert_eq!(loggable_path("/packages/a/b.tgz"), "/packages/a/b.tgz");
    }
}
