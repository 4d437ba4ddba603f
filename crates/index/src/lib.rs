//! A local index of a Meteor package server's catalog: filled page by page from
//! `syncNewPackageData` results, queried offline (`search`, `show`, `deps`, `releases`) and by the server's JSON API.
//!
//! This crate knows nothing about DDP or WebSockets: the sync client hands it each page as
//! borrowed raw JSON ([`SyncPage`]) and it stores the page and its token in one SQLite
//! transaction, so an interrupted sync resumes after the last whole page.
//!
//! * `handle`: the [`Index`] itself (opening, rebuilding, applying pages, counts) and where
//!   its file lives by default.
//! * `query`: [`Index::show`], [`Index::deps`], [`Index::releases`] and their typed,
//!   serializable results.
//! * `search`: [`Index::find`] (and the CLI's [`Index::search`]): ranked search with sort
//!   orders and filters, the one search the CLI, the JSON API and the pages share.
//! * `adds`: recent usage per package ([`Index::replace_adds`]), which search boosts by,
//!   and the most-added and trending lists.
//! * `listing`: [`Index::versions`], [`Index::dependents`], [`Index::summaries`],
//!   [`Index::browse`], [`Index::recently_published`], [`Index::new_packages`] and
//!   [`Index::release`], one page or several names at a time, and [`Index::is_ready`].
//! * `ingest`: parsing records and filling the typed and derived tables.
//! * `readme`: the README file a version names ([`ReadmeFile`]) and [`ReadmeTexts`], how a
//!   writer that can read those files gives full-text search their text.
//! * `schema`: the tables, `PRAGMA user_version` and what is checked on open.

mod adds;
mod error;
mod handle;
mod ingest;
mod listing;
mod query;
mod readme;
mod schema;
mod search;

pub use adds::PackageAdds;
pub use error::IndexError;
pub use exosphere_meteor::MeteorVersion;
pub use handle::{Index, default_index_path};
pub use ingest::{PageApplied, SyncPage};
pub use listing::{DatedPackage, Listing, PinnedPackage, ReleaseContents};
pub use query::{
    Build, DepNode, Dependency, DepsReport, Export, PackageInfo, Reference, ReleaseMembership,
    ReleaseSummary, Releases, SearchHit, TrackSummary, VersionInfo, VersionSummary,
    constraint_admits,
};
pub use readme::{README_SEARCH_BYTES, ReadmeFile, ReadmeTexts, searched};
pub use schema::SCHEMA_VERSION;
pub use search::{Search, SearchSort};
