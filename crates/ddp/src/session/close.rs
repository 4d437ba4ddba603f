//! Why a session ended: the close frame it calls for, and how loudly to log it.
//!
//! A leaf: the state machine and the transport writers produce a [`CloseReason`]; the
//! transports turn it into a close frame and a log line.

use std::fmt;
use std::time::Duration;

use axum::extract::ws::close_code;

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum CloseReason {
    /// The client closed the WebSocket (or the TCP connection).
    ClientClosed,
    /// The client dropped the TCP connection without a close frame: what browsers and
    /// tools do when they quit, so not worth a warning.
    ClientReset(String),
    /// No `connect` within `connect_timeout`.
    ConnectTimeout(Duration),
    /// Nothing arrived within `ping_timeout` after a server ping.
    HeartbeatTimeout(Duration),
    /// An inbound text frame was larger than `max_message_size`.
    MessageTooLarge { size: usize, limit: usize },
    /// The client broke the WebSocket protocol (a frame with RSV1 set without
    /// `permessage-deflate`, an unmasked frame, invalid UTF-8 or DEFLATE data, …).
    ProtocolViolation(String),
    /// `failed` was sent: the client must re-dial with the suggested version.
    VersionMismatch { suggested: &'static str },
    /// A malformed `connect` that could only be answered with the proposed version.
    BadConnect,
    /// Reading from the socket failed.
    ReadFailed(String),
    /// Writing to the socket failed.
    WriteFailed(String),
    /// One frame could not be written within the stall limit: the client stopped reading.
    WriteStalled(Duration),
    /// The outbound queue was closed (the writer stopped).
    WriterGone,
    /// The server's outbound budget was spent and this session, stalled longest, was
    /// closed to make room.
    Evicted,
    /// The server is shutting down; calls already read were given time to finish.
    ShuttingDown,
}

/// tungstenite's error text for a peer that closed TCP without a WebSocket close frame.
const RESET_WITHOUT_CLOSE: &str = "Connection reset without closing handshake";

/// Whether a socket error only means the client went away: a connection dropped without a
/// close frame, reset, or a pipe broken under a write.
fn is_reset(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.to_string().contains(RESET_WITHOUT_CLOSE)
            || error.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                )
            })
        {
            return true;
        }
        cause = error.source();
    }
    false
}

impl CloseReason {
    /// A read from the socket failed: the client going away ([`ClientReset`](Self::ClientReset),
    /// not worth a warning) or something else.
    pub(crate) fn read_failed(error: &(dyn std::error::Error + 'static)) -> Self {
        if is_reset(error) {
            Self::ClientReset(error.to_string())
        } else {
            Self::ReadFailed(error.to_string())
        }
    }

    /// A write to the socket failed: a client that went away while a frame was on its way
    /// (reset, broken pipe) is as ordinary as one that went away between frames, and is
    /// logged the same way.
    pub(crate) fn write_failed(error: &(dyn std::error::Error + 'static)) -> Self {
        if is_reset(error) {
            Self::ClientReset(error.to_string())
        } else {
            Self::WriteFailed(error.to_string())
        }
    }

    /// The close frame to send, if the connection is still usable for one.
    pub(crate) fn close_frame(&self) -> Option<(u16, &'static str)> {
        match self {
            Self::ConnectTimeout(_) => Some((close_code::POLICY, "connect timeout")),
            Self::HeartbeatTimeout(_) => Some((close_code::AWAY, "heartbeat timeout")),
            Self::MessageTooLarge { .. } => Some((close_code::SIZE, "message too large")),
            Self::ProtocolViolation(_) => Some((close_code::PROTOCOL, "protocol error")),
            Self::VersionMismatch { .. } | Self::BadConnect => Some((close_code::NORMAL, "")),
            Self::ShuttingDown => Some((close_code::AWAY, "server shutting down")),
            Self::ClientClosed
            | Self::ClientReset(_)
            | Self::ReadFailed(_)
            | Self::WriteFailed(_)
            | Self::WriteStalled(_)
            | Self::WriterGone
            | Self::Evicted => None,
        }
    }

    /// Whether the operator should hear about it (a warning rather than an info line).
    pub(crate) fn is_abnormal(&self) -> bool {
        !matches!(
            self,
            Self::ClientClosed
                | Self::ClientReset(_)
                | Self::VersionMismatch { .. }
                | Self::WriterGone
                | Self::ShuttingDown
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientClosed => f.write_str("closed by the client"),
            Self::ClientReset(error) => write!(f, "dropped by the client: {error}"),
            Self::ConnectTimeout(after) => write!(f, "no DDP connect within {after:?}"),
            Self::HeartbeatTimeout(after) => {
                write!(f, "no answer to a heartbeat ping within {after:?}")
            }
            Self::MessageTooLarge { size, limit } => write!(
                f,
                "inbound message of {size} bytes exceeds the {limit}-byte limit"
            ),
            Self::VersionMismatch { suggested } => {
                write!(f, "DDP version not accepted; suggested {suggested:?}")
            }
            Self::BadConnect => f.write_str("malformed DDP connect"),
            Self::ProtocolViolation(error) => write!(f, "WebSocket protocol violated: {error}"),
            Self::ReadFailed(error) => write!(f, "read error: {error}"),
            Self::WriteFailed(error) => write!(f, "write error: {error}"),
            Self::WriteStalled(after) => {
                write!(
                    f,
                    "client stopped reading: a frame stayed unwritten for {after:?}"
                )
            }
            Self::WriterGone => f.write_str("outbound stream closed"),
            Self::Evicted => f.write_str(
                "closed to make room in the server-wide outbound budget: stalled longest",
            ),
            Self::ShuttingDown => f.write_str("server shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_read_well_and_map_to_close_codes() {
        let too_large = CloseReason::MessageTooLarge {
            size: 2_000_000,
            limit: 1_048_576,
        };
        assert_eq!(
            too_large.to_string(),
            "inbound message of 2000000 bytes exceeds the 1048576-byte limit"
        );
        assert_eq!(
            too_large.close_frame(),
            Some((close_code::SIZE, "message too large"))
        );
        assert!(too_large.is_abnormal());
        let timeout = CloseReason::ConnectTimeout(Duration::from_secs(45));
        assert_eq!(timeout.to_string(), "no DDP connect within 45s");
        assert_eq!(
            timeout.close_frame().map(|(code, _)| code),
            Some(close_code::POLICY)
        );
        let mismatch = CloseReason::VersionMismatch { suggested: "1" };
        assert_eq!(mismatch.close_frame(), Some((close_code::NORMAL, "")));
        assert!(!mismatch.is_abnormal());
        assert_eq!(CloseReason::ClientClosed.close_frame(), None);
        assert!(!CloseReason::ClientClosed.is_abnormal());
        let reset = CloseReason::ClientReset(RESET_WITHOUT_CLOSE.to_owned());
        assert!(!reset.is_abnormal());
        assert_eq!(reset.close_frame(), None);
        assert!(CloseReason::WriteStalled(Duration::from_secs(300)).is_abnormal());
    }

    #[test]
    fn a_client_gone_under_a_read_or_a_write_is_a_reset_and_other_failures_are_not() {
        let gone = |kind| axum::Error::new(std::io::Error::from(kind));
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
        ] {
            assert!(matches!(
                CloseReason::write_failed(&gone(kind)),
                CloseReason::ClientReset(_)
            ));
            assert!(matches!(
                CloseReason::read_failed(&gone(kind)),
                CloseReason::ClientReset(_)
            ));
        }
        let other = gone(std::io::ErrorKind::PermissionDenied);
        assert!(matches!(
            CloseReason::write_failed(&other),
            CloseReason::WriteFailed(_)
        ));
        assert!(CloseReason::write_failed(&other).is_abnormal());
        assert!(matches!(
            CloseReason::read_failed(&other),
            CloseReason::ReadFailed(_)
        ));
    }
}
