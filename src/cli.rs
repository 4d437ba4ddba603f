//! The command line: every subcommand, flag, default and `EXOSPHERE_*` environment variable.
//!
//! This module only describes the interface (with clap's derive API) and the help texts a
//! newcomer reads; the work behind each subcommand lives in `commands/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use exosphere_synth::Scale;

/// Top-level parser for the `exosphere` binary.
#[derive(Debug, Parser)]
#[command(
    name = "exosphere",
    version,
    about = "A self-hostable Meteor package server",
    long_about = "Exosphere serves a Meteor package catalog over DDP, exactly as the `meteor` \
                  tool expects, from an embedded SQLite database or from PostgreSQL \
                  (--database-url).\n\n\
                  Quick start:\n  \
                  exosphere serve --demo\n  \
                  METEOR_PACKAGE_SERVER_URL=http://127.0.0.1:3000 meteor show ecmascript\n\n\
                  Every flag can also be set with the environment variable named in its help."
)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "EXOSPHERE_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written; JSON suits log collectors, text suits people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether `serve` keeps the JSON API's read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadModelMode {
    /// Keep it in the data directory and answer the JSON API from it.
    On,
    /// No read model and no feeder: the JSON API answers 503 `api_disabled`.
    Off,
}

/// The subcommands.
// Parsed once per process: the size of the `serve` flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the catalog over DDP (WebSocket at /websocket) and HTTP.
    #[command(
        long_about = "Serve the catalog over DDP (raw WebSocket at /websocket) and HTTP \
                      (/, /healthz, /stats/v1/YYYY-MM-DD).\n\n\
                      Point the meteor tool at it with\n  \
                      METEOR_PACKAGE_SERVER_URL=http://<listen address> meteor <command>\n\n\
                      It is the stats server too (METEOR_PACKAGE_STATS_SERVER_URL): it records \
                      recordAppPackages calls and rolls each UTC day up into /stats/v1 shortly \
                      after midnight (docs/STATS.md).\n\n\
                      Other processes (`exosphere import`) may write to the same data \
                      directory while it runs; connected clients see their changes within a \
                      second."
    )]
    Serve(ServeArgs),
    /// Load a catalog dump (NDJSON) into the catalog (--data-dir or --database-url).
    #[command(
        long_about = "Load a catalog dump (NDJSON, see docs/catalog-dump.md) into the catalog: \
                      SQLite in the data directory, or the PostgreSQL database of \
                      --database-url. Records replace stored records with the same collection \
                      and _id; a file with any error stores nothing and the error names the \
                      line.\n\n\
                      A file imported into an empty catalog is bulk loaded (COPY on \
                      PostgreSQL), several times faster; a dump the bulk load refuses (an _id, \
                      a stats row or a version's name@version twice) is then imported record \
                      by record, and any other failure fails the import. Loads are fastest \
                      when each collection's lines come together, as export writes them.\n\n\
                      Safe while `exosphere serve` runs on the same catalog: the import holds \
                      the catalog's write lock for its one transaction, so the server's writes \
                      wait for it (failing as busy past the 30 s timeout) and then go on in \
                      the imported catalog."
    )]
    Import(ImportArgs),
    /// Write the whole catalog as a dump (NDJSON) that `import` accepts.
    Export(ExportArgs),
    /// Copy the catalog database, consistently, while a server runs: a backup file.
    #[command(
        long_about = "Copy the catalog database (accounts, tokens, stats and mirror rows \
                      included) into one backup file, consistently, while `exosphere serve` \
                      runs and writes: the copy is one snapshot, and writers are never \
                      blocked. The file also holds a manifest of every package file the \
                      catalog refers to (blob key and SHA-256), so the file store, which \
                      this command does not copy, can be checked against it with \
                      `exosphere verify --backup FILE`. FILE appears whole or not at all.\n\n\
                      Example:\n  \
                      exosphere backup --data-dir /var/lib/exosphere --output /backups/catalog-$(date +%F).exosphere\n\n\
                      docs/OPERATIONS.md gives the whole procedure, package files included.",
        mut_arg("database_url", sqlite_only)
    )]
    Backup(BackupArgs),
    /// Put a backup file in place as a data directory's catalog, in a new data epoch.
    #[command(
        long_about = "Put a backup file (from `exosphere backup`) in place as the catalog of \
                      a data directory. The server must be stopped: restore takes the data \
                      directory's serve lock and refuses while a server holds it. The backup \
                      is checked (integrity_check) before anything changes; a catalog already \
                      in the directory is replaced only with --force, and is then kept beside \
                      it as catalog.sqlite3.replaced-<time>, never deleted.\n\n\
                      The restored catalog starts a new data epoch: its sequence numbers are \
                      older than what clients may have synced, so every client gets \
                      `resetData` once on its next sync and then the restored catalog in \
                      full, rather than skipping records.\n\n\
                      Example:\n  \
                      exosphere restore --input /backups/catalog-2026-12-01.exosphere --data-dir /var/lib/exosphere --force",
        mut_arg("database_url", sqlite_only)
    )]
    Restore(RestoreArgs),
    /// Check a catalog or a backup: the database's integrity and every file it refers to.
    #[command(
        long_about = "Check a data directory's catalog (or, with --backup, a backup file) and \
                      the package file store: `PRAGMA integrity_check` on the database, then \
                      every file published here that the catalog refers to must be in the \
                      file store with the SHA-256 the catalog records. Mirrored files are a \
                      cache: a missing one is fetched again on request and is not a problem, \
                      but a cached one with the wrong hash is. Prints each problem and a \
                      summary, and exits non-zero on any problem. Safe while a server runs.\n\n\
                      Examples:\n  \
                      exosphere verify --data-dir /var/lib/exosphere\n  \
                      exosphere verify --data-dir /var/lib/exosphere --backup /backups/catalog.exosphere",
        mut_arg("database_url", sqlite_only)
    )]
    Verify(VerifyArgs),
    /// Write a deterministic synthetic catalog dump, shaped like the real one.
    GenCatalog(GenCatalogArgs),
    /// Measure Exosphere against the physical limit, taken in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Package usage statistics: rollups by hand.
    #[command(subcommand)]
    Stats(StatsCommand),
    /// Copy a package server's catalog into a local index, for offline queries.
    #[command(
        long_about = "Copy a Meteor package server's catalog into a local index (an SQLite \
                      file), page by page, exactly as the `meteor` tool syncs (spec section \
                      3.3). Each page is committed with its sync token, so an interrupted sync \
                      resumes where it stopped; the next run only fetches what changed.\n\n\
                      Examples:\n  \
                      exosphere sync                                  # packages.meteor.com\n  \
                      exosphere sync --server http://127.0.0.1:3000   # your own server\n  \
                      exosphere sync --watch                          # stay up to date\n\n\
                      A progress bar shows on a terminal; a summary is printed at the end."
    )]
    Sync(SyncArgs),
    /// Search the local index of a package server by name, summary and README.
    #[command(
        long_about = "Search the local index of a package server (filled by `exosphere \
                      sync`) for packages whose name, summary or README excerpt contain every \
                      word of QUERY, as a word or the start of one. Name matches rank \
                      highest; equally relevant packages are listed most recently updated \
                      first.\n\n\
                      Examples:\n  \
                      exosphere search router\n  \
                      exosphere search 'iron rout' --limit 5\n  \
                      exosphere search '' --maintainer iron --json"
    )]
    Search(SearchArgs),
    /// Show a package (or one version of it) from the local index.
    #[command(
        long_about = "Show a package from the local index: summary, versions, maintainers, \
                      homepage, git, exports, builds and their architectures, dependencies \
                      with constraints, and the releases that include it. NAME@VERSION shows \
                      that version instead of the latest.\n\n\
                      Examples:\n  \
                      exosphere show iron:router\n  \
                      exosphere show iron:router@1.0.7 --json"
    )]
    Show(ShowArgs),
    /// List a package version's dependencies, or the packages that depend on it.
    #[command(
        long_about = "List the dependencies of a package version (the latest, or \
                      NAME@VERSION) with their constraints and per-architecture flags (weak, \
                      unordered, implied). --tree follows them down --depth levels, each to \
                      the newest version its constraint admits; weak dependencies and \
                      packages already shown are not expanded again.\n\n\
                      --reverse lists the packages whose latest version depends on NAME \
                      (with NAME@VERSION: whose constraint admits that version).\n\n\
                      Examples:\n  \
                      exosphere deps iron:router\n  \
                      exosphere deps iron:router --tree --depth 3\n  \
                      exosphere deps iron:core --reverse"
    )]
    Deps(DepsArgs),
    /// List release tracks, or the release versions of one track.
    Releases(ReleasesArgs),
    /// Accounts that may publish: add and list users.
    #[command(subcommand)]
    User(UserCommand),
    /// Organizations: package-name prefixes that several users may publish under.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Login tokens for the `meteor` tool: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The upstream mirror of `serve --upstream`: its state, and applying a held catalog.
    #[command(subcommand)]
    Mirror(MirrorCommand),
    /// Who did what, when and from where: the log of publishing and administrative actions.
    #[command(
        long_about = "Print the audit log of a catalog (a data directory's, or the database \
                      of --database-url), newest first: every login and \
                      failed login, token creation and revocation, package, version, build \
                      and release publish, maintainer, homepage, metadata, recommendation \
                      and banner change, user and organization change, and mirror claim, with its time \
                      (UTC), actor (a username, `anonymous` for a login with an unknown \
                      token, `cli:<OS user>` for the `user`, `org`, `token`, `mirror claim` and `epoch new` \
                      commands), client address, action, \
                      target and details. Entries are written in the same transaction as \
                      the change they record, and never name a token's secret. Safe while \
                      a server runs.\n\n\
                      Examples:\n  \
                      exosphere audit --package acme:widget\n  \
                      exosphere audit --user ada --since 2026-12-01 --json\n  \
                      exosphere audit --since 2026-12-01T09:00:00Z --until 2026-12-01T10:00:00Z --limit 0"
    )]
    Audit(AuditArgs),
    /// Copy a whole catalog between SQLite and PostgreSQL, into an empty target.
    #[command(
        long_about = "Copy a whole catalog from one store into another, empty one: from a \
                      data directory's SQLite catalog into a PostgreSQL database, or back. \
                      Everything moves: the records with their sequence numbers, the data \
                      epoch and change counters (so clients keep syncing where they were, \
                      without resetData), stats rows, usage recordings and days, users, \
                      organizations and login tokens, upload tickets and pending publishes, \
                      the audit log, and the mirror's state and file map. PostgreSQL is \
                      loaded with COPY, in one transaction: the target gets all of it or \
                      nothing.\n\n\
                      The target must be empty (a new database from createdb, or a new data \
                      directory); a target holding anything is refused and left as it was. \
                      The copy is then verified: every table's row count, every row of \
                      both stores value for value, and a full sync read of both returning \
                      identical records.\n\n\
                      Stop every server on the catalog first: the copy keeps the source's \
                      epoch and head sequence number, which is right only if nothing writes \
                      meanwhile. A SQLite data directory is locked against `exosphere serve` \
                      while it is copied, and migrate refuses a PostgreSQL source or target \
                      that servers hold seats on. Another command writing to a PostgreSQL \
                      source meanwhile (import, token, ...) is not refused: its write fails \
                      the verification if it lands before the verification reads the source, \
                      and is missing from the copy if it lands after. A PostgreSQL source is only read: a database without a \
                      catalog, or with an older schema version, is refused. Package files \
                      are not copied: point the new servers at the same --files-dir or \
                      --s3-bucket.\n\n\
                      Examples:\n  \
                      createdb -O exosphere exosphere\n  \
                      exosphere migrate --from /var/lib/exosphere --to postgres://exosphere@db.internal/exosphere\n  \
                      exosphere migrate --from postgres://exosphere@db.internal/exosphere --to /var/lib/exosphere-new"
    )]
    Migrate(MigrateArgs),
    /// The catalog's data epoch: start a new one after restoring a PostgreSQL database.
    #[command(subcommand)]
    Epoch(EpochCommand),
}

/// The subcommands of `exosphere epoch`.
#[derive(Debug, Subcommand)]
pub enum EpochCommand {
    /// Start a new data epoch, so that every client resyncs once (after a restore).
    #[command(
        long_about = "Start a new data epoch in the catalog: every client gets `resetData` \
                      once on its next sync and then the whole catalog, instead of skipping \
                      records. Run it after putting a PostgreSQL catalog back in time (pg_restore \
                      of a dump, point-in-time recovery, failing over to a standby that lacked \
                      the last commits), before or right after starting the servers: the \
                      restored database hands out again sequence numbers clients already \
                      hold. A server that ran on the database before notices a head that went \
                      back by itself (the seen-head.json file in its data directory) and starts \
                      the new epoch at startup; this command is for servers with new data \
                      directories, or when in doubt (a needless new epoch only costs every \
                      client one full sync). Recorded in the audit log. Safe while servers \
                      run.\n\n\
                      On SQLite, `exosphere restore` already starts a new epoch.\n\n\
                      Example:\n  \
                      exosphere epoch new --database-url postgres://exosphere@db.internal/exosphere"
    )]
    New(DataDirOnlyArgs),
}

/// The subcommands of `exosphere mirror`.
#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Show what the mirror in this data directory last did: its upstream, the last
    /// successful sync, a full resync under way, a catalog held for an operator, the last
    /// error. Reads the catalog, so it works while the server runs.
    Status {
        #[command(flatten)]
        data_dir: DataDirArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Apply a new upstream catalog that the mirror held (it lost records or a METEOR
    /// release): it replaces the served catalog now, as one transaction. Records it lacks
    /// stay served (the mirror never deletes).
    Accept {
        #[command(flatten)]
        data_dir: DataDirArg,
    },
    /// Write the mirrored catalog and its cached files into a directory, to carry to a
    /// machine that can never reach the upstream (load it there with `mirror import-bundle`).
    ExportBundle {
        #[command(flatten)]
        data_dir: DataDirArg,
        #[command(flatten)]
        files: FileStoreArgs,
        /// The directory to write (created; must be empty or new).
        #[arg(long)]
        output: PathBuf,
    },
    /// Load a bundle written by `mirror export-bundle` into this data directory and file store:
    /// its files (each checked against its hash), then its records with their file URLs
    /// pointing at --public-url, in one transaction.
    ImportBundle {
        #[command(flatten)]
        data_dir: DataDirArg,
        #[command(flatten)]
        files: FileStoreArgs,
        /// The URL clients will reach this server at (its `serve --public-url`); mirrored file
        /// URLs are rewritten to start with it.
        #[arg(long, value_parser = parse_upstream_url)]
        public_url: String,
        /// Leave out builds whose file is not in the bundle, and versions left without a build,
        /// so clients are only offered what this site can deliver.
        #[arg(long)]
        only_with_files: bool,
        /// The bundle directory.
        bundle: PathBuf,
    },
    /// Read every cached mirrored file back and check it against its hash; a damaged one is
    /// deleted (it is fetched again on its next request) and listed, and the command fails.
    Verify {
        #[command(flatten)]
        data_dir: DataDirArg,
        #[command(flatten)]
        files: FileStoreArgs,
    },
    /// Ask the running mirror to sync the upstream now instead of at its next poll (it looks
    /// within a second).
    SyncNow {
        #[command(flatten)]
        data_dir: DataDirArg,
    },
    /// Fetch, ahead of any request, the mirrored files some releases, apps or packages need
    /// (or every mirrored file), through the running mirror, which verifies and caches them:
    /// afterwards they are served while the upstream is down. Safe to run again; failures
    /// are retried and listed, and make the command fail.
    #[command(
        long_about = "Fetch, ahead of any request, the mirrored files some releases, apps or \
                      packages need (or every mirrored file), through the running mirror, \
                      which verifies and caches them, so they are served while the upstream \
                      is down.\n\n\
                      A release needs the builds of its meteor-tool and of every package it \
                      pins (Meteor's rule for bootstrap tarballs); an app needs its \
                      .meteor/release and .meteor/versions. --arch keeps the builds for that \
                      platform (portable and client-only builds always count).\n\n\
                      Example, before an outage or to carry a mirror into a closed network:\n  \
                      exosphere mirror prefetch --release METEOR@3.0.4 --arch os.linux.x86_64 \
                      --app ./my-app"
    )]
    Prefetch(PrefetchArgs),
    /// Claim a package (or, with --track, a release track) name for publishing here: the
    /// mirror serves no upstream record of it from then on, and its record, as clients have
    /// it, lists the given maintainers instead (same `_id`, so no client ever sees two
    /// records of one name). Its upstream versions stay served; new ones are published here
    /// (`meteor publish`, not `--create`). Works while the server runs.
    Claim {
        #[command(flatten)]
        data_dir: DataDirArg,
        /// The name is a release track's (e.g. a private METEOR-like track), not a package's.
        #[arg(long)]
        track: bool,
        /// The package or release track name.
        name: String,
        /// A user or organization that maintains it from now on; repeatable.
        #[arg(long = "maintainer", required = true)]
        maintainers: Vec<String>,
    },
}

/// Flags of `exosphere mirror prefetch`.
#[derive(Debug, Args)]
pub struct PrefetchArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// A release to make available, as TRACK@VERSION (e.g. METEOR@3.0.4); repeatable.
    #[arg(long = "release", value_name = "TRACK@VERSION")]
    pub releases: Vec<String>,

    /// An app directory whose `.meteor/release` and `.meteor/versions` to make available;
    /// repeatable.
    #[arg(long = "app", value_name = "DIR")]
    pub apps: Vec<PathBuf>,

    /// Fetch every mirrored file instead (the whole upstream: large).
    #[arg(long, conflicts_with_all = ["releases", "apps"])]
    pub all: bool,

    /// Only builds for this platform (e.g. os.linux.x86_64, os.osx.arm64,
    /// os.windows.x86_64); repeatable. Default: every build.
    #[arg(long = "arch", value_name = "ARCH")]
    pub architectures: Vec<String>,

    /// Fetch through this server URL instead of the one the records name (--public-url),
    /// e.g. http://127.0.0.1:3000 on the mirror's own machine.
    #[arg(long, value_parser = parse_upstream_url)]
    pub server: Option<String>,

    /// Files fetched at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,

    /// Tries per file before it counts as failed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: u32,
}

/// Which package server's index to use; shared by `sync` and the query commands.
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// The package server (http://, https://, or a bare host:port); its DDP endpoint is
    /// <URL>/websocket. A ws:// or wss:// URL names the DDP endpoint itself.
    #[arg(
        long,
        default_value = "https://packages.meteor.com",
        env = "METEOR_PACKAGE_SERVER_URL"
    )]
    pub server: String,
    /// Use this index file instead of the default one for the server.
    #[arg(long, env = "EXOSPHERE_INDEX")]
    pub index: Option<PathBuf>,
}

impl IndexArgs {
    /// The server's DDP endpoint, which also names its index.
    pub fn endpoint(&self) -> anyhow::Result<exosphere_ddp::client::Endpoint> {
        Ok(exosphere_ddp::client::Endpoint::from_server_url(
            &self.server,
        )?)
    }

    /// The index file: `--index`, or the server's file under the platform's data directory.
    pub fn index_path(&self) -> anyhow::Result<PathBuf> {
        match &self.index {
            Some(path) => Ok(path.clone()),
            None => {
                let endpoint = self.endpoint()?;
                Ok(exosphere_index::default_index_path(
                    endpoint.host(),
                    endpoint.port(),
                    endpoint.path(),
                )?)
            }
        }
    }
}

/// Flags of `exosphere search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words to look for: the exact name or base name first (`collection2` finds
    /// `aldeed:collection2`), then names starting with or containing them, then summaries and
    /// README excerpts (every word must match, as a word or the start of one). Empty ("")
    /// lists every package the filters keep.
    pub query: String,

    /// Only packages this user maintains.
    #[arg(long)]
    pub maintainer: Option<String>,

    /// The order: relevance, most-added (direct adds over 30 days, known to a server's own
    /// read model only), updated, newest (first published) or name.
    #[arg(long, default_value = "relevance")]
    pub sort: exosphere_index::SearchSort,

    /// Only packages whose latest version was published today or within this many whole
    /// UTC days before it (from midnight UTC that many days ago).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub published_within: Option<u32>,

    /// Leave out packages whose latest version is deprecated (unless named exactly).
    #[arg(long)]
    pub hide_deprecated: bool,

    /// Also list packages whose every version is unmigrated: published before Meteor 0.9,
    /// in a format the current `meteor` tool cannot use (each found by its greatest
    /// version). Left out by default, even when named exactly.
    #[arg(long)]
    pub include_unmigrated: bool,

    /// Leave out core packages (names without an `owner:` prefix).
    #[arg(long)]
    pub exclude_core: bool,

    /// The most results to list.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub index: IndexArgs,
}

/// Flags of `exosphere show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The package, as NAME or NAME@VERSION.
    pub package: String,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub index: IndexArgs,
}

/// Flags of `exosphere deps`.
#[derive(Debug, Args)]
pub struct DepsArgs {
    /// The package, as NAME or NAME@VERSION.
    pub package: String,

    /// List the packages that depend on it instead.
    #[arg(long)]
    pub reverse: bool,

    /// Follow the dependencies (or dependents) of each entry, as a tree.
    #[arg(long)]
    pub tree: bool,

    /// Levels of the tree to show (with --tree; by default all, up to the cap of 256 levels
    /// that keeps a crafted dependency chain from exhausting the stack).
    #[arg(long, requires = "tree", value_parser = clap::value_parser!(u32).range(1..))]
    pub depth: Option<u32>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub index: IndexArgs,
}

/// Flags of `exosphere releases`.
#[derive(Debug, Args)]
pub struct ReleasesArgs {
    /// A release track (e.g. METEOR): list its versions instead of the tracks.
    pub track: Option<String>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub index: IndexArgs,
}

/// `--database-url` as `backup`, `restore` and `verify` show it: they work on SQLite's catalog
/// file, and refuse the flag naming PostgreSQL's own tools (`commands::sqlite_data_dir`), so
/// their help must not offer it as a way to keep the catalog in PostgreSQL.
fn sqlite_only(arg: clap::Arg) -> clap::Arg {
    arg.help("Refused: this command works on SQLite's catalog file in --data-dir only")
        .long_help(
            "Refused: this command works on SQLite's catalog file in --data-dir only. Given \
             (or set in EXOSPHERE_DATABASE_URL), it exits naming PostgreSQL's own tool for the \
             job: pg_dump or pg_basebackup, and pg_amcheck (docs/OPERATIONS.md, \
             \"PostgreSQL deployments\").",
        )
}

/// Where the catalog and this server's local files live; shared by every command that
/// touches them, so each takes `--data-dir` and `--database-url` from one definition.
#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Directory holding the catalog database (created if missing), or with --database-url
    /// only what is local to this server: sync page files, the serve lock and the local file
    /// store (`DATA_DIR/files`, unless --files-dir or --s3-bucket say otherwise).
    #[arg(long, default_value = "./exosphere-data", env = "EXOSPHERE_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Keep the catalog in PostgreSQL instead of SQLite in --data-dir.
    #[arg(
        long,
        env = "EXOSPHERE_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        long_help = "Keep the catalog in this PostgreSQL database instead of SQLite in \
                     --data-dir: the records, accounts and tokens, publishes under way and \
                     usage stats. Written as postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME \
                     (e.g. postgres://exosphere@db.internal:5432/exosphere). The database must \
                     exist, and for the first start its user needs CREATE on it (Exosphere \
                     creates its tables then). Connections are plain TCP or Unix sockets, \
                     without TLS. --data-dir is still used for what is local to this server: \
                     sync page files, the serve lock and the local file store. Logs name the \
                     database and host, never the password. Percent-encode reserved characters \
                     in the user and password (@ as %40, : as %3A, / as %2F, % as %25): an \
                     unescaped @ in the password splits the URL in the wrong place. Prefer \
                     EXOSPHERE_DATABASE_URL to this flag when the URL holds a password: other \
                     users can read a process's arguments (ps), not its environment. Any \
                     number of `exosphere serve` processes may share one database (give them \
                     one S3 bucket too): they serve one catalog, and run the rollup, the \
                     upload sweep and the mirror once between them. Each takes up to 13 of \
                     the database's connections (8 pooled, its seat, its change listener, \
                     its duties); through PgBouncer, use session pooling."
    )]
    pub database_url: Option<String>,
}

/// Flags of `exosphere serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:3000", env = "EXOSPHERE_LISTEN")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// Fill an empty catalog with a small synthetic demo catalog before serving.
    #[arg(long, env = "EXOSPHERE_DEMO")]
    pub demo: bool,

    /// OAuth client id published in `meteor.loginServiceConfiguration` (the tool requires one).
    #[arg(long, default_value = "exosphere", env = "EXOSPHERE_OAUTH_CLIENT_ID")]
    pub oauth_client_id: String,

    /// Records per collection in one `syncNewPackageData` page (spec: at most 500).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=500), env = "EXOSPHERE_PAGE_SIZE")]
    pub page_size: u32,

    /// Bytes of records in one `syncNewPackageData` page, all collections together; a page
    /// holds at least one record, so it is at most this plus one record (256 KiB). Keep it
    /// far below the `meteor` tool's 64 MiB frame limit.
    #[arg(long, default_value_t = exosphere_catalog::sync::DEFAULT_PAGE_BYTES, env = "EXOSPHERE_SYNC_PAGE_BYTES")]
    pub sync_page_bytes: usize,

    /// Memory for sync pages computed ahead of clients, in bytes (0 turns prefetching off).
    #[arg(long, default_value_t = 64 << 20, env = "EXOSPHERE_SYNC_CACHE_SIZE")]
    pub sync_cache_size: usize,

    /// Disk for sync pages beyond `--sync-cache-size`, in bytes, as files in
    /// `DATA_DIR/sync-pages` (emptied at start): a page read back from its file, with its
    /// WebSocket-compressed body, is neither recomputed nor recompressed. A full sync of a
    /// catalog the size of packages.meteor.com is about 340 MB of plain pages, plus 50 MB
    /// compressed, plus 150 MB for `collectionsCompressed` clients. 0 keeps no files.
    #[arg(long, default_value_t = 1 << 30, env = "EXOSPHERE_SYNC_FILE_CACHE_SIZE")]
    pub sync_file_cache_size: u64,

    /// With --database-url: keep a copy of the catalog's records in
    /// `DATA_DIR/sync-replica.sqlite3` and read sync pages from it, caught up to the
    /// database's head before every page, so a full sync costs what it costs from SQLite
    /// (sync tokens stay the database's, valid on every server). It takes about the records'
    /// size on disk; the first start copies every record, later starts only what changed.
    /// `false` reads every page from the database. Ignored without --database-url.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "EXOSPHERE_SYNC_REPLICA")]
    pub sync_replica: bool,

    /// Largest DDP message a client may send, in bytes.
    #[arg(long, default_value_t = 1 << 20, env = "EXOSPHERE_MAX_MESSAGE_SIZE")]
    pub max_message_size: usize,

    /// Negotiate WebSocket compression (`permessage-deflate`, RFC 7692) with clients that
    /// offer it, as the `meteor` tool and browsers do: a sync is several times fewer bytes.
    /// `false` declines every offer.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "EXOSPHERE_WEBSOCKET_COMPRESSION")]
    pub websocket_compression: bool,

    /// zlib level of WebSocket compression: 0 (stored) to 9 (smallest, slowest). Sync
    /// pages, compressed once for every client and cached with the page, are compressed at
    /// 9 whenever this is above 0.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9), env = "EXOSPHERE_WEBSOCKET_COMPRESSION_LEVEL")]
    pub websocket_compression_level: u32,

    /// Close sockets that send no DDP `connect` within this time (e.g. 45s), and hixie-76
    /// SockJS WebSockets whose handshake nonce does not arrive within it.
    #[arg(long, default_value = "45s", value_parser = parse_duration, env = "EXOSPHERE_CONNECT_TIMEOUT")]
    pub connect_timeout: Duration,

    /// Ping a client after this long without a message from it.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "EXOSPHERE_PING_INTERVAL")]
    pub ping_interval: Duration,

    /// Close a session when nothing arrives this long after a ping. Generous by default:
    /// `meteor publish` keeps a connection silent while it bundles for minutes.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "EXOSPHERE_PING_TIMEOUT")]
    pub ping_timeout: Duration,

    /// Longest the whole write of one outbound frame to a client may take before the
    /// connection is closed (the client stopped reading), on /websocket and every SockJS
    /// transport. It times the entire frame: a 1 MB sync page needs a link of at least
    /// ~17 KB/s at the default 60 s. On Linux it is also `TCP_USER_TIMEOUT` on every
    /// accepted socket, so it bounds how long any HTTP response (downloads, uploads,
    /// `/stats`) may wait for the client to acknowledge its data.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration, env = "EXOSPHERE_WRITE_TIMEOUT")]
    pub write_timeout: Duration,

    /// Bytes of outbound DDP messages one session may hold before the server waits for
    /// the client to read (a larger message still goes through, alone). 16 MiB holds
    /// several full sync pages; at most 256 MiB (a session's budget is a semaphore of
    /// bytes, which cannot count much further on 32-bit targets).
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u32).range(1..=i64::from(exosphere_ddp::MAX_OUTBOUND_BUFFER_SIZE)), env = "EXOSPHERE_OUTBOUND_BUFFER_SIZE")]
    pub outbound_buffer_size: u32,

    /// The same for a session that sent DDP `connect` but did not log in (every `meteor`
    /// tool syncing): what anyone may make the server hold per session. Never more than
    /// --outbound-buffer-size; a larger message still goes through, alone.
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u32).range(1..=i64::from(exosphere_ddp::MAX_OUTBOUND_BUFFER_SIZE)), env = "EXOSPHERE_ANONYMOUS_OUTBOUND_BUFFER_SIZE")]
    pub anonymous_outbound_buffer_size: u32,

    /// The same for a connection that has not sent DDP `connect` yet.
    #[arg(long, default_value_t = 64 << 10, value_parser = clap::value_parser!(u32).range(1..=i64::from(exosphere_ddp::MAX_OUTBOUND_BUFFER_SIZE)), env = "EXOSPHERE_HANDSHAKE_OUTBOUND_BUFFER_SIZE")]
    pub handshake_outbound_buffer_size: u32,

    /// Bytes of outbound DDP messages all sessions together may hold. When it is spent,
    /// the session whose client has taken nothing for longest (at least a second) is
    /// closed to make room; a message that still finds none within --write-timeout ends
    /// its own session.
    #[arg(long, default_value_t = 512 << 20, value_parser = parse_positive_usize, env = "EXOSPHERE_MAX_OUTBOUND_BYTES")]
    pub max_outbound_bytes: usize,

    /// DDP messages read ahead per session while an earlier call runs; when full, the
    /// server stops reading from that client until it catches up.
    #[arg(long, default_value_t = 32, env = "EXOSPHERE_INBOUND_QUEUE")]
    pub inbound_queue: usize,

    /// Subscriptions one session may hold at once; more get a 429 error.
    #[arg(long, default_value_t = 100, env = "EXOSPHERE_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: usize,

    /// How often the catalog is checked for writes by other processes (e.g. 250ms). On
    /// PostgreSQL, writes of other servers and commands also arrive at once by
    /// LISTEN/NOTIFY; this polling covers notifications lost while reconnecting.
    #[arg(long, default_value = "250ms", value_parser = parse_duration, env = "EXOSPHERE_WATCH_INTERVAL")]
    pub watch_interval: Duration,

    /// DDP connections served at once, over every transport; further ones get HTTP 503.
    #[arg(long, default_value_t = 20_000, env = "EXOSPHERE_MAX_SESSIONS")]
    pub max_sessions: usize,

    /// DDP connections one client address (an IPv4 address or an IPv6 /64) may hold at
    /// once; further ones get HTTP 503 (0 turns the cap off: do so behind a reverse proxy,
    /// where every client has the proxy's address).
    #[arg(
        long,
        default_value_t = 2_000,
        env = "EXOSPHERE_MAX_SESSIONS_PER_ADDRESS"
    )]
    pub max_sessions_per_address: usize,

    /// TCP connections open at once; further ones are closed as soon as they are
    /// accepted. Default: the open-file limit (raised to its hard limit) less 2048
    /// descriptors kept for files (half of it, under 4096).
    #[arg(long, value_parser = parse_positive_usize, env = "EXOSPHERE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// TCP connections one client address (an IPv4 address or an IPv6 /64) may have open
    /// at once; further ones are closed as soon as they are accepted (0 turns the cap off:
    /// do so behind a reverse proxy).
    #[arg(
        long,
        default_value_t = 4_000,
        env = "EXOSPHERE_MAX_CONNECTIONS_PER_ADDRESS"
    )]
    pub max_connections_per_address: usize,

    /// The longest a client may take to send an HTTP request's headers, and the longest an
    /// idle keep-alive connection waits for its next request, before it is closed.
    /// WebSockets, SockJS responses, uploads and downloads keep their own timeouts.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration, env = "EXOSPHERE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Duration,

    /// Method calls one connection may make per --method-rate-interval; further calls get
    /// Meteor's `too-many-requests` error telling how long to wait (0 turns it off).
    #[arg(long, default_value_t = 5000, env = "EXOSPHERE_METHOD_RATE_LIMIT")]
    pub method_rate_limit: u32,

    /// The window of --method-rate-limit (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "EXOSPHERE_METHOD_RATE_INTERVAL")]
    pub method_rate_interval: Duration,

    /// On SIGINT/SIGTERM, how long calls already received may run before sessions close.
    /// With several servers behind a load balancer, make it longer than the slowest
    /// publish's upload, so a deploy drains a server without failing publishes.
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "EXOSPHERE_SHUTDOWN_GRACE")]
    pub shutdown_grace: Duration,

    /// SockJS (/sockjs): send a heartbeat frame after this long without output.
    #[arg(long, default_value = "25s", value_parser = parse_positive_duration, env = "EXOSPHERE_SOCKJS_HEARTBEAT")]
    pub sockjs_heartbeat: Duration,

    /// SockJS: end a polling or streaming session this long after its last response was
    /// delivered (Meteor's 60 s, so multi-megabyte results reach slow links).
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "EXOSPHERE_SOCKJS_DISCONNECT_DELAY")]
    pub sockjs_disconnect_delay: Duration,

    /// SockJS: close a polling or streaming session that has not sent DDP `connect` this
    /// long after it was opened, freeing its place under --max-sessions (sockjs-client and
    /// Meteor send `connect` right after the open frame).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration, env = "EXOSPHERE_SOCKJS_CONNECT_TIMEOUT")]
    pub sockjs_connect_timeout: Duration,

    /// SockJS: bytes one streaming response carries before the client must open another.
    #[arg(long, default_value_t = 128 * 1024, env = "EXOSPHERE_SOCKJS_RESPONSE_LIMIT")]
    pub sockjs_response_limit: usize,

    /// SockJS: the sockjs-client script the iframe page loads, for the iframe-based
    /// transports (old browsers, or pages served from another origin). It must be the same
    /// sockjs-client version as the page's own; where the CDN is out of reach (a closed
    /// network), point it at a copy you serve, e.g. /static/sockjs.min.js.
    #[arg(long, default_value = exosphere_ddp::SOCKJS_CLIENT_URL, value_parser = parse_script_url, env = "EXOSPHERE_SOCKJS_CLIENT_URL")]
    pub sockjs_client_url: String,

    /// The Subresource Integrity hash (`sha384-…`) of the --sockjs-client-url script, for
    /// the iframe page's script tag. The default script's hash is built in; a script of
    /// your own gets none unless given here.
    #[arg(long, value_parser = parse_integrity, env = "EXOSPHERE_SOCKJS_CLIENT_INTEGRITY")]
    pub sockjs_client_integrity: Option<String>,

    /// Also mount the SockJS conformance suite's services (/echo, /disabled_websocket_echo,
    /// /cookie_needed_echo, /close), to run sockjs-protocol against this build.
    #[arg(long, env = "EXOSPHERE_SOCKJS_TEST_SERVICES")]
    pub sockjs_test_services: bool,
    /// `recordAppPackages` calls waiting to be written at most; further callers wait.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000), env = "EXOSPHERE_STATS_QUEUE")]
    pub stats_queue: u64,

    /// Most `recordAppPackages` calls written (and fsynced) in one transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000), env = "EXOSPHERE_STATS_BATCH_SIZE")]
    pub stats_batch_size: u64,

    /// How long a batch of `recordAppPackages` calls waits for more after its first call
    /// (0 writes at once; calls arriving during a commit still share the next one).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, env = "EXOSPHERE_STATS_BATCH_DELAY")]
    pub stats_batch_delay: Duration,

    /// Most packages one `recordAppPackages` call may list.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000), env = "EXOSPHERE_STATS_MAX_PACKAGES")]
    pub stats_max_packages: u64,

    /// Count reported packages this catalog holds no version of. Off: only versions the
    /// catalog holds are recorded, so made-up names never reach the store or /stats/v1.
    #[arg(long, env = "EXOSPHERE_STATS_COUNT_UNKNOWN_PACKAGES")]
    pub stats_count_unknown_packages: bool,

    /// Package entries one client address (IPv6: per /64) may report per
    /// --stats-rate-interval; calls over it get Meteor's too-many-requests error and are not
    /// recorded (0 turns the limit off). Behind a reverse proxy every client is the proxy's
    /// address: raise it there.
    #[arg(
        long,
        default_value_t = 20_000,
        env = "EXOSPHERE_STATS_RATE_PER_ADDRESS"
    )]
    pub stats_rate_per_address: u32,

    /// Package entries all callers together may report per --stats-rate-interval
    /// (0 turns the limit off).
    #[arg(long, default_value_t = 200_000, env = "EXOSPHERE_STATS_RATE_GLOBAL")]
    pub stats_rate_global: u32,

    /// The window of --stats-rate-per-address and --stats-rate-global.
    #[arg(long, default_value = "1m", value_parser = parse_positive_duration, env = "EXOSPHERE_STATS_RATE_INTERVAL")]
    pub stats_rate_interval: Duration,

    /// Client addresses whose usage budgets are remembered at once; while all are in use,
    /// further addresses are refused, so many addresses cannot grow memory.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000), env = "EXOSPHERE_STATS_RATE_ADDRESSES")]
    pub stats_rate_addresses: u64,

    /// How long after each UTC midnight the previous day is rolled up into /stats/v1.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "EXOSPHERE_STATS_ROLLUP_DELAY")]
    pub stats_rollup_delay: Duration,

    /// How often the rollup job also runs between midnights, so a late report for a day
    /// already rolled up re-opens that day and shows within this period (not zero).
    #[arg(long, default_value = "1h", value_parser = parse_positive_duration, env = "EXOSPHERE_STATS_ROLLUP_EVERY")]
    pub stats_rollup_every: Duration,

    /// Whether to keep the JSON API's read model, an index of the catalog in
    /// DATA_DIR/read-model (about 550 MB for atmosphere's catalog). `off` feeds none and the
    /// JSON API answers 503 api_disabled; the DDP catalog is served as always.
    #[arg(long, value_enum, default_value_t = ReadModelMode::On, env = "EXOSPHERE_READ_MODEL")]
    pub read_model: ReadModelMode,

    /// The most items one JSON API answer holds: a page of versions or dependents, search
    /// hits, a maintainer's packages, names in one bulk lookup. A larger `limit=` is lowered
    /// to it; a bulk lookup of more names is refused with 400.
    #[arg(long, default_value_t = exosphere_web::DEFAULT_MAX_LIMIT, value_parser = clap::value_parser!(u64).range(1..=10_000), env = "EXOSPHERE_API_MAX_LIMIT")]
    pub api_max_limit: u64,

    /// JSON API and web page queries run at once (counted together), each on its own read
    /// model connection (default: twice the CPUs). A request that waits a second for a
    /// turn is answered 503 with Retry-After, so web load cannot starve DDP clients and
    /// publishing.
    #[arg(long, default_value_t = exosphere_web::default_max_queries(), value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096), env = "EXOSPHERE_API_MAX_QUERIES")]
    pub api_max_queries: usize,

    /// Items on one page of the web catalog's lists (search results, versions,
    /// dependents, a maintainer's packages, all packages) and entries in its Atom feeds.
    /// A list's deepest page starts at --web-max-page-depth, as the JSON API's cursors do.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000), env = "EXOSPHERE_WEB_PAGE_SIZE")]
    pub web_page_size: u64,

    /// Bytes of encoded web catalog answers (pages, feeds, badges, JSON API bodies) kept in
    /// memory and given again to requests for the same URL while the read model, the usage
    /// counts and the UTC day stay as they were (every publish, mirrored change, recount of
    /// adds and midnight starts afresh); 0 keeps none. The least recently asked go first.
    #[arg(long, default_value_t = exosphere_web::DEFAULT_CACHE_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=16 << 30), env = "EXOSPHERE_WEB_CACHE_BYTES")]
    pub web_cache_bytes: usize,

    /// The deepest item a page of a list may start at, in the JSON API (`cursor=`) and on
    /// the web pages (`?page=`) alike; deeper pages are refused with 400 cursor_too_deep.
    /// Each page is a scan of every item before it, so this bounds what crawling a list
    /// costs. Atmosphere's longest list, the dependents of `meteor`, holds about 15,000.
    /// From 1 to 1,000,000.
    #[arg(long, default_value_t = exosphere_web::DEFAULT_MAX_PAGE_DEPTH, value_parser = clap::value_parser!(u64).range(1..=1_000_000), env = "EXOSPHERE_WEB_MAX_PAGE_DEPTH")]
    pub web_max_page_depth: u64,

    /// The longest search words the JSON API and the web pages take, in characters; a
    /// longer `q=` is refused with 400 query_too_long, and the pages' search boxes take no
    /// more. Only the first 16 words are looked for in summaries and READMEs, so a larger
    /// value finds little more. From 1 to 4096.
    #[arg(long, default_value_t = exosphere_web::DEFAULT_MAX_QUERY_CHARS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096), env = "EXOSPHERE_WEB_MAX_QUERY_CHARS")]
    pub web_max_query_chars: usize,

    /// Let package READMEs on the web catalog show images from other hosts (https only, sent
    /// without a referrer; the pages' Content-Security-Policy then allows `img-src https:`).
    /// Off by default: each such image is a link to its URL, and the pages make no request
    /// to any other host, so the catalog works on an air-gapped network.
    #[arg(long, env = "EXOSPHERE_README_REMOTE_IMAGES")]
    pub readme_remote_images: bool,

    /// Most bytes of a README the web catalog and the API read and render. A README file
    /// larger than this is not shown, since its hash cannot be checked without reading it
    /// all (the version's README excerpt is, instead); a longer excerpt is cut (at its last
    /// line break within the last 4 KiB, else at a character) with a notice. Full-text
    /// search keeps the first 32 KiB of each README file it reads.
    #[arg(long, default_value_t = exosphere_readme::DEFAULT_MAX_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=16 << 20), env = "EXOSPHERE_README_MAX_BYTES")]
    pub readme_max_bytes: usize,

    /// Longest date range, in days, one /api/v1/stats request may ask for (and the "all
    /// time" range of the web catalog's usage charts).
    #[arg(long, default_value_t = 3660, value_parser = clap::value_parser!(u64).range(1..=100_000), env = "EXOSPHERE_STATS_MAX_RANGE_DAYS")]
    pub stats_max_range_days: u64,

    /// /stats/v1 days rendered at once; further requests wait for a turn. A render streams
    /// the day from the store into a temporary file (in TMPDIR), never into memory.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64), env = "EXOSPHERE_STATS_MAX_RENDERS")]
    pub stats_max_renders: u64,

    /// Bytes of rendered finished /stats/v1 days kept (as temporary files in TMPDIR) for
    /// later requests; a larger day is rendered for each request (0 keeps none).
    #[arg(long, default_value_t = 256 << 20, env = "EXOSPHERE_STATS_CACHE_SIZE")]
    pub stats_cache_size: u64,

    /// How long a rendered finished day is served before the store is read again (a late
    /// report can still change it); answers allow HTTP caches 5 minutes already.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "EXOSPHERE_STATS_CACHE_TTL")]
    pub stats_cache_ttl: Duration,

    #[command(flatten)]
    pub publishing: Box<PublishArgs>,

    #[command(flatten)]
    pub mirror: Box<MirrorArgs>,
}

/// Flags of `exosphere serve` for mirroring an upstream package server.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Mirror this package server (https://packages.meteor.com, or another Exosphere) into
    /// the catalog, beside the packages published here. Clients are answered from what is
    /// mirrored, never from the upstream, so they keep working while it is down; the first
    /// full mirror becomes visible in one step once complete. File URLs of mirrored records
    /// are rewritten to --public-url (docs/MIRROR.md).
    #[arg(long, value_parser = parse_upstream_url, env = "EXOSPHERE_UPSTREAM")]
    pub upstream: Option<String>,

    /// Sync the upstream at least this often, besides whenever its `changes` publication
    /// moves (an upstream without that publication is only polled). Of several servers on
    /// one database given --upstream, one runs the mirror; the others stand by and try to
    /// take it over this often.
    #[arg(long, default_value = "5m", value_parser = parse_positive_duration, env = "EXOSPHERE_UPSTREAM_POLL_INTERVAL")]
    pub upstream_poll_interval: Duration,

    /// Ask the upstream for compressed pages (`collectionsCompressed`): less to transfer,
    /// but records then carry dates as the upstream lowered them, not as EJSON dates.
    #[arg(long, env = "EXOSPHERE_UPSTREAM_COMPRESS")]
    pub upstream_compress: bool,

    /// Trust the CA certificate(s) in this PEM file for the upstream's TLS, on top of the
    /// usual web roots.
    #[arg(long, env = "EXOSPHERE_UPSTREAM_CA_CERT")]
    pub upstream_ca_cert: Option<PathBuf>,

    /// Give up connecting to the upstream (TCP, TLS, WebSocket, DDP) after this long.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration, env = "EXOSPHERE_UPSTREAM_CONNECT_TIMEOUT")]
    pub upstream_connect_timeout: Duration,

    /// Give up on one upstream page after waiting this long for it (a hung upstream).
    #[arg(long, default_value = "120s", value_parser = parse_positive_duration, env = "EXOSPHERE_UPSTREAM_CALL_TIMEOUT")]
    pub upstream_call_timeout: Duration,

    /// Largest message accepted from the upstream, in bytes.
    #[arg(long, default_value_t = 64 << 20, env = "EXOSPHERE_UPSTREAM_MAX_MESSAGE_SIZE")]
    pub upstream_max_message_size: usize,

    /// Largest page a compressed upstream page may inflate to, in bytes.
    #[arg(long, default_value_t = 256 << 20, env = "EXOSPHERE_UPSTREAM_MAX_PAGE_SIZE")]
    pub upstream_max_page_size: usize,

    /// Longest pause between attempts while the upstream fails (the first is one second,
    /// doubling up to this).
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration, env = "EXOSPHERE_UPSTREAM_MAX_BACKOFF")]
    pub upstream_max_backoff: Duration,

    /// Hold a new upstream catalog (after the upstream reset or was replaced) for an
    /// operator instead of applying it when it has this share fewer records than the served
    /// one (0.1: 10%), or lost a METEOR release; `exosphere mirror accept` applies it.
    #[arg(long, default_value_t = 0.1, value_parser = parse_share, env = "EXOSPHERE_UPSTREAM_MAX_SHRINK")]
    pub upstream_max_shrink: f64,

    /// The largest package file fetched from the upstream, in bytes (a `meteor-tool` build
    /// is a few hundred MB).
    #[arg(long, default_value_t = 2 << 30, value_parser = clap::value_parser!(u64).range(1..), env = "EXOSPHERE_UPSTREAM_MAX_FILE_SIZE")]
    pub upstream_max_file_size: u64,

    /// Give up on an upstream file download that sends nothing for this long (connecting
    /// or mid-body); its clients' responses end short and nothing is cached.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration, env = "EXOSPHERE_UPSTREAM_FILE_IDLE_TIMEOUT")]
    pub upstream_file_idle_timeout: Duration,

    /// The most files fetched from the upstream at once; a request for one more uncached
    /// file gets 503 with Retry-After (cached files are always served).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000), env = "EXOSPHERE_UPSTREAM_MAX_DOWNLOADS")]
    pub upstream_max_downloads: u32,
}

/// Flags of `exosphere serve` for publishing (spec §5): URLs, upload limits, file storage.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The URL clients reach this server at (e.g. https://packages.example.com behind a
    /// reverse proxy); every upload and download URL handed out starts with it, and so
    /// does every absolute URL of the web catalog (canonical links, feeds, badges, the
    /// home page's METEOR_PACKAGE_SERVER_URL), never the request's Host header. Default:
    /// http://<the listen address>; required when listening on every interface
    /// (0.0.0.0 or [::]).
    #[arg(long, env = "EXOSPHERE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Largest package file (tarball or README) one upload may send, in bytes.
    #[arg(long, default_value_t = 512 << 20, value_parser = clap::value_parser!(u64).range(1..), env = "EXOSPHERE_MAX_UPLOAD_SIZE")]
    pub max_upload_size: u64,

    /// How long upload URLs and unfinished publishes stay valid (the tool may build for
    /// minutes between creating a version and publishing it); an upload still arriving
    /// when its URL expires is abandoned (answer 408).
    #[arg(long, default_value = "2h", value_parser = parse_duration, env = "EXOSPHERE_UPLOAD_TTL")]
    pub upload_ttl: Duration,

    /// Most upload bodies received at once by this server process (with several servers on
    /// one database, each has its own); an upload over it is answered 503 with Retry-After
    /// and its URL stays usable.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "EXOSPHERE_MAX_CONCURRENT_UPLOADS")]
    pub max_concurrent_uploads: u32,

    /// Most upload bodies one user may send at once, counted across every server of the
    /// catalog; one more is answered 429 with Retry-After and its URL stays usable. The `meteor` tool does not retry (spec §5.2:
    /// any 4xx/5xx fails the publish), so keep it above the uploads one account runs in
    /// parallel (e.g. `publish-for-arch` jobs of one CI account).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "EXOSPHERE_MAX_UPLOADS_PER_USER")]
    pub max_uploads_per_user: u32,

    /// The window in which an upload body must make progress (--upload-min-rate, at least
    /// one byte) before the server abandons it (answer 408; the upload URL stays usable
    /// for a retry).
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration, env = "EXOSPHERE_UPLOAD_IDLE_TIMEOUT")]
    pub upload_idle_timeout: Duration,

    /// Bytes per second an upload body must average over each --upload-idle-timeout
    /// window; a slower one is abandoned (408; the URL stays usable), so a client
    /// trickling bytes cannot hold an upload slot until its URL expires (0: any progress).
    #[arg(long, default_value_t = 8192, env = "EXOSPHERE_UPLOAD_MIN_RATE")]
    pub upload_min_rate: u64,

    /// Most unfinished publishes (created versions, builds or READMEs not yet published)
    /// one user may have at once, counted in the catalog (across every server).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..), env = "EXOSPHERE_MAX_OPEN_PUBLISHES")]
    pub max_open_publishes: u64,

    /// Failed logins (unknown, revoked or expired tokens) one client address (IPv6: per
    /// /64) may make per --login-failure-interval; then its logins get Meteor's
    /// too-many-requests error until the window is over (0 turns the limit off). Behind a
    /// reverse proxy every client is the proxy's address: raise it there.
    #[arg(
        long,
        default_value_t = 20,
        env = "EXOSPHERE_LOGIN_FAILURES_PER_ADDRESS"
    )]
    pub login_failures_per_address: u32,

    /// Failed logins with one account's expired tokens per --login-failure-interval, from
    /// any address; then that account's logins are refused until the window is over (0
    /// turns the limit off).
    #[arg(
        long,
        default_value_t = 10,
        env = "EXOSPHERE_LOGIN_FAILURES_PER_ACCOUNT"
    )]
    pub login_failures_per_account: u32,

    /// The window of --login-failures-per-address and --login-failures-per-account.
    #[arg(long, default_value = "10m", value_parser = parse_positive_duration, env = "EXOSPHERE_LOGIN_FAILURE_INTERVAL")]
    pub login_failure_interval: Duration,

    #[command(flatten)]
    pub files: FileStoreArgs,
}

/// Where package files (published and mirrored) are kept: a local directory or an S3 bucket.
/// Shared by `serve` and the `mirror` commands that read or write files.
#[derive(Debug, Clone, Args)]
pub struct FileStoreArgs {
    /// Directory for package files when no S3 bucket is given. Default: DATA_DIR/files.
    #[arg(long, env = "EXOSPHERE_FILES_DIR")]
    pub files_dir: Option<PathBuf>,

    /// Keep package files in this S3 bucket instead of a local directory (lets several
    /// servers share them).
    #[arg(long, env = "EXOSPHERE_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// Endpoint of an S3-compatible service (e.g. http://127.0.0.1:9000); AWS if absent.
    #[arg(long, env = "EXOSPHERE_S3_ENDPOINT", requires = "s3_bucket")]
    pub s3_endpoint: Option<String>,

    /// Region of the S3 bucket.
    #[arg(long, default_value = "us-east-1", env = "EXOSPHERE_S3_REGION")]
    pub s3_region: String,

    /// S3 access key id.
    #[arg(
        long,
        default_value = "",
        env = "EXOSPHERE_S3_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub s3_access_key_id: String,

    /// S3 secret access key.
    #[arg(
        long,
        default_value = "",
        env = "EXOSPHERE_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub s3_secret_access_key: String,
}

/// The subcommands of `exosphere user`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user who may log in (with a token) and publish under the prefix NAME:.
    #[command(
        long_about = "Add a user. The user may publish packages named NAME:something and \
                      release tracks named NAME:SOMETHING, and whatever they become a \
                      maintainer of. Administrators (--admin) may also create names without \
                      a prefix and act on every package and track. Give the user a login \
                      token with `exosphere token create NAME`. Safe while `exosphere serve` \
                      runs on the same directory."
    )]
    Add(UserAddArgs),
    /// List users.
    List(DataDirOnlyArgs),
}

/// Flags of `exosphere user add`.
#[derive(Debug, Args)]
pub struct UserAddArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// The username: a package-name prefix (lowercase letters, digits, `.` and `-`).
    pub name: String,

    /// Make the user an administrator.
    #[arg(long)]
    pub admin: bool,
}

/// Commands that only need the data directory.
#[derive(Debug, Args)]
pub struct DataDirOnlyArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

/// The subcommands of `exosphere org`.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Add an organization, or members to an existing one.
    #[command(
        long_about = "Add an organization NAME (a package-name prefix shared by its members: \
                      any member may publish NAME:something), or add members to an existing \
                      one. Organization and user names share one namespace. Safe while \
                      `exosphere serve` runs on the same directory."
    )]
    Add(OrgAddArgs),
}

/// Flags of `exosphere org add`.
#[derive(Debug, Args)]
pub struct OrgAddArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// The organization's name (a package-name prefix).
    pub name: String,

    /// A user to make a member (repeat for several).
    #[arg(long = "member", value_name = "USER")]
    pub members: Vec<String>,
}

/// The subcommands of `exosphere token`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a login token and print the ~/.meteorsession entries that use it.
    #[command(
        long_about = "Create a login token for USER. The first output line is the token \
                      alone; the next line is the JSON of ~/.meteorsession (spec §6.4) that \
                      makes the `meteor` tool log in to this server with it: merge its \
                      \"sessions\" entries into your file (or save it as the file when you \
                      have none). Only the token's SHA-256 is stored: it cannot be shown \
                      again. `meteor logout` deletes the entries; put them back to log in."
    )]
    Create(TokenCreateArgs),
    /// List tokens (never their text): id, user, created, expires.
    List(TokenListArgs),
    /// Revoke a token by the id `token list` shows; sessions logged in with it are refused
    /// (403, logged out) from their next call on, and its user's unfinished publishes are
    /// withdrawn (their upload URLs stop taking files; the user publishes again).
    Revoke(TokenRevokeArgs),
}

/// Flags of `exosphere token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// The user the token logs in as.
    pub user: String,

    /// Days until the token expires.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,

    /// The URL `meteor` reaches the server at (METEOR_PACKAGE_SERVER_URL); its host and
    /// port key the session entry.
    #[arg(
        long,
        default_value = "http://127.0.0.1:3000",
        env = "EXOSPHERE_PUBLIC_URL"
    )]
    pub public_url: String,
}

/// Flags of `exosphere token list`.
#[derive(Debug, Args)]
pub struct TokenListArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// Only this user's tokens.
    #[arg(long)]
    pub user: Option<String>,
}

/// Flags of `exosphere token revoke`.
#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// The token id from `token list`.
    pub id: String,
}

/// The subcommands of `exosphere stats`.
#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Roll recorded package usage up into /stats/v1 day files.
    #[command(
        long_about = "Roll recorded package usage (recordAppPackages calls) up into the \
                      /stats/v1/YYYY-MM-DD day files, as `exosphere serve` does shortly after \
                      each UTC midnight.\n\n\
                      Without --date, rolls up every day before today that got recordings \
                      since its last rollup (what the server catches up on after downtime). \
                      With --date, rolls up that day, also today: a rollup of today holds what \
                      was recorded so far, and a later rollup replaces it. A day's rollup \
                      replaces all of that day's rows, also imported ones; days without \
                      recordings are left alone. Safe while `exosphere serve` runs on the same \
                      directory."
    )]
    Rollup(StatsRollupArgs),
}

/// Flags of `exosphere stats rollup`.
#[derive(Debug, Args)]
pub struct StatsRollupArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// The UTC day to roll up (YYYY-MM-DD, not after today); all pending past days if absent.
    #[arg(long)]
    pub date: Option<String>,
}

/// Flags of `exosphere sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub index: IndexArgs,

    /// Delete the index first and sync everything again (the cure for a damaged index).
    #[arg(long)]
    pub rebuild: bool,

    /// Ask for compressed pages (`collectionsCompressed`, gzip): less to transfer, more to
    /// compute on both sides. Worth it on slow links.
    #[arg(long, env = "EXOSPHERE_SYNC_COMPRESS")]
    pub compress: bool,

    /// After syncing, stay connected and sync again whenever the server's `changes`
    /// publication moves; reconnect with backoff if the server goes away. Stop with Ctrl-C.
    #[arg(long)]
    pub watch: bool,

    /// Trust the CA certificate(s) in this PEM file on top of the usual web roots, for a
    /// server whose certificate a private CA signed.
    #[arg(long, env = "EXOSPHERE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// Give up connecting (TCP, TLS, WebSocket and DDP handshake) after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "EXOSPHERE_SYNC_CONNECT_TIMEOUT")]
    pub connect_timeout: Duration,

    /// Give up on one page after waiting this long for it.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "EXOSPHERE_SYNC_CALL_TIMEOUT")]
    pub call_timeout: Duration,

    /// Largest message accepted from the server, in bytes.
    #[arg(long, default_value_t = 64 << 20, env = "EXOSPHERE_SYNC_MAX_MESSAGE_SIZE")]
    pub max_message_size: usize,

    /// Largest page a `--compress` page may inflate to, in bytes; a bigger one (a gzip
    /// bomb) stops the sync with an error instead of filling memory.
    #[arg(long, default_value_t = 256 << 20, env = "EXOSPHERE_SYNC_MAX_PAGE_SIZE")]
    pub max_page_size: usize,

    /// Most pages in a row without records and without `upToDate`: more means the server
    /// is stuck, and the sync stops with an error instead of looping forever.
    #[arg(long, default_value_t = 100, env = "EXOSPHERE_SYNC_MAX_EMPTY_PAGES")]
    pub max_empty_pages: u32,
}

/// Flags of `exosphere import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// The dump to read, or `-` for standard input.
    pub file: PathBuf,
}

/// Flags of `exosphere migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The catalog to copy: a data directory (its SQLite catalog) or a PostgreSQL URL
    /// (postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME, or `host=… dbname=…`).
    #[arg(long, value_name = "DIR|URL", value_parser = parse_catalog_location)]
    pub from: DataDirArg,

    /// The empty catalog to copy into: a data directory (created if missing) or a
    /// PostgreSQL URL of an existing, empty database whose user may create tables.
    #[arg(long, value_name = "DIR|URL", value_parser = parse_catalog_location)]
    pub to: DataDirArg,
}

/// A `--from`/`--to` of `migrate`: a `postgres://` or `postgresql://` URL, or a
/// PostgreSQL connection string of `key=value` words (`host=db dbname=exosphere`), names a
/// PostgreSQL database, anything else a data directory.
fn parse_catalog_location(text: &str) -> Result<DataDirArg, String> {
    if text.is_empty() {
        return Err("give a data directory or a postgres:// URL".to_owned());
    }
    let key_value = ["host=", "dbname=", "user=", "port="]
        .iter()
        .any(|key| text.starts_with(key) || text.contains(&format!(" {key}")));
    let is_url = key_value || text.starts_with("postgres://") || text.starts_with("postgresql://");
    Ok(DataDirArg {
        data_dir: if is_url {
            PathBuf::new()
        } else {
            PathBuf::from(text)
        },
        database_url: is_url.then(|| text.to_owned()),
    })
}

/// Flags of `exosphere export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// Where to write the dump; `-` (the default) is standard output.
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
}

/// Flags of `exosphere audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// Only actions by this actor: a username, `anonymous`, or `cli:<OS user>`.
    #[arg(long)]
    pub user: Option<String>,

    /// Only actions on this package or release track (its versions, builds and
    /// maintainers included).
    #[arg(long)]
    pub package: Option<String>,

    /// Only actions at or after this time: a day (2026-12-01, from midnight UTC) or an
    /// RFC 3339 time (2026-12-01T09:30:00Z).
    #[arg(long)]
    pub since: Option<String>,

    /// Only actions before this time, written as for --since.
    #[arg(long)]
    pub until: Option<String>,

    /// Print at most this many entries, the newest (0: all).
    #[arg(long, default_value_t = 100)]
    pub limit: u64,

    /// One JSON object per line (time, actor, address, action, target, package, detail)
    /// instead of tab-separated text.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `exosphere backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// The backup file to write; written beside it under a temporary name, then renamed, so
    /// it is never half-written. An existing file is replaced.
    #[arg(long, short, env = "EXOSPHERE_BACKUP_OUTPUT")]
    pub output: PathBuf,
}

/// Flags of `exosphere restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// The backup file to restore (from `exosphere backup`).
    #[arg(long, short, env = "EXOSPHERE_RESTORE_INPUT")]
    pub input: PathBuf,

    /// Replace the catalog the data directory already holds (it is kept beside the restored
    /// one as catalog.sqlite3.replaced-<time>). No environment variable: replacing a
    /// catalog is asked for on the command line each time.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `exosphere verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,

    /// Check this backup file and its manifest instead of the data directory's catalog
    /// (against the same file store).
    #[arg(long, env = "EXOSPHERE_VERIFY_BACKUP")]
    pub backup: Option<PathBuf>,

    #[command(flatten)]
    pub files: FileStoreArgs,
}

/// Flags of `exosphere gen-catalog`.
#[derive(Debug, Args)]
pub struct GenCatalogArgs {
    /// `atmosphere` is the size of packages.meteor.com (~15,000 packages, 150,000 versions);
    /// `small` is a ~200-package demo.
    #[arg(long, default_value = "small", env = "EXOSPHERE_GEN_SCALE")]
    pub scale: Scale,

    /// Seed of the generator: the same seed always gives the same bytes.
    #[arg(long, default_value_t = 1, env = "EXOSPHERE_GEN_SEED")]
    pub seed: u64,

    /// Where to write the dump; `-` (the default) is standard output.
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
}

/// The workloads of `exosphere bench`; each prints a Markdown report on standard output.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// A full catalog sync against the time to push the same bytes over a bare WebSocket.
    #[command(
        long_about = "Measure a full catalog sync (the loop of spec section 3.3) against an \
                      `exosphere serve` child process, and the time to push the same bytes \
                      through a bare WebSocket on loopback in the same run. Reports records/s, \
                      MB/s, pages, peak server memory and the ratio to the bare transfer."
    )]
    Sync(BenchSyncArgs),
    /// Many idle DDP sessions subscribed to `changes`: memory per session, connect rate,
    /// and the fan-out of one catalog write against bare loopback sockets.
    #[command(
        long_about = "Open --sessions DDP sessions over loopback WebSockets against an \
                      `exosphere serve` child process, each subscribed to `changes`. Reports the \
                      connect rate, the server's anonymous memory per idle session, and, for \
                      each of --rounds catalog writes, the time until the first, median and \
                      last client received `changed`, next to the same fan-out of a \
                      pre-encoded frame over bare loopback TCP sockets. Raises the open-file \
                      limit to the hard limit and says so if that is too low."
    )]
    Sessions(BenchSessionsArgs),
    /// Usage recording over DDP and daily rollups against bulk SQLite inserts and no-op calls.
    #[command(
        long_about = "Measure `recordAppPackages` over DDP against an `exosphere serve` child \
                      process: simulated apps report their package lists from many connections \
                      at once. In the same run, two physical limits: the same calls to a \
                      method that does not exist (DDP round trips without storage), and the \
                      same reports written straight into SQLite in large transactions, spread \
                      over the simulated days, which are then rolled up one by one. Reports \
                      calls/s, the ratio to each limit, rollup time per day and storage used."
    )]
    Stats(BenchStatsArgs),
    /// `exosphere sync` of a whole catalog into a fresh index, against a bulk load of the same
    /// records with the `sqlite3` shell.
    #[command(
        long_about = "Measure `exosphere sync` (a child process) syncing a whole synthetic \
                      catalog from an `exosphere serve` child process into a fresh index, and, \
                      in the same run, the physical limit: the `sqlite3` command-line shell \
                      loading the same records (raw JSON rows plus typed columns and lookup \
                      indexes, one transaction). Reports time, records/s, peak memory of each \
                      and their ratio. Needs `sqlite3` (Debian/Ubuntu: apt-get install sqlite3)."
    )]
    ClientSync(BenchClientSyncArgs),
    /// Applying sync pages to a local index, against a bulk load with the sqlite3 shell.
    #[command(
        long_about = "Measure how fast the local index (`exosphere sync`'s storage) applies \
                      sync pages: the synthetic catalog's records, grouped like the server \
                      pages them, go through the same code `sync` uses, into a fresh index \
                      file. In the same run the `sqlite3` command-line shell (it must be on \
                      PATH) bulk-loads the same records into a table, the physical limit. \
                      Then the query commands run against the index, timed. Reports \
                      records/s, the ratio to the limit, index size and query times."
    )]
    Index(BenchIndexArgs),
    /// The web catalog's pages and JSON API under concurrent load, against the same answers
    /// served from memory.
    #[command(
        long_about = "Measure the web catalog on a synthetic catalog: an `exosphere serve` \
                      child process builds its read model, then for the package API, the \
                      search API, the package page and the search page, a load generator in \
                      this process asks for --urls URLs (packages sampled from the catalog, \
                      search words from their names and summaries) over keep-alive HTTP/1.1: \
                      one connection for latency (median and p99, the server's time plus a \
                      loopback round trip), then --connections at once for --seconds. The \
                      physical limit, in the same run: the same answers served from memory by \
                      a bare HTTP/1.1 server in this process. Reports requests/s, the \
                      server's CPU per request and the ratio to the limit."
    )]
    Web(BenchWebArgs),
    /// Package file uploads and downloads against bare loopback TCP and an fsynced write.
    #[command(
        long_about = "Measure the `meteor publish` file path against an `exosphere serve` \
                      child process: createPackageVersion, a PUT of a large source tarball \
                      (hashed and streamed to disk), publishPackageVersion (verification and \
                      the move into place), and a GET of the published file. In the same \
                      run, the physical limits: the same bytes through a bare loopback TCP \
                      connection, and written to a file with an fsync. Reports MB/s, the \
                      ratios and the server's peak memory (which must not grow with the \
                      file size)."
    )]
    Publish(BenchPublishArgs),
    /// The upstream mirror: an initial mirror against `exosphere import` of the same catalog,
    /// the lag of a change, and file downloads cold, warm and at once against direct ones.
    #[command(
        long_about = "Measure the upstream mirror against the local limits, in one run: an \
                      initial mirror of a synthetic catalog from an `exosphere serve` upstream \
                      (child processes, loopback) against `exosphere import` of the same dump; \
                      the time from an upstream write to `changed` on a subscriber of the \
                      mirror, against the upstream's own subscriber; and downloads of a large \
                      file through the mirror, cold and warm, against a direct download from \
                      the upstream's file host, plus 50 concurrent cold requests for one file, \
                      counting the host's requests."
    )]
    Mirror(BenchMirrorArgs),
    /// The hostile tester's attacks at full size against default flags, each beside an
    /// honest client's full sync.
    #[command(
        long_about = "Run each attack of the hostile-client review against a fresh                       `exosphere serve` child process with default flags: oversized records                       from a publisher, SockJS sessions that never poll, WebSockets that stop                       reading, a flood of SockJS sessions without DDP connect, idle TCP                       connections, a flood of usage reports with made-up names, and slow                       readers of a large stats day. While each attack is held, an honest client                       on 127.0.0.2 syncs the small synthetic catalog. Reports what the server                       did with each attack, its peak memory and open files, and the honest                       sync's time against the same sync before the attack. Raises the                       open-file limit to the hard limit (the idle-connection attack is capped                       by it)."
    )]
    Abuse(BenchAbuseArgs),
    /// A mixed load for --minutes: memory, open files, sessions and latency every minute.
    #[command(
        long_about = "Drive a mixed load against an `exosphere serve` child process for \
                      --minutes: clients syncing incrementally and reconnecting, full syncs \
                      (plain, with permessage-deflate, and with collectionsCompressed in turn), \
                      publishes with uploads, usage reports, reads of the stats API, WebSocket \
                      and SockJS (xhr and websocket) sessions opened and dropped, and clients \
                      that ask for sync pages and stop reading. Reports, for every minute, the \
                      server's resident and anonymous memory and open files (medians of \
                      one-second samples), its sessions and connections, each operation's \
                      latency percentiles and every error the load did not cause on purpose; \
                      then whether memory and open files stayed within 10% after \
                      --warmup-minutes."
    )]
    Soak(BenchSoakArgs),
    /// Import into and full sync from PostgreSQL, against a raw COPY of the same bytes and
    /// the bare WebSocket transfer, with SQLite's figures beside them.
    #[command(
        long_about = "Measure the PostgreSQL backend against the physical limits, taken in \
                      the same run: the synthetic catalog's dump is bulk loaded (COPY) into \
                      a fresh database, against a raw COPY of the same bytes into a table of \
                      one text column without an index; then the meteor tool's full sync is \
                      served by `exosphere serve --database-url`, against the same sync \
                      served from SQLite and the bare WebSocket transfer of the same frames. \
                      Targets: import within 2x of the raw COPY, full sync within 1.5x of \
                      SQLite's.\n\n\
                      The benchmark creates databases of its own on the server of \
                      --database-url (its user needs CREATEDB) and drops them after; it \
                      never touches the database the URL names.\n\n\
                      Example:\n  \
                      exosphere bench postgres --database-url postgres://postgres@127.0.0.1/postgres --scale small"
    )]
    Postgres(BenchPostgresArgs),
}

/// Flags of `exosphere bench postgres`.
#[derive(Debug, Args)]
pub struct BenchPostgresArgs {
    #[command(flatten)]
    pub catalog: BenchCatalogArgs,

    /// A PostgreSQL server to measure, as the URL of any database on it: the benchmark
    /// creates databases of its own there (CREATEDB needed) and drops them after.
    #[arg(
        long,
        env = "EXOSPHERE_BENCH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// Flags of `exosphere bench sessions`.
#[derive(Debug, Args)]
pub struct BenchSessionsArgs {
    /// Concurrent DDP sessions to open.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sessions: u32,

    /// WebSocket + DDP handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connect_concurrency: u32,

    /// Catalog writes to fan out; the report gives each.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,

    /// The server's --watch-interval: how soon it sees the write.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub watch_interval: Duration,

    /// Seed of the (small) synthetic catalog the server serves.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Directory for the benchmark's data (a fresh temporary directory by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Flags of `exosphere bench publish`.
#[derive(Debug, Args)]
pub struct BenchPublishArgs {
    /// Size of the uploaded file, in bytes.
    #[arg(long, default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1..=(4u64 << 30)))]
    pub size: u64,

    /// Versions to publish (one upload and one download each); the report gives each and
    /// the best.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,

    /// Directory for the benchmark's data (a fresh temporary directory by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Flags of `exosphere bench stats`.
#[derive(Debug, Args)]
pub struct BenchStatsArgs {
    /// `recordAppPackages` calls to make.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: u64,

    /// Simulated apps (each has its own package list, upgraded now and then).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub apps: u64,

    /// Simulated days the calls are spread over (for the rollups).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,

    /// Packages in each report.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub packages: u32,

    /// DDP connections calling at once (each waits for its answer, like the tool).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,

    /// Seed of the simulated workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Directory for the benchmark's data (a fresh temporary directory by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// The synthetic catalog a catalog benchmark runs on, how many runs, and where; shared by
/// `bench sync`, `bench client-sync` and `bench index`.
#[derive(Debug, Args)]
pub struct BenchCatalogArgs {
    /// Size of the synthetic catalog.
    #[arg(long, default_value = "atmosphere", env = "EXOSPHERE_BENCH_SCALE")]
    pub scale: Scale,

    /// Seed of the synthetic catalog.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Runs of the measured work (and of its baseline); the report gives each and the best.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,

    /// Directory for the benchmark's data (a fresh temporary directory by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Flags of `exosphere bench index`.
#[derive(Debug, Args)]
pub struct BenchIndexArgs {
    #[command(flatten)]
    pub catalog: BenchCatalogArgs,

    /// Records per collection in one page (the server's --page-size).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub page_size: u32,
}

/// Flags of `exosphere bench web`.
#[derive(Debug, Args)]
pub struct BenchWebArgs {
    #[command(flatten)]
    pub catalog: BenchCatalogArgs,

    /// Connections asking at once during the throughput phase.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,

    /// Seconds each throughput phase lasts.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,

    /// URLs per target (packages sampled evenly from the catalog).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub urls: u32,

    /// The server's `--web-cache-bytes`: 0 measures every answer queried and rendered.
    #[arg(long, default_value_t = exosphere_web::DEFAULT_CACHE_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=16 << 30))]
    pub web_cache_bytes: usize,
}

/// Flags of `exosphere bench sync`.
#[derive(Debug, Args)]
pub struct BenchSyncArgs {
    #[command(flatten)]
    pub catalog: BenchCatalogArgs,

    /// Ask for `collectionsCompressed` pages, as `METEOR_CATALOG_COMPRESS_RPCS` does.
    #[arg(long)]
    pub compress: bool,

    /// Negotiate `permessage-deflate` (RFC 7692) on the client's WebSocket, as the `meteor`
    /// tool does, and count the compressed bytes on the wire.
    #[arg(long)]
    pub deflate: bool,

    /// Sync over a link shaped to this rate (`50mbit`, `1gbit`, ...), with and without
    /// `permessage-deflate`, against the link's ideal measured in the same run. The server
    /// runs in a network namespace of the benchmark's own, behind a veth pair shaped by
    /// `tc tbf`: this needs root (or CAP_NET_ADMIN) and iproute2.
    #[arg(long, value_parser = crate::commands::bench::link::parse_rate)]
    pub link_rate: Option<u64>,

    /// After the runs, this many clients sync from scratch at once (and as many bare
    /// transfers of the same frames run at once): aggregate throughput and server CPU per
    /// sync. 1 skips it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub clients: u32,
}

/// Flags of `exosphere bench client-sync`.
#[derive(Debug, Args)]
pub struct BenchClientSyncArgs {
    #[command(flatten)]
    pub catalog: BenchCatalogArgs,

    /// Sync with compressed pages (`exosphere sync --compress`).
    #[arg(long)]
    pub compress: bool,
}

/// An upstream package server's URL: `http(s)://host[:port][/path]`, as the `meteor` tool's
/// `METEOR_PACKAGE_SERVER_URL` takes it; a trailing slash is dropped.
fn parse_upstream_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(format!("{text:?} names no host"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// A share between 0 and 1.
fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

/// Flags of `exosphere bench abuse`.
#[derive(Debug, Args)]
pub struct BenchAbuseArgs {
    /// Idle TCP connections the idle-connection attack opens (at most the load generator's
    /// open-file limit less 1024).
    #[arg(long, default_value_t = 19_995, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub idle_connections: u64,

    /// Rows of the large stats day the slow readers read (about 80 bytes each).
    #[arg(long, default_value_t = 1_100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub stats_rows: u64,

    /// Seconds the usage flood goes on after the honest sync.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub flood_seconds: u64,

    /// Seed of the small synthetic catalog.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Directory for the benchmark's data (a fresh temporary directory by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Flags of `exosphere bench soak`.
#[derive(Debug, Args)]
pub struct BenchSoakArgs {
    /// Minutes the load runs; the report has a row for each.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub minutes: u32,

    /// First minutes left out of the flatness verdict, while caches fill and the allocator
    /// settles (less than --minutes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1439))]
    pub warmup_minutes: u32,

    /// Clients that keep syncing incrementally, each reconnecting every 30 syncs.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub syncing_clients: u32,

    /// Size of the synthetic catalog the server starts with.
    #[arg(long, default_value = "small", env = "EXOSPHERE_BENCH_SCALE")]
    pub scale: Scale,

    /// Seed of the synthetic catalog.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Directory for the benchmark's data (a fresh temporary directory by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Flags of `exosphere bench mirror`.
#[derive(Debug, Args)]
pub struct BenchMirrorArgs {
    #[command(flatten)]
    pub catalog: BenchCatalogArgs,

    /// Size of each file downloaded through the mirror, in bytes.
    #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(u64).range(1..=4_000_000_000))]
    pub file_size: u64,

    /// Also measure files from a host behind a link shaped to this rate (`1gbit`,
    /// `200mbit`, ...), as packages.meteor.com's files come from another machine: a second
    /// `exosphere serve` holding the files runs in a network namespace of the benchmark's own,
    /// behind a veth pair shaped by `tc tbf`. Needs root (or CAP_NET_ADMIN) and iproute2.
    #[arg(long, value_parser = crate::commands::bench::link::parse_rate)]
    pub file_link_rate: Option<u64>,
}

/// A script URL for an HTML page: absolute (`http://`, `https://`) or rooted at this host
/// (`/...`), with nothing that would end the attribute it is written into.
fn parse_script_url(text: &str) -> Result<String, String> {
    let absolute = ["http://", "https://", "/"]
        .iter()
        .any(|prefix| text.starts_with(prefix));
    if !absolute {
        return Err("use an http:// or https:// URL, or a path starting with /".to_owned());
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '<' | '>'))
    {
        return Err("a URL cannot contain spaces, quotes or angle brackets".to_owned());
    }
    Ok(text.to_owned())
}

/// Parses durations such as `250ms`, `45s`, `5m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 250ms, 45s or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "" | "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(value.saturating_mul(3600))),
        _ => Err(format!(
            "unknown unit `{unit}` in `{text}`: use ms, s, m or h"
        )),
    }
}

/// Parses a duration like [`parse_duration`], refusing zero: for periods of repeated work,
/// where zero would make the server spin (a heartbeat or a rollup every 0 s).
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("`{text}` must be longer than zero")),
        duration => Ok(duration),
    }
}

/// A Subresource Integrity value: `sha256-`, `sha384-` or `sha512-` and base64.
fn parse_integrity(text: &str) -> Result<String, String> {
    let valid = ["sha256-", "sha384-", "sha512-"].iter().any(|prefix| {
        text.strip_prefix(prefix).is_some_and(|hash| {
            !hash.is_empty()
                && hash
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'='))
        })
    });
    if valid {
        Ok(text.to_owned())
    } else {
        Err("use sha256-, sha384- or sha512- followed by the base64 hash".to_owned())
    }
}

/// A count that must be at least one (a limit of zero would refuse everything).
fn parse_positive_usize(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(value) => Ok(value),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_zero_sockjs_heartbeat_is_refused() {
        let parse =
            |value: &str| Cli::try_parse_from(["exosphere", "serve", "--sockjs-heartbeat", value]);
        let error = parse("0s").expect_err("zero refused");
        assert!(
            error.to_string().contains("must be longer than zero"),
            "{error}"
        );
        assert!(parse("0ms").is_err());
        assert!(parse("1s").is_ok());
    }
}
