//! The client side of `permessage-deflate` (RFC 7692) for `bench sync --deflate`, and the
//! byte counter every benchmark WebSocket reads through.
//!
//! tokio-tungstenite has no extensions (it fails every frame with RSV1 set), and the DDP
//! crate's frame reader and writer are the server's side of the protocol (masked frames in,
//! unmasked frames out) and private to it, so the benchmark has its own small client: a
//! handshake offering `permessage-deflate; client_no_context_takeover`, masked uncompressed
//! text frames out, and each server message inflated on its own (the server always answers
//! `server_no_context_takeover`), by flate2 as any other peer would.

use std::io::Read as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use anyhow::{Context as _, bail};
use futures_util::{Sink, Stream, sink, stream};
use tokio::io::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader, ReadBuf, ReadHalf,
    WriteHalf,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// What a sync flush ends with, left off each message by the sender (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// An empty final stored block: appended after the tail so the stream is complete for
/// flate2's reader.
const FINAL_BLOCK: [u8; 5] = [0x01, 0x00, 0x00, 0xff, 0xff];

/// A TCP stream that counts the bytes read from it: what the client received on the wire,
/// WebSocket frame heads included.
pub(super) struct Counting {
    stream: TcpStream,
    read: Arc<AtomicU64>,
}

impl Counting {
    /// Counts into `read`.
    pub(super) fn new(stream: TcpStream, read: Arc<AtomicU64>) -> Self {
        Self { stream, read }
    }
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.read.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The two halves of a client connection that negotiated `permessage-deflate`: text
/// messages out, text messages (inflated) in. The payload bytes of received DDP `result`
/// messages, as sent, are added to `results` (what compares with zlib of the same frames).
/// Fails if the server declines the extension.
pub(super) async fn connect(
    url: &str,
    mut socket: Counting,
    results: Arc<AtomicU64>,
) -> anyhow::Result<(
    impl Sink<Message, Error = anyhow::Error> + Send + Unpin + use<>,
    impl Stream<Item = anyhow::Result<Message>> + Send + Unpin + use<>,
)> {
    let rest = url.strip_prefix("ws://").context("a ws:// URL")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    socket
        .write_all(
            format!(
                "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let (reader, writer) = tokio::io::split(socket);
    let mut reader = BufReader::new(reader);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 || reader.read_u8().await.map(|b| head.push(b)).is_err() {
            bail!("no complete handshake answer");
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    if !head.starts_with("http/1.1 101") || !head.contains("permessage-deflate") {
        bail!("the server did not accept permessage-deflate: {head}");
    }
    let sink = sink::unfold(writer, |mut writer, message: Message| async move {
        let Message::Text(text) = message else {
            return Ok(writer);
        };
        write_text(&mut writer, text.as_bytes()).await?;
        Ok(writer)
    });
    let stream = stream::unfold(Some(reader), move |reader| {
        let results = Arc::clone(&results);
        async move {
            let mut reader = reader?;
            match read_message(&mut reader).await {
                Ok(Some((message, sent))) => {
                    if message
                        .to_text()
                        .is_ok_and(|text| text.starts_with(r#"{"msg":"result""#))
                    {
                        results.fetch_add(sent, Ordering::Relaxed);
                    }
                    Some((Ok(message), Some(reader)))
                }
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        }
    });
    Ok((Box::pin(sink), Box::pin(stream)))
}

/// One masked, final, uncompressed text frame.
async fn write_text(writer: &mut WriteHalf<Counting>, payload: &[u8]) -> anyhow::Result<()> {
    // The benchmark's traffic is its own: a fixed mask key is enough.
    let mask = [0x5a, 0x17, 0xc3, 0x3e];
    let mut frame = vec![0x81];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    writer.write_all(&frame).await?;
    Ok(())
}

/// The next data message, inflated if it was compressed, and its payload's size as sent;
/// `None` once the server closed. Control frames are skipped (the benchmark's sync is too
/// short to need pings answered).
async fn read_message(
    reader: &mut BufReader<ReadHalf<Counting>>,
) -> anyhow::Result<Option<(Message, u64)>> {
    let mut payload = Vec::new();
    let mut compressed = None;
    loop {
        let first = reader.read_u8().await?;
        let len = match reader.read_u8().await? & 0x7F {
            126 => u64::from(reader.read_u16().await?),
            127 => reader.read_u64().await?,
            len => u64::from(len),
        };
        let mut data = vec![0; usize::try_from(len)?];
        reader.read_exact(&mut data).await?;
        match first & 0x0F {
            0x8 => return Ok(None),
            0x9 | 0xA => continue,
            _ => {}
        }
        compressed.get_or_insert(first & 0x40 != 0);
        payload.extend_from_slice(&data);
        if first & 0x80 != 0 {
            break;
        }
    }
    let sent = payload.len() as u64;
    if compressed == Some(true) {
        payload.extend_from_slice(&TAIL);
        payload.extend_from_slice(&FINAL_BLOCK);
        let mut text = Vec::new();
        flate2::read::DeflateDecoder::new(&payload[..]).read_to_end(&mut text)?;
        payload = text;
    }
    Ok(Some((Message::text(String::from_utf8(payload)?), sent)))
}
