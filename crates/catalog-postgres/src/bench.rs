//! What `exosphere bench postgres` needs of PostgreSQL besides the store: scratch databases
//! of its own (so a benchmark never touches a catalog), and the physical limit an import is
//! measured against, a raw `COPY` of the dump's bytes.

use std::io::Read;
use std::time::{Duration, Instant};

use bytes::Bytes;
use exosphere_catalog::columns::new_epoch;
use exosphere_catalog::error::StoreError;
use futures_util::SinkExt as _;
use tokio_postgres::Config;

use crate::bridge::{connect, wait};
use crate::error::{Db as _, refusal};

/// How long connecting to the benchmark's server may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// How many bytes of the dump the raw `COPY` sends at a time (as the store's bulk load).
const CHUNK: usize = 256 * 1024;

/// An empty database created for a benchmark on the server of a URL, dropped (with any
/// connection still open to it) when this is dropped.
pub struct ScratchDatabase {
    server: Config,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates the empty database `exosphere_bench_<random>` on the server of `url` (whose
    /// user needs the CREATEDB privilege), from `template0`.
    pub fn create(url: &str) -> Result<ScratchDatabase, StoreError> {
        let server: Config = url.parse().map_err(|error| {
            refusal(format!(
                "the database URL is not a PostgreSQL connection string ({error}); write it as \
                 postgres://user@host:port/dbname"
            ))
        })?;
        let name = format!("exosphere_bench_{}", new_epoch().to_lowercase());
        execute(
            &server,
            &format!("CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"),
        )?;
        let mut config = server.clone();
        config.dbname(&name);
        Ok(ScratchDatabase {
            url: key_value(&config),
            server,
            name,
        })
    }

    /// Its connection string, for `open_postgres` and `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let dropped = execute(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        if let Err(error) = dropped {
            tracing::warn!(%error, database = %self.name, "could not drop a benchmark database");
        }
    }
}

/// Runs `sql` (no parameters) on a connection of its own to `config`'s database.
fn execute(config: &Config, sql: &str) -> Result<(), StoreError> {
    let client = connect(config, CONNECT_LIMIT).map_err(|error| {
        refusal(format!(
            "cannot connect to the benchmark's PostgreSQL server: {error}"
        ))
    })?;
    wait(client.batch_execute(sql)).db()
}

/// `config` as a connection string of `key='value'` words, which every libpq-style parser
/// takes, with values quoted and escaped.
fn key_value(config: &Config) -> String {
    let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut words = Vec::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(host) => words.push(format!("host={}", quote(host))),
            tokio_postgres::config::Host::Unix(path) => {
                words.push(format!("host={}", quote(&path.display().to_string())));
            }
        }
    }
    if let Some(port) = config.get_ports().first() {
        words.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        words.push(format!("user={}", quote(user)));
    }
    if let Some(password) = config.get_password() {
        words.push(format!(
            "password={}",
            quote(&String::from_utf8_lossy(password))
        ));
    }
    if let Some(dbname) = config.get_dbname() {
        words.push(format!("dbname={}", quote(dbname)));
    }
    words.join(" ")
}

/// Copies `input`'s bytes unchanged, one line per row, into a new table of one text column
/// without any index in the database at `url`, with `COPY` in one transaction, and drops the
/// table again: the physical limit of moving a dump into PostgreSQL durably, which an import
/// is measured against. Returns the time from the first byte sent to the commit.
pub fn raw_copy(url: &str, mut input: impl Read) -> Result<Duration, StoreError> {
    let config: Config = url
        .parse()
        .map_err(|error| refusal(format!("not a PostgreSQL connection string: {error}")))?;
    let mut client = connect(&config, CONNECT_LIMIT)
        .map_err(|error| refusal(format!("cannot connect to {url}: {error}")))?;
    wait(client.batch_execute("CREATE TABLE exosphere_raw_copy (line TEXT)")).db()?;
    let started = Instant::now();
    let tx = wait(client.transaction()).db()?;
    // CSV with a delimiter and quote that never occur in a dump (JSON escapes control
    // characters), so every line arrives as it is, backslashes included.
    let sink = wait(tx.copy_in(
        "COPY exosphere_raw_copy (line) FROM STDIN \
         WITH (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')",
    ))
    .db()?;
    let mut sink = Box::pin(sink);
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = input
            .read(&mut buffer)
            .map_err(|error| StoreError::Database(Box::new(error)))?;
        if read == 0 {
            break;
        }
        wait(sink.send(Bytes::copy_from_slice(&buffer[..read]))).db()?;
    }
    wait(sink.as_mut().finish()).db()?;
    wait(tx.commit()).db()?;
    let elapsed = started.elapsed();
    wait(client.batch_execute("DROP TABLE exosphere_raw_copy")).db()?;
    Ok(elapsed)
}
