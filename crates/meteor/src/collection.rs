//! The five collections a Meteor package server syncs (spec §3.2), their wire names, and
//! [`PerCollection`], one value per collection.

use std::fmt;
use std::ops::{Index, IndexMut};
use std::str::FromStr;

/// One of the five collections that `syncNewPackageData` delivers (spec §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// `packages`: one record per package.
    Packages,
    /// `versions`: one record per package version.
    Versions,
    /// `builds`: one record per published build of a version.
    Builds,
    /// `releaseTracks`: one record per release track (e.g. `METEOR`).
    ReleaseTracks,
    /// `releaseVersions`: one record per release version.
    ReleaseVersions,
}

impl Collection {
    /// Every collection, in the order sync results and dumps list them.
    pub const ALL: [Collection; 5] = [
        Collection::Packages,
        Collection::Versions,
        Collection::Builds,
        Collection::ReleaseTracks,
        Collection::ReleaseVersions,
    ];

    /// The wire name, as used in sync results, tokens and dump lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            Collection::Packages => "packages",
            Collection::Versions => "versions",
            Collection::Builds => "builds",
            Collection::ReleaseTracks => "releaseTracks",
            Collection::ReleaseVersions => "releaseVersions",
        }
    }

    /// Position in [`Collection::ALL`], used to index [`PerCollection`].
    const fn index(self) -> usize {
        match self {
            Collection::Packages => 0,
            Collection::Versions => 1,
            Collection::Builds => 2,
            Collection::ReleaseTracks => 3,
            Collection::ReleaseVersions => 4,
        }
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a collection name that is not one of the five wire names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown collection {0:?} (expected packages, versions, builds, releaseTracks or releaseVersions)"
)]
pub struct UnknownCollection(pub String);

impl FromStr for Collection {
    type Err = UnknownCollection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Collection::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCollection(s.to_owned()))
    }
}

/// One value per collection (cursors, change counters, page contents, counts), so that
/// code handling all five collections cannot forget one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerCollection<T>([T; 5]);

impl<T> PerCollection<T> {
    /// Builds the five values by calling `f` for each collection in [`Collection::ALL`] order.
    pub fn from_fn(f: impl FnMut(Collection) -> T) -> Self {
        PerCollection(Collection::ALL.map(f))
    }

    /// Iterates over `(collection, value)` in [`Collection::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Collection, &T)> {
        Collection::ALL.into_iter().zip(self.0.iter())
    }
}

impl<T> Index<Collection> for PerCollection<T> {
    type Output = T;

    fn index(&self, collection: Collection) -> &T {
        &self.0[collection.index()]
    }
}

impl<T> IndexMut<Collection> for PerCollection<T> {
    fn index_mut(&mut self, collection: Collection) -> &mut T {
        &mut self.0[collection.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_round_trip() {
        for c in Collection::ALL {
            assert_eq!(c.as_str().parse::<Collection>(), Ok(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(
            "stats".parse::<Collection>(),
            Err(UnknownCollection("stats".into()))
        );
        assert!("Packages".parse::<Collection>().is_err());
    }

    #[test]
    fn per_collection_indexes_each_collection() {
        let mut per = PerCollection::from_fn(|c| c.as_str().len());
        per[Collection::Builds] = 99;
        let all: Vec<_> = per.iter().map(|(c, v)| (c, *v)).collect();
        assert_eq!(all[2], (Collection::Builds, 99));
        assert_eq!(all[4], (Collection::ReleaseVersions, 15));
    }
}
