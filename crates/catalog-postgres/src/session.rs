//! [`Session`]: statements on one transaction, prepared once per connection and reused.

use std::collections::HashMap;

use exosphere_catalog::error::StoreError;
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, GenericClient, Row, Statement, Transaction};

use crate::bridge::{runtime, wait};
use crate::error::Db as _;

/// The statements a connection has prepared, by SQL text. Preparing costs a round trip, and
/// the store runs the same few dozen statements over and over.
#[derive(Default)]
pub(crate) struct Statements(HashMap<String, Statement>);

/// A transaction and the statement cache of its connection.
pub(crate) struct Session<'a, 't> {
    tx: &'a mut Transaction<'t>,
    statements: &'a mut Statements,
}

impl Statements {
    /// The row of `sql` (if any) run on `client` alone, outside a transaction block: one
    /// statement sees one snapshot, so a read of one statement needs no `BEGIN` and
    /// `COMMIT` (two round trips).
    pub(crate) fn query_alone(
        &mut self,
        client: &Client,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let statement = self.prepared(client, sql)?;
        wait(client.query_opt(&statement, params)).db()
    }

    /// The rows of `sql` run on `client` alone, outside a transaction block, as
    /// [`Statements::query_alone`] runs its one row. They are gathered on the runtime that
    /// reads the connection (`bridge.rs`), so the calling thread is woken once, when the
    /// last has come, not for every batch of them the socket delivers: a sync page of a
    /// thousand rows comes in dozens of reads, and waking a parked thread for each cost the
    /// server more CPU than decoding the rows.
    pub(crate) fn rows_alone(
        &mut self,
        client: &Client,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let statement = self.prepared(client, sql)?;
        let rows = wait(client.query_raw(&statement, params.iter().copied())).db()?;
        let gathered = runtime().spawn(rows.try_collect::<Vec<Row>>());
        wait(gathered)
            .map_err(|error| StoreError::TaskFailed(format!("gathering rows: {error}")))?
            .db()
    }

    /// `sql` prepared on the connection of `client` (a client or one of its transactions),
    /// once: later calls take it from the cache.
    fn prepared(
        &mut self,
        client: &impl GenericClient,
        sql: &str,
    ) -> Result<Statement, StoreError> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = wait(client.prepare(sql)).db()?;
        self.0.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// Statement parameters.
pub(crate) type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<'a, 't> Session<'a, 't> {
    /// Statements on `tx`, prepared through `statements`.
    pub(crate) fn new(tx: &'a mut Transaction<'t>, statements: &'a mut Statements) -> Self {
        Session { tx, statements }
    }

    /// `sql` prepared on this connection (once).
    fn prepare(&mut self, sql: &str) -> Result<Statement, StoreError> {
        self.statements.prepared(&*self.tx, sql)
    }

    /// Runs `sql`, returning how many rows it changed.
    pub(crate) fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        let statement = self.prepare(sql)?;
        wait(self.tx.execute(&statement, params)).db()
    }

    /// All rows of `sql`.
    pub(crate) fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        let statement = self.prepare(sql)?;
        wait(self.tx.query(&statement, params)).db()
    }

    /// The row of `sql`, if any (more than one is an error).
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let statement = self.prepare(sql)?;
        wait(self.tx.query_opt(&statement, params)).db()
    }

    /// The one row of `sql`.
    pub(crate) fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row, StoreError> {
        let statement = self.prepare(sql)?;
        wait(self.tx.query_one(&statement, params)).db()
    }

    /// Calls `each` with every row of `sql` as the server streams them, without holding
    /// them all in memory; an `Err` from `each` stops and is returned.
    pub(crate) fn stream(
        &mut self,
        sql: &str,
        params: &Params<'_>,
        mut each: impl FnMut(&Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let statement = self.prepare(sql)?;
        let rows = wait(self.tx.query_raw(&statement, params.iter().copied())).db()?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = wait(rows.next()) {
            each(&row.db()?)?;
        }
        Ok(())
    }

    /// Calls `each` with the rows of `sql` in order, fetched `batch` at a time through a
    /// portal, so that at most `batch` rows are held at once; stops when `each` returns
    /// `false`. Returns how many rows `each` was given.
    pub(crate) fn rows_in_batches(
        &mut self,
        sql: &str,
        params: &Params<'_>,
        batch: i32,
        mut each: impl FnMut(&Row) -> Result<bool, StoreError>,
    ) -> Result<u64, StoreError> {
        let statement = self.prepare(sql)?;
        let portal = wait(self.tx.bind(&statement, params)).db()?;
        let mut given = 0;
        loop {
            let rows = wait(self.tx.query_portal(&portal, batch)).db()?;
            for row in &rows {
                given += 1;
                if !each(row)? {
                    return Ok(given);
                }
            }
            if rows.len() < usize::try_from(batch).unwrap_or(usize::MAX) {
                return Ok(given);
            }
        }
    }

    /// Runs several statements without parameters (schema changes, savepoints).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        wait(self.tx.batch_execute(sql)).db()
    }
}

/// Column `index` of `row`; a column of an unexpected type is corruption.
pub(crate) fn col<'r, T: FromSql<'r>>(row: &'r Row, index: usize) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("column {index}: {e}")))
}
