//! The package server as a DDP service: the methods and publications of spec §3 and §4.
//!
//! This is the only place where DDP meets the catalog. Methods that touch the database run on
//! tokio's blocking pool so a slow query never stalls the runtime's worker threads; the
//! publications follow the catalog watcher so that writes by any process reach subscribers.

use std::sync::Arc;

use exosphere_catalog::{CatalogState, Collection, SyncError, Syncer};
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{DdpError, MethodContext, Reply, Service, SessionContext, Subscription};
use serde_json::{Value, json};
use tokio::sync::watch;

/// Collection the `meteor` tool watches for the OAuth configuration (spec §4.1).
const LOGIN_CONFIG_COLLECTION: &str = "meteor_accounts_loginServiceConfiguration";

/// Everything the DDP methods and publications need, shared by all sessions.
pub struct PackageService {
    syncer: Arc<Syncer>,
    catalog: watch::Receiver<CatalogState>,
    oauth_client_id: String,
}

impl PackageService {
    /// `catalog` is the watcher's view of the store; publications push its changes live.
    pub fn new(
        syncer: Arc<Syncer>,
        catalog: watch::Receiver<CatalogState>,
        oauth_client_id: String,
    ) -> Self {
        Self {
            syncer,
            catalog,
            oauth_client_id,
        }
    }

    /// `syncNewPackageData(syncToken, options)` (spec §3): the catalog builds the encoded
    /// result, which is handed to the session without being parsed again. While the client
    /// parses that page, the next one is computed in the background.
    async fn sync_new_package_data(&self, params: Vec<Ejson>) -> Result<Reply, DdpError> {
        let mut params = params.into_iter();
        let token = params
            .next()
            .map_or_else(|| json!({}), |token| token.to_json());
        let options = params
            .next()
            .map_or(Value::Null, |options| options.to_json());
        let syncer = Arc::clone(&self.syncer);
        let answer = tokio::task::spawn_blocking(move || syncer.answer(&token, &options)).await;
        match answer {
            Ok(Ok(answer)) => {
                if let Some(next) = answer.next {
                    let syncer = Arc::clone(&self.syncer);
                    tokio::task::spawn_blocking(move || syncer.prefetch(&next));
                }
                Ok(Reply::Raw(answer.text))
            }
            Ok(Err(SyncError::BadToken(reason))) => Err(DdpError::bad_request(reason)),
            Ok(Err(error)) => {
                tracing::error!(%error, "syncNewPackageData failed");
                Err(DdpError::internal())
            }
            Err(error) => {
                tracing::error!(%error, "syncNewPackageData task failed");
                Err(DdpError::internal())
            }
        }
    }
}

impl Service for PackageService {
    async fn call(
        &self,
        _ctx: &MethodContext,
        method: &str,
        params: Vec<Ejson>,
    ) -> Result<Reply, DdpError> {
        match method {
            "syncNewPackageData" => self.sync_new_package_data(params).await,
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
                tokio::spawn(publish_once(
                    sub,
                    LOGIN_CONFIG_COLLECTION,
                    "meteor-developer",
                    fields,
                ));
            }
            "defaults" => {
                let fields = json!({"syncToken": {"format": "1.1"}});
                tokio::spawn(publish_once(sub, "defaults", "defaults", fields));
            }
            "changes" => {
                tokio::spawn(publish_changes(sub, self.catalog.clone()));
            }
            "stats" => {
                tokio::spawn(publish_stats(sub, self.catalog.clone()));
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

/// The `changes` publication (spec §4.3): one document per collection whose `changes`
/// counter moves with every insert or update, from this process or any other.
async fn publish_changes(sub: Subscription, mut catalog: watch::Receiver<CatalogState>) {
    let mut sent = catalog.borrow_and_update().clone();
    for collection in Collection::ALL {
        let fields =
            json!({"collection": collection.as_str(), "changes": sent.changes(collection)});
        if sub
            .added("changes", collection.as_str(), plain(fields))
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
                let now = catalog.borrow_and_update().clone();
                for collection in Collection::ALL {
                    if now.changes(collection) != sent.changes(collection) {
                        let fields = json!({"changes": now.changes(collection)});
                        if sub.changed("changes", collection.as_str(), plain(fields), Vec::new()).await.is_err() {
                            return;
                        }
                    }
                }
                sent = now;
            }
        }
    }
}

/// The `stats` publication (spec §4.4): the first and last day with `/stats/v1` data.
async fn publish_stats(sub: Subscription, mut catalog: watch::Receiver<CatalogState>) {
    const ID: &str = "stats";
    let mut sent = stats_range(&catalog.borrow_and_update());
    if sub
        .added("stats", ID, plain(range_fields(&sent)))
        .await
        .is_err()
        || sub.ready().await.is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            () = sub.stopped() => return,
            changed = catalog.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = stats_range(&catalog.borrow_and_update());
                if now == sent {
                    continue;
                }
                let cleared = if now.0.is_none() {
                    vec!["earliest".to_owned(), "latest".to_owned()]
                } else {
                    Vec::new()
                };
                if sub.changed("stats", ID, plain(range_fields(&now)), cleared).await.is_err() {
                    return;
                }
                sent = now;
            }
        }
    }
}

/// The `(earliest, latest)` stats days; both present or both absent.
fn stats_range(state: &CatalogState) -> (Option<String>, Option<String>) {
    (state.stats_earliest.clone(), state.stats_latest.clone())
}

/// Fields of the `stats` document: absent days are left out rather than sent as null.
fn range_fields(range: &(Option<String>, Option<String>)) -> Value {
    let mut fields = serde_json::Map::new();
    if let (Some(earliest), Some(latest)) = range {
        fields.insert("earliest".into(), earliest.clone().into());
        fields.insert("latest".into(), latest.clone().into());
    }
    Value::Object(fields)
}

/// Converts server-built plain JSON (no `$` keys) into an EJSON document.
fn plain(value: Value) -> Ejson {
    Ejson::from_json(value).expect("server-built documents contain no EJSON tags")
}
