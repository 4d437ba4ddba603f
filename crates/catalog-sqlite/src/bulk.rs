//! [`BulkStore`] on SQLite: every table read in one read transaction, and a bulk load as
//! prepared inserts in one immediate write transaction (SQLite has no faster path than
//! that inside a transaction).

use std::sync::PoisonError;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, TransactionBehavior, params_from_iter};

use exosphere_catalog::bulk::{
    BulkStore, Kind, META, Row, RowCounts, TABLES, Table, Value, check_empty, check_loaded_seq,
    known_table, record_table,
};
use exosphere_catalog::columns::to_u64;
use exosphere_catalog::error::StoreError;
use exosphere_meteor::Collection;

use super::{Db as _, SqliteStore, read_meta};

/// Where `table`'s rows are read from: the table, but of the mirror's stage, which appends a
/// record staged again (`mirror.rs`), only the last staging of each record, as reading the
/// stage settles it and as PostgreSQL's stage keeps it.
fn rows_of(table: &Table) -> String {
    if table.name == "mirror_stage" {
        return "mirror_stage WHERE rowid IN \
                (SELECT max(rowid) FROM mirror_stage GROUP BY collection, id)"
            .to_owned();
    }
    table.name.to_owned()
}

/// `table`'s rows in its dump order.
fn select_sql(table: &Table) -> String {
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        table.column_names(),
        rows_of(table),
        table.order_by("rowid")
    )
}

/// The insert of one of `table`'s rows.
fn insert_sql(table: &Table) -> String {
    let slots: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        table.column_names(),
        slots.join(", ")
    )
}

/// Column `index` of `row` as a [`Value`] of `kind` (`None` for NULL).
fn value(row: &rusqlite::Row<'_>, index: usize, kind: Kind) -> Result<Option<Value>, StoreError> {
    Ok(match kind {
        Kind::Int => row.get::<_, Option<i64>>(index).db()?.map(Value::Int),
        Kind::Bool => row
            .get::<_, Option<i64>>(index)
            .db()?
            .map(|flag| Value::Bool(flag != 0)),
        Kind::Text => row.get::<_, Option<String>>(index).db()?.map(Value::Text),
    })
}

/// A [`Value`] as an SQL parameter.
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Int(n) => ValueRef::Integer(*n),
            Value::Bool(flag) => ValueRef::Integer(i64::from(*flag)),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
        }))
    }
}

/// The rows of every table, counted on `conn` (inside the caller's transaction).
fn count_rows(conn: &Connection) -> Result<RowCounts, StoreError> {
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let count: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {}", rows_of(table)),
                [],
                |row| row.get(0),
            )
            .db()?;
        counts.push(to_u64(count, "row count")?);
    }
    Ok(RowCounts(counts))
}

/// [`StoreError::BulkRefused`], naming the constraint's columns, when an insert failed
/// because a loaded row holds its key (primary or unique) already.
fn duplicate_key(error: &rusqlite::Error) -> Option<StoreError> {
    match error {
        rusqlite::Error::SqliteFailure(failure, message)
            if matches!(
                failure.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ) =>
        {
            Some(StoreError::BulkRefused(
                message.clone().unwrap_or_else(|| failure.to_string()),
            ))
        }
        _ => None,
    }
}

impl SqliteStore {
    /// [`BulkStore::load_rows`] before disk trouble is named.
    fn load_unnamed(
        &self,
        next: &mut dyn FnMut() -> Result<Option<Row>, StoreError>,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        check_empty(&count_rows(&tx)?, read_meta(&tx, &self.sql)?.head_seq)?;
        let inserts: Vec<String> = TABLES.iter().map(insert_sql).collect();
        let mut current = 0;
        while let Some(row) = next()? {
            if TABLES[current] != *row.table {
                current = known_table(row.table)?;
            }
            if row.table.name == META {
                tx.execute("DELETE FROM meta", []).db()?;
            }
            let inserted = tx
                .prepare_cached(&inserts[current])
                .db()?
                .execute(params_from_iter(row.values.iter().map(Param)));
            if let Err(error) = &inserted
                && let Some(refused) = duplicate_key(error)
            {
                return Err(refused);
            }
            inserted.db()?;
        }
        let head_seq = read_meta(&tx, &self.sql)?.head_seq;
        for c in Collection::ALL {
            let table = record_table(c);
            let max: i64 = tx
                .query_row(
                    &format!("SELECT coalesce(max(seq), 0) FROM {}", table.name),
                    [],
                    |row| row.get(0),
                )
                .db()?;
            check_loaded_seq(table, to_u64(max, "seq")?, head_seq)?;
        }
        tx.commit().db()
    }
}

impl BulkStore for SqliteStore {
    fn dump_rows(
        &self,
        f: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.readers.with(|conn| {
            let tx = conn.transaction().db()?;
            for table in TABLES {
                let mut stmt = tx.prepare(&select_sql(table)).db()?;
                let mut rows = stmt.query([]).db()?;
                while let Some(row) = rows.next().db()? {
                    f(Row::read(table, |index, kind| value(row, index, kind))?)?;
                }
            }
            Ok(())
        })
    }

    fn load_rows(
        &self,
        next: &mut dyn FnMut() -> Result<Option<Row>, StoreError>,
    ) -> Result<(), StoreError> {
        self.load_unnamed(next)
            .map_err(|error| self.name_disk_trouble(error))
    }

    /// None counted here: a server holds its data directory's serve lock, which a copy
    /// takes itself.
    fn servers_running(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn row_counts(&self) -> Result<RowCounts, StoreError> {
        self.readers.with(|conn| {
            let tx = conn.transaction().db()?;
            count_rows(&tx)
        })
    }
}
