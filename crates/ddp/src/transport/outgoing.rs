//! What a WebSocket writer hands its socket: a message, or a text message whose body is
//! shared with other frames. A leaf shared by the upgrade, which gives each transport a
//! sink of these, and the `permessage-deflate` writer, which splices shared bodies.

use axum::extract::ws::Message;

use crate::outbox::{FrameText, Spliced};

/// What a WebSocket writer sends: any message, or a text message whose body is shared
/// with other frames. A `permessage-deflate` socket splices the body's shared compressed
/// form into it; tungstenite's socket is given the joined text.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A message as it is.
    Message(Message),
    /// A text message in parts (see [`FrameText::Spliced`]).
    Spliced(Box<Spliced>),
}

impl Outgoing {
    /// The message with its parts joined.
    pub(crate) fn into_message(self) -> Message {
        match self {
            Self::Message(message) => message,
            // `String` → `Utf8Bytes` takes ownership of the buffer: no copy.
            Self::Spliced(spliced) => {
                Message::Text(FrameText::Spliced(spliced).into_string().into())
            }
        }
    }
}

impl From<Message> for Outgoing {
    fn from(message: Message) -> Self {
        Self::Message(message)
    }
}

impl From<FrameText> for Outgoing {
    fn from(text: FrameText) -> Self {
        match text {
            FrameText::Whole(text) => Self::Message(Message::Text(text.into())),
            FrameText::Spliced(spliced) => Self::Spliced(spliced),
        }
    }
}
