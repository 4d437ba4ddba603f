//! How a DDP client connects and how long it waits.
//!
//! A leaf of the client: the socket (timeouts, TLS roots, `User-Agent`) and the
//! [`Client`](super::Client) handle read it.

use std::time::Duration;

use rustls::pki_types::CertificateDer;

/// How a [`Client`](super::Client) connects and how long it waits.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Limit for the whole connection: TCP, TLS, WebSocket upgrade and DDP handshake.
    pub connect_timeout: Duration,
    /// Limit for one method call (from the moment its answer is awaited) or for a
    /// subscription to become ready.
    pub call_timeout: Duration,
    /// Ping a server that stayed silent this long, and give up on it when the ping goes
    /// unanswered as long again (`None`: never ping, as the `meteor` tool does).
    pub heartbeat: Option<Duration>,
    /// Largest message accepted from the server, in bytes.
    pub max_message_size: usize,
    /// CA certificates trusted on top of the webpki (Mozilla) roots, e.g. a private CA
    /// (see [`certificates_from_pem`](super::certificates_from_pem)).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The `User-Agent` of the WebSocket upgrade.
    pub user_agent: String,
    /// The most bytes of subscription documents kept (each counted as its id plus, per
    /// field, the name and the value's EJSON text, plus a fixed bookkeeping cost per
    /// document, field and collection, so a stream of `changed` frames costs only what the
    /// documents hold and empty documents still count); a server that sends more ends the
    /// connection with [`ClientError::Protocol`](super::ClientError::Protocol), so a
    /// flooding subscription cannot exhaust the client.
    pub max_document_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            heartbeat: None,
            max_message_size: 64 << 20,
            extra_roots: Vec::new(),
            user_agent: concat!("exosphere/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_document_bytes: 64 << 20,
        }
    }
}
