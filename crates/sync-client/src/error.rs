//! Why a sync pass stopped.

use exosphere_ddp::client::ClientError;

/// Why a sync pass stopped: the connection, the server breaking the protocol, or the sink.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The DDP connection failed or the call did (unreachable, disconnected, timed out).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server answered something the protocol does not allow; syncing again from the
    /// same server will not help until it is fixed.
    #[error("{0}")]
    Protocol(String),
    /// The sink could not store a page or read its token.
    #[error(transparent)]
    Sink(Box<dyn std::error::Error + Send + Sync>),
    /// The sink refused a page and moved its stored token so that the next pass starts over
    /// (a mirror that saw the upstream's token go backwards); not a failure: run the pass
    /// again at once.
    #[error("{0}")]
    Restart(String),
}

impl SyncError {
    /// Whether a caller that keeps following a server should try again after this error
    /// ([`ClientError::is_transient`]), rather than stop (a broken protocol, the sink).
    pub fn is_transient(&self) -> bool {
        matches!(self, SyncError::Client(error) if error.is_transient())
    }
}
