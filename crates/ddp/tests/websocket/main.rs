//! End-to-end DDP tests: a real axum server on 127.0.0.1:0 and a tokio-tungstenite client
//! exchanging real WebSocket frames. Each module covers one concern of spec §1.

mod client;
mod handshake;
mod harness;
mod heartbeat;
mod limits;
mod methods;
mod protocol_errors;
mod subscriptions;
