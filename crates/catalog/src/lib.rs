//! The Meteor package catalog: validated records, the storage interface every backend
//! implements (backends are crates of their own, e.g. `exosphere-catalog-sqlite`), and
//! what is built on it: the `syncNewPackageData` paging logic, NDJSON dumps, daily stats,
//! usage, accounts, and a live view of the catalog state.
//!
//! This crate knows nothing about WebSockets or DDP: the server hands it JSON values and
//! splices the JSON text it returns.
//!
//! * [`accounts`]: users, organizations, login tokens, upload tickets, pending publishes.
//! * [`audit`]: the audit log of publishing and administrative actions.
//! * [`bulk`]: every stored row out of one snapshot, and bulk loads into an empty store,
//!   for moving a catalog between backends.
//! * [`columns`]: what every SQL backend stores the same way (conversions, table names,
//!   epochs, stats rows and ranges).
//! * [`day`]: the `YYYY-MM-DD` UTC days of stats URLs, rows and recordings.
//! * [`error`]: [`StoreError`], shared by the store and everything built on it.
//! * [`immutable`]: the rule that a published version's content never changes.
//! * [`files`]: the files records and mirror rows refer to, for backups and their checks.
//! * [`mirror`]: what the upstream mirror keeps in the store (its state, a staged catalog,
//!   the upstream files behind mirrored file URLs), committed with the records.
//! * [`record`]: [`Record`] and [`StatsRow`] (the collections are `exosphere-meteor`'s).
//! * [`replica`]: a server's local copy of a shared catalog's records, answering sync pages.
//! * [`store`]: the [`CatalogStore`] trait every backend implements, and its contract.
//! * [`sync`]: [`sync_new_package_data`] (spec §3).
//! * [`page_cache`]: [`Syncer`], which answers sync calls with pages computed ahead, kept
//!   in memory and (`page_disk`) in files.
//! * [`dump`]: NDJSON [`import`](dump::import) and [`export`](dump::export).
//! * [`stats`]: `/stats/v1/<day>` bodies and per-package date ranges with trends.
//! * [`usage`]: `recordAppPackages` reports, group-commit recording and daily rollups.
//! * [`transact`]: [`write_or_refuse`], a write transaction whose body may refuse for a
//!   reason of the caller's own.
//! * [`watch`](mod@watch): polls the state so other processes' writes are seen live.
//! * `conformance` (feature `testing`): the store contract as tests every backend runs.

pub mod accounts;
pub mod audit;
pub mod bulk;
pub mod columns;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod day;
pub mod dump;
pub mod error;
pub mod files;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod immutable;
pub mod mirror;
pub mod page_cache;
mod page_disk;
pub mod record;
pub mod replica;
mod scan;
pub mod stats;
pub mod store;
pub mod sync;
pub mod transact;
pub mod usage;
pub mod watch;

pub use error::StoreError;
pub use exosphere_meteor::{Collection, PerCollection};
pub use page_cache::{PageText, Syncer};
pub use page_disk::StoredText;
pub use record::{Record, StatsRow};
pub use store::Lookup;
pub use store::{CatalogState, CatalogStore, CatalogWriter, Snapshot};
pub use sync::{Answer, NextCall, Paging, SyncError, sync_new_package_data};
pub use transact::{Refusal, write_or_refuse};
pub use watch::watch;
