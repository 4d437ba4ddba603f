//! The session's bounded queue of outbound frames.
//!
//! Everything that talks to the client (the reader answering pings, the worker sending
//! results, publications sending data) pushes finished frames here; the transport's
//! writer drains it. Its bound is the session's backpressure: a client that reads slowly
//! slows down its own producers and nobody else.

use tokio::sync::mpsc;

use crate::error::SessionClosed;

/// An item for the transport's writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One DDP message: one text frame.
    Frame(String),
    /// Close the WebSocket with this code and reason; nothing after it is sent.
    Close { code: u16, reason: &'static str },
}

/// The producing side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Outbox(mpsc::Sender<Outbound>);

impl Outbox {
    /// A queue holding up to `capacity` items (at least one).
    pub(crate) fn channel(capacity: usize) -> (Self, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self(tx), rx)
    }

    /// Queues a frame, waiting while the queue is full.
    pub(crate) async fn send(&self, frame: String) -> Result<(), SessionClosed> {
        self.0
            .send(Outbound::Frame(frame))
            .await
            .map_err(|_| SessionClosed)
    }

    /// Queues the closing handshake.
    pub(crate) async fn close(&self, code: u16, reason: &'static str) -> Result<(), SessionClosed> {
        self.0
            .send(Outbound::Close { code, reason })
            .await
            .map_err(|_| SessionClosed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_arrive_in_order_and_fail_once_closed() {
        let (outbox, mut rx) = Outbox::channel(0);
        let sending = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                outbox.send("a".to_owned()).await?;
                outbox.close(1000, "bye").await
            }
        });
        assert!(matches!(rx.recv().await, Some(Outbound::Frame(f)) if f == "a"));
        assert!(matches!(
            rx.recv().await,
            Some(Outbound::Close {
                code: 1000,
                reason: "bye"
            })
        ));
        assert!(matches!(sending.await, Ok(Ok(()))));
        drop(rx);
        assert_eq!(outbox.send("b".to_owned()).await, Err(SessionClosed));
    }
}
