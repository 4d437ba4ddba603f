//! Fresh PostgreSQL databases for tests: each store gets a database of its own, created
//! from a connection to `EXOSPHERE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped when its owner is dropped, so
//! tests run in parallel without seeing each other's data.

use postgres::{Client, Config, NoTls};
use rand::Rng as _;

/// The server tests use: the URL of an existing database to connect to for creating others.
fn admin_url() -> String {
    std::env::var("EXOSPHERE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs `sql` on the admin database, from a thread of its own: the blocking `postgres`
/// client refuses to run inside a Tokio runtime, and factories are called in some.
pub fn admin_execute(sql: String) -> Result<(), postgres::Error> {
    std::thread::spawn(move || {
        let url = admin_url();
        Client::connect(&url, NoTls)
            .unwrap_or_else(|error| {
                panic!(
                    "the PostgreSQL tests need a server at {url} (set \
                     EXOSPHERE_TEST_DATABASE_URL): {error}"
                )
            })
            .batch_execute(&sql)
    })
    .join()
    .expect("the admin statement did not panic")
}

/// An empty database, dropped (with any connections still open to it) on drop.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database with a random name, from `template0` so that nothing
    /// added to the server's `template1` ends up in it, storing text as UTF-8 (as the
    /// catalog requires) whatever the server's default encoding. Its default collation is ICU's
    /// `en-US`, which sorts `a ä a-b ab b B Z` where bytes sort `B Z a a-b ab b ä`: every
    /// test then shows that the catalog orders names by bytes, as SQLite does, whatever the
    /// database's locale. `LOCALE_PROVIDER icu` needs PostgreSQL 15 or later, built with ICU.
    pub fn new() -> TestDatabase {
        let name = format!("exo_t_{:016x}", rand::rng().random::<u64>());
        admin_execute(format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu \
             ICU_LOCALE 'en-US'"
        ))
        .expect("a test database is created");
        let mut config: Config = admin_url().parse().expect("a valid test URL");
        config.dbname(&name);
        let url = url_of(&config);
        TestDatabase { name, url }
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let dropped = admin_execute(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
        if let Err(error) = dropped {
            eprintln!("could not drop the test database {}: {error}", self.name);
        }
    }
}

/// `config` as a key-value connection string (which `postgres` accepts as a URL too).
fn url_of(config: &Config) -> String {
    let mut parts = Vec::new();
    if let Some(postgres::config::Host::Tcp(host)) = config.get_hosts().first() {
        parts.push(format!("host={host}"));
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!(
            "password={}",
            String::from_utf8_lossy(password)
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
        ));
    }
    if let Some(dbname) = config.get_dbname() {
        parts.push(format!("dbname={dbname}"));
    }
    parts.join(" ")
}
