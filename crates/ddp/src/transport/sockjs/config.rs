//! The tuning of a SockJS endpoint.
//!
//! A leaf: the routes, the transports and the applications behind them all read it.

use std::time::Duration;

use crate::config::WebSocketCompression;

/// Where the iframe page loads `sockjs-client` from unless told otherwise: an exact version
/// on the public CDN, 1.6.1, the latest 1.x and so the version browsers running a current
/// `sockjs-client` carry (the iframe's copy must be the same version as the page's). Exact,
/// so that [`DEFAULT_CLIENT_INTEGRITY`] can pin its bytes.
pub const DEFAULT_CLIENT_URL: &str =
    "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js";

/// The Subresource Integrity hash of [`DEFAULT_CLIENT_URL`]: the SHA-384 of
/// `dist/sockjs.min.js` in the npm tarball of `sockjs-client` 1.6.1 (the tarball whose
/// SHA-512 `tests/browser/package-lock.json` records). With it, a browser refuses to run
/// the script if the CDN ever serves other bytes.
pub const DEFAULT_CLIENT_INTEGRITY: &str =
    "sha384-svdnwiXBL+Js+yUneJSRFy24NgGiOfDM/vkQl/vCeVrcbYD6yW8EwPr1FnxTEZsR";

/// Tuning of a SockJS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockJsConfig {
    /// Send a heartbeat frame (`h`) after this long without output (SockJS: 25 s).
    pub heartbeat: Duration,
    /// Remove an HTTP-transport session once no response of it has been in delivery for
    /// this long (Meteor: 60 s; the SockJS suite: 5 s); the application sees the client
    /// leave. The clock starts when a response body is written out, so a slow link
    /// receiving a large result is not dropped.
    pub disconnect_delay: Duration,
    /// Bytes one streaming response carries before the server ends it and the client
    /// opens the next (SockJS: 128 KiB), so browsers can free what they received.
    pub response_limit: usize,
    /// Largest body of one `xhr_send`/`jsonp_send` request, and largest WebSocket message.
    pub max_message_size: usize,
    /// Longest time one write to a client may take; a client that stops reading is
    /// disconnected instead of holding the server's memory (`--write-timeout`).
    pub write_timeout: Duration,
    /// The longest an HTTP-transport session may go without the application considering it
    /// started (DDP: without a `connect`); it is then closed and frees its place under
    /// `--max-sessions`. `sockjs-client` and Meteor send `connect` right after the open
    /// frame.
    pub connect_timeout: Duration,
    /// Longest wait for the 8-byte nonce a hixie-76 client sends after its handshake
    /// headers; a client that never sends it is disconnected.
    pub handshake_timeout: Duration,
    /// Client messages buffered per session on their way to the application; when full,
    /// the transport stops reading (`--inbound-queue`). The application's output is
    /// bounded by its own byte budget (`--outbound-buffer-size`).
    pub queue: usize,
    /// The SockJS client script the iframe page loads (the iframe-based transports run
    /// their requests from it): [`DEFAULT_CLIENT_URL`], or a copy served where the CDN is
    /// out of reach.
    pub client_url: String,
    /// Whether the iframe page's script tag carries a Subresource Integrity hash, and
    /// which ([`SockJsConfig::script_integrity`]).
    pub client_integrity: ScriptIntegrity,
    /// `permessage-deflate` on the WebSocket transports (`--websocket-compression`).
    pub compression: WebSocketCompression,
}

impl Default for SockJsConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(60),
            response_limit: 128 * 1024,
            max_message_size: 1024 * 1024,
            write_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(45),
            queue: 32,
            client_url: DEFAULT_CLIENT_URL.to_owned(),
            client_integrity: ScriptIntegrity::Known,
            compression: WebSocketCompression::default(),
        }
    }
}

impl SockJsConfig {
    /// The `integrity` attribute of the iframe page's script tag, by
    /// [`SockJsConfig::client_integrity`]: never the default script's hash on another
    /// script (a wrong hash would make browsers refuse it).
    pub fn script_integrity(&self) -> Option<&str> {
        match &self.client_integrity {
            ScriptIntegrity::Known => {
                (self.client_url == DEFAULT_CLIENT_URL).then_some(DEFAULT_CLIENT_INTEGRITY)
            }
            ScriptIntegrity::Given(hash) => Some(hash),
            ScriptIntegrity::Off => None,
        }
    }
}

/// Where the iframe page's script integrity hash comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptIntegrity {
    /// The pinned hash when the script is [`DEFAULT_CLIENT_URL`]; none for another script,
    /// whose hash is unknown.
    Known,
    /// This hash (`sha384-…`), for an operator's own copy of the script.
    Given(String),
    /// None: a bare script tag (the SockJS conformance suite's services expect one).
    Off,
}
