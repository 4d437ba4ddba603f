//! The publishing side of the package server (spec §5, §6): the state every publishing
//! method shares, and the one way a method touches the catalog: [`Publishing::as_user`]
//! (the session's user, checked again inside the transaction) or [`Publishing::transact`],
//! each one write transaction on the blocking pool that a refusal rolls back.
//!
//! Upload tickets and pending publishes are in `uploads`, the permission rules in `rules`,
//! record editing in `records`, the caller and its audit entries in `audit`; each method
//! family (`auth`, `packages`, `releases`, `admin`) uses these and never another family,
//! and `methods` maps method names to them.

use std::sync::Arc;
use std::time::Duration;

use exosphere_blobs::BlobStore;
use exosphere_catalog::{CatalogStore, CatalogWriter, Refusal, StoreError, write_or_refuse};
use exosphere_ddp::{DdpError, MethodContext};

use super::audit::{Caller, address};
use super::login::{require_user, session_user};
use super::login_throttle::LoginThrottle;
use super::tx::{Tx, disk_refusal};
use super::upload_slots::UploadSlots;

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
    pub upload_slots: Arc<UploadSlots>,
    /// How long an upload body may send nothing before it is abandoned, so a stalled
    /// client cannot hold an upload slot and its ticket for long; a body must also end
    /// before its ticket expires, so one trickling bytes cannot hold them for ever.
    pub upload_idle_timeout: Duration,
    /// Bytes per second an upload body must average over each `upload_idle_timeout`
    /// window, so one sending a byte now and then cannot hold its slot for long either.
    pub upload_min_rate: u64,
    /// Failed logins counted per client address and per account; over either limit,
    /// logins are refused until the window is over.
    pub login_throttle: Arc<LoginThrottle>,
    /// This server's seat among the servers of the catalog
    /// (`CatalogStore::join_servers`): the owner its "receiving" upload marks record, so
    /// that other servers leave those uploads alone while it runs.
    pub server: String,
}

impl Publishing {
    /// Runs `body` in one write transaction on the blocking pool: everything it writes
    /// commits together, and a refusal rolls everything back. A write the store refuses
    /// because it would change a published version's content is answered 409 with the
    /// store's reason.
    pub async fn transact<T, F>(&self, mut body: F) -> Result<T, DdpError>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn CatalogWriter) -> Tx<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        let outcome = exosphere_task::blocking(move || {
            write_or_refuse(&*store, |writer| body(writer).map_err(Refusal::from))
        })
        .await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Refusal::Refused(error))) => Err(error),
            Ok(Err(Refusal::Store(StoreError::Busy))) => Err(busy()),
            Ok(Err(Refusal::Store(
                error @ (StoreError::Immutable { .. }
                | StoreError::PublishedVersionTaken { .. }
                | StoreError::PublishedDeletion { .. }),
            ))) => Err(DdpError::new(409, error.to_string())),
            Ok(Err(Refusal::Store(error))) => Err(disk_refusal(&error).unwrap_or_else(|| {
                tracing::error!(%error, "publishing transaction failed");
                DdpError::internal()
            })),
            Err(error) => {
                tracing::error!(%error, "publishing task failed");
                Err(DdpError::internal())
            }
        }
    }

    /// Runs `body` for the session's logged-in user in one write transaction: 401 without a
    /// login, and inside the transaction 403 for a token revoked or expired since (the
    /// preamble of every method that changes the catalog for someone). The body gets the
    /// user with the session's address, to record what it does in the audit log.
    pub async fn as_user<T, F>(&self, ctx: &MethodContext, mut body: F) -> Result<T, DdpError>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn CatalogWriter, &Caller) -> Tx<T> + Send + 'static,
    {
        let login = session_user(ctx)?;
        let address = address(ctx);
        self.transact(move |writer| {
            let caller = Caller {
                user: require_user(writer, &login)?,
                address: address.clone(),
            };
            body(writer, &caller)
        })
        .await
    }
}

/// 503: another writer holds the catalog.
fn busy() -> DdpError {
    DdpError::new(503, "The catalog is busy; try again")
}
