//! Upstream records into the served catalog: one record at a time (a page of an up-to-date
//! mirror), or a whole staged catalog at once (the first mirror, a resync), after checking
//! that it does not lose what the served catalog has.
//!
//! The rules, documented for operators in the README:
//!
//! * a record keeps its upstream `_id` and text (file URLs aside); re-sent unchanged, it is
//!   not touched, so Exosphere's clients are not sent it again;
//! * a name belongs to one origin: an upstream record whose package, version or release
//!   track name is held by a record of another `_id` (a package published here) is not
//!   served (it is *shadowed*);
//! * records the upstream deleted stay served: deleting one would start a new data epoch and
//!   make every client wipe its downloaded packages (`resetData`);
//! * a staged catalog with fewer records than the served one by more than
//!   [`MirrorConfig::max_shrink`](crate::MirrorConfig::max_shrink), or without a `METEOR`
//!   release the served catalog has, is held for an operator instead of applied.

use exosphere_catalog::mirror::MirrorState;
use exosphere_catalog::{CatalogWriter, Collection, Lookup, PerCollection, Record, StoreError};
use serde_json::Value;

/// What an upsert of one upstream record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Stored (new, changed or unchanged).
    Served,
    /// A record of another `_id` holds its name; not stored.
    Shadowed,
}

/// What [`apply_staged`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The staged catalog replaced the served one: its records were upserted.
    Applied {
        /// Records moved into the served catalog.
        records: u64,
        /// Records left out because a local record holds their name.
        shadowed: u64,
    },
    /// The staged catalog waits for an operator, for this reason.
    Held(String),
}

/// How many staged records are moved per read, within the one transaction.
const BATCH: usize = 1000;

/// Stores one upstream record in the served catalog, unless a record of another `_id`
/// holds its name.
pub(crate) fn upsert_upstream(
    writer: &mut dyn CatalogWriter,
    record: &Record,
) -> Result<Applied, StoreError> {
    let collection = record.collection();
    if writer.get(collection, record.id())?.is_none() && name_is_taken(writer, record)? {
        return Ok(Applied::Shadowed);
    }
    writer.upsert(record)?;
    Ok(Applied::Served)
}

/// Whether the served catalog holds a record with this record's natural key (builds have
/// none).
fn name_is_taken(writer: &mut dyn CatalogWriter, record: &Record) -> Result<bool, StoreError> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(record.json()) else {
        return Ok(false);
    };
    let text = |key: &str| fields.get(key).and_then(Value::as_str);
    let key = match record.collection() {
        Collection::Packages => text("name").map(Lookup::Package),
        Collection::ReleaseTracks => text("name").map(Lookup::ReleaseTrack),
        Collection::Versions => text("packageName")
            .zip(text("version"))
            .map(|(package, version)| Lookup::Version { package, version }),
        Collection::ReleaseVersions => text("track")
            .zip(text("version"))
            .map(|(track, version)| Lookup::ReleaseVersion { track, version }),
        Collection::Builds => None,
    };
    match key {
        Some(key) => Ok(!writer.find(&key)?.is_empty()),
        None => Ok(false),
    }
}

/// Applies the staged catalog to the served one in the caller's transaction, unless it
/// shrank by more than `max_shrink` or lost a `METEOR` release (then it is held, unless
/// `force`: an operator accepted it). On success the staged token becomes the mirror's token
/// and the stage is emptied; `state` is updated either way, for the caller to store.
pub fn apply_staged(
    writer: &mut dyn CatalogWriter,
    state: &mut MirrorState,
    max_shrink: f64,
    force: bool,
) -> Result<ApplyOutcome, StoreError> {
    if !force && let Some(reason) = hold_reason(writer, max_shrink)? {
        state.held = Some(reason.clone());
        return Ok(ApplyOutcome::Held(reason));
    }
    let (mut records, mut shadowed) = (0, 0);
    for collection in Collection::ALL {
        let mut after = String::new();
        loop {
            let batch = writer.mirror().staged(collection, &after, BATCH)?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = last.clone();
            for (_, text) in &batch {
                let record = Record::from_json(collection, text).map_err(|error| {
                    StoreError::Corrupt(format!("a staged record is invalid: {error}"))
                })?;
                match upsert_upstream(writer, &record)? {
                    Applied::Served => records += 1,
                    Applied::Shadowed => shadowed += 1,
                }
            }
        }
    }
    writer.mirror().clear_stage()?;
    state.token = state.staging_token.take();
    state.held = None;
    Ok(ApplyOutcome::Applied { records, shadowed })
}

/// Why a staged catalog must not replace the served one without an operator: it lost more
/// than `max_shrink` of the records, or a `METEOR` release the served catalog has.
fn hold_reason(
    writer: &mut dyn CatalogWriter,
    max_shrink: f64,
) -> Result<Option<String>, StoreError> {
    let total = |counts: PerCollection<u64>| Collection::ALL.iter().map(|&c| counts[c]).sum();
    let staged: u64 = total(writer.mirror().staged_counts()?);
    let served: u64 = total(writer.mirror().served_counts()?);
    let floor = (served as f64 * (1.0 - max_shrink)).floor() as u64;
    if staged < floor {
        return Ok(Some(format!(
            "the upstream's catalog has {staged} records, the served one {served}: more than \
             {:.0}% would be gone; run `exosphere mirror accept` to apply it anyway",
            max_shrink * 100.0
        )));
    }
    for text in writer.find(&Lookup::ReleaseVersionsOf("METEOR"))? {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let Some(id) = fields.get("_id").and_then(Value::as_str) else {
            continue;
        };
        if !writer.mirror().is_staged(Collection::ReleaseVersions, id)? {
            let version = fields.get("version").and_then(Value::as_str).unwrap_or(id);
            return Ok(Some(format!(
                "the upstream's catalog lost the release METEOR@{version}, which the served \
                 one has; run `exosphere mirror accept` to apply it anyway"
            )));
        }
    }
    Ok(None)
}
