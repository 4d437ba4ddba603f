//! Catalog dumps (`catalog-dump.md`): NDJSON import and export.
//!
//! Import streams the input line by line inside one write transaction, so a file of any
//! size is stored completely or not at all, and memory holds one line at a time. Note that
//! the write lock is held while the input is read: other writers (e.g. a running server's
//! publish methods) wait, up to their busy timeout, for a slow input such as a pipe.
//!
//! Export writes every record (collection by collection, each in `seq` order) and then
//! every stats row, from one snapshot. Importing an export into an empty store assigns
//! sequence numbers in file order, so exporting again gives the same bytes.

use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, BufWriter, Read, Write};

use serde::Deserialize;
use serde_json::value::RawValue;

use exosphere_meteor::{Collection, PerCollection};

use crate::error::StoreError;
use crate::record::{Record, StatsRow};
use crate::scan::scan_record_line;
use crate::stats::write_stats_doc;
use crate::store::{CatalogStore, CatalogWriter, ExportItem, Upsert};

/// Import limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The longest accepted line in bytes; longer lines are an error instead of an
    /// unbounded allocation.
    pub max_line_bytes: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            max_line_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Why an import or export failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// A line of the input is invalid; nothing was stored.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the input failed; nothing was stored.
    #[error("reading the dump: {0}")]
    Read(#[source] std::io::Error),
    /// Writing the output failed.
    #[error("writing the dump: {0}")]
    Write(#[source] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one collection's import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    /// Records that were new.
    pub inserted: u64,
    /// Records that replaced different text.
    pub updated: u64,
    /// Records identical to the stored ones.
    pub unchanged: u64,
}

/// What an import did, for the CLI to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Per collection, how the records were applied.
    pub records: PerCollection<UpsertCounts>,
    /// Stats rows stored (inserted or replaced).
    pub stats_rows: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Per collection, records written.
    pub records: PerCollection<u64>,
    /// Stats rows written.
    pub stats_rows: u64,
}

impl fmt::Display for ImportSummary {
    /// One line for humans, e.g. `8290 records (8290 inserted, 0 updated, 0 unchanged:
    /// packages 210, …) and 0 stats rows`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut total = UpsertCounts::default();
        for (_, counts) in self.records.iter() {
            total.inserted += counts.inserted;
            total.updated += counts.updated;
            total.unchanged += counts.unchanged;
        }
        let records = total.inserted + total.updated + total.unchanged;
        write!(
            f,
            "{records} records ({} inserted, {} updated, {} unchanged: ",
            total.inserted, total.updated, total.unchanged
        )?;
        write_per_collection(
            f,
            self.records
                .iter()
                .map(|(c, n)| (c, n.inserted + n.updated + n.unchanged)),
        )?;
        write!(f, ") and {} stats rows", self.stats_rows)
    }
}

impl fmt::Display for ExportSummary {
    /// One line for humans, e.g. `8290 records (packages 210, …) and 0 stats rows`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let records: u64 = self.records.iter().map(|(_, n)| n).sum();
        write!(f, "{records} records (")?;
        write_per_collection(f, self.records.iter().map(|(c, n)| (c, *n)))?;
        write!(f, ") and {} stats rows", self.stats_rows)
    }
}

/// Writes `packages 210, versions 4039, …`.
fn write_per_collection(
    f: &mut fmt::Formatter<'_>,
    counts: impl Iterator<Item = (Collection, u64)>,
) -> fmt::Result {
    for (i, (c, n)) in counts.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{c} {n}")?;
    }
    Ok(())
}

/// Imports a dump with default limits; see [`import_with`].
pub fn import(store: &dyn CatalogStore, input: impl BufRead) -> Result<ImportSummary, DumpError> {
    import_with(store, input, &ImportOptions::default())
}

/// Imports a dump in one transaction: every line is applied, or, if any line is invalid
/// or the input cannot be read, nothing is stored and the error names the line.
pub fn import_with(
    store: &dyn CatalogStore,
    input: impl BufRead,
    options: &ImportOptions,
) -> Result<ImportSummary, DumpError> {
    let mut summary = ImportSummary::default();
    let mut lines = Lines::new(input, options);
    let mut failure = None;
    let result = store.write(&mut |writer| {
        loop {
            match lines.next() {
                Ok(None) => return Ok(()),
                Ok(Some(line)) => apply_line(writer, line, &mut summary)?,
                Err(error) => {
                    failure = Some(error);
                    return Err(StoreError::Aborted);
                }
            }
        }
    });
    match (result, failure) {
        (_, Some(failure)) => Err(failure),
        (Err(e), None) => Err(DumpError::Store(e)),
        (Ok(()), None) => Ok(summary),
    }
}

/// The lines of a dump as imports read them: bounded in length, numbered for errors, blank
/// lines skipped.
pub(crate) struct Lines<R> {
    input: R,
    buf: Vec<u8>,
    line: u64,
    max_line_bytes: usize,
}

impl<R: BufRead> Lines<R> {
    /// The lines of `input`, within `options`' limits.
    pub(crate) fn new(input: R, options: &ImportOptions) -> Self {
        Lines {
            input,
            buf: Vec::new(),
            line: 0,
            max_line_bytes: options.max_line_bytes,
        }
    }

    /// The next record or stats row, `None` at the end of the input, or why the input is
    /// invalid (naming the line) or unreadable.
    pub(crate) fn next(&mut self) -> Result<Option<DumpLine>, DumpError> {
        Ok(self.next_read()?.map(|read| read.line))
    }

    /// [`Lines::next`], with the natural key of a record read in one pass.
    pub(crate) fn next_read(&mut self) -> Result<Option<ReadLine>, DumpError> {
        loop {
            self.buf.clear();
            let limit = u64::try_from(self.max_line_bytes).unwrap_or(u64::MAX);
            let read = (&mut self.input)
                .take(limit.saturating_add(1))
                .read_until(b'\n', &mut self.buf);
            match read {
                Ok(0) => return Ok(None),
                Ok(_) => self.line += 1,
                Err(e) => return Err(DumpError::Read(e)),
            }
            let terminated = self.buf.last() == Some(&b'\n');
            let parsed = if self.buf.len() > self.max_line_bytes && !terminated {
                Err(format!(
                    "line is longer than the limit of {} bytes",
                    self.max_line_bytes
                ))
            } else {
                read_line(&self.buf)
            };
            match parsed {
                Ok(None) => {}
                Ok(Some(line)) => return Ok(Some(line)),
                Err(mut reason) => {
                    if !terminated {
                        reason.push_str(
                            " (the last line has no terminating newline: the file looks truncated)",
                        );
                    }
                    return Err(DumpError::Line {
                        line: self.line,
                        reason,
                    });
                }
            }
        }
    }
}

/// The envelope of every dump line.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    collection: Cow<'a, str>,
    #[serde(borrow)]
    doc: &'a RawValue,
    #[serde(default, borrow)]
    date: Option<Cow<'a, str>>,
}

/// The `doc` of a stats line.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatsDoc {
    name: String,
    version: String,
    direct_adds: u64,
    total_adds: u64,
}

/// One line of a dump, read (see [`parse_line`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpLine {
    /// A catalog record.
    Record(Record),
    /// A stats row.
    Stats(StatsRow),
}

/// Reads one line of a dump (with or without its newline), as [`import_with`] does before
/// storing it: `None` for a blank line, the record or stats row it holds, or why it is
/// invalid (for humans). Public so the fuzz targets in `fuzz/` read lines the way imports
/// do; a record it yields holds at most [`MAX_RECORD_SIZE`](crate::record::MAX_RECORD_SIZE)
/// bytes.
pub fn parse_line(bytes: &[u8]) -> Result<Option<DumpLine>, String> {
    Ok(read_line(bytes)?.map(|read| read.line))
}

/// A dump line as imports read it: what [`parse_line`] yields, and for a record read in
/// one pass ([`scan_record_line`]) its natural key, so that a bulk import need not read the
/// record's text again for it.
pub(crate) struct ReadLine {
    /// The record or stats row.
    pub(crate) line: DumpLine,
    /// The record's [`natural_key`](crate::store::natural_key), each of its key fields read
    /// once, as a string or absent; `None` when the line was read the general way (the key
    /// is then to be read from the record's text).
    pub(crate) key: Option<[Option<String>; 2]>,
}

/// [`parse_line`]: records that look as exports write them in one pass
/// ([`scan_record_line`]), every other line (and every error) the general way.
pub(crate) fn read_line(bytes: &[u8]) -> Result<Option<ReadLine>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8: {e}"))?;
    let trimmed = trim_line(text);
    if trimmed.is_empty() {
        return Ok(None);
    }
    if let Some(scanned) = scan_record_line(trimmed) {
        let key = scanned.key.map(|field| field.map(str::to_owned));
        return Ok(Some(ReadLine {
            line: DumpLine::Record(scanned.into_record()),
            key: Some(key),
        }));
    }
    read_in_general(trimmed).map(|line| Some(ReadLine { line, key: None }))
}

/// A dump line without the whitespace JSON allows around it (and a CRLF line's `\r`).
pub(crate) fn trim_line(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// Reads a trimmed, non-empty dump line field by field, and says what is wrong with it.
pub(crate) fn read_in_general(trimmed: &str) -> Result<DumpLine, String> {
    if !trimmed.starts_with('{') {
        // serde would also accept a JSON array for the envelope struct.
        return Err(
            match serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
                Ok(_) => "not a JSON object".to_owned(),
                Err(e) => format!("invalid JSON: {e}"),
            },
        );
    }
    let envelope: Line<'_> =
        serde_json::from_str(trimmed).map_err(|e| format!("invalid dump line: {e}"))?;
    if envelope.collection == "stats" {
        let date = envelope
            .date
            .ok_or_else(|| "stats line without a \"date\"".to_owned())?;
        let doc: StatsDoc =
            serde_json::from_str(envelope.doc.get()).map_err(|e| format!("bad stats row: {e}"))?;
        let row = StatsRow::new(date, doc.name, doc.version, doc.direct_adds, doc.total_adds)
            .map_err(|e| format!("bad stats row: {e}"))?;
        return Ok(DumpLine::Stats(row));
    }
    let collection: Collection = envelope.collection.parse().map_err(|e| format!("{e}"))?;
    let record = Record::from_json(collection, envelope.doc.get())
        .map_err(|e| format!("{collection} {e}"))?;
    Ok(DumpLine::Record(record))
}

/// Applies one dump line as an upsert, counting what it did.
fn apply_line(
    writer: &mut dyn CatalogWriter,
    line: DumpLine,
    summary: &mut ImportSummary,
) -> Result<(), StoreError> {
    match line {
        DumpLine::Stats(row) => {
            writer.upsert_stats(&row)?;
            summary.stats_rows += 1;
        }
        DumpLine::Record(record) => {
            let counts = &mut summary.records[record.collection()];
            match writer.upsert(&record)? {
                Upsert::Inserted => counts.inserted += 1,
                Upsert::Updated => counts.updated += 1,
                Upsert::Unchanged => counts.unchanged += 1,
            }
        }
    }
    Ok(())
}

/// Writes the whole catalog as a dump.
pub fn export(store: &dyn CatalogStore, out: impl Write) -> Result<ExportSummary, DumpError> {
    let mut out = BufWriter::new(out);
    let mut summary = ExportSummary::default();
    let mut failure = None;
    let mut line = String::new();
    let result = store.export(&mut |item| {
        line.clear();
        match item {
            ExportItem::Record { collection, json } => {
                line.push_str("{\"collection\":\"");
                line.push_str(collection.as_str());
                line.push_str("\",\"doc\":");
                line.push_str(json);
                summary.records[collection] += 1;
            }
            ExportItem::Stats(row) => {
                // Dates are validated YYYY-MM-DD, so they need no escaping.
                line.push_str("{\"collection\":\"stats\",\"date\":\"");
                line.push_str(row.date());
                line.push_str("\",\"doc\":");
                write_stats_doc(&mut line, row);
                summary.stats_rows += 1;
            }
        }
        line.push_str("}\n");
        out.write_all(line.as_bytes()).map_err(|e| {
            failure = Some(DumpError::Write(e));
            StoreError::Aborted
        })
    });
    match (result, failure) {
        (_, Some(failure)) => return Err(failure),
        (Err(e), None) => return Err(DumpError::Store(e)),
        (Ok(()), None) => {}
    }
    out.flush().map_err(DumpError::Write)?;
    Ok(summary)
}
