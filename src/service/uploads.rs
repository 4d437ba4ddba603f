//! Upload tickets and pending publishes (spec §5.2): a publish's first call creates its
//! records *pending* with upload URLs, the bodies arrive over HTTP, and its second call
//! ([`Publishing::finish`]) verifies each upload's hash, copies the files into place and makes
//! the records visible in one transaction. Expired and retired tickets are swept with their
//! staging files.

use exosphere_blobs::BlobKey;
use exosphere_catalog::CatalogWriter;
use exosphere_catalog::accounts::{Pending, PendingKind, Upload, UploadState, secret_hash};
use exosphere_ddp::{DdpError, MethodContext, random_id};

use super::audit::Caller;
use super::publishing::Publishing;
use super::records::now_ms;
use super::secrets::new_secret;
use super::tx::Tx;

impl Publishing {
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
        F: FnMut(&mut dyn CatalogWriter, &Caller, &Pending, &[Option<Verified>]) -> Tx<()>
            + Send
            + 'static,
    {
        let hash = secret_hash(token);
        let check = {
            let hash = hash.clone();
            move |writer: &mut dyn CatalogWriter, user: &Caller| -> Tx<Checked> {
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
                Ok((pending, uploads))
            }
        };
        let (pending, uploads) = self.as_user(ctx, check).await?;
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
        self.as_user(ctx, move |writer, user| {
            let current = writer.accounts().pending(&hash)?;
            let Some(current) = current.filter(|current| current.record == record) else {
                return Err(DdpError::new(409, "This upload token was already used").into());
            };
            apply(writer, user, &current, &verified)?;
            drop_pending(writer, &hash)?;
            Ok(())
        })
        .await?;
        if let Err(error) = self.sweep().await {
            tracing::warn!(%error, "cannot delete staging uploads after a publish");
        }
        Ok(())
    }

    /// Puts every upload ticket left receiving by a server that no longer runs back to
    /// open, so the catalog says what holds (its URL takes a body either way: no running
    /// server's upload slot holds it, see `upload_slots`), and deletes the temporary files
    /// of local writes cut off mid-body. For startup, once this server joined the servers
    /// of the catalog: such a ticket was claimed by a process that died mid-body (a crash,
    /// `kill -9`, or a shutdown whose grace period ended before the body did), and the
    /// tickets other running servers receive are left alone. Its partial write was never
    /// visible under the staging name: a local write's temporary file is deleted here (a
    /// local file store belongs to one server; several servers share an S3 bucket), and S3
    /// multipart parts are left to the bucket's lifecycle rule.
    pub async fn reopen_interrupted_uploads(&self) -> Result<u64, DdpError> {
        let reopened = self
            .transact(|writer| Ok(writer.accounts().reopen_abandoned_uploads()?))
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

    /// Puts back to open this server's receiving marks whose bodies it no longer receives
    /// (no upload slot holds them): marks whose end the catalog could not record, which
    /// would otherwise keep their URLs busy on the other servers, and count against their
    /// users there, until this server stops. Returns how many.
    pub async fn reopen_unheld_uploads(&self) -> Result<u64, DdpError> {
        let server = self.server.clone();
        let slots = std::sync::Arc::clone(&self.upload_slots);
        // The slots are read inside the write: see `AccountWriter::reopen_unheld_uploads`.
        self.transact(move |writer| {
            let held = slots.held_tickets();
            Ok(writer.accounts().reopen_unheld_uploads(&server, &held)?)
        })
        .await
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

/// What the first transaction of [`Publishing::finish`] found: the pending publish, and each
/// upload with its verified hash (`None`: optional and not sent).
type Checked = (Pending, Vec<Option<(Upload, Verified)>>);

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
                 stored bytes hash to {sha256} (base64 SHA-256). Nothing was published, and \
                 this upload URL is used up: run the publish again, which hands out new \
                 upload URLs."
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
