//! DDP messages on the wire (spec §1.2, §1.3).
//!
//! [`inbound`] turns one client text frame into a [`ClientMessage`] or the exact protocol
//! error Meteor would answer; [`outbound`] builds each server frame once, as a `String`
//! ready to be handed to the socket.

mod inbound;
mod outbound;

pub(crate) use inbound::{ClientMessage, Inbound, MethodCall, ProtocolError, SubRequest};
pub(crate) use outbound::ServerMessage;
