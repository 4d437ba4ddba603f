//! The HTTP accept loop: which TCP connections are served, for how long they may sit idle,
//! and how they end at shutdown.
//!
//! `axum::serve` has no header-read timeout and no connection limit, so an idle or
//! half-sent request, or an idle keep-alive connection, held a descriptor for as long as
//! the client liked, until the server ran out of them (`EMFILE`) and refused everything.
//! Here every connection is served by hyper's HTTP/1 server with a timer:
//!
//! * a request's head must arrive within [`HttpLimits::header_read_timeout`], and so must
//!   the next request's on an idle keep-alive connection (hyper runs the same clock while
//!   it waits for a head); a response being written, an upload's body, a WebSocket or a
//!   SockJS streaming or polling response are not waiting for a head, and keep their own
//!   timeouts;
//! * at most [`HttpLimits::max_connections`] sockets are open at once, and at most
//!   [`HttpLimits::max_connections_per_address`] from one address (an IPv4 address or an
//!   IPv6 /64); a connection over either cap is closed as soon as it is accepted. A socket
//!   counts until it is closed, WebSockets included (the count travels inside the socket
//!   through the upgrade);
//! * an accept error (such as `EMFILE` when something else used the descriptors) is logged
//!   and the loop pauses briefly instead of spinning or ending.
//!
//! On shutdown the loop stops accepting and each connection finishes its request in
//! progress and closes (hyper's graceful shutdown); upgraded WebSockets are ended by the
//! DDP server's own shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use exosphere_ddp::{AddressSlot, PerAddress};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How long the loop pauses after an accept error, so a server out of descriptors does not
/// spin (the connections it serves close meanwhile, or the caps refuse new ones).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Bounds on the HTTP connections a server keeps open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// The longest a client may take to send a request's head, and the longest a
    /// keep-alive connection may wait idle for the next request.
    pub header_read_timeout: Duration,
    /// Most TCP connections open at once; `None` derives it from the open-file limit
    /// ([`crate::fd_limit::connection_cap`]).
    pub max_connections: Option<usize>,
    /// Most TCP connections open at once from one address (an IPv4 address, or an IPv6
    /// /64); zero turns the cap off (behind a reverse proxy, where every client has the
    /// proxy's address).
    pub max_connections_per_address: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_connections: None,
            max_connections_per_address: 4_000,
        }
    }
}

impl HttpLimits {
    /// [`max_connections`](Self::max_connections), derived from the open-file limit
    /// when unset.
    pub fn connection_cap(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let soft = crate::fd_limit::current().map_or(1024, |limit| limit.soft);
            crate::fd_limit::connection_cap(soft)
        })
    }
}

/// Open connections against the caps: what `/healthz` shows.
#[derive(Debug)]
pub struct OpenConnections {
    total: Arc<Semaphore>,
    cap: usize,
    per_address: Arc<PerAddress>,
}

impl OpenConnections {
    /// Counters for `limits`, with the server-wide cap resolved (at most what one
    /// acquisition of the semaphore can take, so that waiting for every place back works).
    pub fn new(limits: &HttpLimits) -> Arc<Self> {
        let most = Semaphore::MAX_PERMITS.min(u32::MAX as usize);
        let cap = limits.connection_cap().clamp(1, most);
        Arc::new(Self {
            total: Arc::new(Semaphore::new(cap)),
            cap,
            per_address: PerAddress::new(limits.max_connections_per_address),
        })
    }

    /// TCP connections open right now.
    pub fn open(&self) -> usize {
        self.cap - self.total.available_permits()
    }

    /// The most that may be open at once.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// A place for a connection from `remote`, or `None` over a cap.
    fn admit(&self, remote: SocketAddr) -> Option<(OwnedSemaphorePermit, AddressSlot)> {
        let permit = Arc::clone(&self.total).try_acquire_owned().ok()?;
        let slot = self.per_address.take(remote.ip())?;
        Some((permit, slot))
    }

    /// Resolves once every connection is closed.
    async fn all_closed(&self) {
        let cap = u32::try_from(self.cap).unwrap_or(u32::MAX);
        // `cap` is at most `u32::MAX`: every place is back.
        let _ = self.total.acquire_many(cap).await;
    }
}

/// Serves `router` on `listener` until `stopping` turns `true`, then until every
/// connection closed; `tune` sets each accepted socket's options.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    connections: Arc<OpenConnections>,
    tune: impl Fn(&TcpStream),
    mut stopping: watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Warned once per run of failures, not once per pause.
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stopping) => break,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot accept connections; pausing until it can");
                }
                failing = true;
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            tracing::info!("accepting connections again");
        }
        let Some((permit, slot)) = connections.admit(remote) else {
            tracing::debug!(%remote, "connection refused: connection cap reached");
            drop(tcp);
            continue;
        };
        tune(&tcp);
        let socket = Counted {
            tcp,
            _held: (permit, slot),
        };
        let service = with_connect_info(router.clone(), remote);
        let connection = http
            .serve_connection(TokioIo::new(socket), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        exosphere_task::spawn(async move {
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stopped(&mut stopping) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%remote, %error, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    connections.all_closed().await;
}

/// Resolves once `stopping` turns `true` (or its sender is gone, which only happens after).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// `router` as hyper's service for one connection, with the peer's address where axum's
/// `ConnectInfo` extractor finds it.
fn with_connect_info(
    router: Router,
    remote: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future + Send,
> + Clone {
    let service = TowerToHyperService::new(router);
    hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        hyper::service::Service::call(&service, request)
    })
}

/// An accepted socket with its places under the caps: they are given back when the socket
/// is closed, which for a WebSocket is long after its HTTP connection ended.
struct Counted {
    tcp: TcpStream,
    _held: (OwnedSemaphorePermit, AddressSlot),
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_over_a_cap_are_refused_until_one_closes() {
        let connections = OpenConnections::new(&HttpLimits {
            max_connections: Some(3),
            max_connections_per_address: 2,
            ..HttpLimits::default()
        });
        let one: SocketAddr = ([10, 0, 0, 1], 1).into();
        let two: SocketAddr = ([10, 0, 0, 2], 1).into();
        let first = connections.admit(one).expect("first");
        let _second = connections.admit(one).expect("second");
        assert!(connections.admit(one).is_none(), "per address");
        let _third = connections.admit(two).expect("another address");
        assert!(connections.admit(two).is_none(), "server-wide");
        assert_eq!(connections.open(), 3);
        drop(first);
        assert!(connections.admit(two).is_some(), "room again");
    }
}
