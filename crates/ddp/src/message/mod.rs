//! DDP messages on the wire (spec §1.2, §1.3).
//!
//! [`inbound`] turns one client text frame into a [`ClientMessage`] or the exact protocol
//! error Meteor would answer; [`outbound`] builds each server frame once, as a `String`
//! ready to be handed to the socket. [`client`] is the other direction, for the DDP client:
//! client frames out, server frames classified.

mod client;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod inbound;
mod outbound;

pub(crate) use client::{ClientFrame, ServerFrame};
pub(crate) use inbound::{ClientMessage, Inbound, MethodCall, ProtocolError, SubRequest};
pub(crate) use outbound::ServerMessage;
