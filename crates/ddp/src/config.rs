//! The limits and timeouts every DDP session runs under.
//!
//! A leaf: [`DdpConfig`] is read by the server (admission), the sessions (timeouts, queue
//! sizes) and the outbound queue (its byte budget), and depends on none of them.

use std::time::Duration;

/// The largest [`DdpConfig::outbound_buffer_size`] honoured (256 MiB); a larger one is
/// lowered to it. A session's budget is a tokio `Semaphore` of bytes, which panics beyond
/// `Semaphore::MAX_PERMITS`, only 2^29 - 1 on 32-bit targets; the CLI refuses more.
pub const MAX_OUTBOUND_BUFFER_SIZE: u32 = 256 << 20;

/// Timeouts and limits of DDP sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdpConfig {
    /// Drop sockets that never send `connect` within this time (spec §1.1; Meteor: 45 s).
    pub connect_timeout: Duration,
    /// Ping a client only after this long without any inbound frame; zero disables pings.
    pub ping_interval: Duration,
    /// Close the session if nothing arrives this long after a ping. Generous by default:
    /// the `meteor` tool is busy for minutes between calls during `meteor publish`.
    pub ping_timeout: Duration,
    /// The longest the whole write of one outbound frame to the client may take before the
    /// connection is closed as stalled (the client stopped reading). Separate from
    /// `ping_timeout` because a stalled writer pins the session's queued frames. The clock
    /// covers the entire frame, so the client's link must carry the largest frame within
    /// it: at the default (60 s), a 1 MB sync page needs at least ~17 KB/s.
    pub write_timeout: Duration,
    /// Largest inbound text frame in bytes; a larger one closes the session.
    pub max_message_size: usize,
    /// Bytes of outbound frames a logged-in session may hold (queued, or handed to its
    /// transport but not yet written) before producers (results, publications) wait. A
    /// frame larger than this still goes through, alone (counted in full in
    /// [`max_outbound_bytes`](Self::max_outbound_bytes)). The default (16 MiB) is several
    /// full `syncNewPackageData` pages of 500 records; at most [`MAX_OUTBOUND_BUFFER_SIZE`].
    pub outbound_buffer_size: u32,
    /// The same for a session that sent DDP `connect` but has no user id (anonymous
    /// clients, such as every `meteor` tool syncing), so that anyone can hold only this
    /// much; never more than `outbound_buffer_size`.
    pub anonymous_outbound_buffer_size: u32,
    /// The same for a connection that has not sent DDP `connect` yet (it can only be
    /// answered `connected`, `failed` or errors); never more than `outbound_buffer_size`.
    pub handshake_outbound_buffer_size: u32,
    /// Bytes of outbound frames all sessions together may hold. When it is spent, the
    /// session stalled longest (holding bytes without its client taking any for a while)
    /// is closed to make room, and a producer that still finds none within
    /// `write_timeout` ends its own session.
    pub max_outbound_bytes: usize,
    /// `method`/`sub`/`unsub` messages buffered per session before the reader stops reading
    /// from that client. The `meteor` tool never has more than one call in flight.
    pub inbound_queue: usize,
    /// Active subscriptions per session; further `sub`s get `nosub` with error 429, so a
    /// client cannot grow the session's state without bound.
    pub max_subscriptions: usize,
    /// Connections (DDP over any transport, handshaking or established) served at once;
    /// further ones are refused with HTTP 503 before any session state is allocated.
    pub max_sessions: usize,
    /// Connections counted against `max_sessions` that come from one client address
    /// (an IPv4 address, or an IPv6 /64) at once; zero turns the cap off. Behind a reverse
    /// proxy every client has the proxy's address: turn it off there.
    pub max_sessions_per_address: usize,
    /// Method calls one connection may make per [`method_rate_interval`](Self::method_rate_interval);
    /// further calls are answered with Meteor's `too-many-requests` error. Zero turns the
    /// limit off.
    pub method_rate_limit: u32,
    /// The window of [`method_rate_limit`](Self::method_rate_limit).
    pub method_rate_interval: Duration,
    /// On shutdown, how long sessions may take to finish the calls they already read
    /// before they are closed.
    pub shutdown_grace: Duration,
    /// Whether WebSocket clients may negotiate `permessage-deflate` (RFC 7692), and at
    /// which zlib level the server compresses: the `meteor` tool offers it on every
    /// connection, and a sync is several times fewer bytes with it.
    pub compression: WebSocketCompression,
}

/// The `permessage-deflate` setting of a WebSocket endpoint (`--websocket-compression`,
/// `--websocket-compression-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketCompression {
    /// Negotiate the extension when a client offers it; off, every offer is declined.
    pub enabled: bool,
    /// zlib's compression level, 0 (stored) to 9 (best); a higher one is lowered to 9.
    pub level: u32,
}

impl Default for WebSocketCompression {
    /// On, at zlib's default level (6).
    fn default() -> Self {
        Self {
            enabled: true,
            level: 6,
        }
    }
}

/// How far a session has come, which decides its outbound budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// No DDP `connect` yet.
    Handshake,
    /// Connected, no user id.
    Anonymous,
    /// A login method set a user id.
    LoggedIn,
}

impl DdpConfig {
    /// The outbound budget of a session at `trust`: never more than a logged-in one's.
    pub(crate) fn session_budget(&self, trust: Trust) -> u32 {
        let full = self.outbound_buffer_size;
        match trust {
            Trust::Handshake => self.handshake_outbound_buffer_size.min(full),
            Trust::Anonymous => self.anonymous_outbound_buffer_size.min(full),
            Trust::LoggedIn => full,
        }
    }
}

impl Default for DdpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(45),
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(60),
            max_message_size: 1024 * 1024,
            outbound_buffer_size: 16 << 20,
            anonymous_outbound_buffer_size: 4 << 20,
            handshake_outbound_buffer_size: 64 << 10,
            max_outbound_bytes: 512 << 20,
            inbound_queue: 32,
            max_subscriptions: 100,
            max_sessions: 20_000,
            max_sessions_per_address: 2_000,
            method_rate_limit: 5000,
            method_rate_interval: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            compression: WebSocketCompression::default(),
        }
    }
}
