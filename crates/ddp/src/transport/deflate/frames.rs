//! RFC 6455 frames, with or without `permessage-deflate`, over an upgraded connection.
//!
//! tungstenite fails every frame with RSV1 set (it has no extension support), so a
//! connection that negotiated the extension is read and written here instead, as the same
//! `Message` stream and sink a tungstenite socket is, so the transports run it unchanged.
//! Connections without the extension are too: a message around a shared body (a sync page)
//! goes out as its frame header, head, body and tail in one vectored write, where
//! tungstenite would need the parts joined into one string and copied into its buffer.
//! The reader accepts only masked client frames, bounds every message by `limit` before and
//! after inflation, answers pings and the closing handshake through the shared writer, and
//! reports violations as tungstenite's own errors so the session closes the same way
//! whichever socket it runs on.

use std::io::{self, IoSlice};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use bytes::Bytes;
use futures_util::{Sink, Stream, sink, stream};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};

use super::codec::{InflateError, Inflater, TAIL, deflate_message, deflate_part, splice_message};
use super::negotiate::Agreement;
use crate::outbox::{FrameText, Spliced};
use crate::transport::outgoing::Outgoing;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Messages from this size on are compressed on the blocking pool, not on the runtime
/// (where compressing a megabyte at level 6 would hold a worker thread for milliseconds).
const BLOCKING_THRESHOLD: usize = 64 << 10;

/// The level a shared body (a sync page) is compressed at: 9, the smallest, on every
/// connection that compresses at all (`level` above 0), whatever its own level. A shared body
/// is compressed once for every client and kept with its page (in memory, then in the page
/// cache's files) until the store changes, so its cost is not per client while the bytes it
/// saves are every client's; it is what brings a spliced sync page (whose parts cost a few
/// bytes each) under the size of the same frame compressed whole at zlib's default level.
const fn shared_body_level(level: u32) -> u32 {
    if level == 0 { 0 } else { 9 }
}

/// The two halves of an upgraded connection, as a tungstenite socket's would be. `deflate`
/// is the `permessage-deflate` agreement and the zlib level of outbound messages, if the
/// extension was negotiated; without it, a frame with RSV1 set is a protocol violation.
pub(crate) fn split<R, W>(
    reader: R,
    writer: W,
    deflate: Option<(Agreement, u32)>,
    limit: usize,
    read_buffer: usize,
) -> (
    impl Sink<Outgoing, Error = axum::Error> + Send + 'static,
    impl Stream<Item = Result<Message, axum::Error>> + Send + 'static,
)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let writer = Arc::new(Mutex::new(Writer {
        io: writer,
        level: deflate.map(|(_, level)| level),
        closed: false,
    }));
    let reader = Reader {
        io: BufReader::with_capacity(read_buffer, reader),
        writer: Arc::clone(&writer),
        inflater: Inflater::default(),
        agreement: deflate.map(|(agreement, _)| agreement),
        limit,
        started: None,
        partial: Vec::new(),
        done: false,
    };
    let sink = sink::unfold(writer, |writer, item: Outgoing| async move {
        let mut locked = writer.lock().await;
        match item {
            Outgoing::Message(message) => locked.send(message).await,
            Outgoing::Spliced(spliced) => locked.send_spliced(spliced).await,
        }
        .map_err(axum::Error::new)?;
        drop(locked);
        Ok(writer)
    });
    let stream = stream::unfold(reader, |mut reader| async move {
        if reader.done {
            return None;
        }
        let item = reader.next_message().await;
        if matches!(item, Err(_) | Ok(Message::Close(_))) {
            reader.done = true;
        }
        Some((item.map_err(axum::Error::new), reader))
    });
    (sink, stream)
}

/// The sending side, shared with the reader for its pongs and close replies.
struct Writer<W> {
    io: W,
    /// The zlib level of outbound messages; `None` without the extension.
    level: Option<u32>,
    /// A close frame went out: nothing may follow it.
    closed: bool,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn send(&mut self, message: Message) -> Result<(), WsError> {
        if self.closed {
            return Err(WsError::Protocol(ProtocolError::SendAfterClosing));
        }
        match message {
            Message::Text(text) => {
                let Some(level) = self.level else {
                    return self.frame(OP_TEXT, false, &[text.as_bytes()]).await;
                };
                let deflated = if text.len() < BLOCKING_THRESHOLD {
                    deflate_message(text.as_bytes(), level)
                } else {
                    let shared = text.clone();
                    exosphere_task::blocking(move || deflate_message(shared.as_bytes(), level))
                        .await
                        .ok()
                        .flatten()
                };
                match deflated {
                    Some(body) => self.frame(OP_TEXT, true, &[&body]).await,
                    None => self.frame(OP_TEXT, false, &[text.as_bytes()]).await,
                }
            }
            Message::Binary(data) => self.frame(OP_BINARY, false, &[&data]).await,
            Message::Ping(data) => self.frame(OP_PING, false, &[&data]).await,
            Message::Pong(data) => self.frame(OP_PONG, false, &[&data]).await,
            Message::Close(frame) => {
                self.closed = true;
                let mut payload = Vec::new();
                if let Some(CloseFrame { code, reason }) = frame {
                    payload.extend_from_slice(&code.to_be_bytes());
                    payload.extend_from_slice(reason.as_bytes());
                    // Control frames carry at most 125 bytes.
                    payload.truncate(125);
                }
                self.frame(OP_CLOSE, false, &[&payload]).await
            }
        }
    }

    /// Sends a text message whose body is shared: its head and tail are compressed here,
    /// around the body's compressed form, which is computed once for every connection (on
    /// the blocking pool, by the first writer that needs it; the others wait as tasks) and
    /// kept with the body.
    async fn send_spliced(&mut self, spliced: Box<Spliced>) -> Result<(), WsError> {
        if self.closed {
            return Err(WsError::Protocol(ProtocolError::SendAfterClosing));
        }
        let Some(level) = self.level else {
            let parts = [
                spliced.head.as_bytes(),
                spliced.body.as_str().as_bytes(),
                spliced.tail.as_bytes(),
            ];
            return self.frame(OP_TEXT, false, &parts).await;
        };
        if spliced.head.len() >= BLOCKING_THRESHOLD {
            // The head carries the client's method id: a long one is compressed like any
            // large message, off the runtime, and not spliced.
            let text = FrameText::Spliced(spliced).into_string();
            return self.send(Message::Text(text.into())).await;
        }
        let body_level = shared_body_level(level);
        let body = spliced
            .body
            .deflated(body_level, move |text| deflate_part(text, body_level))
            .await;
        let plain_len = spliced.len();
        if let Some(body) = body
            && let Some((head, tail)) = splice_message(
                spliced.head.as_bytes(),
                &body,
                spliced.tail.as_bytes(),
                plain_len,
                level,
            )
        {
            return self.frame(OP_TEXT, true, &[&head, &body, &tail]).await;
        }
        let text = FrameText::Spliced(spliced).into_string();
        self.frame(OP_TEXT, false, &[text.as_bytes()]).await
    }

    /// One unmasked, final frame (servers never fragment or mask) whose payload is `parts`
    /// joined.
    async fn frame(
        &mut self,
        opcode: u8,
        compressed: bool,
        parts: &[&[u8]],
    ) -> Result<(), WsError> {
        let mut head = Vec::with_capacity(10);
        head.push(0x80 | if compressed { 0x40 } else { 0 } | opcode);
        match parts.iter().map(|part| part.len()).sum::<usize>() {
            len @ 0..=125 => head.push(len as u8),
            len @ 126..=0xFFFF => {
                head.push(126);
                head.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                head.push(127);
                head.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        let mut slices: Vec<IoSlice<'_>> = std::iter::once(head.as_slice())
            .chain(parts.iter().copied())
            .map(IoSlice::new)
            .collect();
        let mut unwritten = slices.as_mut_slice();
        while !unwritten.is_empty() {
            let written = self.io.write_vectored(unwritten).await?;
            if written == 0 {
                return Err(WsError::Io(io::ErrorKind::WriteZero.into()));
            }
            IoSlice::advance_slices(&mut unwritten, written);
        }
        self.io.flush().await?;
        Ok(())
    }
}

/// The receiving side: client frames into messages.
struct Reader<R, W> {
    io: BufReader<R>,
    writer: Arc<Mutex<Writer<W>>>,
    inflater: Inflater,
    /// The extension's agreement; `None` without it.
    agreement: Option<Agreement>,
    limit: usize,
    /// The data message in progress (control frames may come between its frames): its
    /// opcode and RSV1, from its first frame.
    started: Option<(u8, bool)>,
    /// The payload of the data message in progress so far.
    partial: Vec<u8>,
    /// The stream ended (a close frame or an error): nothing more is read.
    done: bool,
}

/// One frame's header, as the client sent it.
struct Header {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    len: u64,
    mask: [u8; 4],
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Reader<R, W> {
    /// The next message; pings are answered (and reported, as tungstenite does) on the way.
    async fn next_message(&mut self) -> Result<Message, WsError> {
        loop {
            let header = self.header().await?;
            if header.opcode >= OP_CLOSE {
                if !header.fin || header.len > 125 {
                    return Err(if header.fin {
                        WsError::Protocol(ProtocolError::ControlFrameTooBig)
                    } else {
                        WsError::Protocol(ProtocolError::FragmentedControlFrame)
                    });
                }
                if header.rsv1 {
                    return Err(WsError::Protocol(ProtocolError::NonZeroReservedBits));
                }
                let data = self.payload(&header, Vec::new()).await?;
                return self.control(header.opcode, data).await;
            }
            let compressed = match (header.opcode, self.started) {
                // RSV1 marks a compressed message, only where the extension was agreed on.
                (OP_TEXT | OP_BINARY, None) if header.rsv1 && self.agreement.is_none() => {
                    return Err(WsError::Protocol(ProtocolError::NonZeroReservedBits));
                }
                (OP_TEXT | OP_BINARY, None) => {
                    self.started = Some((header.opcode, header.rsv1));
                    header.rsv1
                }
                // RSV1 marks only a message's first frame (RFC 7692 §6.1).
                (OP_CONTINUATION, Some(_)) if header.rsv1 => {
                    return Err(WsError::Protocol(ProtocolError::NonZeroReservedBits));
                }
                (OP_CONTINUATION, Some((_, compressed))) => compressed,
                (OP_CONTINUATION, None) => {
                    return Err(WsError::Protocol(ProtocolError::UnexpectedContinueFrame));
                }
                (OP_TEXT | OP_BINARY, Some(_)) => {
                    return Err(WsError::Protocol(ProtocolError::ExpectedFragment(
                        tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Continue,
                    )));
                }
                (other, _) => {
                    return Err(WsError::Protocol(ProtocolError::UnknownDataFrameType(
                        other,
                    )));
                }
            };
            // Compressed data is a little larger than its text at worst (stored blocks).
            let bound = if compressed {
                self.limit.saturating_add(self.limit / 64 + 64)
            } else {
                self.limit
            };
            let size = u64::try_from(self.partial.len())
                .unwrap_or(u64::MAX)
                .saturating_add(header.len);
            if size > bound as u64 {
                return Err(too_long(
                    usize::try_from(size).unwrap_or(usize::MAX),
                    self.limit,
                ));
            }
            let partial = std::mem::take(&mut self.partial);
            self.partial = self.payload(&header, partial).await?;
            if !header.fin {
                continue;
            }
            let Some((opcode, compressed)) = self.started.take() else {
                continue;
            };
            let mut payload = std::mem::take(&mut self.partial);
            let data = if let Some(agreement) = self.agreement.filter(|_| compressed) {
                payload.extend_from_slice(&TAIL);
                self.inflater
                    .inflate(&payload, self.limit, agreement.client_no_context_takeover)
                    .map_err(|error| match error {
                        InflateError::TooLarge => {
                            too_long(self.limit.saturating_add(1), self.limit)
                        }
                        InflateError::Corrupt => WsError::Io(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "corrupt permessage-deflate data",
                        )),
                    })?
            } else {
                payload
            };
            return if opcode == OP_TEXT {
                let text = String::from_utf8(data)
                    .map_err(|_| WsError::Utf8("invalid UTF-8 in a text message".to_owned()))?;
                Ok(Message::Text(Utf8Bytes::from(text)))
            } else {
                Ok(Message::Binary(Bytes::from(data)))
            };
        }
    }

    /// Answers a control frame and reports it.
    async fn control(&mut self, opcode: u8, data: Vec<u8>) -> Result<Message, WsError> {
        match opcode {
            OP_PING => {
                let data = Bytes::from(data);
                let mut writer = self.writer.lock().await;
                if !writer.closed {
                    writer.send(Message::Pong(data.clone())).await?;
                }
                Ok(Message::Ping(data))
            }
            OP_PONG => Ok(Message::Pong(Bytes::from(data))),
            OP_CLOSE => {
                let frame = close_frame(&data)?;
                let mut writer = self.writer.lock().await;
                if !writer.closed {
                    writer.send(Message::Close(frame.clone())).await?;
                }
                Ok(Message::Close(frame))
            }
            other => Err(WsError::Protocol(ProtocolError::UnknownControlFrameType(
                other,
            ))),
        }
    }

    async fn header(&mut self) -> Result<Header, WsError> {
        let mut two = [0u8; 2];
        self.read_exact(&mut two).await?;
        let [first, second] = two;
        if first & 0x30 != 0 {
            return Err(WsError::Protocol(ProtocolError::NonZeroReservedBits));
        }
        if second & 0x80 == 0 {
            return Err(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient));
        }
        let len = match second & 0x7F {
            126 => u64::from(self.io.read_u16().await.map_err(reset)?),
            127 => self.io.read_u64().await.map_err(reset)?,
            len => u64::from(len),
        };
        let mut mask = [0u8; 4];
        self.read_exact(&mut mask).await?;
        Ok(Header {
            fin: first & 0x80 != 0,
            rsv1: first & 0x40 != 0,
            opcode: first & 0x0F,
            len,
            mask,
        })
    }

    /// Appends the frame's unmasked payload to `buffer` (its length already checked).
    /// The buffer grows as the bytes arrive, never to the declared length up front: a
    /// header alone must not cost the server the memory it announces.
    async fn payload(&mut self, header: &Header, mut buffer: Vec<u8>) -> Result<Vec<u8>, WsError> {
        let start = buffer.len();
        let read = (&mut self.io)
            .take(header.len)
            .read_to_end(&mut buffer)
            .await
            .map_err(reset)?;
        if (read as u64) < header.len {
            return Err(WsError::Protocol(
                ProtocolError::ResetWithoutClosingHandshake,
            ));
        }
        for (index, byte) in buffer[start..].iter_mut().enumerate() {
            *byte ^= header.mask[index % 4];
        }
        Ok(buffer)
    }

    async fn read_exact(&mut self, buffer: &mut [u8]) -> Result<(), WsError> {
        self.io.read_exact(buffer).await.map_err(reset)?;
        Ok(())
    }
}

/// A connection that ends mid-frame (or between frames, without a close frame) was reset,
/// as tungstenite reports it.
fn reset(error: io::Error) -> WsError {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
    } else {
        WsError::Io(error)
    }
}

fn too_long(size: usize, max_size: usize) -> WsError {
    WsError::Capacity(CapacityError::MessageTooLong { size, max_size })
}

/// A client's close frame: empty, or a code and a UTF-8 reason.
fn close_frame(data: &[u8]) -> Result<Option<CloseFrame>, WsError> {
    match data {
        [] => Ok(None),
        [_] => Err(WsError::Protocol(ProtocolError::InvalidCloseSequence)),
        [high, low, reason @ ..] => {
            let reason = std::str::from_utf8(reason)
                .map_err(|_| WsError::Utf8("invalid UTF-8 in a close reason".to_owned()))?;
            let code = u16::from_be_bytes([*high, *low]);
            // RFC 6455 §7.4: codes a peer may send; 1004–1006 and 1015 are reserved for
            // local use, and echoing one would make the client fail the connection.
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                return Err(WsError::Protocol(ProtocolError::InvalidCloseSequence));
            }
            Ok(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(reason),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use std::pin::Pin;

    use futures_util::SinkExt as _;
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::reply::RawText;

    /// One server frame as a client reads it: RSV1 and the payload.
    async fn read_frame(io: &mut (impl AsyncRead + Unpin)) -> (bool, Vec<u8>) {
        let first = io.read_u8().await.unwrap();
        let len = match io.read_u8().await.unwrap() {
            126 => u64::from(io.read_u16().await.unwrap()),
            127 => io.read_u64().await.unwrap(),
            len => u64::from(len),
        };
        let mut payload = vec![0; usize::try_from(len).unwrap()];
        io.read_exact(&mut payload).await.unwrap();
        (first & 0x40 != 0, payload)
    }

    /// What an independent peer does with a compressed payload (flate2's own reader): the
    /// tail put back, and an empty final stored block so that the stream is complete.
    fn inflate(mut payload: Vec<u8>) -> String {
        payload.extend_from_slice(&TAIL);
        payload.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
        let mut text = String::new();
        flate2::read::DeflateDecoder::new(&payload[..])
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// The extension as the `meteor` tool negotiates it, at level 6.
    fn negotiated() -> Option<(Agreement, u32)> {
        let agreement = Agreement {
            client_no_context_takeover: true,
        };
        Some((agreement, 6))
    }

    /// A negotiated connection's sending half at level 6, and the client's end of it.
    fn connection() -> (
        Pin<Box<impl Sink<Outgoing, Error = axum::Error> + Send + 'static>>,
        tokio::io::DuplexStream,
    ) {
        connection_with(negotiated())
    }

    /// A connection's sending half, with `deflate` or without, and the client's end of it.
    fn connection_with(
        deflate: Option<(Agreement, u32)>,
    ) -> (
        Pin<Box<impl Sink<Outgoing, Error = axum::Error> + Send + 'static>>,
        tokio::io::DuplexStream,
    ) {
        let (server_side, client_side) = tokio::io::duplex(1 << 20);
        let (_, write_half) = tokio::io::split(server_side);
        let (sink, _) = split(tokio::io::empty(), write_half, deflate, 1 << 20, 1024);
        (Box::pin(sink), client_side)
    }

    /// What a negotiated connection's reader makes of `bytes` from the client, then EOF.
    async fn read_from_client(bytes: Vec<u8>) -> Vec<Result<Message, axum::Error>> {
        read_from_client_with(bytes, negotiated()).await
    }

    /// What a connection's reader, with `deflate` or without, makes of `bytes`, then EOF.
    async fn read_from_client_with(
        bytes: Vec<u8>,
        deflate: Option<(Agreement, u32)>,
    ) -> Vec<Result<Message, axum::Error>> {
        let reader = std::io::Cursor::new(bytes);
        let (_sink, stream) = split(reader, tokio::io::sink(), deflate, 1 << 20, 1024);
        futures_util::StreamExt::collect::<Vec<_>>(stream).await
    }

    #[tokio::test]
    async fn without_the_extension_a_shared_body_goes_out_in_place_and_rsv1_is_refused() {
        let (mut sink, mut client_side) = connection_with(None);
        let body = RawText::from("[1,2,3]");
        let spliced = Spliced {
            head: r#"{"msg":"result","id":"1","result":"#.to_owned(),
            body: body.clone(),
            tail: "}",
        };
        sink.send(Outgoing::Spliced(Box::new(spliced)))
            .await
            .unwrap();
        let (compressed, payload) = read_frame(&mut client_side).await;
        assert!(!compressed);
        assert_eq!(payload, br#"{"msg":"result","id":"1","result":[1,2,3]}"#);
        assert_eq!(body.deflations(), 0);
        // A one-byte text frame, masked with 1 2 3 4, with RSV1 and without.
        let frame = |first: u8| vec![first, 0x81, 1, 2, 3, 4, b'x' ^ 1];
        let read = read_from_client_with(frame(0xC1), None).await;
        assert!(read[0].is_err(), "RSV1 without the extension: {read:?}");
        let read = read_from_client_with(frame(0x81), None).await;
        assert!(matches!(&read[0], Ok(Message::Text(text)) if text.as_str() == "x"));
    }

    #[tokio::test]
    async fn a_frame_that_announces_more_than_it_sends_is_a_reset_not_an_allocation() {
        // A text frame announcing 65,535 bytes (masked, as from a client) that sends ten.
        let mut bytes = vec![0x81, 0x80 | 126, 0xff, 0xff, 1, 2, 3, 4];
        bytes.extend_from_slice(&[b'x'; 10]);
        let read = read_from_client(bytes).await;
        assert_eq!(read.len(), 1, "one error, then the end");
        assert!(read[0].is_err(), "{read:?}");
    }

    #[tokio::test]
    async fn close_codes_reserved_for_local_use_are_refused() {
        let masked_close = |code: u16| {
            let mask = [9, 8, 7, 6];
            let mut frame = vec![0x88, 0x80 | 2];
            frame.extend_from_slice(&mask);
            frame.extend(
                code.to_be_bytes()
                    .iter()
                    .zip(mask)
                    .map(|(byte, mask)| byte ^ mask),
            );
            frame
        };
        for reserved in [999, 1004, 1005, 1006, 1015, 2999, 5000] {
            let read = read_from_client(masked_close(reserved)).await;
            assert!(read[0].is_err(), "{reserved}: {read:?}");
        }
        let read = read_from_client(masked_close(1000)).await;
        assert!(
            matches!(&read[0], Ok(Message::Close(Some(frame))) if frame.code == 1000),
            "{read:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shared_body_is_compressed_once_for_every_connection() {
        let page = format!(
            r#"{{"collections":{{"packages":[{}]}},"upToDate":true}}"#,
            (0..2000)
                .map(|i| format!(r#"{{"_id":"p{i}","name":"package-{i}"}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let body = RawText::from(page.as_str());
        let mut clients = Vec::new();
        for client in 0..8 {
            let (sink, client_side) = connection();
            let head = format!(r#"{{"msg":"result","id":"{client}","result":"#);
            let plain = format!("{head}{page}}}");
            let spliced = Spliced {
                head,
                body: body.clone(),
                tail: "}",
            };
            clients.push(tokio::spawn(async move {
                let mut sink = sink;
                let reading = tokio::spawn(async move {
                    let mut client_side = client_side;
                    read_frame(&mut client_side).await
                });
                sink.send(Outgoing::Spliced(Box::new(spliced)))
                    .await
                    .unwrap();
                let (compressed, payload) = reading.await.unwrap();
                assert!(compressed);
                assert!(payload.len() < plain.len() / 4);
                assert_eq!(inflate(payload), plain);
            }));
        }
        for client in clients {
            client.await.unwrap();
        }
        assert_eq!(body.deflations(), 1);
        assert!(
            body.deflated_if_ready(9).is_some(),
            "a shared body is compressed at level 9 on a level-6 connection"
        );
    }

    #[tokio::test]
    async fn whole_messages_large_or_small_inflate_to_their_text() {
        for text in ["{\"msg\":\"ping\"}".repeat(4), "[\"x\"]".repeat(40_000)] {
            let (mut sink, mut client_side) = connection();
            let reading = tokio::spawn(async move { read_frame(&mut client_side).await });
            sink.send(Outgoing::Message(Message::text(text.clone())))
                .await
                .unwrap();
            let (compressed, payload) = reading.await.unwrap();
            assert!(compressed);
            assert_eq!(inflate(payload), text);
        }
    }
}
