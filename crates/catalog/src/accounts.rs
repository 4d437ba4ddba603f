//! Accounts and publishing state: users, organizations, login tokens, upload tickets and
//! pending (not yet visible) versions, builds and READMEs.
//!
//! None of this is synced to clients: it lives beside the five record collections, in
//! the same database, so that a publish can check its ticket and make its records visible
//! in one transaction ([`crate::CatalogWriter::accounts`]). The catalog only stores these
//! rows; the rules (who may publish what, token lifetimes) belong to the server.
//!
//! Secrets are never stored: login tokens and upload tickets are kept as the SHA-256 of
//! the random text handed out ([`secret_hash`]), so a copy of the database does not let
//! anyone log in or upload.

use sha2::{Digest as _, Sha256};

use crate::error::StoreError;

/// A person who may log in and publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id, used in `maintainers`, `publishedBy` and login results.
    pub id: String,
    /// Unique name; also the package-name prefix the user owns (`name:pkg`).
    pub username: String,
    /// Administrators may create top-level (unprefixed) packages and act on every
    /// package and release track.
    pub admin: bool,
}

/// A package-name prefix that several users may publish under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// Stable id, used in `maintainers` entries.
    pub id: String,
    /// Unique name, shared with usernames (a prefix has one owner).
    pub name: String,
}

/// A login token as stored: its hash, never its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Short public id, to name the token in `token list` and `token revoke`.
    pub id: String,
    /// [`secret_hash`] of the token text.
    pub hash: String,
    /// The user the token logs in as.
    pub user_id: String,
    /// Creation time, ms since the Unix epoch.
    pub created: i64,
    /// Expiry time, ms since the Unix epoch.
    pub expires: i64,
}

/// Where an upload URL stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadState {
    /// Handed out, nothing received yet.
    Open,
    /// A PUT is streaming its body right now; a second PUT is refused.
    Receiving,
    /// The bytes are stored in the staging blob.
    Received {
        /// Size in bytes.
        size: u64,
        /// Base64 SHA-256 of the bytes, as the tool computes `tarballHash` (spec §8.2).
        sha256: String,
    },
}

impl UploadState {
    /// The state as backends store it: its name (`open`, `receiving`, `received`), and the
    /// size and hash of a received file.
    pub fn columns(&self) -> Result<(&'static str, Option<i64>, Option<&str>), StoreError> {
        Ok(match self {
            UploadState::Open => ("open", None, None),
            UploadState::Receiving => ("receiving", None, None),
            UploadState::Received { size, sha256 } => (
                "received",
                Some(crate::columns::to_i64(*size, "upload size")?),
                Some(sha256.as_str()),
            ),
        })
    }

    /// The state stored as [`UploadState::columns`]; anything else is corruption.
    pub fn from_columns(
        state: &str,
        size: Option<i64>,
        sha256: Option<String>,
    ) -> Result<UploadState, StoreError> {
        match (state, size, sha256) {
            ("open", _, _) => Ok(UploadState::Open),
            ("receiving", _, _) => Ok(UploadState::Receiving),
            ("received", Some(size), Some(sha256)) => Ok(UploadState::Received {
                size: crate::columns::to_u64(size, "upload size")?,
                sha256,
            }),
            (other, _, _) => Err(StoreError::Corrupt(format!("upload state {other:?}"))),
        }
    }
}

/// One upload URL: single-use, expiring, bound to one staging blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The blob key the PUT body is written to.
    pub staging: String,
    /// The blob key the file gets once its publish call verified it.
    pub destination: String,
    /// Largest body accepted, in bytes.
    pub max_size: u64,
    /// Expiry time, ms since the Unix epoch.
    pub expires: i64,
    /// Progress of the upload.
    pub state: UploadState,
}

/// An upload ticket as a PUT to its URL sees it: the ticket and the user whose pending
/// publish it belongs to, so the server can cap the uploads each user runs at once before
/// it takes a slot or a write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTicket {
    /// The ticket.
    pub upload: Upload,
    /// The id of the user who started the publish the ticket belongs to.
    pub user_id: String,
}

/// What the other running servers of a catalog are receiving
/// ([`AccountWriter::receiving_elsewhere`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceivingElsewhere {
    /// Whether the ticket asked about is receiving a body through another running server.
    pub ticket: bool,
    /// How many of the user's tickets other running servers receive.
    pub by_user: u64,
}

/// What a pending publish will make visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingKind {
    /// `createPackageVersion`: a version record, its source tarball and README.
    Version,
    /// `createPackageBuild`: a build record and its tarball.
    Build,
    /// `createReadme`: a new README for a published version.
    Readme,
}

impl PendingKind {
    /// The stored spelling, for backends.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingKind::Version => "version",
            PendingKind::Build => "build",
            PendingKind::Readme => "readme",
        }
    }

    /// Reads the stored spelling back; an unknown one means corrupt data.
    pub fn parse(text: &str) -> Result<PendingKind, StoreError> {
        match text {
            "version" => Ok(PendingKind::Version),
            "build" => Ok(PendingKind::Build),
            "readme" => Ok(PendingKind::Readme),
            other => Err(StoreError::Corrupt(format!(
                "unknown pending kind {other:?}"
            ))),
        }
    }
}

/// A publish in progress, found by the hash of the `uploadToken` handed to the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// What it publishes.
    pub kind: PendingKind,
    /// What it is about (e.g. `acme:widget@1.0.0`, plus the architectures for a build);
    /// a new pending publish of the same kind and subject replaces the old one, so a
    /// crashed publish can be retried.
    pub subject: String,
    /// Who started it; only they may finish it.
    pub user_id: String,
    /// Server-defined JSON text describing the record to write at publish time.
    pub record: String,
    /// Hashes of the upload tickets whose files the publish needs, in a fixed order.
    pub uploads: Vec<String>,
    /// Expiry time, ms since the Unix epoch.
    pub expires: i64,
}

/// The SHA-256 of a secret (login token or upload ticket), in lowercase hex: what is
/// stored and looked up instead of the secret itself.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The account and publishing operations available inside a write transaction, beside
/// the record operations of [`crate::CatalogWriter`]. Every method works on that
/// transaction, so checks and changes commit together.
pub trait AccountWriter {
    /// The user with this name.
    fn user_by_name(&mut self, username: &str) -> Result<Option<User>, StoreError>;
    /// The user with this id.
    fn user_by_id(&mut self, id: &str) -> Result<Option<User>, StoreError>;
    /// Every user, by name.
    fn users(&mut self) -> Result<Vec<User>, StoreError>;
    /// Stores a new user; the caller checked the name is free (also among orgs).
    fn insert_user(&mut self, user: &User) -> Result<(), StoreError>;

    /// The organization with this name.
    fn org_by_name(&mut self, name: &str) -> Result<Option<Org>, StoreError>;
    /// Stores a new organization; the caller checked the name is free (also among users).
    fn insert_org(&mut self, org: &Org) -> Result<(), StoreError>;
    /// Makes a user a member of an organization (no-op if already a member).
    fn add_org_member(&mut self, org_id: &str, user_id: &str) -> Result<(), StoreError>;
    /// Whether the user is a member of the organization.
    fn is_org_member(&mut self, org_id: &str, user_id: &str) -> Result<bool, StoreError>;
    /// The usernames of an organization's members, by name.
    fn org_members(&mut self, org_id: &str) -> Result<Vec<String>, StoreError>;

    /// Stores a login token (by hash).
    fn insert_token(&mut self, token: &Token) -> Result<(), StoreError>;
    /// The token whose text hashes to `hash`.
    fn token_by_hash(&mut self, hash: &str) -> Result<Option<Token>, StoreError>;
    /// A user's tokens (every user's when `user_id` is `None`), oldest first.
    fn tokens(&mut self, user_id: Option<&str>) -> Result<Vec<Token>, StoreError>;
    /// Deletes the token with this public id and withdraws every unfinished publish of its
    /// user (deleted, their upload tickets retired, so their upload URLs stop taking
    /// bodies): a stolen token's publishes cannot be told from the user's others, and the
    /// user can publish again. Returns how many publishes were withdrawn, or `None` when
    /// there is no such token.
    fn revoke_token(&mut self, id: &str) -> Result<Option<u64>, StoreError>;

    /// Stores or replaces an upload ticket, found by the hash of its URL secret. A ticket put
    /// [`UploadState::Receiving`] has no owner: no server's [`AccountWriter::end_receiving`]
    /// ends it, and [`AccountWriter::reopen_abandoned_uploads`] reopens it.
    fn put_upload(&mut self, hash: &str, upload: &Upload) -> Result<(), StoreError>;
    /// Records how a PUT to the ticket ended (`outcome`: received, or open again after a
    /// failure), and that no server receives it any more, only if the ticket is still the
    /// one the PUT claimed: still receiving through the server whose seat is `server`
    /// ([`AccountWriter::start_receiving`]) and unexpired at `now` (ms). Returns whether it
    /// was; if not, the ticket was retired (its publish replaced or finished), swept, or
    /// expired while the body arrived, and must stay so: writing the claimed copy back would
    /// undo that; or another server claimed it meanwhile (this server's seat lapsed, so its
    /// mark looked abandoned), and that server's claim, and the staging blob it writes, are
    /// not this server's to end. A backend on which only one server can run at a time has no
    /// other server's claims.
    fn end_receiving(
        &mut self,
        hash: &str,
        server: &str,
        outcome: &UploadState,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// The upload ticket with this hash.
    fn upload(&mut self, hash: &str) -> Result<Option<Upload>, StoreError>;
    /// Deletes an upload ticket.
    fn delete_upload(&mut self, hash: &str) -> Result<(), StoreError>;

    /// Stores or replaces a pending publish, found by the hash of its `uploadToken`.
    fn put_pending(&mut self, hash: &str, pending: &Pending) -> Result<(), StoreError>;
    /// The pending publish with this hash.
    fn pending(&mut self, hash: &str) -> Result<Option<Pending>, StoreError>;
    /// The hashes of the pending publishes of one kind and subject.
    fn pending_for(&mut self, kind: PendingKind, subject: &str) -> Result<Vec<String>, StoreError>;
    /// How many unexpired pending publishes (at `now`, ms) a user has: the publishing
    /// service caps it, so one account cannot fill the store with upload tickets.
    fn open_pending_of(&mut self, user_id: &str, now: i64) -> Result<u64, StoreError>;
    /// Deletes a pending publish (its upload tickets are deleted separately).
    fn delete_pending(&mut self, hash: &str) -> Result<(), StoreError>;
    /// Makes an upload ticket expired now, whatever its state: it can no longer be used,
    /// and it stays as the record of a staging blob to delete until the sweep deleted
    /// that blob and then the ticket ([`AccountWriter::expired_uploads`]). A crash between
    /// this transaction and the blob's deletion therefore loses nothing.
    fn retire_upload(&mut self, hash: &str) -> Result<(), StoreError>;
    /// Marks the ticket receiving a body through the server whose seat is `server`
    /// ([`crate::store::ServerSeat::id`]), so that the other servers of the catalog leave it
    /// alone while that server runs ([`AccountWriter::receiving_elsewhere`]).
    fn start_receiving(&mut self, hash: &str, server: &str) -> Result<(), StoreError>;
    /// What servers other than `server` that still run are receiving now: whether the
    /// ticket `hash` is one of their uploads, and how many of `user_id`'s tickets they
    /// receive, so that a user's upload slots are counted across every server of the
    /// catalog. A backend on which only one server can run at a time reports nothing.
    fn receiving_elsewhere(
        &mut self,
        server: &str,
        hash: &str,
        user_id: &str,
    ) -> Result<ReceivingElsewhere, StoreError>;
    /// Puts every ticket left receiving by a server that no longer runs back to open, so
    /// the catalog says what holds; returns how many. Tickets a running server receives are
    /// never touched. For a server's startup, after it joined the servers of the catalog:
    /// a backend on which only one server can run at a time (SQLite, whose data directory
    /// `serve` locks) reopens every receiving ticket then, as no upload can be in progress.
    fn reopen_abandoned_uploads(&mut self) -> Result<u64, StoreError>;
    /// Puts back to open every ticket marked receiving by the server whose seat is `server`
    /// except those in `held` (the tickets whose bodies that server still receives: its
    /// upload slots), and returns how many: marks its [`AccountWriter::end_receiving`]
    /// could not record (the database away, busy or full at that moment), which would
    /// otherwise keep the URL busy on the other servers, and count against its user there,
    /// until the server stops. `held` must be read within the same write: writes run one at
    /// a time, so a claim is either committed before it (and its slot, taken before the
    /// claim, is in `held` while its body arrives) or runs after it.
    fn reopen_unheld_uploads(&mut self, server: &str, held: &[String]) -> Result<u64, StoreError>;
    /// Up to `limit` upload tickets that expired before `now` (ms), as (hash, staging
    /// blob key): the caller deletes each blob, then the ticket.
    fn expired_uploads(
        &mut self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Deletes pending publishes that expired before `now` (ms) and retires their upload
    /// tickets (which expire with them at the latest).
    fn delete_expired_pending(&mut self, now: i64) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_stored_as_sha256_hex() {
        assert_eq!(
            secret_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(secret_hash("a"), secret_hash("b"));
    }

    #[test]
    fn pending_kinds_round_trip() {
        for kind in [
            PendingKind::Version,
            PendingKind::Build,
            PendingKind::Readme,
        ] {
            assert_eq!(PendingKind::parse(kind.as_str()).unwrap(), kind);
        }
        assert!(PendingKind::parse("other").is_err());
    }
}
