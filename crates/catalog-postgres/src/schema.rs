//! Creating and checking the schema at open, and refusing a server that would lose
//! commits.
//!
//! Schema version 1 holds what SQLite's version 7 holds (see `exosphere-catalog-sqlite`),
//! in PostgreSQL's types: `BIGINT` counters and times, `BOOLEAN` flags, `TEXT` for
//! everything else. Record text stays `TEXT` (never `json`/`jsonb`, which would not keep the
//! exact bytes sync pages splice). Every key column that is compared or ordered is
//! `COLLATE "C"`, so names sort by bytes as SQLite sorts them, whatever the database's
//! locale. The version is the one row of `exosphere_schema`; a later version appends a step
//! to [`STEPS`] (a step never changes once released).
//!
//! # Rolling deploys
//!
//! Servers of different releases may share the database while a deploy rolls through
//! them, so the row also records `compatible`: the oldest schema version whose code may
//! still use the database. The first server of a newer release to open it applies the new
//! steps (once, under [`SCHEMA_LOCK`]) and records the highest `compatible` of all the
//! steps applied so far (a later additive step never lowers it again): an additive step
//! (a new table, a nullable column) keeps older code's version, so older servers keep
//! running and may still start; a step older code cannot use raises it, and
//! older servers then refuse to start, naming the upgrade ([`StoreError::SchemaTooNew`]),
//! while those already running must be stopped before such a release is deployed (its
//! release notes say so). Version 2 adds the upload marks' owner (`uploads.receiver`) and
//! this rule itself; version 1 code knows no `compatible` and refuses it. Version 3 adds the
//! natural-key columns of the record tables (`keys.rs`), filled from the records already
//! stored, and is incompatible: version 2 code would insert records with those columns
//! NULL, which lookups (publishing's checks among them) would then not find.

use exosphere_catalog::columns::{new_epoch, snake};
use exosphere_catalog::error::StoreError;
use exosphere_meteor::Collection;
use tokio_postgres::Client;

use crate::bridge::wait;
use crate::error::{Db as _, refusal};
use crate::keys::{KEY_COLUMNS, NATURAL_KEY_INDEXES_V1};

/// The schema version this build creates and reads.
pub(crate) const SCHEMA_VERSION: i64 = 1 + STEPS.len() as i64;

/// One upgrade step: the SQL that takes the schema from the version before it to its own,
/// and the oldest schema version whose code may use the result (see "Rolling deploys").
struct Step {
    sql: &'static str,
    compatible: i64,
}

/// The upgrade steps after version 1, in order: `STEPS[0]` makes version 2.
const STEPS: [Step; 2] = [
    Step {
        // Which server's seat receives an upload (`servers.rs`), and the compatibility rule.
        sql: "ALTER TABLE uploads ADD COLUMN receiver TEXT;
              ALTER TABLE exosphere_schema ADD COLUMN compatible BIGINT NOT NULL DEFAULT 1;",
        compatible: 2,
    },
    Step {
        // The natural-key columns (`keys.rs`). Version 2 code would store records without
        // them, and lookups would then miss those records: it must not use version 3.
        sql: KEY_COLUMNS,
        compatible: 3,
    },
];

/// The `pg_advisory_xact_lock` key that serializes schema creation and upgrades across
/// processes: "EXOS" in ASCII, as SQLite catalogs' `application_id`.
const SCHEMA_LOCK: i64 = 0x4558_4F53;

/// Refuses a connection whose commits may be lost in a crash (`synchronous_commit = off`,
/// or the server's `fsync = off`): sync clients would have seen sequence numbers that are
/// then handed out again for other records, and would skip those records forever.
pub(crate) fn check_durability(client: &mut Client, database: &str) -> Result<(), StoreError> {
    let row = wait(client.query_one(
        "SELECT current_setting('synchronous_commit'), current_setting('fsync')",
        &[],
    ))
    .db()?;
    let synchronous_commit: String = row.try_get(0).db()?;
    let fsync: String = row.try_get(1).db()?;
    if synchronous_commit == "off" {
        return Err(refusal(format!(
            "{database} has synchronous_commit = off, so a crash can lose commits that sync \
             clients already saw; set it on (ALTER DATABASE <name> SET synchronous_commit = \
             on, or in postgresql.conf, then reconnect) before serving the catalog from it"
        )));
    }
    if fsync == "off" {
        return Err(refusal(format!(
            "the PostgreSQL server of {database} has fsync = off, so a crash can lose or \
             corrupt commits that sync clients already saw; set fsync = on in postgresql.conf \
             and reload the server before serving the catalog from it"
        )));
    }
    Ok(())
}

/// Refuses a database that does not store text as UTF-8: record text, names and keys are
/// UTF-8, and another encoding would refuse some of them (or, as `SQL_ASCII`, store bytes
/// unchecked, which PostgreSQL's JSON functions behind the natural-key indexes do not
/// expect).
pub(crate) fn check_encoding(client: &mut Client, database: &str) -> Result<(), StoreError> {
    let encoding: String = wait(client.query_one("SHOW server_encoding", &[]))
        .db()?
        .try_get(0)
        .db()?;
    if encoding != "UTF8" {
        return Err(refusal(format!(
            "{database} stores text as {encoding}, and the catalog needs UTF8; create a \
             database for it with CREATE DATABASE <name> ENCODING 'UTF8' TEMPLATE template0 \
             and point the database URL at that one"
        )));
    }
    Ok(())
}

/// Creates the schema in a database (its current schema, `public` by default) holding
/// nothing yet, or checks that this build can read the one it has; a database holding
/// anything else is [`StoreError::NotACatalog`]. Runs in one transaction under an advisory
/// lock, so that servers opening an empty database at once create it exactly once (the
/// others wait, then find it). The wait for that lock has no time limit: another server's
/// upgrade of a large catalog takes as long as it takes, and a server giving up after the
/// connection's `lock_timeout` would only exit. The rest of the transaction keeps the limit.
pub(crate) fn init(client: &mut Client, database: &str) -> Result<(), StoreError> {
    let tx = wait(client.transaction()).db()?;
    let taken: bool = wait(tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SCHEMA_LOCK]))
        .db()?
        .try_get(0)
        .db()?;
    if !taken {
        tracing::info!(
            database,
            "waiting for another Exosphere process creating or upgrading the schema"
        );
        let limit: String = wait(tx.query_one("SHOW lock_timeout", &[]))
            .db()?
            .try_get(0)
            .db()?;
        wait(tx.batch_execute("SET LOCAL lock_timeout = 0")).db()?;
        wait(tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])).db()?;
        wait(tx.execute("SELECT set_config('lock_timeout', $1, true)", &[&limit])).db()?;
    }
    let exists: bool =
        wait(tx.query_one("SELECT to_regclass('exosphere_schema') IS NOT NULL", &[]))
            .db()?
            .try_get(0)
            .db()?;
    if exists {
        let version: i64 = wait(tx.query_one("SELECT version FROM exosphere_schema", &[]))
            .db()?
            .try_get(0)
            .db()?;
        if version < 1 {
            return Err(StoreError::Corrupt(format!(
                "unknown schema version {version}"
            )));
        }
        if version > SCHEMA_VERSION {
            let compatible: i64 =
                wait(tx.query_one("SELECT compatible FROM exosphere_schema", &[]))
                    .db()?
                    .try_get(0)
                    .db()?;
            if compatible > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew {
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            tracing::info!(
                database,
                version,
                supported = SCHEMA_VERSION,
                "a newer release upgraded the catalog schema compatibly; this server uses it \
                 as before"
            );
        }
        for (step, to) in STEPS
            .iter()
            .zip(2i64..)
            .skip(usize::try_from(version - 1).unwrap_or(0))
        {
            wait(tx.batch_execute(step.sql)).db()?;
            wait(tx.execute(
                "UPDATE exosphere_schema SET version = $1, \
                 compatible = GREATEST(compatible, $2)",
                &[&to, &step.compatible],
            ))
            .db()?;
            tracing::info!(database, version = to, "upgraded the catalog schema");
        }
    } else {
        // As a SQLite catalog is created only in an empty file: tables of another
        // application are not mixed with ours.
        let others: i64 = wait(tx.query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace",
            &[],
        ))
        .db()?
        .try_get(0)
        .db()?;
        if others > 0 {
            return Err(StoreError::NotACatalog(database.into()));
        }
        wait(tx.batch_execute(&schema_sql())).db()?;
        for step in &STEPS {
            wait(tx.batch_execute(step.sql)).db()?;
        }
        wait(tx.execute(
            "INSERT INTO meta (id, epoch, head_seq) VALUES (1, $1, 0)",
            &[&new_epoch()],
        ))
        .db()?;
        let compatible = STEPS.iter().map(|step| step.compatible).max().unwrap_or(1);
        wait(tx.execute(
            "INSERT INTO exosphere_schema (id, version, compatible) VALUES (1, $1, $2)",
            &[&SCHEMA_VERSION, &compatible],
        ))
        .db()?;
        tracing::info!(
            database,
            version = SCHEMA_VERSION,
            "created the catalog schema"
        );
    }
    wait(tx.commit()).db()
}

/// The `CREATE` statements of schema version 1 (its natural-key indexes included, which
/// version 3 replaces).
fn schema_sql() -> String {
    let mut sql = String::from(
        "CREATE TABLE exosphere_schema (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             version BIGINT NOT NULL
         );
         CREATE TABLE meta (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             epoch TEXT NOT NULL,
             head_seq BIGINT NOT NULL",
    );
    for c in Collection::ALL {
        sql.push_str(&format!(
            ",\n changes_{} BIGINT NOT NULL DEFAULT 0",
            snake(c)
        ));
    }
    sql.push_str(");\n");
    for c in Collection::ALL {
        sql.push_str(&format!(
            "CREATE TABLE rec_{} (
                 seq BIGINT PRIMARY KEY,
                 id TEXT COLLATE \"C\" NOT NULL UNIQUE,
                 last_updated BIGINT,
                 json TEXT NOT NULL
             );\n",
            snake(c)
        ));
    }
    for create in NATURAL_KEY_INDEXES_V1 {
        sql.push_str(create);
        sql.push_str(";\n");
    }
    sql.push_str(
        "CREATE TABLE stats (
             day TEXT COLLATE \"C\" NOT NULL,
             name TEXT COLLATE \"C\" NOT NULL,
             version TEXT COLLATE \"C\" NOT NULL,
             direct_adds BIGINT NOT NULL,
             total_adds BIGINT NOT NULL,
             PRIMARY KEY (day, name, version)
         );
         CREATE INDEX stats_by_name ON stats (name, day, version)
             INCLUDE (direct_adds, total_adds);
         CREATE TABLE usage_apps (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             app TEXT COLLATE \"C\" NOT NULL UNIQUE,
             list_hash BIGINT NOT NULL
         );
         CREATE TABLE usage_packages (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             name TEXT COLLATE \"C\" NOT NULL,
             version TEXT COLLATE \"C\" NOT NULL,
             UNIQUE (name, version)
         );
         CREATE TABLE usage_adds (
             app_id BIGINT NOT NULL,
             package_id BIGINT NOT NULL,
             day INTEGER NOT NULL,
             direct BOOLEAN NOT NULL,
             PRIMARY KEY (app_id, package_id)
         );
         CREATE INDEX usage_adds_by_day ON usage_adds (day, package_id, direct);
         CREATE TABLE usage_days (
             day TEXT COLLATE \"C\" PRIMARY KEY,
             pending BOOLEAN NOT NULL,
             rolled_up BOOLEAN NOT NULL
         );
         CREATE TABLE users (
             id TEXT COLLATE \"C\" PRIMARY KEY,
             username TEXT COLLATE \"C\" NOT NULL UNIQUE,
             admin BOOLEAN NOT NULL
         );
         CREATE TABLE orgs (
             id TEXT COLLATE \"C\" PRIMARY KEY,
             name TEXT COLLATE \"C\" NOT NULL UNIQUE
         );
         CREATE TABLE org_members (
             org_id TEXT COLLATE \"C\" NOT NULL,
             user_id TEXT COLLATE \"C\" NOT NULL,
             PRIMARY KEY (org_id, user_id)
         );
         CREATE TABLE tokens (
             id TEXT COLLATE \"C\" PRIMARY KEY,
             hash TEXT COLLATE \"C\" NOT NULL UNIQUE,
             user_id TEXT COLLATE \"C\" NOT NULL,
             created BIGINT NOT NULL,
             expires BIGINT NOT NULL
         );
         CREATE INDEX tokens_by_user ON tokens (user_id, created, id);
         CREATE TABLE uploads (
             hash TEXT COLLATE \"C\" PRIMARY KEY,
             staging TEXT NOT NULL,
             destination TEXT NOT NULL,
             max_size BIGINT NOT NULL,
             expires BIGINT NOT NULL,
             state TEXT NOT NULL,
             size BIGINT,
             sha256 TEXT
         );
         CREATE INDEX uploads_by_expiry ON uploads (expires);
         CREATE TABLE pending (
             hash TEXT COLLATE \"C\" PRIMARY KEY,
             kind TEXT COLLATE \"C\" NOT NULL,
             subject TEXT COLLATE \"C\" NOT NULL,
             user_id TEXT COLLATE \"C\" NOT NULL,
             record TEXT NOT NULL,
             uploads TEXT NOT NULL,
             expires BIGINT NOT NULL
         );
         CREATE INDEX pending_by_subject ON pending (kind, subject);
         CREATE INDEX pending_by_user ON pending (user_id, expires);
         CREATE TABLE mirror_state (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             upstream TEXT NOT NULL,
             token TEXT,
             staging_token TEXT,
             held TEXT,
             last_success BIGINT,
             last_error_at BIGINT,
             last_error TEXT,
             sync_requested BIGINT
         );
         CREATE TABLE mirror_stage (
             ord BIGSERIAL PRIMARY KEY,
             collection TEXT COLLATE \"C\" NOT NULL,
             id TEXT COLLATE \"C\" NOT NULL,
             last_updated BIGINT,
             json TEXT NOT NULL,
             UNIQUE (collection, id)
         );
         CREATE TABLE mirror_stage_files (
             ord BIGSERIAL PRIMARY KEY,
             key TEXT COLLATE \"C\" NOT NULL,
             url TEXT NOT NULL,
             sha256 TEXT
         );
         CREATE TABLE mirror_files (
             key TEXT COLLATE \"C\" PRIMARY KEY,
             url TEXT NOT NULL,
             sha256 TEXT,
             cached_size BIGINT
         );
         CREATE INDEX mirror_files_cached ON mirror_files (cached_size)
             WHERE cached_size IS NOT NULL;
         CREATE TABLE mirror_claims (
             kind TEXT COLLATE \"C\" NOT NULL,
             name TEXT COLLATE \"C\" NOT NULL,
             PRIMARY KEY (kind, name)
         );
         CREATE TABLE audit (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             time BIGINT NOT NULL,
             actor TEXT COLLATE \"C\" NOT NULL,
             address TEXT,
             action TEXT NOT NULL,
             target TEXT NOT NULL,
             package TEXT COLLATE \"C\",
             detail TEXT NOT NULL
         );
         CREATE INDEX audit_by_time ON audit (time, id);
         CREATE INDEX audit_by_actor ON audit (actor, time, id);
         CREATE INDEX audit_by_package ON audit (package, time, id);",
    );
    sql
}
