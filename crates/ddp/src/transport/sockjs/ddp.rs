//! DDP as a SockJS application: each SockJS session is one DDP session of a [`Server`],
//! exactly as on `/websocket`.

use std::sync::Arc;

use crate::transport::upgrade::WebSocketRequest;
use axum::extract::ws::Message;
use axum::response::Response;
use tokio::sync::mpsc;

use super::app::{Application, Channels};
use super::config::SockJsConfig;
use crate::context::SessionContext;
use crate::id::random_id;
use crate::outbox::Outbox;
use crate::server::Server;
use crate::service::Service;
use crate::session;
use crate::transport::websocket::{ConnectionInfo, serve_upgrade};

/// DDP sessions of a [`Server`], exactly as on `/websocket`.
pub(super) struct Ddp<S: Service>(pub(super) Arc<Server<S>>);

impl<S: Service> Application for Ddp<S> {
    fn open(&self, info: ConnectionInfo, queue: usize) -> Option<Channels> {
        let admission = self.0.admit(info.remote_addr)?;
        let (inbound, incoming) = mpsc::channel(queue.max(1));
        let (outbox, outbound) = self.0.outbox();
        let server = Arc::clone(&self.0);
        let session_id = random_id();
        let ctx = Arc::new(SessionContext::new(
            session_id.clone(),
            info.remote_addr,
            info.user_agent.clone(),
        ));
        let established = ctx.established();
        let span = tracing::info_span!(
            "ddp",
            session = %session_id,
            remote = %info.remote_addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
            transport = "sockjs",
        );
        // The session's span exists before its task starts, so every line the task logs,
        // and every task it starts, names the session.
        span.in_scope(|| exosphere_task::spawn(serve_ddp(server, incoming, outbox, ctx)));
        Some(Channels {
            inbound,
            outbound,
            slot: Some(admission),
            established: Some(established),
        })
    }

    fn raw_websocket(
        &self,
        ws: WebSocketRequest,
        info: ConnectionInfo,
        _config: &SockJsConfig,
    ) -> Response {
        serve_upgrade(Arc::clone(&self.0), ws, info)
    }
}

/// Runs the DDP session of `ctx` over a SockJS session, logging open and close (inside
/// the session's span, which the caller enters).
async fn serve_ddp<S: Service>(
    server: Arc<Server<S>>,
    incoming: mpsc::Receiver<String>,
    outbox: Outbox,
    ctx: Arc<SessionContext>,
) {
    tracing::info!(
        user_agent = ctx.user_agent.as_deref().unwrap_or("-"),
        "SockJS session opened"
    );
    let frames = Box::pin(futures_util::stream::unfold(
        incoming,
        |mut incoming| async move {
            let text = incoming.recv().await?;
            Some((Ok(Message::Text(text.into())), incoming))
        },
    ));
    let reason = session::run(server, frames, outbox.clone(), ctx).await;
    if let Some((code, text)) = reason.close_frame() {
        // Fails only if the client is already gone.
        let _ = outbox.close(code, text);
    }
    if reason.is_abnormal() {
        tracing::warn!(%reason, "SockJS session closed");
    } else {
        tracing::info!(%reason, "SockJS session closed");
    }
}
