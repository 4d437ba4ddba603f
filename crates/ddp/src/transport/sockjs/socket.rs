//! One SockJS session over a WebSocket, whatever its dialect: a reader pushing the
//! client's messages to the application and a writer sending the application's output,
//! each on its own, so neither can block the other.
//!
//! Broken JSON from the client ends the connection at once, as the protocol says. The
//! RFC 6455 transport ([`websocket`](super::websocket)) and hixie-76
//! ([`hixie76`](super::hixie76)) both run [`serve`] over a stream of the client's text
//! messages and a sink of [`SocketFrame`]s.

use std::ops::Deref;
use std::pin::pin;
use std::time::Duration;

use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::app::Channels;
use super::config::SockJsConfig;
use super::framing;
use crate::outbox::{FrameText, Outbound, OutboxReceiver, Spliced};

/// One message the writer hands to a socket, whatever WebSocket dialect the socket speaks.
#[derive(Debug)]
pub(super) enum SocketFrame {
    /// A text message.
    Text(String),
    /// A text message around a body shared with other frames (a sync page), already framed
    /// for this socket: a `permessage-deflate` socket splices the body's shared compressed
    /// form, hixie-76 writes the parts without joining them.
    Spliced(Box<Spliced>),
    /// The closing handshake; nothing follows it. hixie-76 carries no code or reason.
    Close { code: u16, reason: &'static str },
}

impl SocketFrame {
    /// A text message (spelled like tungstenite's `Message::text`).
    pub(super) fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }
}

/// Runs one session over a socket until either side ends it: a reader pushing the
/// client's `texts` to the application, and a writer sending its output to `sink`.
pub(super) async fn serve<T, S>(
    texts: T,
    sink: S,
    channels: Channels,
    config: &SockJsConfig,
    framed: bool,
) where
    T: Stream<Item: Deref<Target = str>>,
    S: Sink<SocketFrame, Error: std::fmt::Display>,
{
    // Held until the socket is done, close frame included.
    let _slot = channels.slot;
    let (texts, sink) = (pin!(texts), pin!(sink));
    tokio::select! {
        () = read(texts, channels.inbound, framed) => {}
        () = write(sink, channels.outbound, config, framed) => {}
    }
}

/// Pushes client messages to the application until the socket or the application ends.
async fn read<T>(mut texts: T, inbound: mpsc::Sender<String>, framed: bool)
where
    T: Stream<Item: Deref<Target = str>> + Unpin,
{
    while let Some(text) = texts.next().await {
        let text = &*text;
        let messages = if !framed {
            vec![text.to_owned()]
        } else if text.is_empty() {
            continue;
        } else {
            match framing::decode_payload(text, true) {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::debug!(%error, "SockJS WebSocket payload refused; dropping the connection");
                    return;
                }
            }
        };
        for message in messages {
            if inbound.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// Sends the application's output (framed: open frame, `a[...]` per message, heartbeats,
/// close frame) until the application closes or a write fails or stalls. A message's
/// bytes count against the session's outbound budget until the socket has taken it.
async fn write(
    mut sink: impl Sink<SocketFrame, Error: std::fmt::Display> + Unpin,
    mut outbound: OutboxReceiver,
    config: &SockJsConfig,
    framed: bool,
) {
    let limit = config.write_timeout;
    // An evicted session (the server's outbound budget is full and this client took
    // nothing for longest) stops at once, also in the middle of a frame.
    let evicted = outbound.eviction().wait();
    let mut evicted = pin!(evicted);
    let mut send = async |sink: &mut _, frame| {
        tokio::select! {
            sent = send(sink, frame, limit) => sent,
            () = &mut evicted => {
                tracing::info!("SockJS WebSocket session evicted to make room for others; closing");
                false
            }
        }
    };
    if framed && !send(&mut sink, SocketFrame::text(framing::OPEN)).await {
        return;
    }
    let idle = if framed {
        config.heartbeat
    } else {
        Duration::MAX
    };
    loop {
        let item = match timeout(idle, outbound.recv()).await {
            Ok(item) => item,
            Err(_) => {
                if send(&mut sink, SocketFrame::text(framing::HEARTBEAT)).await {
                    continue;
                }
                return;
            }
        };
        let (code, reason) = match item {
            // The charge is kept until the socket took the frame; the text is not.
            Some(Outbound::Frame(text, _charge)) => {
                if send(&mut sink, message_frame(text, framed)).await {
                    continue;
                }
                return;
            }
            Some(Outbound::Close { code, reason }) => (code, reason),
            None => (1000, "Normal closure"),
        };
        if framed && !send(&mut sink, SocketFrame::text(framing::close(code, reason))).await {
            return;
        }
        send(&mut sink, SocketFrame::Close { code, reason }).await;
        return;
    }
}

/// The socket frame carrying one application message: `a["…"]` when `framed`. Takes the
/// text by value so it is freed before its framed copy is written. A message around a
/// shared body stays in parts: framed, its head and tail are escaped here and its body is
/// the shared body's escaped form, computed once for every SockJS client (escaping goes
/// character by character, so the parts join into the escaped message).
fn message_frame(text: FrameText, framed: bool) -> SocketFrame {
    match text {
        FrameText::Spliced(spliced) if !framed => SocketFrame::Spliced(spliced),
        FrameText::Spliced(spliced) if spliced.tail == "}" => {
            let mut head = String::from("a[\"");
            head.push_str(&framing::escaped(&spliced.head));
            SocketFrame::Spliced(Box::new(Spliced {
                head,
                body: spliced.body.escaped(framing::escaped),
                tail: "}\"]",
            }))
        }
        text if framed => SocketFrame::text(framing::messages([text.into_string().as_str()])),
        text => SocketFrame::text(text.into_string()),
    }
}

/// Sends one frame within `limit`; `false` when the client is gone or not reading.
async fn send(
    sink: &mut (impl Sink<SocketFrame, Error: std::fmt::Display> + Unpin),
    frame: SocketFrame,
    limit: Duration,
) -> bool {
    match timeout(limit, sink.send(frame)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(%error, "SockJS WebSocket write failed; closing");
            false
        }
        Err(_) => {
            tracing::warn!(
                write_timeout = ?limit,
                "SockJS WebSocket client stopped reading: a frame stayed unwritten; closing"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::RawText;

    fn spliced(id: &str, body: &RawText) -> FrameText {
        FrameText::Spliced(Box::new(Spliced {
            head: format!(r#"{{"msg":"result","id":"{id}","result":"#),
            body: body.clone(),
            tail: "}",
        }))
    }

    fn joined(frame: SocketFrame) -> String {
        match frame {
            SocketFrame::Text(text) => text,
            SocketFrame::Spliced(spliced) => FrameText::Spliced(spliced).into_string(),
            SocketFrame::Close { .. } => panic!("a close frame"),
        }
    }

    #[test]
    fn shared_bodies_stay_in_parts_and_frame_as_the_joined_text_would() {
        let body = RawText::from("{\"collections\":{\"packages\":[{\"d\":\"a\\\"b\u{2028}\"}]}}");
        for framed in [false, true] {
            let frames: Vec<SocketFrame> = ["1", "2"]
                .iter()
                .map(|id| message_frame(spliced(id, &body), framed))
                .collect();
            let bodies: Vec<RawText> = frames
                .iter()
                .map(|frame| match frame {
                    SocketFrame::Spliced(spliced) => spliced.body.clone(),
                    other => panic!("not spliced: {other:?}"),
                })
                .collect();
            assert!(
                std::ptr::eq(bodies[0].as_str(), bodies[1].as_str()),
                "one shared body"
            );
            for (id, frame) in ["1", "2"].into_iter().zip(frames) {
                let whole = spliced(id, &body).into_string();
                let expected = if framed {
                    framing::messages([whole.as_str()])
                } else {
                    whole
                };
                assert_eq!(joined(frame), expected);
            }
        }
    }
}
