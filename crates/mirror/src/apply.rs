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
//!   served (it is *shadowed*), and neither is any upstream record of a name an operator
//!   claimed for local publishing (`exosphere mirror claim`); names of packages and tracks
//!   created here are claimed when they are created, and so is a name the first time it
//!   shadows an upstream record;
//! * an `_id` belongs to one origin too: an upstream record with the `_id` of a record of a
//!   claimed name is shadowed, whatever name it carries, so an upstream cannot overwrite a
//!   private package by reusing its `_id`;
//! * a version or build served here keeps its content (files, hashes, dependencies) when the
//!   upstream changes it: the store refuses such a change, and the held record stays
//!   served as it is (counted as rejected in the mirror's status);
//! * records the upstream deleted stay served: deleting one would start a new data epoch and
//!   make every client wipe its downloaded packages (`resetData`);
//! * a staged catalog with fewer records than the served one by more than
//!   [`MirrorConfig::max_shrink`](crate::MirrorConfig::max_shrink), or without a `METEOR`
//!   release the served catalog has, is held for an operator instead of applied.

use exosphere_catalog::mirror::{Claim, MirrorState};
use exosphere_catalog::record::RecordError;
use exosphere_catalog::{CatalogWriter, Collection, Lookup, PerCollection, Record, StoreError};
use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

/// What an upsert of one upstream record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Stored (new, changed or unchanged).
    Served,
    /// A record of another `_id` holds its name; not stored.
    Shadowed,
    /// The upstream changed the content of a version or build published here before (its
    /// files, hashes or dependencies), which never changes once served
    /// ([`exosphere_catalog::immutable`]); the held record stays served.
    Kept,
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

/// The names claimed for publishing here, read once per transaction (usually none, so most
/// records need no lookup for them).
pub(crate) struct Claims(BTreeSet<Claim>);

impl Claims {
    /// The claims as the transaction sees them.
    pub(crate) fn load(writer: &mut dyn CatalogWriter) -> Result<Claims, StoreError> {
        Ok(Claims(writer.mirror().claims()?.into_iter().collect()))
    }
}

/// The fields of a record that name it (borrowed; everything else is skipped unparsed).
#[derive(Default, Deserialize)]
struct Keys<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "packageName")]
    package_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    track: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "versionId")]
    version_id: Option<Cow<'a, str>>,
}

/// Stores one upstream record in the served catalog, unless its name is claimed for local
/// publishing or a record of another `_id` holds its name.
pub(crate) fn upsert_upstream(
    writer: &mut dyn CatalogWriter,
    claims: &mut Claims,
    record: &Record,
) -> Result<Applied, StoreError> {
    let collection = record.collection();
    let keys: Keys = serde_json::from_str(record.json()).unwrap_or_default();
    if is_claimed(writer, claims, collection, &keys)? {
        return Ok(Applied::Shadowed);
    }
    let held = writer.get(collection, record.id())?;
    if let Some(text) = &held {
        // An `_id` names one record: the upstream's record of a local record's `_id` (a
        // mistake, or an upstream that wants to overwrite a private package) is not the
        // same record, whatever name it carries.
        let held: Keys = serde_json::from_str(text).unwrap_or_default();
        if is_claimed(writer, claims, collection, &held)? {
            return Ok(Applied::Shadowed);
        }
    }
    if held.is_none() && name_is_taken(writer, collection, &keys)? {
        // A package or track of this name was made here: the name is this server's, so
        // none of the upstream's versions or releases of it are served either.
        let claim = match collection {
            Collection::Packages => keys.name.map(|name| Claim::Package(name.into_owned())),
            Collection::ReleaseTracks => keys.name.map(|name| Claim::Track(name.into_owned())),
            _ => None,
        };
        if let Some(claim) = claim {
            writer.mirror().claim(&claim)?;
            claims.0.insert(claim);
        }
        return Ok(Applied::Shadowed);
    }
    match writer.upsert(record) {
        Ok(_) => Ok(Applied::Served),
        Err(error @ (StoreError::Immutable { .. } | StoreError::PublishedVersionTaken { .. })) => {
            tracing::warn!(
                %error,
                "the upstream changed a published record's content, which never changes once \
                 served; the held record stays served"
            );
            Ok(Applied::Kept)
        }
        Err(error) => Err(error),
    }
}

/// Whether the record belongs to a name claimed for local publishing: a package's name, a
/// version's package, a build's version's package, a track's name, a release's track.
fn is_claimed(
    writer: &mut dyn CatalogWriter,
    claims: &Claims,
    collection: Collection,
    keys: &Keys<'_>,
) -> Result<bool, StoreError> {
    if claims.0.is_empty() {
        return Ok(false);
    }
    let package =
        |name: &Option<Cow<'_, str>>| name.as_deref().map(|n| Claim::Package(n.to_owned()));
    let claim = match collection {
        Collection::Packages => package(&keys.name),
        Collection::Versions => package(&keys.package_name),
        Collection::Builds => {
            let version = match &keys.version_id {
                Some(id) => writer.get(Collection::Versions, id)?,
                None => None,
            };
            version.and_then(|text| {
                let keys: Keys = serde_json::from_str(&text).unwrap_or_default();
                package(&keys.package_name)
            })
        }
        Collection::ReleaseTracks => keys.name.as_deref().map(|n| Claim::Track(n.to_owned())),
        Collection::ReleaseVersions => keys.track.as_deref().map(|n| Claim::Track(n.to_owned())),
    };
    Ok(claim.is_some_and(|claim| claims.0.contains(&claim)))
}

/// Whether the served catalog holds a record with this record's natural key (builds have
/// none).
fn name_is_taken(
    writer: &mut dyn CatalogWriter,
    collection: Collection,
    keys: &Keys<'_>,
) -> Result<bool, StoreError> {
    let (name, package, version, track) = (
        keys.name.as_deref(),
        keys.package_name.as_deref(),
        keys.version.as_deref(),
        keys.track.as_deref(),
    );
    let key = match collection {
        Collection::Packages => name.map(Lookup::Package),
        Collection::ReleaseTracks => name.map(Lookup::ReleaseTrack),
        Collection::Versions => package
            .zip(version)
            .map(|(package, version)| Lookup::Version { package, version }),
        Collection::ReleaseVersions => track
            .zip(version)
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
    let mut claims = Claims::load(writer)?;
    // A first mirror (nothing served, nothing claimed) moves in at once.
    let moved = if claims.0.is_empty() {
        writer.mirror().serve_stage()?
    } else {
        None
    };
    let (records, shadowed) = match moved {
        Some(records) => (records, 0),
        None => upsert_staged(writer, &mut claims)?,
    };
    writer.mirror().serve_staged_files()?;
    writer.mirror().clear_stage()?;
    state.token = state.staging_token.take();
    state.held = None;
    Ok(ApplyOutcome::Applied { records, shadowed })
}

/// Upserts the staged records into the served catalog one by one, by the rules of
/// [`upsert_upstream`]; returns how many were served and how many shadowed.
fn upsert_staged(
    writer: &mut dyn CatalogWriter,
    claims: &mut Claims,
) -> Result<(u64, u64), StoreError> {
    let (mut records, mut shadowed) = (0, 0);
    for collection in Collection::ALL {
        let mut after = String::new();
        loop {
            let batch = writer.mirror().staged(collection, &after, BATCH)?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = last.clone();
            for (id, text) in &batch {
                let record = match Record::from_json(collection, text) {
                    Ok(record) => record,
                    // Staged before records were bounded: left out, as the sink now leaves
                    // out such an upstream record, rather than stopping every apply.
                    Err(error @ RecordError::TooLarge { .. }) => {
                        tracing::warn!(%collection, id, %error, "a staged record is too large; left out");
                        continue;
                    }
                    Err(error) => {
                        return Err(StoreError::Corrupt(format!(
                            "a staged record is invalid: {error}"
                        )));
                    }
                };
                match upsert_upstream(writer, claims, &record)? {
                    Applied::Served => records += 1,
                    Applied::Shadowed => shadowed += 1,
                    Applied::Kept => {}
                }
            }
        }
    }
    Ok((records, shadowed))
}

/// Why a staged catalog must not replace the served one without an operator: it lost more
/// than `max_shrink` of the records, or a `METEOR` release the served catalog has.
fn hold_reason(
    writer: &mut dyn CatalogWriter,
    max_shrink: f64,
) -> Result<Option<String>, StoreError> {
    let total = |counts: PerCollection<u64>| Collection::ALL.iter().map(|&c| counts[c]).sum();
    let served: u64 = total(writer.mirror().served_counts()?);
    if served == 0 {
        // Nothing to lose (a first mirror): the stage need not be counted or searched.
        return Ok(None);
    }
    let staged: u64 = total(writer.mirror().staged_counts()?);
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
