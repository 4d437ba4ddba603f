//! Everything that can go wrong between a DDP client and a server, worded for the user who
//! typed the server's URL.

use std::time::Duration;

use crate::error::DdpError;

/// Why a DDP client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL cannot be used.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No TCP connection could be made (name resolution failed, connection refused, …).
    #[error("cannot reach the server at {address}: {source}")]
    Unreachable {
        /// `host:port`.
        address: String,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// The TLS handshake failed (untrusted or invalid certificate, wrong host name, not TLS).
    #[error("TLS handshake with {address} failed: {source}")]
    Tls {
        /// `host:port`.
        address: String,
        /// rustls' reason.
        source: std::io::Error,
    },
    /// An extra CA certificate could not be loaded.
    #[error("cannot use the CA certificate: {0}")]
    Certificate(String),
    /// The server answered the WebSocket upgrade with an HTTP status instead of switching
    /// protocols: usually not a DDP endpoint, or a proxy in the way.
    #[error(
        "{url} answered the WebSocket upgrade with HTTP {status}: is this a Meteor package server?"
    )]
    HttpStatus {
        /// The WebSocket URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The WebSocket handshake failed for another reason.
    #[error("WebSocket handshake with {url} failed: {reason}")]
    Handshake {
        /// The WebSocket URL.
        url: String,
        /// tungstenite's reason.
        reason: String,
    },
    /// The server sent something DDP does not allow.
    #[error("the server broke the DDP protocol: {0}")]
    Protocol(String),
    /// The server only speaks DDP versions this client does not.
    #[error("the server offers DDP version {offered:?}, which this client does not speak")]
    Version {
        /// The server's suggestion.
        offered: String,
    },
    /// A method call returned an error object.
    #[error("the server answered with an error: {0}")]
    Method(Box<DdpError>),
    /// A subscription was refused (or stopped) with an error.
    #[error("subscription `{name}` failed: {error}")]
    Subscription {
        /// The publication name.
        name: String,
        /// The server's error.
        error: Box<DdpError>,
    },
    /// The server rejected one of our messages with a top-level DDP `error`.
    #[error("the server rejected a message: {0}")]
    Rejected(String),
    /// Nothing came back in time.
    #[error("no answer from the server to {what} within {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The configured limit.
        after: Duration,
    },
    /// The connection ended (before or during the operation).
    #[error("the connection to the server was lost: {0}")]
    Disconnected(String),
}

impl ClientError {
    /// Whether the failure may pass by itself (the server went away or is unreachable for
    /// now), so a client that follows a server should dial again after a pause; the rest (a
    /// bad URL, TLS, a broken protocol) will not get better by retrying.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::Disconnected(_)
                | ClientError::Timeout { .. }
                | ClientError::HttpStatus { .. }
        )
    }
}
