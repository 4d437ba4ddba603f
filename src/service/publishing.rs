//! What every publishing method shares: the store and blob store, the limits, running a
//! method's checks and writes in one catalog transaction, the logged-in user, the
//! permission rules of spec §5.0, record editing, and the two-step publish of uploaded
//! files (verify, copy into place, make the records visible).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use exosphere_blobs::{BlobKey, BlobStore};
use exosphere_catalog::accounts::{
    Org, Pending, PendingKind, Upload, UploadState, User, secret_hash,
};
use exosphere_catalog::{CatalogStore, CatalogWriter, Collection, Lookup, Record, StoreError};
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{DdpError, MethodContext, Reply, random_id};
use rand::RngCore as _;
use serde_json::{Map, Value, json};

/// Every method [`Publishing::call`] answers.
pub const METHODS: [&str; 24] = [
    "login",
    "amIAuthorizedPackage",
    "amIAuthorizedRelease",
    "createPackage",
    "createPackageVersion",
    "publishPackageVersion",
    "createPackageBuild",
    "publishPackageBuild",
    "changeVersionMetadata",
    "createReadme",
    "publishReadme",
    "createReleaseTrack",
    "createReleaseVersion",
    "createPatchReleaseVersion",
    "addMaintainer",
    "removeMaintainer",
    "addReleaseMaintainer",
    "removeReleaseMaintainer",
    "recommendVersion",
    "unrecommendVersion",
    "setBannersOnReleases",
    "_changePackageHomepage",
    "_changeVersionMigrationStatus",
    "logout",
];

/// The publishing side of the package server (spec §5, §6): accounts, uploads and the
/// methods that change the catalog. Cheap to clone (the store and blob store are shared).
#[derive(Clone)]
pub struct Publishing {
    /// The catalog, with its account and publishing rows.
    pub store: Arc<dyn CatalogStore>,
    /// Where uploaded files are kept and served from.
    pub blobs: BlobStore,
    /// The base URL clients reach this server at, without a trailing slash; every URL
    /// handed out starts with it.
    pub public_url: String,
    /// Largest upload accepted, in bytes.
    pub max_upload_size: u64,
    /// How long upload URLs and pending publishes stay valid.
    pub upload_ttl: Duration,
    /// Most unfinished publishes (pending versions, builds and READMEs) one user may have
    /// at once, so one account cannot fill the store with upload tickets.
    pub max_open_publishes: u64,
    /// One slot per upload body being received, server-wide and per user (the rest are
    /// told to retry), so disk or S3 bandwidth and the per-upload buffers cannot be
    /// exhausted by many slow clients, nor every slot taken by one account.
    pub upload_slots: Arc<super::upload_slots::UploadSlots>,
    /// How long an upload body may send nothing before it is abandoned, so a stalled
    /// client cannot hold an upload slot and its ticket for long; a body must also end
    /// before its ticket expires, so one trickling bytes cannot hold them for ever.
    pub upload_idle_timeout: Duration,
}

/// Why a method's transaction stopped: a refusal the client sees, or a storage failure.
pub enum Fail {
    /// Roll back and answer this error.
    Client(DdpError),
    /// Roll back and answer 500 (or 503 when the store is busy).
    Store(StoreError),
}

impl From<DdpError> for Fail {
    fn from(error: DdpError) -> Self {
        Fail::Client(error)
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Fail::Store(error)
    }
}

/// The result type of transaction bodies.
pub type Tx<T> = Result<T, Fail>;

/// The current time in ms since the Unix epoch, as records store dates.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An EJSON date, as records carry them (spec §3.8).
pub fn date(ms: i64) -> Value {
    json!({ "$date": ms })
}

/// A fresh unguessable secret (256 bits, URL-safe base64) for login tokens, upload
/// tokens and upload URLs.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `text` could be a secret this server handed out (used before any lookup, so
/// odd URL text never reaches the store).
pub fn looks_like_secret(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Longest package or release track name this server accepts. Meteor's
/// `PV.validatePackageName` sets no limit (names on the official server stay far below
/// it); this one keeps every file name a publish creates within the blob store's name
/// limits, so a long name is refused when the package is created, not at publish time.
pub const MAX_NAME_LENGTH: usize = 100;

/// Refuses a name or version longer than `limit` bytes with the same 400 as the other
/// validation errors, before any record, ticket or file is made.
pub fn check_length(what: &str, text: &str, limit: usize) -> Result<(), DdpError> {
    if text.len() <= limit {
        Ok(())
    } else {
        Err(DdpError::bad_request(format!(
            "The {what} is {} bytes long; this server accepts at most {limit} bytes",
            text.len()
        )))
    }
}

/// The 401 the tool treats as "not authorized" (spec §5.8) and unauthenticated calls get.
pub fn not_logged_in() -> DdpError {
    DdpError::new(
        401,
        "You must be logged in: put a token from `exosphere token create` in your \
         ~/.meteorsession (spec §6.4)",
    )
}

/// The refusal for someone who is not a maintainer (the reason text the tool's tests saw).
pub fn not_maintainer(what: &str) -> DdpError {
    DdpError::new(
        403,
        format!("You are not an authorized maintainer of {what}"),
    )
}

/// The key of a record field that names a user or an organization.
pub fn person(username: &str, id: &str) -> Value {
    json!({ "username": username, "id": id })
}

impl Publishing {
    /// Answers one of [`METHODS`].
    pub async fn call(
        &self,
        ctx: &MethodContext,
        method: &str,
        params: Vec<Ejson>,
    ) -> Result<Reply, DdpError> {
        let answer = self.dispatch(ctx, method, params).await;
        if let Err(error) = &answer
            && method != "login"
            && *error == logged_out()
        {
            ctx.session.set_user_id(None);
        }
        answer
    }

    /// Runs the method behind [`Publishing::call`].
    async fn dispatch(
        &self,
        ctx: &MethodContext,
        method: &str,
        params: Vec<Ejson>,
    ) -> Result<Reply, DdpError> {
        use super::admin::Target;
        use super::{admin, auth, packages, releases};
        match method {
            "login" => auth::login(self, ctx, params).await,
            "logout" => {
                ctx.session.set_user_id(None);
                Ok(Reply::None)
            }
            "amIAuthorizedPackage" => auth::am_i_authorized(self, ctx, params, false).await,
            "amIAuthorizedRelease" => auth::am_i_authorized(self, ctx, params, true).await,
            "createPackage" => packages::create_package(self, ctx, params).await,
            "createPackageVersion" => packages::create_package_version(self, ctx, params).await,
            "publishPackageVersion" => packages::publish_package_version(self, ctx, params).await,
            "createPackageBuild" => packages::create_package_build(self, ctx, params).await,
            "publishPackageBuild" => packages::publish_package_build(self, ctx, params).await,
            "changeVersionMetadata" => packages::change_version_metadata(self, ctx, params).await,
            "createReadme" => packages::create_readme(self, ctx, params).await,
            "publishReadme" => packages::publish_readme(self, ctx, params).await,
            "createReleaseTrack" => releases::create_release_track(self, ctx, params).await,
            "createReleaseVersion" => releases::create_release_version(self, ctx, params).await,
            "createPatchReleaseVersion" => {
                releases::create_patch_release_version(self, ctx, params).await
            }
            "recommendVersion" => releases::set_recommended(self, ctx, params, true).await,
            "unrecommendVersion" => releases::set_recommended(self, ctx, params, false).await,
            "setBannersOnReleases" => releases::set_banners(self, ctx, params).await,
            "addMaintainer" => {
                admin::change_maintainer(self, ctx, params, Target::Package, true).await
            }
            "removeMaintainer" => {
                admin::change_maintainer(self, ctx, params, Target::Package, false).await
            }
            "addReleaseMaintainer" => {
                admin::change_maintainer(self, ctx, params, Target::Track, true).await
            }
            "removeReleaseMaintainer" => {
                admin::change_maintainer(self, ctx, params, Target::Track, false).await
            }
            "_changePackageHomepage" => admin::change_homepage(self, ctx, params).await,
            "_changeVersionMigrationStatus" => {
                admin::change_migration_status(self, ctx, params).await
            }
            _ => Err(DdpError::method_not_found(method)),
        }
    }

    /// Runs `body` in one write transaction on the blocking pool: everything it writes
    /// commits together, and a refusal rolls everything back.
    pub async fn transact<T, F>(&self, mut body: F) -> Result<T, DdpError>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn CatalogWriter) -> Tx<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut answer: Option<Result<T, DdpError>> = None;
            let written = store.write(&mut |writer| match body(writer) {
                Ok(value) => {
                    answer = Some(Ok(value));
                    Ok(())
                }
                Err(Fail::Client(error)) => {
                    answer = Some(Err(error));
                    Err(StoreError::Aborted)
                }
                Err(Fail::Store(error)) => Err(error),
            });
            match (written, answer) {
                (Ok(()), Some(Ok(value))) => Ok(value),
                (Err(StoreError::Aborted), Some(Err(error))) => Err(error),
                (Err(StoreError::Busy), _) => Err(busy()),
                (Err(error), _) => {
                    tracing::error!(%error, "publishing transaction failed");
                    Err(DdpError::internal())
                }
                (Ok(()), _) => Err(DdpError::internal()),
            }
        })
        .await;
        outcome.unwrap_or_else(|error| {
            tracing::error!(%error, "publishing task failed");
            Err(DdpError::internal())
        })
    }

    /// The URL a stored blob downloads from.
    pub fn blob_url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_url)
    }

    /// The PUT URL of an upload ticket.
    pub fn upload_url(&self, secret: &str) -> String {
        format!("{}/uploads/{secret}", self.public_url)
    }

    /// Creates one upload ticket bound to `destination`; returns its URL secret's hash
    /// (stored in the pending publish) and its URL.
    pub fn new_upload(
        &self,
        writer: &mut dyn CatalogWriter,
        destination: String,
    ) -> Tx<(String, String)> {
        let secret = new_secret();
        let hash = secret_hash(&secret);
        writer.accounts().put_upload(
            &hash,
            &Upload {
                staging: format!("{STAGING_PREFIX}/{}", random_id()),
                destination,
                max_size: self.max_upload_size,
                expires: self.expiry(),
                state: UploadState::Open,
            },
        )?;
        Ok((hash, self.upload_url(&secret)))
    }

    /// When a ticket or pending publish created now expires.
    pub fn expiry(&self) -> i64 {
        now_ms().saturating_add(i64::try_from(self.upload_ttl.as_millis()).unwrap_or(i64::MAX))
    }

    /// Stores a pending publish under a fresh `uploadToken`, replacing any earlier one of
    /// the same kind and subject (a crashed publish being retried); returns the token.
    /// Refuses the new one when the user already has `max_open_publishes` unfinished
    /// publishes (the replaced one does not count).
    pub fn new_pending(&self, writer: &mut dyn CatalogWriter, pending: &Pending) -> Tx<String> {
        for old in writer
            .accounts()
            .pending_for(pending.kind, &pending.subject)?
        {
            drop_pending(writer, &old)?;
        }
        let open = writer
            .accounts()
            .open_pending_of(&pending.user_id, now_ms())?;
        if open >= self.max_open_publishes {
            return Err(DdpError::new(
                429,
                format!(
                    "You have {open} unfinished publishes, the most this server allows: \
                     finish them (or run the same publish again, which replaces its \
                     unfinished attempt), or wait until they expire {} seconds after they \
                     were started",
                    self.upload_ttl.as_secs()
                ),
            )
            .into());
        }
        let token = new_secret();
        writer
            .accounts()
            .put_pending(&secret_hash(&token), pending)?;
        Ok(token)
    }

    /// Finishes a pending publish: checks that `token` names a pending publish of `kind`
    /// by this user, that every upload it needs arrived and matches its hash
    /// (`expected[i]` for upload `i`; `None` = the client sent no hash, the upload is then
    /// optional), copies the verified files to their final names, and calls `apply` in
    /// the transaction that deletes the pending publish, with each upload's final key (or
    /// `None`) and checked hash.
    pub async fn finish<F>(
        &self,
        ctx: &MethodContext,
        token: &str,
        kind: PendingKind,
        expected: Vec<Option<String>>,
        mut apply: F,
    ) -> Result<(), DdpError>
    where
        F: FnMut(&mut dyn CatalogWriter, &User, &Pending, &[Option<Verified>]) -> Tx<()>
            + Send
            + 'static,
    {
        let login = session_user(ctx)?;
        let hash = secret_hash(token);
        let check = {
            let (hash, login, expected) = (hash.clone(), login.clone(), expected.clone());
            move |writer: &mut dyn CatalogWriter| -> Tx<Checked> {
                let user = require_user(writer, &login)?;
                let pending = writer
                    .accounts()
                    .pending(&hash)?
                    .filter(|pending| pending.kind == kind && pending.expires > now_ms())
                    .ok_or_else(|| {
                        DdpError::new(
                            404,
                            "Unknown or expired upload token: start the publish again",
                        )
                    })?;
                if pending.user_id != user.id {
                    return Err(
                        DdpError::new(403, "This upload token belongs to another user").into(),
                    );
                }
                let mut uploads = Vec::new();
                for (index, ticket) in pending.uploads.iter().enumerate() {
                    let want = expected.get(index).cloned().flatten();
                    let upload = writer.accounts().upload(ticket)?;
                    uploads.push(verify_upload(upload, want, index)?);
                }
                Ok((user, pending, uploads))
            }
        };
        let (_, pending, uploads) = self.transact(check).await?;
        for (upload, _) in uploads.iter().flatten() {
            let (from, to) = (blob_key(&upload.staging)?, blob_key(&upload.destination)?);
            self.blobs.copy(&from, &to).await.map_err(|error| {
                tracing::error!(%error, "cannot move an upload into place");
                DdpError::new(503, "Cannot store the uploaded file right now; try again")
            })?;
        }
        let verified: Vec<Option<Verified>> = uploads
            .iter()
            .map(|upload| upload.as_ref().map(|(_, verified)| verified.clone()))
            .collect();
        let record = pending.record.clone();
        self.transact(move |writer| {
            let user = require_user(writer, &login)?;
            let current = writer.accounts().pending(&hash)?;
            let Some(current) = current.filter(|current| current.record == record) else {
                return Err(DdpError::new(409, "This upload token was already used").into());
            };
            apply(writer, &user, &current, &verified)?;
            drop_pending(writer, &hash)?;
            Ok(())
        })
        .await?;
        if let Err(error) = self.sweep().await {
            tracing::warn!(%error, "cannot delete staging uploads after a publish");
        }
        Ok(())
    }

    /// Puts every upload ticket left receiving back to open, so its URL works again, and
    /// deletes the temporary files of local writes cut off mid-body. Only for startup,
    /// when no upload can be in progress (`serve` holds the data directory's lock, see
    /// `serve_lock`): such a ticket was claimed by a process that died mid-body (a crash,
    /// `kill -9`, or a shutdown whose grace period ended before the body did). Its partial
    /// write was never visible under the staging name: a local write's temporary file is
    /// deleted here, and S3 multipart parts are left to the bucket's lifecycle rule.
    pub async fn reopen_interrupted_uploads(&self) -> Result<u64, DdpError> {
        let reopened = self
            .transact(|writer| Ok(writer.accounts().reopen_receiving_uploads()?))
            .await?;
        if reopened > 0 {
            tracing::info!(
                reopened,
                "reopened upload URLs an earlier run left receiving"
            );
        }
        let staging = blob_key(STAGING_PREFIX)?;
        let deleted = self
            .blobs
            .delete_abandoned_writes(&staging)
            .await
            .map_err(|error| {
                tracing::error!(%error, "cannot delete the temporary files of cut-off uploads");
                DdpError::new(503, "Cannot clean the staging area")
            })?;
        if deleted > 0 {
            tracing::info!(
                deleted,
                "deleted temporary files of uploads an earlier run was receiving"
            );
        }
        Ok(reopened)
    }

    /// Deletes expired pending publishes, then the staging blob of every expired or
    /// retired upload ticket and after it the ticket, so the ticket rows are the list of
    /// files still to delete and a crash at any point leaves nothing behind for good.
    /// Returns how many staging files were deleted.
    pub async fn sweep(&self) -> Result<usize, DdpError> {
        let now = now_ms();
        self.transact(move |writer| Ok(writer.accounts().delete_expired_pending(now)?))
            .await?;
        let mut deleted = 0;
        loop {
            let batch = self
                .transact(move |writer| Ok(writer.accounts().expired_uploads(now, SWEEP_BATCH)?))
                .await?;
            let full = batch.len() == SWEEP_BATCH;
            let mut done = Vec::new();
            for (hash, staging) in batch {
                if let Ok(key) = blob_key(&staging)
                    && let Err(error) = self.blobs.delete(&key).await
                {
                    tracing::warn!(%error, %key, "cannot delete a staging upload");
                    continue;
                }
                done.push(hash);
            }
            if done.is_empty() {
                break;
            }
            deleted += done.len();
            self.transact(move |writer| {
                for hash in &done {
                    writer.accounts().delete_upload(hash)?;
                }
                Ok(())
            })
            .await?;
            if !full {
                break;
            }
        }
        Ok(deleted)
    }
}

/// The blob-key prefix of staging uploads: every upload ticket's body is written under it
/// until its publish call copies it to its final key.
const STAGING_PREFIX: &str = "uploads";

/// Upload tickets [`Publishing::sweep`] handles per transaction.
const SWEEP_BATCH: usize = 256;

/// What the first transaction of [`Publishing::finish`] found: the user, the pending
/// publish, and each upload with its verified hash (`None`: optional and not sent).
type Checked = (User, Pending, Vec<Option<(Upload, Verified)>>);

/// An upload that arrived and matched its expected hash.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The file's final blob key.
    pub key: String,
    /// Its base64 SHA-256.
    pub sha256: String,
}

/// Checks one upload of a pending publish against the hash the client sent.
fn verify_upload(
    upload: Option<Upload>,
    want: Option<String>,
    index: usize,
) -> Tx<Option<(Upload, Verified)>> {
    let what = if index == 0 { "file" } else { "README" };
    let upload = upload.ok_or_else(|| DdpError::new(404, format!("The {what} upload expired")))?;
    match (&upload.state, want) {
        (UploadState::Received { sha256, .. }, Some(want)) if *sha256 == want => {
            let verified = Verified {
                key: upload.destination.clone(),
                sha256: sha256.clone(),
            };
            Ok(Some((upload, verified)))
        }
        (UploadState::Received { sha256, .. }, Some(want)) => Err(DdpError::new(
            400,
            format!(
                "The uploaded {what} does not match its hash: the client says {want}, the \
                 stored bytes hash to {sha256} (base64 SHA-256). Upload it again."
            ),
        )
        .into()),
        (_, Some(_)) => Err(DdpError::new(
            400,
            format!("The {what} was not uploaded yet: PUT it to its upload URL first"),
        )
        .into()),
        (_, None) if index == 0 => Err(DdpError::bad_request("The tarball hash is missing").into()),
        (_, None) => Ok(None),
    }
}

/// Deletes a pending publish and retires its upload tickets: [`Publishing::sweep`] then
/// deletes their staging blobs (used, replaced by a retry, or never published).
fn drop_pending(writer: &mut dyn CatalogWriter, hash: &str) -> Tx<()> {
    if let Some(pending) = writer.accounts().pending(hash)? {
        for upload in &pending.uploads {
            writer.accounts().retire_upload(upload)?;
        }
    }
    writer.accounts().delete_pending(hash)?;
    Ok(())
}

/// A stored key as a blob key; keys are built by this server, so a bad one is corruption.
pub fn blob_key(key: &str) -> Result<BlobKey, DdpError> {
    BlobKey::new(key).map_err(|error| {
        tracing::error!(%error, "stored blob key is invalid");
        DdpError::internal()
    })
}

/// 503: another writer holds the catalog.
fn busy() -> DdpError {
    DdpError::new(503, "The catalog is busy; try again")
}

/// What Meteor answers a bad resume token; the tool then falls back to its OAuth flow.
/// Also the answer to a call on a session whose token was revoked or expired.
const LOGGED_OUT: &str = "You've been logged out by the server. Please log in again.";

/// The 403 for an unknown, revoked or expired login token.
pub fn logged_out() -> DdpError {
    DdpError::new(403, LOGGED_OUT)
}

/// Who a session is logged in as: the user and the hash of the token it logged in with,
/// so every method can check in its transaction that the token still exists and has not
/// expired (a revoked token ends its open sessions too). Kept in the DDP session's user
/// slot as `<user id>:<token hash>`; only this type writes and reads that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The user's id.
    pub user_id: String,
    /// [`secret_hash`] of the login token.
    pub token_hash: String,
}

impl Login {
    /// Logs the session in as this login.
    pub fn store(&self, ctx: &MethodContext) {
        ctx.session
            .set_user_id(Some(format!("{}:{}", self.user_id, self.token_hash)));
    }

    /// The session's login, if any.
    fn of(ctx: &MethodContext) -> Option<Login> {
        let text = ctx.session.user_id()?;
        let (user_id, token_hash) = text.split_once(':')?;
        Some(Login {
            user_id: user_id.to_owned(),
            token_hash: token_hash.to_owned(),
        })
    }
}

/// The login of this call's session, or 401.
pub fn session_user(ctx: &MethodContext) -> Result<Login, DdpError> {
    Login::of(ctx).ok_or_else(not_logged_in)
}

/// The user of a session's login, if its token still exists, belongs to that user and has
/// not expired (else 403 as for a bad token, and [`Publishing::call`] logs the session
/// out), and the user still exists (else 401).
pub fn require_user(writer: &mut dyn CatalogWriter, login: &Login) -> Tx<User> {
    let token = writer.accounts().token_by_hash(&login.token_hash)?;
    if !token.is_some_and(|token| token.user_id == login.user_id && token.expires > now_ms()) {
        return Err(logged_out().into());
    }
    Ok(writer
        .accounts()
        .user_by_id(&login.user_id)?
        .ok_or_else(not_logged_in)?)
}

/// Who owns the prefix of a `prefix:name`: the user or organization of that name.
pub enum Owner {
    /// A user owns it.
    User(User),
    /// An organization owns it.
    Org(Org),
}

impl Owner {
    /// The `maintainers` entry for this owner (organizations are marked as real data does).
    pub fn entry(&self) -> Value {
        match self {
            Owner::User(user) => person(&user.username, &user.id),
            Owner::Org(org) => {
                json!({ "username": org.name, "id": org.id, "isOrganization": true })
            }
        }
    }

    /// The owner's id.
    pub fn id(&self) -> &str {
        match self {
            Owner::User(user) => &user.id,
            Owner::Org(org) => &org.id,
        }
    }
}

/// The user or organization called `name`.
pub fn owner_named(writer: &mut dyn CatalogWriter, name: &str) -> Tx<Option<Owner>> {
    if let Some(user) = writer.accounts().user_by_name(name)? {
        return Ok(Some(Owner::User(user)));
    }
    Ok(writer.accounts().org_by_name(name)?.map(Owner::Org))
}

/// Checks that `user` may create a package or track called `name` (spec §5.0): the owner
/// of its prefix or a member of that organization, and only administrators for names
/// without a prefix. Returns the `maintainers` list the new record starts with.
pub fn creation_maintainers(
    writer: &mut dyn CatalogWriter,
    user: &User,
    name: &str,
) -> Tx<Vec<Value>> {
    let creator = person(&user.username, &user.id);
    let Some((prefix, _)) = name.split_once(':') else {
        if user.admin {
            return Ok(vec![creator]);
        }
        return Err(DdpError::new(
            403,
            format!(
                "Only administrators may create names without a prefix; name it \
                 {}:{name} instead",
                user.username
            ),
        )
        .into());
    };
    let owner = owner_named(writer, prefix)?;
    let allowed = match &owner {
        Some(Owner::User(owner)) => owner.id == user.id || user.admin,
        Some(Owner::Org(org)) => {
            user.admin || writer.accounts().is_org_member(&org.id, &user.id)?
        }
        None => user.admin,
    };
    if !allowed {
        return Err(DdpError::new(
            403,
            format!(
                "You are not an authorized maintainer of the prefix {prefix}: (only {prefix} \
                 or members of the organization {prefix} may use it)"
            ),
        )
        .into());
    }
    let mut maintainers = Vec::new();
    if let Some(owner) = &owner {
        maintainers.push(owner.entry());
    }
    if owner.as_ref().is_none_or(|owner| owner.id() != user.id) {
        maintainers.push(creator);
    }
    Ok(maintainers)
}

/// Whether `user` maintains a record with this `maintainers` list: an administrator, a
/// listed user, or a member of a listed organization.
pub fn maintains(
    writer: &mut dyn CatalogWriter,
    user: &User,
    record: &Map<String, Value>,
) -> Tx<bool> {
    if user.admin {
        return Ok(true);
    }
    let Some(maintainers) = record.get("maintainers").and_then(Value::as_array) else {
        return Ok(false);
    };
    for entry in maintainers {
        let Some(id) = entry.get("id").and_then(Value::as_str) else {
            continue;
        };
        if id == user.id || writer.accounts().is_org_member(id, &user.id)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads the one record with this natural key, as an editable JSON object.
pub fn load(writer: &mut dyn CatalogWriter, key: &Lookup<'_>) -> Tx<Option<Map<String, Value>>> {
    let Some(text) = writer.find(key)?.into_iter().next() else {
        return Ok(None);
    };
    parse_object(&text).map(Some)
}

/// Parses stored JSON text (a record, or a pending publish's record) as an editable object;
/// the server wrote it, so anything else is corruption.
pub fn parse_object(text: &str) -> Tx<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Corrupt(format!("stored JSON is not an object: {text:.80}")).into()),
    }
}

/// Stores an edited or new record (a new `seq`, so syncing clients receive it).
pub fn save(
    writer: &mut dyn CatalogWriter,
    collection: Collection,
    record: Map<String, Value>,
) -> Tx<()> {
    let text = Value::Object(record).to_string();
    let record = Record::from_json(collection, &text)
        .map_err(|error| StoreError::Corrupt(format!("built an invalid record: {error}")))?;
    writer.upsert(&record)?;
    Ok(())
}

/// The published package called `name`, for a user who must maintain it.
pub fn maintained_package(
    writer: &mut dyn CatalogWriter,
    user: &User,
    name: &str,
) -> Tx<Map<String, Value>> {
    let package = load(writer, &Lookup::Package(name))?
        .ok_or_else(|| DdpError::new(404, format!("There is no package named {name}")))?;
    if !maintains(writer, user, &package)? {
        return Err(not_maintainer(&format!("package {name}")).into());
    }
    Ok(package)
}

/// The release track called `name`, for a user who must maintain it.
pub fn maintained_track(
    writer: &mut dyn CatalogWriter,
    user: &User,
    name: &str,
) -> Tx<Map<String, Value>> {
    let track = load(writer, &Lookup::ReleaseTrack(name))?
        .ok_or_else(|| DdpError::new(404, format!("There is no release track named {name}")))?;
    if !maintains(writer, user, &track)? {
        return Err(not_maintainer(&format!("release track {name}")).into());
    }
    Ok(track)
}

/// Sets `lastUpdated` to now, so the record is re-sent and `meteor search` shows it.
pub fn touch(record: &mut Map<String, Value>, now: i64) {
    record.insert("lastUpdated".into(), date(now));
}

/// Reads positional parameters as plain JSON (publishing parameters carry no EJSON types
/// the server needs).
pub fn plain_params(params: Vec<Ejson>) -> Vec<Value> {
    params.into_iter().map(|param| param.to_json()).collect()
}

/// Parameter `index` as a string, or 400 naming it.
pub fn string_param(params: &[Value], index: usize, what: &str) -> Result<String, DdpError> {
    params
        .get(index)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| DdpError::bad_request(format!("{what} must be a string")))
}

/// Parameter `index` as an object, or 400 naming it.
pub fn object_param(
    params: &[Value],
    index: usize,
    what: &str,
) -> Result<Map<String, Value>, DdpError> {
    params
        .get(index)
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| DdpError::bad_request(format!("{what} must be an object")))
}

/// Field `key` of an object as a string, or 400 naming it.
pub fn string_field(object: &Map<String, Value>, key: &str) -> Result<String, DdpError> {
    object
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| DdpError::bad_request(format!("`{key}` must be a string")))
}
