//! Upstream pages into the catalog store: the mirror's [`PageSink`].
//!
//! A page goes straight into the served catalog while the mirror is up to date with the
//! upstream. A full catalog (the first mirror, the upstream's `resetData`, a token that went
//! backwards, another upstream) goes into the staged catalog instead, beside the served one,
//! and replaces it in the transaction of its last page, so Exosphere's clients never see a
//! half-mirrored catalog and are never told to reset. Each page commits with the upstream
//! token that resumes after it.

use std::str::FromStr as _;
use std::sync::Arc;

use exosphere_catalog::mirror::MirrorState;
use exosphere_catalog::{CatalogStore, CatalogWriter, Collection, Record, StoreError};
use exosphere_sync_client::{FIRST_TOKEN, Page, PageSink, SyncError};
use serde_json::Value;

use crate::apply::{Applied, ApplyOutcome, Claims, apply_staged, upsert_upstream};
use crate::config::MirrorConfig;
use crate::files::rewrite;

/// What one page did to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageDone {
    /// Records stored (served or staged).
    pub(crate) stored: u64,
    /// Records refused as invalid.
    pub(crate) rejected: u64,
    /// Records not served because a local record holds their name.
    pub(crate) shadowed: u64,
    /// Whether the page went to the staged catalog.
    pub(crate) staged: bool,
    /// Whether this page started a full resync beside the served catalog (the upstream's
    /// `resetData` while the mirror was up to date).
    pub(crate) resync: bool,
    /// What became of the staged catalog, when this page completed it.
    pub(crate) finished: Option<ApplyOutcome>,
}

/// The store as the sink of the upstream's pages.
pub(crate) struct StoreSink<'a> {
    pub(crate) store: Arc<dyn CatalogStore>,
    pub(crate) config: &'a MirrorConfig,
}

impl PageSink for StoreSink<'_> {
    type Applied = PageDone;

    fn token(&mut self) -> Result<Option<String>, SyncError> {
        let state = self.store.mirror_state().map_err(sink)?;
        Ok(state
            .filter(|state| state.upstream == self.config.upstream)
            .and_then(|state| state.staging_token.or(state.token)))
    }

    fn apply(&mut self, page: &Page<'_>) -> Result<PageDone, SyncError> {
        let started = std::time::Instant::now();
        let mut done = PageDone::default();
        let mut backwards = false;
        let config = self.config;
        self.store
            .write(&mut |writer| {
                done = PageDone::default();
                let mut state = current_state(writer, &config.upstream)?;
                let sent = state.staging_token.as_deref().or(state.token.as_deref());
                backwards = !page.reset_data
                    && sent.is_some_and(|sent| went_backwards(sent, page.sync_token.get()));
                if backwards {
                    // Resync from the start, beside the served catalog; this page is dropped.
                    writer.mirror().clear_stage()?;
                    state.held = None;
                    state.staging_token = Some(FIRST_TOKEN.to_owned());
                    return writer.mirror().put_state(&state);
                }
                done.staged = page.reset_data || state.staging_token.is_some();
                done.resync = page.reset_data && state.token.is_some();
                if page.reset_data {
                    // A held catalog is replaced by the new one, which is checked again.
                    writer.mirror().clear_stage()?;
                    state.held = None;
                }
                store_records(writer, page, config, done.staged, &mut done)?;
                let token = Some(page.sync_token.get().to_owned());
                if done.staged {
                    state.staging_token = token;
                    if page.up_to_date {
                        done.finished =
                            Some(apply_staged(writer, &mut state, config.max_shrink, false)?);
                    }
                } else {
                    state.token = token;
                }
                if page.up_to_date {
                    state.last_success_ms = Some(now_ms());
                    state.last_error = None;
                }
                writer.mirror().put_state(&state)
            })
            .map_err(sink)?;
        tracing::debug!(
            stored = done.stored,
            staged = done.staged,
            finished = done.finished.is_some(),
            elapsed_ms = started.elapsed().as_millis(),
            "stored an upstream page"
        );
        if backwards {
            return Err(SyncError::Restart(
                "the upstream's sync token went backwards (its catalog was restored or \
                 replaced); syncing its whole catalog again beside the served one"
                    .to_owned(),
            ));
        }
        Ok(done)
    }
}

/// The mirror's state for `upstream`: the stored one, or a fresh one whose first pass fills
/// the staged catalog (a first mirror, or a mirror pointed at another upstream).
fn current_state(
    writer: &mut dyn CatalogWriter,
    upstream: &str,
) -> Result<MirrorState, StoreError> {
    match writer.mirror().state()? {
        Some(state) if state.upstream == upstream => Ok(state),
        _ => {
            writer.mirror().clear_stage()?;
            Ok(MirrorState {
                upstream: upstream.to_owned(),
                staging_token: Some(FIRST_TOKEN.to_owned()),
                ..MirrorState::default()
            })
        }
    }
}

/// Stores a page's records, file URLs rewritten, in the staged or the served catalog.
fn store_records(
    writer: &mut dyn CatalogWriter,
    page: &Page<'_>,
    config: &MirrorConfig,
    staged: bool,
    done: &mut PageDone,
) -> Result<(), StoreError> {
    // Pages of a full catalog are staged; others go to the served catalog, past the claims.
    let mut claims = if staged {
        None
    } else {
        Some(Claims::load(writer)?)
    };
    for (name, records) in &page.collections {
        let Ok(collection) = Collection::from_str(name) else {
            continue;
        };
        for raw in records {
            let record = rewrite(collection, raw.get(), &config.public_url)
                .ok()
                .and_then(|rewritten| {
                    let record = Record::from_json(collection, &rewritten.text).ok()?;
                    Some((record, rewritten.files))
                });
            let Some((record, files)) = record else {
                tracing::warn!(
                    collection = name,
                    record = %format_args!("{:.200}", raw.get()),
                    "the upstream sent an invalid record; left out"
                );
                done.rejected += 1;
                continue;
            };
            for (key, file) in &files {
                writer.mirror().put_file(key, file)?;
            }
            match &mut claims {
                Some(claims) => match upsert_upstream(writer, claims, &record)? {
                    Applied::Served => done.stored += 1,
                    Applied::Shadowed => done.shadowed += 1,
                },
                None => {
                    writer.mirror().stage(&record)?;
                    done.stored += 1;
                }
            }
        }
    }
    Ok(())
}

/// Whether the upstream's new token is behind the one it was sent: a cursor went down.
/// Exosphere's tokens carry per-collection sequence numbers (`packagesSeq`, …), the only
/// cursors there (their per-collection `lastUpdated` values may go down legitimately); the
/// real server's tokens carry per-collection timestamps (`packages`, …), which it pages by.
/// Tokens that are not objects compare as not backwards.
fn went_backwards(sent: &str, received: &str) -> bool {
    let (Ok(Value::Object(sent)), Ok(Value::Object(received))) = (
        serde_json::from_str::<Value>(sent),
        serde_json::from_str::<Value>(received),
    ) else {
        return false;
    };
    let sequences = sent.keys().any(|key| key.ends_with("Seq"));
    Collection::ALL.iter().any(|collection| {
        let key = if sequences {
            format!("{}Seq", collection.as_str())
        } else {
            collection.as_str().to_owned()
        };
        matches!(
            (
                sent.get(&key).and_then(Value::as_f64),
                received.get(&key).and_then(Value::as_f64),
            ),
            (Some(before), Some(after)) if after < before
        )
    })
}

/// A store error as the page loop reports it.
fn sink(error: StoreError) -> SyncError {
    SyncError::Sink(Box::new(error))
}

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_backwards_when_a_cursor_goes_down() {
        // The real server's timestamps.
        let sent = r#"{"format":"1.1","packages":100,"versions":200}"#;
        assert!(!went_backwards(
            sent,
            r#"{"format":"1.1","packages":100,"versions":250}"#
        ));
        assert!(went_backwards(
            sent,
            r#"{"format":"1.1","packages":99,"versions":250}"#
        ));
        assert!(!went_backwards(sent, r#"{"format":"1.1"}"#));
        assert!(!went_backwards(sent, "[]"));
        assert!(!went_backwards(r#"{"epoch":"a"}"#, r#"{"epoch":"b"}"#));
        // Exosphere's sequence numbers: its lastUpdated values may go down.
        let sent = r#"{"packages":500,"packagesSeq":7,"builds":9,"buildsSeq":3}"#;
        assert!(!went_backwards(
            sent,
            r#"{"packages":100,"packagesSeq":9,"builds":9,"buildsSeq":3}"#
        ));
        assert!(went_backwards(
            sent,
            r#"{"packages":900,"packagesSeq":6,"builds":9,"buildsSeq":3}"#
        ));
    }
}
