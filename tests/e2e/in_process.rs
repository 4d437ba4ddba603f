//! A whole server started in process with the library's `server::start` and `server::run`,
//! the pieces `exosphere serve` is made of: it syncs the 2015 fixture to a DDP client over a
//! real WebSocket and stops when its shutdown future resolves.

use std::sync::Arc;

use exosphere::server::{self, Config};
use serde_json::json;

use crate::common::{Ddp, PATIENCE, fixture, fixture_catalog, import, sync_loop};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_in_process_syncs_the_catalog_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &fixture());
    let store = Arc::new(exosphere_catalog_sqlite::open_sqlite(dir.path()).unwrap());
    let state = server::start(store, None, &Config::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server::run(listener, state, async {
        let _ = stopped.await;
    }));

    let mut ddp = Ddp::connect(&format!("ws://{address}/websocket")).await;
    let synced = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    assert_eq!(synced.catalog, fixture_catalog());

    stop.send(()).unwrap();
    let closed = tokio::time::timeout(PATIENCE, ddp.recv_or_close()).await;
    assert!(matches!(closed, Ok(None)), "the session closes on shutdown");
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
}
