//! The per-session merge box: what the client currently sees, and who put it there.
//!
//! Several subscriptions of one session may publish the same document. The client's
//! store throws on an `added` for an id it already has and on a `changed`/`removed` for an
//! id it does not have (spec §1.2 client constraints), so the server keeps, per document,
//! the set of subscriptions that published it and, per field, each subscription's value
//! in precedence order (the first one is visible). This is Meteor's `SessionCollectionView`
//! / `SessionDocumentView`; every operation returns the single message (if any) that
//! brings the client's view up to date.

use std::collections::{BTreeSet, HashMap, HashSet};

use exosphere_ejson::{Ejson, EjsonMap};
use indexmap::IndexMap;

use crate::message::ServerMessage;

/// Identifies one subscription inside a session (unlike the client's sub id, never reused).
pub(crate) type SubKey = u64;

/// A message for the client produced by a merge-box operation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    Added {
        collection: String,
        id: String,
        fields: Ejson,
    },
    Changed {
        collection: String,
        id: String,
        fields: Ejson,
        cleared: Vec<String>,
    },
    Removed {
        collection: String,
        id: String,
    },
}

impl Change {
    /// The frame announcing this change.
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::Added {
                collection,
                id,
                fields,
            } => ServerMessage::Added {
                collection,
                id,
                fields,
            },
            Self::Changed {
                collection,
                id,
                fields,
                cleared,
            } => ServerMessage::Changed {
                collection,
                id,
                fields,
                cleared,
            },
            Self::Removed { collection, id } => ServerMessage::Removed { collection, id },
        }
        .encode()
    }
}

/// A subscription touched a document it never published (a publication bug; Meteor throws).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotPublished;

/// The client's view of every collection of one session.
#[derive(Debug, Default)]
pub(crate) struct MergeBox {
    collections: HashMap<String, HashMap<String, DocumentView>>,
    /// The documents each subscription publishes, to retract them when it stops.
    published_by: HashMap<SubKey, BTreeSet<(String, String)>>,
}

/// One document: who publishes it and every field's values by precedence.
#[derive(Debug, Default)]
struct DocumentView {
    owners: HashSet<SubKey>,
    fields: IndexMap<String, Vec<(SubKey, Ejson)>>,
}

/// Field updates for the client: `Some` sets a value, `None` clears the field.
#[derive(Debug, Default)]
struct Collector(IndexMap<String, Option<Ejson>>);

impl MergeBox {
    /// `sub` publishes document `id` with `fields`.
    ///
    /// Yields `added` for a document new to the client, otherwise `changed` for the
    /// visible fields it alters (or nothing).
    pub(crate) fn added(
        &mut self,
        sub: SubKey,
        collection: &str,
        id: &str,
        fields: EjsonMap,
    ) -> Option<Change> {
        let documents = self.collections.entry(collection.to_owned()).or_default();
        let is_new = !documents.contains_key(id);
        let view = documents.entry(id.to_owned()).or_default();
        view.owners.insert(sub);
        self.published_by
            .entry(sub)
            .or_default()
            .insert((collection.to_owned(), id.to_owned()));
        let mut collector = Collector::default();
        for (key, value) in fields {
            view.change_field(sub, key, value, &mut collector);
        }
        if is_new {
            Some(Change::Added {
                collection: collection.to_owned(),
                id: id.to_owned(),
                fields: Ejson::Object(collector.into_fields()),
            })
        } else {
            collector.into_change(collection, id)
        }
    }

    /// `sub` sets `fields` and clears `cleared` on a document it publishes.
    pub(crate) fn changed(
        &mut self,
        sub: SubKey,
        collection: &str,
        id: &str,
        fields: EjsonMap,
        cleared: Vec<String>,
    ) -> Result<Option<Change>, NotPublished> {
        let view = self.published_view(sub, collection, id)?;
        let mut collector = Collector::default();
        for (key, value) in fields {
            view.change_field(sub, key, value, &mut collector);
        }
        for key in cleared {
            view.clear_field(sub, &key, &mut collector);
        }
        Ok(collector.into_change(collection, id))
    }

    /// `sub` stops publishing a document: `removed` if nobody else publishes it, otherwise
    /// `changed` for the fields whose visible value depended on `sub`.
    pub(crate) fn removed(
        &mut self,
        sub: SubKey,
        collection: &str,
        id: &str,
    ) -> Result<Option<Change>, NotPublished> {
        let view = self.published_view(sub, collection, id)?;
        view.owners.remove(&sub);
        let change = if view.owners.is_empty() {
            self.forget_document(collection, id);
            Some(Change::Removed {
                collection: collection.to_owned(),
                id: id.to_owned(),
            })
        } else {
            let mut collector = Collector::default();
            let keys: Vec<String> = view.fields.keys().cloned().collect();
            for key in keys {
                view.clear_field(sub, &key, &mut collector);
            }
            collector.into_change(collection, id)
        };
        if let Some(documents) = self.published_by.get_mut(&sub) {
            documents.remove(&(collection.to_owned(), id.to_owned()));
            if documents.is_empty() {
                self.published_by.remove(&sub);
            }
        }
        Ok(change)
    }

    /// Retracts everything `sub` published (on `unsub`, `nosub`, or a failed start).
    pub(crate) fn remove_subscription(&mut self, sub: SubKey) -> Vec<Change> {
        let documents = self.published_by.get(&sub).cloned().unwrap_or_default();
        documents
            .iter()
            .filter_map(|(collection, id)| self.removed(sub, collection, id).ok().flatten())
            .collect()
    }

    fn published_view(
        &mut self,
        sub: SubKey,
        collection: &str,
        id: &str,
    ) -> Result<&mut DocumentView, NotPublished> {
        self.collections
            .get_mut(collection)
            .and_then(|documents| documents.get_mut(id))
            .filter(|view| view.owners.contains(&sub))
            .ok_or(NotPublished)
    }

    fn forget_document(&mut self, collection: &str, id: &str) {
        if let Some(documents) = self.collections.get_mut(collection) {
            documents.remove(id);
            if documents.is_empty() {
                self.collections.remove(collection);
            }
        }
    }
}

impl DocumentView {
    /// Meteor's `changeField`: record `sub`'s value; visible only if it has precedence.
    fn change_field(&mut self, sub: SubKey, key: String, value: Ejson, collector: &mut Collector) {
        // The publish API ignores `_id` in fields: it is the document id.
        if key == "_id" {
            return;
        }
        match self.fields.get_mut(&key) {
            None => {
                collector.set(&key, value.clone());
                self.fields.insert(key, vec![(sub, value)]);
            }
            Some(precedence) => match precedence.iter().position(|(owner, _)| *owner == sub) {
                Some(position) => {
                    if position == 0 && precedence[0].1 != value {
                        collector.set(&key, value.clone());
                    }
                    precedence[position].1 = value;
                }
                None => precedence.push((sub, value)),
            },
        }
    }

    /// Meteor's `clearField`: drop `sub`'s value; the next one in line becomes visible.
    fn clear_field(&mut self, sub: SubKey, key: &str, collector: &mut Collector) {
        if key == "_id" {
            return;
        }
        let Some(precedence) = self.fields.get_mut(key) else {
            return;
        };
        let Some(position) = precedence.iter().position(|(owner, _)| *owner == sub) else {
            return;
        };
        let (_, removed) = precedence.remove(position);
        match precedence.first() {
            None => {
                self.fields.shift_remove(key);
                collector.clear(key);
            }
            Some((_, now_visible)) if position == 0 && *now_visible != removed => {
                collector.set(key, now_visible.clone());
            }
            Some(_) => {}
        }
    }
}

impl Collector {
    fn set(&mut self, key: &str, value: Ejson) {
        self.0.insert(key.to_owned(), Some(value));
    }

    fn clear(&mut self, key: &str) {
        self.0.insert(key.to_owned(), None);
    }

    /// The set values only (a new document has nothing to clear).
    fn into_fields(self) -> EjsonMap {
        self.0
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key, v)))
            .collect()
    }

    /// A `changed` message, or `None` when nothing visible changed.
    fn into_change(self, collection: &str, id: &str) -> Option<Change> {
        if self.0.is_empty() {
            return None;
        }
        let mut fields = EjsonMap::new();
        let mut cleared = Vec::new();
        for (key, value) in self.0 {
            match value {
                Some(value) => {
                    fields.insert(key, value);
                }
                None => cleared.push(key),
            }
        }
        Some(Change::Changed {
            collection: collection.to_owned(),
            id: id.to_owned(),
            fields: Ejson::Object(fields),
            cleared,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, i64)]) -> EjsonMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Ejson::from(*v)))
            .collect()
    }

    fn added(pairs: &[(&str, i64)]) -> Change {
        Change::Added {
            collection: "c".to_owned(),
            id: "d".to_owned(),
            fields: Ejson::Object(map(pairs)),
        }
    }

    fn changed(pairs: &[(&str, i64)], cleared: &[&str]) -> Change {
        Change::Changed {
            collection: "c".to_owned(),
            id: "d".to_owned(),
            fields: Ejson::Object(map(pairs)),
            cleared: cleared.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn removed() -> Change {
        Change::Removed {
            collection: "c".to_owned(),
            id: "d".to_owned(),
        }
    }

    #[test]
    fn single_subscription_lifecycle() {
        let mut mb = MergeBox::default();
        assert_eq!(
            mb.added(1, "c", "d", map(&[("a", 1), ("b", 2)])),
            Some(added(&[("a", 1), ("b", 2)]))
        );
        assert_eq!(mb.changed(1, "c", "d", map(&[("a", 1)]), vec![]), Ok(None));
        assert_eq!(
            mb.changed(1, "c", "d", map(&[("a", 5)]), vec!["b".to_owned()]),
            Ok(Some(changed(&[("a", 5)], &["b"])))
        );
        assert_eq!(mb.removed(1, "c", "d"), Ok(Some(removed())));
        assert!(mb.collections.is_empty());
        assert!(mb.published_by.is_empty());
    }

    #[test]
    fn overlapping_subscriptions_never_double_add() {
        let mut mb = MergeBox::default();
        assert_eq!(
            mb.added(1, "c", "d", map(&[("a", 1)])),
            Some(added(&[("a", 1)]))
        );
        // Same document from a second subscription: only the new field shows.
        assert_eq!(
            mb.added(2, "c", "d", map(&[("a", 9), ("b", 2)])),
            Some(changed(&[("b", 2)], &[]))
        );
        // Sub 1 has precedence on `a`; sub 2 changing it is invisible.
        assert_eq!(mb.changed(2, "c", "d", map(&[("a", 10)]), vec![]), Ok(None));
        // Sub 1 leaves: `a` falls back to sub 2's value, the document stays.
        assert_eq!(
            mb.removed(1, "c", "d"),
            Ok(Some(changed(&[("a", 10)], &[])))
        );
        assert_eq!(mb.removed(2, "c", "d"), Ok(Some(removed())));
    }

    #[test]
    fn leaving_subscription_clears_fields_only_it_had() {
        let mut mb = MergeBox::default();
        mb.added(1, "c", "d", map(&[("a", 1), ("only1", 1)]));
        mb.added(2, "c", "d", map(&[("a", 1)]));
        assert_eq!(mb.remove_subscription(1), vec![changed(&[], &["only1"])]);
        assert_eq!(mb.remove_subscription(2), vec![removed()]);
        assert_eq!(mb.remove_subscription(3), vec![]);
    }

    #[test]
    fn misuse_is_reported_not_forwarded() {
        let mut mb = MergeBox::default();
        assert_eq!(mb.changed(1, "c", "d", map(&[]), vec![]), Err(NotPublished));
        assert_eq!(mb.removed(1, "c", "d"), Err(NotPublished));
        mb.added(1, "c", "d", map(&[]));
        assert_eq!(mb.removed(2, "c", "d"), Err(NotPublished));
        assert_eq!(
            mb.changed(2, "c", "d", map(&[("a", 1)]), vec![]),
            Err(NotPublished)
        );
    }

    #[test]
    fn id_field_is_ignored() {
        let mut mb = MergeBox::default();
        assert_eq!(
            mb.added(1, "c", "d", map(&[("_id", 1), ("a", 1)])),
            Some(added(&[("a", 1)]))
        );
        assert_eq!(
            mb.changed(1, "c", "d", map(&[("_id", 2)]), vec!["_id".to_owned()]),
            Ok(None)
        );
    }

    /// A client store that fails exactly where Meteor's client throws.
    #[derive(Default)]
    struct ClientStore(HashMap<(String, String), EjsonMap>);

    impl ClientStore {
        fn apply(&mut self, change: Change) -> Result<(), String> {
            match change {
                Change::Added {
                    collection,
                    id,
                    fields,
                } => {
                    let key = (collection, id);
                    if self.0.contains_key(&key) {
                        return Err(format!("added for present {key:?}"));
                    }
                    self.0
                        .insert(key, fields.as_object().cloned().unwrap_or_default());
                }
                Change::Changed {
                    collection,
                    id,
                    fields,
                    cleared,
                } => {
                    let doc = self
                        .0
                        .get_mut(&(collection, id))
                        .ok_or("changed for unknown id")?;
                    for (k, v) in fields.as_object().cloned().unwrap_or_default() {
                        doc.insert(k, v);
                    }
                    for k in cleared {
                        doc.shift_remove(&k);
                    }
                }
                Change::Removed { collection, id } => {
                    self.0
                        .remove(&(collection, id))
                        .ok_or("removed for unknown id")?;
                }
            }
            Ok(())
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(SubKey, u8, Vec<(u8, i64)>),
        Change(SubKey, u8, Vec<(u8, i64)>, Vec<u8>),
        Remove(SubKey, u8),
        Stop(SubKey),
    }

    fn op() -> impl Strategy<Value = Op> {
        let sub = 0..3_u64;
        let doc = 0..3_u8;
        let fields = prop::collection::vec((0..3_u8, 0..3_i64), 0..3);
        prop_oneof![
            (sub.clone(), doc.clone(), fields.clone()).prop_map(|(s, d, f)| Op::Add(s, d, f)),
            (
                sub.clone(),
                doc.clone(),
                fields,
                prop::collection::vec(0..3_u8, 0..2)
            )
                .prop_map(|(s, d, f, c)| Op::Change(s, d, f, c)),
            (sub.clone(), doc).prop_map(|(s, d)| Op::Remove(s, d)),
            sub.prop_map(Op::Stop),
        ]
    }

    fn fields_of(pairs: &[(u8, i64)]) -> EjsonMap {
        pairs
            .iter()
            .map(|(k, v)| (format!("f{k}"), Ejson::from(*v)))
            .collect()
    }

    proptest! {
        /// Whatever overlapping publications do, the client never sees an impossible
        /// message and ends up with exactly the documents some subscription still publishes.
        #[test]
        fn client_view_stays_consistent(ops in prop::collection::vec(op(), 0..40)) {
            let mut mb = MergeBox::default();
            let mut client = ClientStore::default();
            for op in ops {
                let changes: Vec<Change> = match op {
                    Op::Add(s, d, f) => mb.added(s, "c", &d.to_string(), fields_of(&f)).into_iter().collect(),
                    Op::Change(s, d, f, c) => mb
                        .changed(s, "c", &d.to_string(), fields_of(&f), c.iter().map(|k| format!("f{k}")).collect())
                        .ok().flatten().into_iter().collect(),
                    Op::Remove(s, d) => mb.removed(s, "c", &d.to_string()).ok().flatten().into_iter().collect(),
                    Op::Stop(s) => mb.remove_subscription(s),
                };
                for change in changes {
                    prop_assert_eq!(client.apply(change), Ok(()));
                }
            }
            let server_docs: HashSet<(String, String)> = mb
                .collections
                .iter()
                .flat_map(|(c, docs)| docs.keys().map(move |id| (c.clone(), id.clone())))
                .collect();
            let client_docs: HashSet<(String, String)> = client.0.keys().cloned().collect();
            prop_assert_eq!(server_docs, client_docs);
            for ((c, id), fields) in &client.0 {
                let view = &mb.collections[c][id];
                let visible: EjsonMap = view.fields.iter().map(|(k, p)| (k.clone(), p[0].1.clone())).collect();
                prop_assert_eq!(&visible, fields);
            }
        }
    }
}
