//! [`BulkStore`] on PostgreSQL: every table read through a portal in one snapshot, and a
//! bulk load with `COPY … FROM STDIN` (text format) in one write transaction.
//!
//! Why `COPY`: an upsert costs two or three round trips per record, and `COPY` streams a
//! table's rows in one statement, parsed by the server as fast as it can store them. The
//! load takes the meta row's lock first, as every write does, so it is serialized with
//! every other writer and checks that the database is empty under that lock; it replaces
//! the `meta` row's values in place (`UPDATE`), so that a writer waiting for that lock
//! finds the loaded row when the load commits, and notifies the servers' change listeners
//! at its commit as every write does (`hints.rs`).
//!
//! Each run of rows of one table is one `COPY`: rows come grouped by table from
//! [`BulkStore::dump_rows`] and from exports (which write each collection's records
//! together, then the stats rows), and input that switches tables often (a hand-made dump
//! alternating collections line by line) is loaded correctly, one `COPY` per run, only
//! more slowly.

use std::pin::Pin;

use bytes::{BufMut as _, BytesMut};
use exosphere_catalog::bulk::{
    BulkStore, GENERATED_IDS, Kind, META, Row, RowCounts, TABLES, Table, Value, check_empty,
    check_loaded_seq, known_table, record_table,
};
use exosphere_catalog::columns::to_u64;
use exosphere_catalog::error::StoreError;
use exosphere_meteor::Collection;
use futures_util::SinkExt as _;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, CopyInSink, Transaction};

use crate::PgStore;
use crate::bridge::wait;
use crate::error::{Db as _, name_bulk_refusal, name_storage_trouble, refusal};
use crate::keys::Keyed;
use crate::pool::Conn;
use crate::schema::SCHEMA_VERSION;
use crate::servers;
use crate::session::{Session, col};
use crate::writer::{Sql, notify_changes, read_meta};

/// How many rows of a dumped table are fetched at a time: the dump holds no more.
const DUMP_FETCH: i32 = 1000;

/// How many bytes of `COPY` data are sent at a time.
const COPY_CHUNK: usize = 256 * 1024;

/// `table`'s rows in its dump order; integers are read as `bigint` whatever their column's
/// width. The mirror's stage tables number their rows as they are written (`ord`).
fn select_sql(table: &Table) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.kind {
            Kind::Int => format!("{}::bigint", c.name),
            Kind::Bool | Kind::Text => c.name.to_owned(),
        })
        .collect();
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        table.name,
        table.order_by("ord")
    )
}

/// The `COPY` that loads `table`'s columns, and the key columns of a record table or the
/// mirror's stage after them.
fn copy_sql(table: &Table) -> String {
    let keys = if Keyed::of(table).is_some() {
        ", key1, key2"
    } else {
        ""
    };
    format!(
        "COPY {} ({}{keys}) FROM STDIN",
        table.name,
        table.column_names()
    )
}

/// Column `index` of `row` as a [`Value`] of `kind` (`None` for NULL).
fn value(row: &tokio_postgres::Row, index: usize, kind: Kind) -> Result<Option<Value>, StoreError> {
    Ok(match kind {
        Kind::Int => col::<Option<i64>>(row, index)?.map(Value::Int),
        Kind::Bool => col::<Option<bool>>(row, index)?.map(Value::Bool),
        Kind::Text => col::<Option<String>>(row, index)?.map(Value::Text),
    })
}

/// Appends `values` as a line of `COPY`'s text format: values separated by tabs, `\N` for
/// NULL, and backslash, newline, carriage return and tab escaped in text.
fn encode<'v>(out: &mut BytesMut, values: impl Iterator<Item = &'v Value>) {
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.put_u8(b'\t');
        }
        match value {
            Value::Null => out.put_slice(b"\\N"),
            Value::Int(n) => out.put_slice(n.to_string().as_bytes()),
            Value::Bool(flag) => out.put_u8(if *flag { b't' } else { b'f' }),
            Value::Text(text) => escape(out, text),
        }
    }
    out.put_u8(b'\n');
}

/// Appends `text` escaped for `COPY`'s text format. The escaped bytes are ASCII, so they
/// never occur inside a multi-byte UTF-8 character.
fn escape(out: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        out.put_slice(escaped);
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
}

/// Checks, without writing anything, that the database `client` is connected to holds a
/// catalog of this release's schema version, as a source to be read only must: none, an
/// older version (which opening would upgrade) or a newer one (whose tables this release
/// may not all know) is refused, naming the next step.
pub(crate) fn check_source_schema(client: &mut Client, database: &str) -> Result<(), StoreError> {
    let row = wait(client.query_one(
        "SELECT to_regclass('exosphere_schema') IS NOT NULL, to_regclass('meta') IS NOT NULL",
        &[],
    ))
    .db()?;
    if !(col::<bool>(&row, 0)? && col::<bool>(&row, 1)?) {
        return Err(refusal(format!(
            "{database} holds no Exosphere catalog (it has no exosphere_schema and meta \
             tables), and a source is only read, never created; check that the URL names the \
             database the servers serve from"
        )));
    }
    let version: i64 = col(
        &wait(client.query_one("SELECT version FROM exosphere_schema", &[])).db()?,
        0,
    )?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < SCHEMA_VERSION {
        return Err(refusal(format!(
            "{database} holds a catalog of schema version {version}, and this Exosphere reads \
             version {SCHEMA_VERSION}; a source is only read, never upgraded, so upgrade it \
             first by opening it once with this release (exosphere user list --database-url \
             URL; see \"Schema upgrades and mixed releases\" in docs/OPERATIONS.md before \
             older servers use it), then run exosphere migrate again"
        )));
    }
    Ok(())
}

/// The rows of every table, counted in `s`'s transaction.
fn count_rows(s: &mut Session<'_, '_>) -> Result<RowCounts, StoreError> {
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let row = s.query_one(&format!("SELECT count(*) FROM {}", table.name), &[])?;
        counts.push(to_u64(col(&row, 0)?, "row count")?);
    }
    Ok(RowCounts(counts))
}

/// Replaces the values of the store's `meta` row with the loaded `row`'s, in place: a
/// `DELETE` and insert would leave a writer waiting for the row's lock (READ COMMITTED)
/// without a row once the load commits.
fn replace_meta(s: &mut Session<'_, '_>, sql: &Sql, row: &Row) -> Result<(), StoreError> {
    let malformed = || {
        StoreError::Corrupt(
            "the loaded meta row is not id 1 with an epoch, a head and counters".into(),
        )
    };
    let [Value::Int(1), Value::Text(epoch), numbers @ ..] = row.values.as_slice() else {
        return Err(malformed());
    };
    let numbers = numbers
        .iter()
        .map(|value| match value {
            Value::Int(n) => Ok(*n),
            _ => Err(malformed()),
        })
        .collect::<Result<Vec<i64>, StoreError>>()?;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![epoch];
    params.extend(numbers.iter().map(|n| n as &(dyn ToSql + Sync)));
    s.execute(&sql.update_meta, &params).map(drop)
}

/// One table's `COPY` under way: its rows are encoded into `buffer` and sent in chunks.
struct TableCopy {
    table: &'static Table,
    /// How its rows get their key columns, if they have them.
    keys: Option<Keyed>,
    sink: Pin<Box<CopyInSink<bytes::Bytes>>>,
    buffer: BytesMut,
}

impl TableCopy {
    /// Starts `COPY` into `table` on `tx`.
    fn start(tx: &Transaction<'_>, table: &'static Table) -> Result<TableCopy, StoreError> {
        let sink = wait(tx.copy_in(&copy_sql(table))).db()?;
        Ok(TableCopy {
            table,
            keys: Keyed::of(table),
            sink: Box::pin(sink),
            buffer: BytesMut::with_capacity(COPY_CHUNK * 2),
        })
    }

    /// Adds `row`, sending the buffer when it is full. A text holding a NUL character,
    /// which PostgreSQL cannot store in text (a record `_id` may hold one: JSON's `\u0000`),
    /// is refused naming the row.
    fn push(&mut self, row: &Row) -> Result<(), StoreError> {
        let nul =
            row.values
                .iter()
                .zip(row.table.columns)
                .find_map(|(value, column)| match value {
                    Value::Text(text) if text.contains('\0') => Some((column.name, text)),
                    _ => None,
                });
        if let Some((column, text)) = nul {
            return Err(refusal(format!(
                "the {} row {} holds a NUL character in {column} ({text:?}), which \
                 PostgreSQL cannot store in text; nothing was written. Remove or rename that \
                 row in the source (for a record, the one of that _id), or keep this catalog \
                 on SQLite, then run the command again",
                row.table.name,
                row.describe_key()
            )));
        }
        let keys = self.keys.map(|keyed| keyed.values(&row.values));
        encode(
            &mut self.buffer,
            row.values.iter().chain(keys.iter().flatten()),
        );
        if self.buffer.len() >= COPY_CHUNK {
            let chunk = self.buffer.split().freeze();
            wait(self.sink.send(chunk)).db()?;
        }
        Ok(())
    }

    /// Sends what is left and ends the `COPY`.
    fn finish(mut self) -> Result<(), StoreError> {
        if !self.buffer.is_empty() {
            let chunk = self.buffer.split().freeze();
            wait(self.sink.send(chunk)).db()?;
        }
        wait(self.sink.as_mut().finish()).db()?;
        Ok(())
    }
}

impl PgStore {
    /// [`BulkStore::load_rows`] before storage trouble is named.
    fn load_unnamed(
        &self,
        next: &mut dyn FnMut() -> Result<Option<Row>, StoreError>,
    ) -> Result<(), StoreError> {
        let _turn = self.writes.turn()?;
        let (epoch, head_seq) = self.pool.with(|conn| {
            let Conn { client, statements } = conn;
            let mut tx = self.begin_write(client)?;
            {
                let mut s = Session::new(&mut tx, statements);
                let head_seq = read_meta(&mut s, &self.sql.lock_meta)?.head_seq;
                check_empty(&count_rows(&mut s)?, head_seq)?;
            }
            let mut copy: Option<TableCopy> = None;
            while let Some(row) = next()? {
                known_table(row.table)?;
                if copy.as_ref().is_none_or(|c| c.table != row.table) {
                    if let Some(done) = copy.take() {
                        done.finish()?;
                    }
                    if row.table.name == META {
                        replace_meta(&mut Session::new(&mut tx, statements), &self.sql, &row)?;
                        continue;
                    }
                    copy = Some(TableCopy::start(&tx, row.table)?);
                }
                copy.as_mut().expect("a copy was started").push(&row)?;
            }
            if let Some(done) = copy.take() {
                done.finish()?;
            }
            let mut s = Session::new(&mut tx, statements);
            let meta = read_meta(&mut s, &self.sql.read_meta)?;
            for c in Collection::ALL {
                let table = record_table(c);
                let row = s.query_one(
                    &format!("SELECT coalesce(max(seq), 0) FROM {}", table.name),
                    &[],
                )?;
                check_loaded_seq(table, to_u64(col(&row, 0)?, "seq")?, meta.head_seq)?;
            }
            for table in GENERATED_IDS {
                s.batch(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                ))?;
            }
            notify_changes(&mut s)?;
            // No ANALYZE: it would take longer than the load's own work (it reads every
            // record table's text), and autovacuum analyzes tables that grew this much soon
            // after; the queries the server runs plan on their keys without statistics.
            wait(tx.commit()).db()?;
            Ok((meta.epoch, meta.head_seq))
        })?;
        self.seen.committed(&epoch, head_seq);
        Ok(())
    }
}

impl BulkStore for PgStore {
    fn dump_rows(
        &self,
        f: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.read(|s| {
            for table in TABLES {
                s.rows_in_batches(&select_sql(table), &[], DUMP_FETCH, |row| {
                    f(Row::read(table, |index, kind| value(row, index, kind))?)?;
                    Ok(true)
                })?;
            }
            Ok(())
        })
    }

    fn load_rows(
        &self,
        next: &mut dyn FnMut() -> Result<Option<Row>, StoreError>,
    ) -> Result<(), StoreError> {
        self.load_unnamed(next)
            .map_err(|error| name_storage_trouble(name_bulk_refusal(error), &self.database))
    }

    fn row_counts(&self) -> Result<RowCounts, StoreError> {
        self.read(count_rows)
    }

    /// The seats held on the database, and a server of an older release (`servers.rs`).
    fn servers_running(&self) -> Result<u64, StoreError> {
        self.read(servers::running)
    }
}
