//! [`PgWriter`], the [`CatalogWriter`] of one write transaction, and the meta row it locks.
//!
//! Every write transaction's first statement locks the one `meta` row (`SELECT … FOR
//! UPDATE`), which holds the head `seq`: writers from any number of servers are serialized
//! from that statement to their commit, `seq` is allocated from the head read under the
//! lock, and the row is written back at commit. A writer that waits for the lock reads the
//! row as the previous writer committed it (READ COMMITTED re-reads a locked row once it is
//! released), and PostgreSQL makes a commit visible to new snapshots before it releases its
//! row locks, so sequence numbers become visible in increasing order, as the
//! [`exosphere_catalog::store`] contract requires.

use chrono::{Datelike as _, NaiveDate};
use exosphere_catalog::accounts::AccountWriter;
use exosphere_catalog::audit::AuditEntry;
use exosphere_catalog::columns::{snake, to_i64, to_u64};
use exosphere_catalog::error::StoreError;
use exosphere_catalog::immutable;
use exosphere_catalog::mirror::MirrorWriter;
use exosphere_catalog::record::{MAX_RECORD_SIZE, Record, StatsRow};
use exosphere_catalog::store::{CatalogWriter, Lookup, Upsert};
use exosphere_catalog::usage::{self, AppReport, UsageRows};
use exosphere_meteor::{Collection, PerCollection};

use crate::audit;
use crate::keys;
use crate::session::{Session, col};

/// How many columns of the meta row [`Sql::read_meta`], [`Sql::state`] and
/// [`Sql::page`] start with (the epoch, the head `seq` and a change counter per
/// collection, read by [`meta_of`]): where the columns they read after them begin.
pub(crate) const META_COLUMNS: usize = 2 + Collection::ALL.len();

/// The SQL text of the statements that differ per collection, built once.
pub(crate) struct Sql {
    /// Per-collection statements.
    pub(crate) tables: PerCollection<TableSql>,
    /// Reads the meta row in a snapshot.
    pub(crate) read_meta: String,
    /// Reads the meta row's columns (as [`Sql::read_meta`]) and then the first and last
    /// finished days with stats rows and rolled-up usage days (before the day `$1`): the
    /// catalog's state in one statement, which sees one snapshot without a transaction.
    pub(crate) state: String,
    /// The meta row's columns, as [`Sql::read_meta`] reads them: what a page statement
    /// ([`Sql::page`]) starts with.
    meta_columns: String,
    /// Reads and locks the meta row: the first statement of every write.
    pub(crate) lock_meta: String,
    /// Writes the meta row back at commit: `$1` the epoch, `$2` the head `seq`, then the
    /// change counters in [`Collection::ALL`] order (the columns of the bulk `meta` row
    /// after its `id`).
    pub(crate) update_meta: String,
}

/// The statements of one collection's table.
pub(crate) struct TableSql {
    get: String,
    find: String,
    insert: String,
    update: String,
    delete: String,
    /// Every record text, in `seq` order.
    pub(crate) export: String,
}

impl Sql {
    /// Builds every statement's text.
    pub(crate) fn new() -> Sql {
        let counters: Vec<String> = Collection::ALL
            .iter()
            .map(|c| format!("changes_{}", snake(*c)))
            .collect();
        let assignments: Vec<String> = counters
            .iter()
            .enumerate()
            .map(|(i, col)| format!("{col} = ${}", i + 3))
            .collect();
        let meta_columns = format!("epoch, head_seq, {}", counters.join(", "));
        let read_meta = format!("SELECT {meta_columns} FROM meta WHERE id = 1");
        Sql {
            tables: PerCollection::from_fn(|c| {
                let t = format!("rec_{}", snake(c));
                TableSql {
                    get: format!("SELECT json FROM {t} WHERE id = $1"),
                    find: format!("SELECT seq, json = $2 FROM {t} WHERE id = $1"),
                    insert: format!(
                        "INSERT INTO {t} (seq, id, last_updated, json, key1, key2) \
                         VALUES ($1, $2, $3, $4, $5, $6)"
                    ),
                    update: format!(
                        "UPDATE {t} SET seq = $1, last_updated = $2, json = $3, key1 = $5, \
                         key2 = $6 WHERE seq = $4"
                    ),
                    delete: format!("DELETE FROM {t} WHERE id = $1"),
                    export: format!("SELECT json FROM {t} ORDER BY seq"),
                }
            }),
            lock_meta: format!("{read_meta} FOR UPDATE"),
            state: format!(
                "SELECT {meta_columns}, \
                 (SELECT min(day) FROM stats WHERE day < $1), \
                 (SELECT max(day) FROM stats WHERE day < $1), \
                 (SELECT min(day) FROM usage_days WHERE rolled_up AND day < $1), \
                 (SELECT max(day) FROM usage_days WHERE rolled_up AND day < $1) \
                 FROM meta WHERE id = 1"
            ),
            read_meta,
            meta_columns,
            update_meta: format!(
                "UPDATE meta SET epoch = $1, head_seq = $2, {} WHERE id = 1",
                assignments.join(", ")
            ),
        }
    }

    /// A whole sync page in one statement ([`page_statement`]) for pages of `limit` records
    /// per collection plus one. With `ordered`, its aggregates order their input by `seq`
    /// themselves: what a page whose records came out of order is read with again.
    ///
    /// The count is written into the text, not passed as a parameter: PostgreSQL plans a
    /// prepared statement again for each execution while a generic plan (without the
    /// parameters' values) looks costlier than those, and a `LIMIT` it cannot see is
    /// costed as a tenth of the table. Planning the page statement took about 0.5 ms of
    /// each page; with the count in the text PostgreSQL keeps one plan after five
    /// executions. A connection prepares one statement per count it is asked for (the
    /// page size and the short one of the tests).
    pub(crate) fn page(&self, ordered: bool, limit: i64) -> String {
        page_statement(&self.meta_columns, ordered, limit)
    }

    /// A whole sync page in one statement for pages of `limit` records per collection plus
    /// one, when its byte budget cannot cut it ([`count_page_statement`]). Its count is
    /// written into the text for the reason [`Sql::page`]'s is.
    pub(crate) fn page_by_count(&self, limit: i64) -> String {
        count_page_statement(limit)
    }
}

/// Which row of [`Sql::page_by_count`] is the meta row: its first column (the part) is
/// this, where every record's is the index of its collection in [`Collection::ALL`].
pub(crate) const META_PART: i32 = -1;

/// A whole sync page in one statement, one snapshot and one round trip, as rows rather
/// than aggregates, for a page its byte budget cannot cut: what nearly every page is, since
/// the budget (8 MiB by default) binds only where a page's records average more than 3.3 KiB
/// (a page of 500 of each of the five collections) to 16 KiB (500 of one), and Meteor's
/// records average less than 2 KiB.
///
/// Each row is `(part, seq, last_updated, json, fits)`. The first is the meta row: part
/// [`META_PART`], the head `seq`, the epoch as `json`, and `fits`, which says whether the
/// texts of the first `limit - 1` records of every collection (the most a page takes of
/// each) together take at most the budget `$6`. Then, only if they do, each collection's
/// records after its cursor (`$1`…`$5` in [`Collection::ALL`] order), in `seq` order, at
/// most `limit`, none longer than [`MAX_RECORD_SIZE`], with the collection's index as the
/// part. When they fit, [`exosphere_catalog::store::PageFill`] never cuts the page by
/// bytes, so those records are the page; when they do not, the guard (one-time, before any
/// part is read) reads no record, and the page is read with [`Sql::page`], which cuts by
/// bytes in SQL.
///
/// Why not [`Sql::page`] for every page: its window functions keep every record's text in
/// a tuplestore and its aggregates copy a megabyte into a growing string, which cost
/// PostgreSQL about twice the CPU of these rows for a page of 500 versions and 500 builds
/// (docs/BENCHMARKS.md, "Sync pages as rows"). The guard's sums read no text
/// (`octet_length`).
///
/// The parts are one `UNION ALL`, whose rows PostgreSQL returns part after part; the
/// reader ([`crate::read_page_by_count`]) checks that the parts and their `seq`s increase
/// and reads the page with [`Sql::page`] if they do not.
fn count_page_statement(limit: i64) -> String {
    let taken = limit - 1;
    let mut sums = Vec::new();
    let mut parts = vec![format!(
        "SELECT {META_PART} AS part, head_seq AS seq, NULL::bigint AS last_updated, \
         epoch AS json, (SELECT fits FROM guard) AS fits FROM meta WHERE id = 1"
    )];
    for (i, c) in Collection::ALL.into_iter().enumerate() {
        let t = format!("rec_{}", snake(c));
        let cursor = i + 1;
        let after = format!("seq > ${cursor} AND octet_length(json) <= {MAX_RECORD_SIZE}");
        sums.push(format!(
            "(SELECT coalesce(sum(length), 0) FROM (SELECT octet_length(json) AS length \
             FROM {t} WHERE {after} ORDER BY seq LIMIT {taken}) AS taken)"
        ));
        parts.push(format!(
            "(SELECT {i}, seq, last_updated, json, NULL FROM {t} \
             WHERE {after} AND (SELECT fits FROM guard) ORDER BY seq LIMIT {limit})"
        ));
    }
    format!(
        "WITH guard AS MATERIALIZED (SELECT {} <= $6 AS fits) {}",
        sums.join(" + "),
        parts.join(" UNION ALL ")
    )
}

/// How many columns [`Sql::page`] answers per collection after the meta row's: the
/// records' `seq`s, `lastUpdated`s and text lengths as arrays, and their texts end to end
/// (read by [`crate::page_records`]).
pub(crate) const PAGE_COLUMNS: usize = 4;

/// A whole sync page in one statement, so one snapshot without `BEGIN` and `COMMIT`, in one
/// round trip: the meta row's columns (as [`Sql::read_meta`]), then [`PAGE_COLUMNS`] per
/// collection in [`Collection::ALL`] order. `$1`…`$5` are the collections' cursors in that
/// order and `$6` the page's byte budget; `limit` is what a collection can take plus one
/// (the record that tells it has more).
///
/// Each collection's part is what the page can still take of it, as
/// [`exosphere_catalog::store::PageFill`] decides, plus the one record that ends it: the
/// records after its cursor in `seq` order, at most `limit`, none longer than
/// [`MAX_RECORD_SIZE`], and after the second only while the texts before a record in this
/// part take at most the bytes left. The bytes left are chained through the collections
/// (`LATERAL`): the budget less the texts of the earlier parts' records within the count
/// (`nth < limit`). That is exactly what the page holds of them when it goes on to this
/// collection: a page that goes on took every record of an earlier part within the count
/// (one it did not take beyond the byte budget would have ended the page), and a page that
/// ended earlier never looks at this part (which then holds at most its first two records:
/// the bytes left are below zero). The running sum and count are a `ROWS` frame (one
/// pass; the default `RANGE` frame looks ahead for rows of equal `seq`, which a key has
/// none of), and `octet_length` reads no record text.
///
/// With `ordered`, every aggregate orders its input by `seq`. Without, they take it in the
/// order of the subquery, which is `ORDER BY seq` (PostgreSQL's documentation says this
/// "usually works", not that it always does); one aggregate node feeds all four from each
/// input row in turn, so the arrays and texts line up whatever the order, and
/// [`crate::page_records`] refuses a part whose `seq`s do not increase. Sorting the input of
/// four aggregates took about 0.9 ms of the 2.1 ms a part of 500 versions took in PostgreSQL
/// 15 (server-side; PostgreSQL 16 skips a sort of presorted input itself).
fn page_statement(meta_columns: &str, ordered: bool, limit: i64) -> String {
    let by_seq = if ordered { " ORDER BY seq" } else { "" };
    let mut columns = String::new();
    let mut parts = String::new();
    for (i, c) in Collection::ALL.into_iter().enumerate() {
        let t = format!("rec_{}", snake(c));
        let used = if i == 0 {
            "0::bigint".to_owned()
        } else {
            format!("p{}.used", i - 1)
        };
        columns.push_str(&format!(
            ", p{i}.seqs, p{i}.updated, p{i}.lengths, p{i}.texts"
        ));
        parts.push_str(&format!(
            " CROSS JOIN LATERAL (SELECT array_agg(seq{by_seq}) AS seqs, \
             array_agg(last_updated{by_seq}) AS updated, \
             array_agg(octet_length(json){by_seq}) AS lengths, \
             string_agg(json, ''{by_seq}) AS texts, \
             {used} + coalesce(sum(octet_length(json)) FILTER (WHERE nth < {limit}), 0) AS used \
             FROM (SELECT seq, last_updated, json, nth FROM (SELECT seq, last_updated, json, \
             sum(octet_length(json)) OVER w - octet_length(json) AS before, \
             row_number() OVER w AS nth FROM {t} WHERE seq > ${cursor} \
             AND octet_length(json) <= {MAX_RECORD_SIZE} \
             WINDOW w AS (ORDER BY seq ROWS UNBOUNDED PRECEDING) ORDER BY seq LIMIT {limit}) AS cut \
             WHERE nth <= 2 OR before <= $6 - {used}) AS part) AS p{i}",
            cursor = i + 1,
        ));
    }
    format!("SELECT {meta_columns}{columns} FROM meta{parts} WHERE meta.id = 1")
}

/// The `meta` row.
pub(crate) struct Meta {
    /// The data epoch.
    pub(crate) epoch: String,
    /// The highest `seq` allocated.
    pub(crate) head_seq: u64,
    /// The change counters.
    pub(crate) changes: PerCollection<u64>,
}

/// Reads the meta row with `sql` ([`Sql::read_meta`] or [`Sql::lock_meta`]).
pub(crate) fn read_meta(s: &mut Session<'_, '_>, sql: &str) -> Result<Meta, StoreError> {
    meta_of(s.query_opt(sql, &[])?)
}

/// The meta row as [`Sql::read_meta`] reads it, whose columns `row` begins with (`None`:
/// the row is missing, which is corruption).
pub(crate) fn meta_of(row: Option<tokio_postgres::Row>) -> Result<Meta, StoreError> {
    let row = row.ok_or_else(|| StoreError::Corrupt("the meta row is missing".into()))?;
    let mut changes = PerCollection::default();
    for (i, c) in Collection::ALL.into_iter().enumerate() {
        changes[c] = to_u64(col(&row, i + 2)?, "change counter")?;
    }
    Ok(Meta {
        epoch: col(&row, 0)?,
        head_seq: to_u64(col(&row, 1)?, "head_seq")?,
        changes,
    })
}

/// Notifies every server's change listener (`hints.rs`) at the commit of `s`'s transaction,
/// which changed what they poll.
pub(crate) fn notify_changes(s: &mut Session<'_, '_>) -> Result<(), StoreError> {
    s.execute("SELECT pg_notify($1, '')", &[&crate::hints::CHANNEL])
        .map(drop)
}

/// The [`CatalogWriter`] of one write transaction. Counters and the head `seq` are kept
/// in memory and written to `meta` once, by [`PgWriter::finish`].
pub(crate) struct PgWriter<'a, 's, 't> {
    /// The transaction.
    pub(crate) s: &'a mut Session<'s, 't>,
    sql: &'a Sql,
    meta: Meta,
    modified: bool,
    /// Whether the commit starts a new data epoch: a deletion, or
    /// [`CatalogWriter::start_epoch`].
    starts_epoch: bool,
    /// The last day this transaction marked pending in `usage_days`, so a batch of
    /// reports of one day marks it once.
    marked_day: Option<NaiveDate>,
    /// Whether stats rows changed, which moves the stats days the state reads.
    stats_changed: bool,
}

impl<'a, 's, 't> PgWriter<'a, 's, 't> {
    /// Starts a write on `s`: locks the meta row, serializing this write with every other.
    pub(crate) fn start(s: &'a mut Session<'s, 't>, sql: &'a Sql) -> Result<Self, StoreError> {
        let meta = read_meta(s, &sql.lock_meta)?;
        Ok(PgWriter {
            s,
            sql,
            meta,
            modified: false,
            starts_epoch: false,
            marked_day: None,
            stats_changed: false,
        })
    }

    /// Writes the meta row back if anything changed, with a new epoch if one was started,
    /// and notifies the other servers' listeners (at commit) when the state they poll
    /// changed (`hints.rs`); returns the epoch and head `seq` the transaction commits.
    pub(crate) fn finish(self) -> Result<(String, u64), StoreError> {
        if self.modified || self.stats_changed {
            notify_changes(self.s)?;
        }
        if !self.modified {
            return Ok((self.meta.epoch, self.meta.head_seq));
        }
        let epoch = if self.starts_epoch {
            exosphere_catalog::columns::new_epoch()
        } else {
            self.meta.epoch
        };
        let head = to_i64(self.meta.head_seq, "head_seq")?;
        let mut counters = [0i64; 5];
        for (slot, (_, value)) in counters.iter_mut().zip(self.meta.changes.iter()) {
            *slot = to_i64(*value, "change counter")?;
        }
        self.s.execute(
            &self.sql.update_meta,
            &[
                &epoch,
                &head,
                &counters[0],
                &counters[1],
                &counters[2],
                &counters[3],
                &counters[4],
            ],
        )?;
        Ok((epoch, self.meta.head_seq))
    }

    /// The head `seq` as of this transaction.
    pub(crate) fn head_seq(&self) -> u64 {
        self.meta.head_seq
    }

    /// The data epoch as of the start of this transaction.
    pub(crate) fn epoch(&self) -> &str {
        &self.meta.epoch
    }

    /// Counts `count` records appended in `collection` with the sequence numbers after the
    /// head (a moved mirror stage).
    pub(crate) fn appended(
        &mut self,
        collection: Collection,
        count: u64,
    ) -> Result<(), StoreError> {
        self.meta.head_seq = self
            .meta
            .head_seq
            .checked_add(count)
            .ok_or_else(|| StoreError::Corrupt("sequence numbers exhausted".into()))?;
        self.meta.changes[collection] = self.meta.changes[collection].saturating_add(count);
        self.modified |= count > 0;
        Ok(())
    }

    /// Allocates the next sequence number and counts a change in `collection`.
    fn next_seq(&mut self, collection: Collection) -> Result<i64, StoreError> {
        self.appended(collection, 1)?;
        to_i64(self.meta.head_seq, "seq")
    }

    /// Counts a change in `collection` that takes no sequence number (a deletion).
    fn count_change(&mut self, collection: Collection) {
        self.meta.changes[collection] = self.meta.changes[collection].saturating_add(1);
        self.modified = true;
    }
}

impl CatalogWriter for PgWriter<'_, '_, '_> {
    fn find(&mut self, key: &Lookup<'_>) -> Result<Vec<String>, StoreError> {
        keys::find(self.s, key)
    }

    fn accounts(&mut self) -> &mut dyn AccountWriter {
        self
    }

    fn audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        audit::insert(self.s, entry)
    }

    fn mirror(&mut self) -> &mut dyn MirrorWriter {
        self
    }

    fn get(&mut self, collection: Collection, id: &str) -> Result<Option<String>, StoreError> {
        self.s
            .query_opt(&self.sql.tables[collection].get, &[&id])?
            .map(|row| col(&row, 0))
            .transpose()
    }

    fn upsert(&mut self, record: &Record) -> Result<Upsert, StoreError> {
        let c = record.collection();
        let existing = self
            .s
            .query_opt(&self.sql.tables[c].find, &[&record.id(), &record.json()])?
            .map(|row| Ok::<(i64, bool), StoreError>((col(&row, 0)?, col(&row, 1)?)))
            .transpose()?;
        let upsert = immutable::check_upsert(self, record, existing.map(|(_, same)| same))?;
        let table = &self.sql.tables[c];
        match (upsert, existing) {
            (Upsert::Updated, Some((old_seq, _))) => {
                let seq = self.next_seq(c)?;
                let [key1, key2] = keys::key_columns(c, record.json());
                self.s.execute(
                    &table.update,
                    &[
                        &seq,
                        &record.last_updated(),
                        &record.json(),
                        &old_seq,
                        &key1,
                        &key2,
                    ],
                )?;
            }
            (Upsert::Inserted, _) => {
                let seq = self.next_seq(c)?;
                let [key1, key2] = keys::key_columns(c, record.json());
                self.s.execute(
                    &table.insert,
                    &[
                        &seq,
                        &record.id(),
                        &record.last_updated(),
                        &record.json(),
                        &key1,
                        &key2,
                    ],
                )?;
            }
            _ => {}
        }
        Ok(upsert)
    }

    fn delete(&mut self, collection: Collection, id: &str) -> Result<bool, StoreError> {
        immutable::check_deletion(self, collection, id)?;
        let removed = self
            .s
            .execute(&self.sql.tables[collection].delete, &[&id])?;
        if removed > 0 {
            self.count_change(collection);
            self.starts_epoch = true;
        }
        Ok(removed > 0)
    }

    fn start_epoch(&mut self) -> Result<(), StoreError> {
        self.modified = true;
        self.starts_epoch = true;
        Ok(())
    }

    fn upsert_stats(&mut self, row: &StatsRow) -> Result<(), StoreError> {
        self.stats_changed = true;
        self.s.execute(
            "INSERT INTO stats (day, name, version, direct_adds, total_adds) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (day, name, version) DO UPDATE SET \
             direct_adds = excluded.direct_adds, total_adds = excluded.total_adds",
            &[
                &row.date(),
                &row.name(),
                &row.version(),
                &to_i64(row.direct_adds(), "directAdds")?,
                &to_i64(row.total_adds(), "totalAdds")?,
            ],
        )?;
        Ok(())
    }

    fn record_usage(&mut self, day: NaiveDate, report: &AppReport) -> Result<(), StoreError> {
        usage::record(&mut UsageSql(self.s), &mut self.marked_day, day, report)
    }

    fn roll_up_usage(&mut self, day: NaiveDate) -> Result<Option<u64>, StoreError> {
        let text = day.to_string();
        let recorded = self
            .s
            .query_opt("SELECT 1 FROM usage_days WHERE day = $1", &[&text])?;
        if recorded.is_none() {
            return Ok(None);
        }
        self.stats_changed = true;
        self.s
            .execute("DELETE FROM stats WHERE day = $1", &[&text])?;
        let rows = self.s.execute(
            "INSERT INTO stats (day, name, version, direct_adds, total_adds) \
             SELECT $1::text, p.name, p.version, count(*) FILTER (WHERE a.direct), count(*) \
             FROM usage_adds a JOIN usage_packages p ON p.id = a.package_id \
             WHERE a.day = $2 GROUP BY p.id",
            &[&text, &day.num_days_from_ce()],
        )?;
        self.s.execute(
            "UPDATE usage_days SET pending = false, rolled_up = true WHERE day = $1",
            &[&text],
        )?;
        Ok(Some(rows))
    }
}

/// The usage rows of one write transaction, for [`usage::record`].
struct UsageSql<'a, 's, 't>(&'a mut Session<'s, 't>);

impl UsageRows for UsageSql<'_, '_, '_> {
    fn mark_pending(&mut self, day: NaiveDate) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO usage_days (day, pending, rolled_up) VALUES ($1, true, false) \
             ON CONFLICT (day) DO UPDATE SET pending = true",
            &[&day.to_string()],
        )?;
        Ok(())
    }

    fn app(&mut self, app_id: &str) -> Result<Option<(i64, i64)>, StoreError> {
        self.0
            .query_opt(
                "SELECT id, list_hash FROM usage_apps WHERE app = $1",
                &[&app_id],
            )?
            .map(|row| Ok((col(&row, 0)?, col(&row, 1)?)))
            .transpose()
    }

    fn set_list_hash(&mut self, app: i64, list_hash: i64) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE usage_apps SET list_hash = $2 WHERE id = $1",
            &[&app, &list_hash],
        )?;
        Ok(())
    }

    fn add_app(&mut self, app_id: &str, list_hash: i64) -> Result<i64, StoreError> {
        col(
            &self.0.query_one(
                "INSERT INTO usage_apps (app, list_hash) VALUES ($1, $2) RETURNING id",
                &[&app_id, &list_hash],
            )?,
            0,
        )
    }

    fn package(&mut self, name: &str, version: &str) -> Result<Option<i64>, StoreError> {
        self.0
            .query_opt(
                "SELECT id FROM usage_packages WHERE name = $1 AND version = $2",
                &[&name, &version],
            )?
            .map(|row| col(&row, 0))
            .transpose()
    }

    fn add_package(&mut self, name: &str, version: &str) -> Result<i64, StoreError> {
        col(
            &self.0.query_one(
                "INSERT INTO usage_packages (name, version) VALUES ($1, $2) RETURNING id",
                &[&name, &version],
            )?,
            0,
        )
    }

    fn add_use(
        &mut self,
        app: i64,
        package: i64,
        day: i32,
        direct: bool,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO usage_adds (app_id, package_id, day, direct) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&app, &package, &day, &direct],
        )?;
        Ok(())
    }
}
