//! The upstream mirror: keeps Exosphere's catalog a copy of another package server's
//! (packages.meteor.com, or another Exosphere), beside Exosphere's own packages, and never lets
//! the upstream's failures reach Exosphere's clients.
//!
//! One job, done with three tools it does not own: the sync client's page loop
//! (`exosphere-sync-client`) pages the upstream catalog, the catalog store keeps it (every
//! page commits with the upstream token that resumes after it), and Exosphere's clients sync
//! from the store by Exosphere's own sequence numbers, never by the upstream's tokens.
//!
//! * `config`: what a mirror is pointed at and how it paces itself;
//! * `files`: the file URLs of mirrored records, rewritten to Exosphere's own;
//! * `fetch`: those files fetched once, verified, streamed to clients and cached;
//! * `sink`: pages into the store, straight into the served catalog or into a staged one;
//! * `apply`: a staged catalog compared with the served one, then applied or held;
//! * `status`: what the mirror is doing, for `/healthz` and logs;
//! * [`bundle`]: a mirror's catalog and files carried to a machine that never reaches the
//!   upstream;
//! * [`prefetch`]: the files chosen releases, apps or packages need, fetched ahead of time;
//! * `run`: the background job: connect, sync, follow `changes`, poll, back off.

mod apply;
pub mod bundle;
mod config;
mod fetch;
mod files;
pub mod prefetch;
mod run;
mod sink;
mod status;

pub use apply::{ApplyOutcome, apply_staged};
pub use config::MirrorConfig;
pub use fetch::{FileError, FileStats, FilesConfig, MirrorFiles};
pub use files::{FILES_PATH, file_key, key_of, served_url};
pub use run::run;
pub use status::{MirrorPhase, MirrorStatus};
