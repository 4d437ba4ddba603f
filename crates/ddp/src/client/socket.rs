//! Opening the WebSocket under a DDP client, one step at a time so each failure gets its own
//! error: the URL rules of spec §1.1, TCP, TLS (rustls with the webpki roots plus any
//! extra CA the user trusts), and the WebSocket upgrade.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri, header::USER_AGENT};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::config::ClientConfig;
use super::error::ClientError;

/// A byte stream a WebSocket can run over: plain TCP or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// An open WebSocket to a DDP server.
pub(crate) type Socket = WebSocketStream<Box<dyn Io>>;

/// A server's DDP endpoint, derived from the URL a user gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The WebSocket URL (`ws://…/websocket` or `wss://…/websocket`).
    pub url: String,
    host: String,
    port: u16,
    path: String,
    tls: bool,
}

impl Endpoint {
    /// The endpoint of a server URL, as Meteor's `toWebsocketUrl` derives it (spec §1.1):
    /// `http://` → `ws://`, `https://` → `wss://`, a bare host gets `ws://`, then
    /// `websocket` is appended to the path. A `ws://` or `wss://` URL is taken as the
    /// endpoint itself.
    pub fn from_server_url(server: &str) -> Result<Endpoint, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: server.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = server.trim();
        let (scheme, rest, append) = if let Some(rest) = trimmed.strip_prefix("https://") {
            ("wss", rest, true)
        } else if let Some(rest) = trimmed.strip_prefix("http://") {
            ("ws", rest, true)
        } else if let Some(rest) = trimmed.strip_prefix("wss://") {
            ("wss", rest, false)
        } else if let Some(rest) = trimmed.strip_prefix("ws://") {
            ("ws", rest, false)
        } else if trimmed.contains("://") {
            return Err(invalid("use http://, https://, ws:// or wss://"));
        } else {
            ("ws", trimmed, true)
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        let path = match (append, path) {
            (false, "") => "/".to_owned(),
            (false, path) => path.to_owned(),
            (true, path) if path.contains(['?', '#']) => {
                return Err(invalid("a server URL has no query or fragment"));
            }
            (true, path) if path.ends_with('/') => format!("{path}websocket"),
            (true, path) => format!("{path}/websocket"),
        };
        let url = format!("{scheme}://{authority}{path}");
        let uri: Uri = url.parse().map_err(|e| invalid(&format!("{e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| invalid("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = scheme == "wss";
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Endpoint {
            path: uri.path().to_owned(),
            url,
            host,
            port,
            tls,
        })
    }

    /// The host, without IPv6 brackets: with [`Endpoint::port`] and [`Endpoint::path`], what
    /// names a server (e.g. its local index file) without parsing its URL a second time.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port (the scheme's default when the URL has none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path of the WebSocket URL, without query or fragment (e.g. `/websocket`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The endpoint in one spelling, whatever form its URL took (`https://h`,
    /// `https://H:443/`, `wss://h/websocket`): scheme, lower-case host, the port always
    /// written, path. It names a server where two spellings must compare equal, e.g. the
    /// server a local index copies.
    pub fn identity(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let address = self.address().to_ascii_lowercase();
        format!("{scheme}://{address}{}", self.path)
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses every certificate of a PEM file's contents, for [`ClientConfig::extra_roots`].
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Certificate(format!("not a PEM certificate file ({e})")))?;
    if certificates.is_empty() {
        return Err(ClientError::Certificate(
            "no certificate in the PEM file".to_owned(),
        ));
    }
    Ok(certificates)
}

/// The rustls configuration: the Mozilla roots of `webpki-roots` plus `extra_roots`.
fn tls_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for certificate in extra_roots {
        roots
            .add(certificate.clone())
            .map_err(|e| ClientError::Certificate(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Certificate(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connects TCP, TLS when the endpoint says so, and upgrades to a WebSocket.
pub(crate) async fn open(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<Socket, ClientError> {
    let address = endpoint.address();
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|source| ClientError::Unreachable {
            address: address.clone(),
            source,
        })?;
    // Small requests go out at once; pipelined calls must not wait for Nagle.
    tcp.set_nodelay(true)
        .map_err(|source| ClientError::Unreachable {
            address: address.clone(),
            source,
        })?;
    let io: Box<dyn Io> = if endpoint.tls {
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(tls_config(&config.extra_roots)?));
        let name =
            ServerName::try_from(endpoint.host.clone()).map_err(|e| ClientError::InvalidUrl {
                url: endpoint.url.clone(),
                reason: e.to_string(),
            })?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|source| ClientError::Tls { address, source })?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let handshake_error = |reason: String| ClientError::Handshake {
        url: endpoint.url.clone(),
        reason,
    };
    let mut request = endpoint
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| handshake_error(e.to_string()))?;
    let agent = HeaderValue::from_str(&config.user_agent)
        .map_err(|e| handshake_error(format!("invalid User-Agent: {e}")))?;
    request.headers_mut().insert(USER_AGENT, agent);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    match tokio_tungstenite::client_async_with_config(request, io, Some(ws_config)).await {
        Ok((socket, _response)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(ClientError::HttpStatus {
                url: endpoint.url.clone(),
                status: response.status().as_u16(),
            })
        }
        Err(error) => Err(handshake_error(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(server: &str) -> String {
        match Endpoint::from_server_url(server) {
            Ok(endpoint) => endpoint.url,
            Err(error) => panic!("{server}: {error}"),
        }
    }

    #[test]
    fn websocket_urls_follow_meteor() {
        // Spec §1.1, `toWebsocketUrl`.
        assert_eq!(
            url("https://packages.meteor.com"),
            "wss://packages.meteor.com/websocket"
        );
        assert_eq!(
            url("http://localhost:3000/"),
            "ws://localhost:3000/websocket"
        );
        assert_eq!(url("http://host/prefix"), "ws://host/prefix/websocket");
        assert_eq!(url("localhost:3000"), "ws://localhost:3000/websocket");
        assert_eq!(
            url("ws://127.0.0.1:9/websocket"),
            "ws://127.0.0.1:9/websocket"
        );
    }

    #[test]
    fn hosts_and_ports() {
        let endpoint = Endpoint::from_server_url("https://packages.meteor.com").ok();
        assert_eq!(
            endpoint.map(|e| (e.address(), e.tls)),
            Some(("packages.meteor.com:443".to_owned(), true))
        );
        let endpoint = Endpoint::from_server_url("http://[::1]:3000").ok();
        assert_eq!(
            endpoint.map(|e| (e.host.clone(), e.address(), e.tls)),
            Some(("::1".to_owned(), "[::1]:3000".to_owned(), false))
        );
    }

    #[test]
    fn every_spelling_of_an_endpoint_has_one_identity() {
        let identity = |server| match Endpoint::from_server_url(server) {
            Ok(endpoint) => endpoint.identity(),
            Err(error) => panic!("{server}: {error}"),
        };
        for server in [
            "https://packages.meteor.com",
            "https://Packages.Meteor.COM:443/",
            "wss://packages.meteor.com/websocket",
            "wss://packages.meteor.com:443/websocket?x=1",
        ] {
            assert_eq!(
                identity(server),
                "wss://packages.meteor.com:443/websocket",
                "{server}"
            );
        }
        assert_eq!(identity("localhost:3000"), "ws://localhost:3000/websocket");
        assert_eq!(identity("http://[::1]"), "ws://[::1]:80/websocket");
        // Another scheme, port or path is another server.
        assert_ne!(identity("http://h"), identity("https://h"));
        assert_ne!(identity("http://h/a"), identity("http://h/b"));
    }

    #[test]
    fn paths() {
        let path = |server| Endpoint::from_server_url(server).map(|e| e.path().to_owned());
        assert_eq!(path("http://host").ok().as_deref(), Some("/websocket"));
        assert_eq!(
            path("https://user:pw@host:8443/mirror/").ok().as_deref(),
            Some("/mirror/websocket")
        );
        assert_eq!(path("ws://host:9/ws?x=1").ok().as_deref(), Some("/ws"));
        assert_eq!(path("wss://host").ok().as_deref(), Some("/"));
    }

    #[test]
    fn bad_urls() {
        for server in ["ftp://x", "http://", "http://host/?q=1", "http://a b"] {
            assert!(
                matches!(
                    Endpoint::from_server_url(server),
                    Err(ClientError::InvalidUrl { .. })
                ),
                "{server}"
            );
        }
    }

    #[test]
    fn pem_certificates() {
        assert!(matches!(
            certificates_from_pem(b"nothing here"),
            Err(ClientError::Certificate(_))
        ));
    }
}
