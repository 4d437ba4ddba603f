//! The package server as a DDP service: the methods and publications of spec §3 and §4,
//! and the stats server's `recordAppPackages` (spec §7.1), so one Exosphere serves both.
//!
//! This is the only place where DDP meets the catalog. Methods that touch the database run on
//! tokio's blocking pool so a slow query never stalls the runtime's worker threads; the
//! publications follow the catalog watcher so that writes by any process reach subscribers.
//!
//! Logging in and publishing (spec §5, §6) live in the submodules. `methods` maps each
//! publishing method's name to its handler in one method family (`auth`, `packages`,
//! `releases`, `admin`); the families share, and never import each other: `publishing` (the
//! state and the transaction helpers), `audit` (the caller, and the audit entries of what
//! it does), `uploads` (tickets and pending publishes), `rules` (permissions), `records`
//! (record editing), `login`, `params`, `secrets` and `tx`.
//! `login_throttle` limits failed logins per address and account, with the keyed rate
//! budgets of `budgets`, which `usage` shares.
//! `upload_slots` bounds the upload bodies received at once; `usage` is `recordAppPackages`
//! with its rate budgets.

use std::sync::Arc;

use exosphere_catalog::{CatalogState, Collection, PageText, StoredText, SyncError, Syncer};
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{
    DdpError, MethodContext, RawText, Reply, Service, SessionContext, Subscription,
};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

mod admin;
mod audit;
mod auth;
mod budgets;
// Public for the `method_params` fuzz target in `fuzz/`, which checks what the methods run.
pub mod fields;
mod login;
mod login_throttle;
mod methods;
mod packages;
// Public for the `method_params` fuzz target, as `fields` is.
pub mod params;
mod publishing;
pub mod records;
mod releases;
pub mod rules;
pub mod secrets;
pub mod tx;
pub mod upload_slots;
pub mod uploads;
mod usage;

pub use login_throttle::{LoginLimits, LoginThrottle};
pub use publishing::Publishing;
pub use usage::{UsageRates, UsageRecording, UsageThrottle};

/// Collection the `meteor` tool watches for the OAuth configuration (spec §4.1).
const LOGIN_CONFIG_COLLECTION: &str = "meteor_accounts_loginServiceConfiguration";

/// Everything the DDP methods and publications need, shared by all sessions.
pub struct PackageService {
    syncer: Arc<Syncer<SyncPage>>,
    catalog: watch::Receiver<CatalogState>,
    oauth_client_id: String,
    usage: Option<UsageRecording>,
    publishing: Option<Publishing>,
}

/// A sync page as the catalog's page cache keeps it: DDP's shared reply text, so every
/// client served the page shares its text and its compressed bodies, which the cache's
/// tier of files keeps with the text (tagged by zlib level), so a page read back from a
/// file is not compressed again, and whose text may be that file mapped into memory, so
/// it is not copied either.
#[derive(Clone)]
pub struct SyncPage(RawText);

impl From<String> for SyncPage {
    fn from(text: String) -> Self {
        Self(RawText::from(text))
    }
}

impl AsRef<str> for SyncPage {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

impl PageText for SyncPage {
    fn forms(&self) -> Vec<(u8, Arc<[u8]>)> {
        self.0
            .deflated_forms()
            .into_iter()
            .filter_map(|(level, form)| Some((u8::try_from(level).ok()?, form)))
            .collect()
    }

    fn with_forms(text: StoredText, forms: Vec<(u8, Arc<[u8]>)>) -> Self {
        Self(RawText::with_deflated(
            text,
            forms
                .into_iter()
                .map(|(level, form)| (u32::from(level), form)),
        ))
    }
}

impl PackageService {
    /// `catalog` is the watcher's view of the store; publications push its changes live.
    pub fn new(
        syncer: Arc<Syncer<SyncPage>>,
        catalog: watch::Receiver<CatalogState>,
        oauth_client_id: String,
    ) -> Self {
        Self {
            syncer,
            catalog,
            oauth_client_id,
            usage: None,
            publishing: None,
        }
    }

    /// Also serves `recordAppPackages` (the stats server role, spec §7.1); without this
    /// the method is not found.
    pub fn with_usage_recording(mut self, usage: UsageRecording) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Also serves `login` and the publishing methods of spec Appendix A; without this
    /// they are not found.
    pub fn with_publishing(mut self, publishing: Publishing) -> Self {
        self.publishing = Some(publishing);
        self
    }

    /// `syncNewPackageData(syncToken, options)` (spec §3): the catalog builds the encoded
    /// result, which is handed to the session without being parsed again. While the client
    /// parses that page, the next two are computed in the background: by the same blocking
    /// thread, right after it handed over the answer, so a page costs one trip to the
    /// blocking pool (and one thread wakeup), not two.
    async fn sync_new_package_data(&self, params: Vec<Ejson>) -> Result<Reply, DdpError> {
        let mut params = params.into_iter();
        let token = params
            .next()
            .map_or_else(|| json!({}), |token| token.to_json());
        let options = params
            .next()
            .map_or(Value::Null, |options| options.to_json());
        let syncer = Arc::clone(&self.syncer);
        let (answered, answer) = tokio::sync::oneshot::channel();
        exosphere_task::spawn(exosphere_task::blocking(move || {
            match syncer.answer(&token, &options) {
                Ok(answer) => {
                    // A failed send means the caller is gone (its session was cancelled or
                    // closed): nobody will ask for the next page, so it is not computed.
                    if answered.send(Ok(answer.text)).is_ok()
                        && let Some(next) = answer.next
                    {
                        syncer.prefetch(&next);
                    }
                }
                Err(error) => {
                    let _ = answered.send(Err(error));
                }
            }
        }));
        match answer.await {
            Ok(Ok(text)) => Ok(Reply::Raw(text.0)),
            Ok(Err(SyncError::BadToken(reason))) => Err(DdpError::bad_request(reason)),
            Ok(Err(error)) => {
                tracing::error!(%error, "syncNewPackageData failed");
                Err(DdpError::internal())
            }
            // The blocking task failed before it answered; it logged why.
            Err(_) => Err(DdpError::internal()),
        }
    }
}

impl Service for PackageService {
    async fn call(
        &self,
        ctx: &MethodContext,
        method: &str,
        params: Vec<Ejson>,
    ) -> Result<Reply, DdpError> {
        match method {
            "syncNewPackageData" => self.sync_new_package_data(params).await,
            "recordAppPackages" => match &self.usage {
                Some(usage) => usage.record_app_packages(ctx, params).await,
                None => Err(DdpError::method_not_found(method)),
            },
            method if methods::is_publishing_method(method) => match &self.publishing {
                Some(publishing) => methods::call(publishing, ctx, method, params).await,
                None => Err(DdpError::method_not_found(method)),
            },
            _ => Err(DdpError::method_not_found(method)),
        }
    }

    fn subscribe(
        &self,
        _ctx: &SessionContext,
        name: &str,
        _params: Vec<Ejson>,
        sub: Subscription,
    ) -> Result<(), DdpError> {
        match name {
            "meteor.loginServiceConfiguration" => {
                let fields =
                    json!({"service": "meteor-developer", "clientId": self.oauth_client_id});
                exosphere_task::spawn(publish_once(
                    sub,
                    LOGIN_CONFIG_COLLECTION,
                    "meteor-developer",
                    fields,
                ));
            }
            "defaults" => {
                let fields = json!({"syncToken": {"format": "1.1"}});
                exosphere_task::spawn(publish_once(sub, "defaults", "defaults", fields));
            }
            "changes" => {
                exosphere_task::spawn(publish_state(
                    sub,
                    "changes",
                    self.catalog.clone(),
                    change_docs,
                ));
            }
            "stats" => {
                exosphere_task::spawn(publish_state(
                    sub,
                    "stats",
                    self.catalog.clone(),
                    stats_docs,
                ));
            }
            _ => return Err(DdpError::sub_not_found(name)),
        }
        Ok(())
    }
}

/// Publishes one fixed document, then `ready`; these publications never change.
async fn publish_once(
    sub: Subscription,
    collection: &'static str,
    id: &'static str,
    fields: Value,
) {
    if sub.added(collection, id, plain(fields)).await.is_ok() {
        let _ = sub.ready().await;
    }
}

/// Documents a publication derives from the catalog state: `(id, fields)`, always the same ids
/// in the same order.
type StateDocs = Vec<(&'static str, Map<String, Value>)>;

/// The `changes` publication (spec §4.3): one document per collection whose `changes`
/// counter moves with every insert or update, from this process or any other.
fn change_docs(state: &CatalogState) -> StateDocs {
    Collection::ALL
        .iter()
        .map(|&collection| {
            let mut fields = Map::new();
            fields.insert("collection".into(), collection.as_str().into());
            fields.insert("changes".into(), state.changes(collection).into());
            (collection.as_str(), fields)
        })
        .collect()
}

/// The `stats` publication (spec §4.4): the first and last day with `/stats/v1` data, left
/// out (rather than sent as null) while there is none.
fn stats_docs(state: &CatalogState) -> StateDocs {
    let mut fields = Map::new();
    if let (Some(earliest), Some(latest)) = (&state.stats_earliest, &state.stats_latest) {
        fields.insert("earliest".into(), earliest.clone().into());
        fields.insert("latest".into(), latest.clone().into());
    }
    vec![("stats", fields)]
}

/// Publishes the documents `docs` derives from the catalog state, then follows the watcher:
/// each document whose fields move gets a `changed` with the new values and the cleared keys.
///
/// Between changes it keeps only the state it last published (a few counters), not the
/// documents: with thousands of idle subscribers, the documents are built when they move.
async fn publish_state(
    sub: Subscription,
    collection: &'static str,
    mut catalog: watch::Receiver<CatalogState>,
    docs: fn(&CatalogState) -> StateDocs,
) {
    let mut published = catalog.borrow_and_update().clone();
    for (id, fields) in docs(&published) {
        if sub
            .added(collection, id, plain(Value::Object(fields)))
            .await
            .is_err()
        {
            return;
        }
    }
    if sub.ready().await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            () = sub.stopped() => return,
            changed = catalog.changed() => {
                if changed.is_err() {
                    return;
                }
                let state = catalog.borrow_and_update().clone();
                let (sent, now) = (docs(&published), docs(&state));
                for ((id, old), (_, new)) in sent.iter().zip(&now) {
                    if old == new {
                        continue;
                    }
                    let fields: Map<String, Value> = new
                        .iter()
                        .filter(|(key, value)| old.get(*key) != Some(*value))
                        .map(|(key, value)| (key.clone(), value.clone()))
                        .collect();
                    let cleared = old.keys().filter(|key| !new.contains_key(*key)).cloned().collect();
                    if sub.changed(collection, id, plain(Value::Object(fields)), cleared).await.is_err() {
                        return;
                    }
                }
                published = state;
            }
        }
    }
}

/// Converts server-built plain JSON (no `$` keys) into an EJSON document.
fn plain(value: Value) -> Ejson {
    Ejson::from_json(value).expect("server-built documents contain no EJSON tags")
}
