//! End-to-end tests of the `exosphere` binary: real servers on loopback ports, driven over real
//! WebSockets and HTTP and through the CLI, with real SQLite files and, where a test runs on
//! every backend, a real PostgreSQL database (`Backend`).
//!
//! One test binary with a module per concern, so a change relinks one executable, not one per
//! concern. `common` is the shared harness; run one concern with `cargo test --test e2e publish::`.

mod common;
/// Fresh PostgreSQL databases, the same helper the PostgreSQL store's own tests use.
#[path = "../../crates/catalog-postgres/tests/common/mod.rs"]
mod pg_database;

mod abuse;
mod audit;
mod backup;
mod bounded_records;
mod browser;
mod browser_catalog;
mod cli;
mod client_sync;
mod compression;
mod crash;
mod ddp_transports;
mod ddp_wire;
mod disk;
mod fake_upstream;
mod http;
mod in_process;
mod interop;
mod migrate;
mod mirror;
mod pg_restore;
mod postgres;
mod publications;
mod publish;
mod query_commands;
mod several_servers;
mod sockjs_protocol;
mod stats;
mod sync;
mod web_api;
mod web_pages;
mod web_readme;
