//! The services the SockJS conformance suite (`sockjs-protocol.py`) runs against: echo and
//! close, as SockJS applications.

use crate::transport::upgrade::WebSocketRequest;
use axum::response::Response;
use tokio::sync::mpsc;

use super::app::{Application, Channels};
use super::config::SockJsConfig;
use super::{framing, websocket};
use crate::config::DdpConfig;
use crate::outbox::{Outbox, SharedBudget};
use crate::transport::websocket::{ConnectionInfo, refused};

/// The services `sockjs-protocol.py` runs against.
#[derive(Debug, Clone, Copy)]
pub(super) enum TestService {
    /// Sends every message back.
    Echo,
    /// Closes every session at once with `3000 Go away!`.
    Close,
}

impl Application for TestService {
    fn open(&self, _info: ConnectionInfo, queue: usize) -> Option<Channels> {
        let (inbound, mut incoming) = mpsc::channel::<String>(queue.max(1));
        // The suite's messages are small: DDP's default budget is plenty, and nothing else
        // draws on its server-wide one.
        let config = DdpConfig::default();
        let (outbox, outbound) = Outbox::channel(
            config.outbound_buffer_size,
            &SharedBudget::new(config.max_outbound_bytes),
            config.write_timeout,
        );
        let service = *self;
        exosphere_task::spawn(async move {
            match service {
                Self::Echo => {
                    while let Some(message) = incoming.recv().await {
                        if outbox.send(message).await.is_err() {
                            return;
                        }
                    }
                }
                Self::Close => {
                    let (code, reason) = framing::GO_AWAY;
                    let _ = outbox.close(code, reason);
                }
            }
        });
        Some(Channels {
            inbound,
            outbound,
            slot: None,
            established: None,
        })
    }

    fn raw_websocket(
        &self,
        ws: WebSocketRequest,
        info: ConnectionInfo,
        config: &SockJsConfig,
    ) -> Response {
        match self.open(info, config.queue) {
            Some(channels) => websocket::bridge(ws, channels, config.clone(), false),
            None => refused(),
        }
    }
}
