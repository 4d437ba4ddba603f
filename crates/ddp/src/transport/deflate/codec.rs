//! Raw DEFLATE as `permessage-deflate` frames it (RFC 7692 §7.2): each outbound message a
//! stream of its own ended by a sync flush whose `00 00 ff ff` tail is left off, and inbound
//! messages inflated with that tail put back, never past a size limit.

use std::sync::{Mutex, OnceLock, PoisonError};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What a sync flush ends with, and what RFC 7692 leaves off the wire.
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Bytes the output grows by at least while compressing or inflating.
const MIN_GROWTH: usize = 4096;

/// Compressors idle between messages, with their level. With `server_no_context_takeover`
/// a connection needs no compressor of its own, and a compressor's state (about 380 KiB)
/// would cost too much per connection or per message: each message borrows one from here
/// and gives it back reset. The list is shared by every thread, not kept per thread: the
/// blocking pool's threads come and go, and with a compressor per thread every one of them
/// that had compressed held one while it lived (most of the live heap in the soak of
/// `docs/BENCHMARKS.md`).
static IDLE: Mutex<Vec<(u32, Compress)>> = Mutex::new(Vec::new());

/// How many compressors of one level [`IDLE`] keeps: one per CPU, as compressing is all CPU
/// work, so more than that at once only wait for each other. Compressions beyond it (at
/// bursts) allocate a compressor for the one message. A server uses two levels (its
/// messages' and shared bodies'), so this bounds the idle ones to two per CPU.
fn max_idle_compressors() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| std::thread::available_parallelism().map_or(1, |cpus| cpus.get()))
}

/// Runs `f` with a reset compressor at `level`, borrowed from [`IDLE`] or made for it, and
/// keeps the compressor for the next message while [`IDLE`] has room.
fn with_compressor<T>(level: u32, f: impl FnOnce(&mut Compress) -> T) -> T {
    let idle = || IDLE.lock().unwrap_or_else(PoisonError::into_inner);
    let kept = {
        let mut idle = idle();
        let found = idle.iter().rposition(|(kept, _)| *kept == level);
        found.map(|at| idle.swap_remove(at).1)
    };
    let mut compress = kept.unwrap_or_else(|| Compress::new(Compression::new(level), false));
    let out = f(&mut compress);
    compress.reset();
    let mut idle = idle();
    if idle.iter().filter(|(kept, _)| *kept == level).count() < max_idle_compressors() {
        idle.push((level, compress));
    }
    out
}

/// `message` as one `permessage-deflate` payload at zlib `level` (clamped to 9), or `None`
/// when compressing would not make it smaller (it is then sent as it is, RSV1 clear).
pub(crate) fn deflate_message(message: &[u8], level: u32) -> Option<Vec<u8>> {
    let mut out = deflate_part(message, level)?;
    let body = out.strip_suffix(&TAIL)?.len();
    out.truncate(body);
    (out.len() < message.len()).then_some(out)
}

/// `input` as raw DEFLATE from an empty window, sync-flushed with its [`TAIL`] kept: such
/// parts end on a byte boundary with no final block, so parts compressed on their own
/// concatenate into one valid stream (each refers back only into itself).
pub(crate) fn deflate_part(input: &[u8], level: u32) -> Option<Vec<u8>> {
    with_compressor(level.min(9), |compress| {
        let mut out = Vec::with_capacity(input.len() / 4 + 64);
        flush_into(compress, input, &mut out)?;
        Some(out)
    })
}

/// The `permessage-deflate` payload of the message `head`, `body`, `tail` joined, in three
/// parts: `head` and `tail` compressed here, around `body`, the body already compressed by
/// [`deflate_part`] (once, for every message that carries it). The last part has the
/// [`TAIL`] left off. `None` when the payload would not be smaller than the text.
pub(crate) fn splice_message(
    head: &[u8],
    body: &[u8],
    tail: &[u8],
    plain_len: usize,
    level: u32,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let head = deflate_part(head, level)?;
    let mut tail = deflate_part(tail, level)?;
    let end = tail.strip_suffix(&TAIL)?.len();
    tail.truncate(end);
    (head.len() + body.len() + tail.len() < plain_len).then_some((head, tail))
}

/// Compresses all of `input` into `out` and sync-flushes, so the output ends on a byte
/// boundary with an empty stored block (`00 00 ff ff`). `None` if the compressor failed,
/// which it does not for in-memory input.
fn flush_into(compress: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let start = compress.total_in();
    loop {
        let consumed = usize::try_from(compress.total_in() - start).ok()?;
        if out.capacity() - out.len() < 64 {
            out.reserve((input.len() - consumed) / 4 + MIN_GROWTH);
        }
        compress
            .compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .ok()?;
        let consumed = usize::try_from(compress.total_in() - start).ok()?;
        // The flush is complete once all input is in and the output did not fill up.
        if consumed == input.len() && out.len() < out.capacity() {
            return Some(());
        }
    }
}

/// Why an inbound compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the limit: a deflate bomb, or just too large.
    TooLarge,
    /// It is not valid DEFLATE data.
    Corrupt,
}

/// The inflater of one connection's inbound messages. Its state (a 32 KiB window) is
/// allocated with the first compressed message, so connections whose client never
/// compresses pay nothing.
#[derive(Default)]
pub(crate) struct Inflater {
    state: Option<Decompress>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("allocated", &self.state.is_some())
            .finish()
    }
}

impl Inflater {
    /// Inflates one message's payload (its frames' payloads joined, `payload` ends with
    /// the [`TAIL`] put back) into at most `limit` bytes; output grows only as the data
    /// does, so a bomb is refused after `limit` bytes. `reset` starts the next message
    /// from an empty window (the client compresses without context takeover).
    pub(crate) fn inflate(
        &mut self,
        payload: &[u8],
        limit: usize,
        reset: bool,
    ) -> Result<Vec<u8>, InflateError> {
        let state = self.state.get_or_insert_with(|| Decompress::new(false));
        let result = inflate_into(state, payload, limit);
        if reset || result.is_err() || matches!(result, Ok((_, Status::StreamEnd))) {
            state.reset(false);
        }
        result.map(|(out, _)| out)
    }
}

fn inflate_into(
    state: &mut Decompress,
    payload: &[u8],
    limit: usize,
) -> Result<(Vec<u8>, Status), InflateError> {
    let start = state.total_in();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let consumed =
            usize::try_from(state.total_in() - start).map_err(|_| InflateError::Corrupt)?;
        if out.len() == out.capacity() {
            // One byte past the limit is room enough to see that it is passed.
            let room = limit.saturating_add(1).saturating_sub(out.len());
            if room == 0 {
                return Err(InflateError::TooLarge);
            }
            out.reserve_exact(room.min(out.len().max(MIN_GROWTH)));
        }
        let before = (consumed, out.len());
        let status = state
            .decompress_vec(&payload[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        if out.len() > limit {
            return Err(InflateError::TooLarge);
        }
        let consumed =
            usize::try_from(state.total_in() - start).map_err(|_| InflateError::Corrupt)?;
        let full = out.len() == out.capacity();
        if status == Status::StreamEnd || (consumed == payload.len() && !full) {
            return Ok((out, status));
        }
        if (consumed, out.len()) == before && !full {
            // No progress with room to spare: the data is cut short or broken.
            return Err(InflateError::Corrupt);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// What a peer does with a received message: put the tail back and inflate.
    fn independent_inflate(body: &[u8]) -> Vec<u8> {
        let mut data = body.to_vec();
        data.extend_from_slice(&TAIL);
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&data[..])
            .read_to_end(&mut out)
            .ok();
        out
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut data = body.to_vec();
        data.extend_from_slice(&TAIL);
        data
    }

    #[test]
    fn a_message_deflates_to_what_any_inflater_reads_back() {
        let message = r#"{"msg":"result","id":"1","result":{"collections":{}}}"#.repeat(200);
        for level in [0, 1, 6, 9, 12] {
            let Some(body) = deflate_message(message.as_bytes(), level) else {
                assert_eq!(level, 0, "only stored blocks are not smaller");
                continue;
            };
            assert!(!body.ends_with(&TAIL));
            assert_eq!(independent_inflate(&body), message.as_bytes());
            assert_eq!(
                Inflater::default().inflate(&framed(&body), message.len(), true),
                Ok(message.clone().into_bytes())
            );
        }
    }

    /// A result frame's head with the call's `id`, and its tail.
    fn head_and_tail(id: &str) -> (String, &'static str) {
        (
            format!(r#"{{"msg":"result","id":{}"#, serde_json::json!(id)) + r#","result":"#,
            "}",
        )
    }

    proptest::proptest! {
        #[test]
        fn a_spliced_message_inflates_to_the_joined_text(
            id in "[ -~]{0,40}",
            records in proptest::collection::vec("[a-z0-9\\\\\"é]{0,80}", 0..200),
            level in 0u32..=9,
        ) {
            let body = serde_json::json!({ "collections": { "packages": records } }).to_string();
            let (head, tail) = head_and_tail(&id);
            let plain = format!("{head}{body}{tail}");
            let deflated = deflate_part(body.as_bytes(), level).unwrap();
            match splice_message(head.as_bytes(), &deflated, tail.as_bytes(), plain.len(), level) {
                Some((head, tail)) => {
                    let payload = [&head[..], &deflated, &tail].concat();
                    proptest::prop_assert!(payload.len() < plain.len());
                    proptest::prop_assert_eq!(independent_inflate(&payload), plain.as_bytes());
                    proptest::prop_assert_eq!(
                        Inflater::default().inflate(&framed(&payload), plain.len(), true),
                        Ok(plain.clone().into_bytes())
                    );
                }
                // Only a text too small or too random to gain is sent as it is.
                None => proptest::prop_assert!(level == 0 || plain.len() < 400),
            }
        }
    }

    #[test]
    fn compressors_are_shared_by_threads_and_their_number_is_bounded() {
        let text = "{\"msg\":\"result\",\"id\":\"1\"}".repeat(64);
        std::thread::scope(|scope| {
            for level in [1, 9, 1, 9, 1, 9, 1, 9] {
                let text = &text;
                scope.spawn(move || {
                    for _ in 0..20 {
                        let body = deflate_message(text.as_bytes(), level).unwrap();
                        assert_eq!(independent_inflate(&body), text.as_bytes());
                    }
                });
            }
        });
        // Other tests compress at these levels too, so only the bound is certain here.
        let idle = IDLE.lock().unwrap();
        for level in [1, 9] {
            let kept = idle.iter().filter(|(kept, _)| *kept == level).count();
            assert!(
                kept <= max_idle_compressors(),
                "{kept} idle at level {level}"
            );
        }
    }

    #[test]
    fn incompressible_or_tiny_messages_stay_as_they_are() {
        assert_eq!(deflate_message(b"{}", 6), None);
        assert_eq!(deflate_message(b"", 6), None);
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit() {
        let bomb = deflate_message(&vec![b'a'; 10 << 20], 9).unwrap();
        assert!(bomb.len() < 20_000);
        let mut inflater = Inflater::default();
        assert_eq!(
            inflater.inflate(&framed(&bomb), 1 << 20, false),
            Err(InflateError::TooLarge)
        );
        // Exactly at the limit is fine, and the inflater is usable afterwards.
        let exact = deflate_message(&vec![b'b'; 1 << 20], 6).unwrap();
        assert_eq!(
            inflater
                .inflate(&framed(&exact), 1 << 20, false)
                .map(|out| out.len()),
            Ok(1 << 20)
        );
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let mut inflater = Inflater::default();
        assert_eq!(
            inflater.inflate(
                &[0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0xff, 0xff],
                1024,
                true
            ),
            Err(InflateError::Corrupt)
        );
        assert_eq!(inflater.inflate(&[], 1024, true), Ok(Vec::new()));
    }

    #[test]
    fn context_taken_over_between_messages_is_kept() {
        // A client with context takeover refers back to its previous message.
        let mut compress = Compress::new(Compression::default(), false);
        let mut first = Vec::new();
        flush_into(&mut compress, b"hello hello hello world", &mut first).unwrap();
        let mut second = Vec::new();
        flush_into(&mut compress, b"hello hello hello world", &mut second).unwrap();
        let mut inflater = Inflater::default();
        assert_eq!(
            inflater.inflate(&first, 100, false).unwrap(),
            b"hello hello hello world"
        );
        assert_eq!(
            inflater.inflate(&second, 100, false).unwrap(),
            b"hello hello hello world"
        );
    }
}
