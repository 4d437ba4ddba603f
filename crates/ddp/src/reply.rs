//! What a method call returns to the client: nothing, an EJSON value, or EJSON text.
//!
//! A leaf shared by the [`Service`](crate::Service) boundary, which produces replies, and
//! the message encoder, which writes them into `result` frames.

use std::sync::{Arc, OnceLock};

use tokio::sync::OnceCell;

use exosphere_ejson::Ejson;

/// A method's successful outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The method returned nothing: the `result` key is omitted (JavaScript `undefined`).
    None,
    /// An EJSON value, encoded by the DDP layer (`Ejson::Null` is sent as `"result":null`).
    Value(Ejson),
    /// Already-encoded EJSON text, embedded in the frame verbatim without re-parsing.
    ///
    /// This is the sync hot path. The text must be exactly one valid JSON value in EJSON
    /// encoding; it is not checked.
    Raw(RawText),
}

impl From<Ejson> for Reply {
    fn from(value: Ejson) -> Self {
        Self::Value(value)
    }
}

/// zlib levels run from 0 to 9; a level above is clamped to 9, as the compressor does.
const LEVELS: usize = 10;

/// Already-encoded EJSON text that many `result` frames may carry: cloning it shares the
/// text, and its raw DEFLATE form (per compression level) is computed at most once for all
/// of them.
///
/// It exists so that a producer that answers many clients with the same text (a sync page
/// from the catalog's page cache) can keep one `RawText` and hand out clones: every
/// `permessage-deflate` connection then compresses only its frame's head and tail, and
/// splices the shared compressed body between them.
#[derive(Clone)]
pub struct RawText(Arc<Shared>);

struct Shared {
    /// The text.
    text: Text,
    /// The text as a sync-flushed raw DEFLATE stream, per level, once a writer needed it
    /// (`None` if the compressor failed). An async cell: writers waiting for another's
    /// compression wait as tasks, not on blocking threads.
    deflated: [OnceCell<Option<Arc<[u8]>>>; LEVELS],
    /// The text as the inside of a JSON string (SockJS frames carry messages so), once a
    /// SockJS writer needed it: with compressed forms of its own, shared the same way.
    escaped: OnceLock<RawText>,
    /// How many times the text was compressed, for the tests that check it is once.
    #[cfg(test)]
    deflations: std::sync::atomic::AtomicUsize,
}

/// Where a [`RawText`]'s text lives: a heap string is kept as it is (one allocation), any
/// other owner behind a box.
enum Text {
    Heap(Box<str>),
    Owned(Box<dyn AsRef<str> + Send + Sync>),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            Text::Heap(text) => text,
            Text::Owned(owner) => (**owner).as_ref(),
        }
    }
}

impl RawText {
    /// Wraps encoded EJSON text (one JSON value; not checked).
    pub fn new(text: impl Into<Box<str>>) -> Self {
        Self::with_text(Text::Heap(text.into()))
    }

    /// Encoded EJSON text (one JSON value; not checked) kept by `owner`, which may hold it
    /// outside the heap (a file mapped into memory, say): the text is sent from there,
    /// never copied into a string first.
    pub fn from_owner(owner: impl AsRef<str> + Send + Sync + 'static) -> Self {
        Self::with_text(Text::Owned(Box::new(owner)))
    }

    fn with_text(text: Text) -> Self {
        Self(Arc::new(Shared {
            text,
            deflated: Default::default(),
            escaped: OnceLock::new(),
            #[cfg(test)]
            deflations: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// Text whose compressed forms were computed earlier, by level (what
    /// [`deflated_forms`](Self::deflated_forms) gave for the same text): a cache that keeps
    /// pages longer than their `RawText` (on disk, say) hands them back so they are not
    /// compressed again. A level above 9 counts as 9.
    pub fn with_deflated(
        text: impl AsRef<str> + Send + Sync + 'static,
        forms: impl IntoIterator<Item = (u32, Arc<[u8]>)>,
    ) -> Self {
        let raw = Self::from_owner(text);
        for (level, form) in forms {
            // A level given twice keeps its first form.
            let _ = raw.slot(level).set(Some(form));
        }
        raw
    }

    /// The compressed forms computed so far, by level, for a cache that outlives this value
    /// to keep (see [`with_deflated`](Self::with_deflated)).
    pub fn deflated_forms(&self) -> Vec<(u32, Arc<[u8]>)> {
        (0..LEVELS)
            .filter_map(|level| {
                let form = self.0.deflated[level].get()?.clone()?;
                Some((u32::try_from(level).ok()?, form))
            })
            .collect()
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.text.as_str()
    }

    /// What [`deflated`](Self::deflated) gives at `level`, if a writer already computed it.
    #[cfg(test)]
    pub(crate) fn deflated_if_ready(&self, level: u32) -> Option<Option<Arc<[u8]>>> {
        self.slot(level).get().cloned()
    }

    /// The text compressed at `level` by `deflate`, which runs at most once per level for
    /// all clones, on the blocking pool; callers arriving while it runs wait for its result
    /// without holding a thread. If the caller running it is dropped, the next one runs it.
    pub(crate) async fn deflated(
        &self,
        level: u32,
        deflate: impl FnOnce(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> Option<Arc<[u8]>> {
        self.slot(level)
            .get_or_init(|| {
                let shared = self.clone();
                async move {
                    exosphere_task::blocking(move || {
                        #[cfg(test)]
                        shared
                            .0
                            .deflations
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        deflate(shared.as_str().as_bytes()).map(Arc::from)
                    })
                    .await
                    .ok()
                    .flatten()
                }
            })
            .await
            .clone()
    }

    /// The text escaped by `escape` (the inside of a JSON string, without its quotes),
    /// computed at most once for all clones and kept with the text, so frames that carry
    /// it escaped (SockJS's `a["…"]`) share it and its compressed forms as others share the
    /// text. Escaping is character by character, so a frame's escaped parts join into the
    /// escaped frame.
    pub(crate) fn escaped(&self, escape: impl FnOnce(&str) -> String) -> RawText {
        self.0
            .escaped
            .get_or_init(|| RawText::new(escape(self.as_str())))
            .clone()
    }

    /// How many times the text was compressed, all levels together.
    #[cfg(test)]
    pub(crate) fn deflations(&self) -> usize {
        self.0.deflations.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn slot(&self, level: u32) -> &OnceCell<Option<Arc<[u8]>>> {
        let index = usize::try_from(level).map_or(LEVELS - 1, |level| level.min(LEVELS - 1));
        &self.0.deflated[index]
    }
}

impl From<String> for RawText {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<&str> for RawText {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl AsRef<str> for RawText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for RawText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::fmt::Debug for RawText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RawText").field(&self.as_str()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_from_value() {
        assert_eq!(Reply::from(Ejson::Null), Reply::Value(Ejson::Null));
    }

    #[tokio::test]
    async fn text_kept_by_its_owner_lives_as_long_as_its_last_clone() {
        struct Owner(Arc<std::sync::atomic::AtomicBool>);
        impl AsRef<str> for Owner {
            fn as_ref(&self) -> &str {
                "[\"kept elsewhere\"]"
            }
        }
        impl Drop for Owner {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let text = RawText::from_owner(Owner(Arc::clone(&dropped)));
        let copy = text.clone();
        drop(text);
        assert_eq!(copy, RawText::from("[\"kept elsewhere\"]"));
        let deflated = copy.deflated(6, |text| Some(text.to_vec())).await.unwrap();
        assert_eq!(&deflated[..], b"[\"kept elsewhere\"]");
        assert!(!dropped.load(std::sync::atomic::Ordering::Relaxed));
        drop(copy);
        assert!(dropped.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[tokio::test]
    async fn clones_share_one_deflation_per_level() {
        let text = RawText::from("[1,2,3]");
        let copies: Vec<RawText> = (0..8).map(|_| text.clone()).collect();
        let first = copies[0]
            .deflated(6, |text| Some(text.to_vec()))
            .await
            .unwrap();
        for copy in &copies {
            let again = copy.deflated(6, |_| None).await.unwrap();
            assert!(Arc::ptr_eq(&again, &first));
            assert!(copy.deflated_if_ready(6).is_some());
        }
        assert_eq!(text.deflations(), 1);
        assert!(text.deflated_if_ready(9).is_none());
        text.deflated(12, |text| Some(text.to_vec())).await;
        assert!(text.deflated_if_ready(9).is_some());
        assert_eq!(text.deflations(), 2);
    }

    #[test]
    fn writers_waiting_for_one_deflation_hold_no_thread() {
        // Two blocking threads: one for the compression, one for the probe below, which
        // would find none free if waiting writers held threads.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let text = RawText::from("[1,2,3]");
            let (release, released) = std::sync::mpsc::channel::<()>();
            let first = {
                let text = text.clone();
                tokio::spawn(async move {
                    text.deflated(6, move |bytes| {
                        released.recv().ok()?;
                        Some(bytes.to_vec())
                    })
                    .await
                })
            };
            let waiters: Vec<_> = (0..64)
                .map(|_| {
                    let text = text.clone();
                    tokio::spawn(async move { text.deflated(6, |_| None).await })
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let probe = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tokio::task::spawn_blocking(|| 42),
            )
            .await;
            assert_eq!(probe.ok().and_then(Result::ok), Some(42));
            release.send(()).unwrap();
            let first = first.await.unwrap().unwrap();
            for waiter in waiters {
                assert!(Arc::ptr_eq(&waiter.await.unwrap().unwrap(), &first));
            }
            assert_eq!(text.deflations(), 1);
        });
    }

    #[tokio::test]
    async fn compressed_forms_come_back_without_compressing_again() {
        let text = RawText::from("[1,2,3]");
        text.deflated(6, |text| Some(text.to_vec())).await;
        text.deflated(1, |_| None).await;
        let forms = text.deflated_forms();
        assert_eq!(forms.len(), 1, "a failed compression is not kept");
        let again = RawText::with_deflated("[1,2,3]", forms);
        assert_eq!(&*again.deflated(6, |_| None).await.unwrap(), b"[1,2,3]");
        assert_eq!(again.deflations(), 0);
    }
}
