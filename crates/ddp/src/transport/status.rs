//! The mark a transport puts on a 5xx answer it gives on purpose (a refusal, or a
//! client's mistake SockJS answers with `500`).

/// Why a transport answered with a 5xx status on purpose, carried in the response's
/// extensions so the HTTP layer can log it as what it is rather than as a server failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliberateStatus {
    /// SockJS answers a client's malformed request (a bad payload, a missing callback) with
    /// `500`, as its protocol requires: the client's mistake.
    ClientError,
    /// `503`: the session limit (`--max-sessions`) is reached or the server is stopping.
    Refused,
}

impl DeliberateStatus {
    /// Marks `response` as answered on purpose.
    pub(crate) fn mark(self, mut response: axum::response::Response) -> axum::response::Response {
        response.extensions_mut().insert(self);
        response
    }
}
