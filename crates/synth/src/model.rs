//! The plan's records: the users, packages, versions and releases every pass must agree
//! on, and nothing more.

/// A publisher: package maintainers, `publishedBy`, `builtBy`.
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) id: String,
}

/// How a package record shows its (optional) homepage.
pub(crate) enum Homepage {
    Absent,
    Null,
    Url,
}

/// What the passes need to know about one package without re-deriving it.
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) id: String,
    /// Indices into `Plan::users`; versions are published by one of them.
    pub(crate) maintainers: Vec<usize>,
    pub(crate) homepage: Homepage,
    /// First version's publication; community packages are numbered in this order.
    pub(crate) created: i64,
    /// Publishes one build per host OS instead of one `os+web…` build.
    pub(crate) binary: bool,
    /// Final versions (with their dates) that dependencies and stats rows point at.
    pub(crate) picks: Vec<Pick>,
    pub(crate) last_updated: i64,
}

/// A version dependencies and stats rows may name, with when it appeared.
pub(crate) struct Pick {
    pub(crate) version: String,
    pub(crate) published: i64,
}

/// The identity of one package version, as every pass derives it.
#[derive(Clone)]
pub(crate) struct Ver {
    pub(crate) version: String,
    pub(crate) id: String,
    pub(crate) published: i64,
    /// For core packages, the METEOR release (index) that shipped this version.
    pub(crate) release: Option<usize>,
}

/// One release version of any track.
pub(crate) struct Release {
    /// Index into `Plan::tracks`.
    pub(crate) track: usize,
    pub(crate) version: String,
    pub(crate) id: String,
    pub(crate) published: i64,
    /// The METEOR release (index) whose tool and core packages this release ships.
    pub(crate) meteor: usize,
    /// The newest patch release of the same series, if newer than this one.
    pub(crate) patch: Option<usize>,
}

/// A release track (`METEOR` and the small preview tracks).
pub(crate) struct Track {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) id: String,
}
