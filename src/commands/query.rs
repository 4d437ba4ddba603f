//! What the query commands (`search`, `show`, `deps`, `releases`) share: opening the index
//! they name, reading `NAME@VERSION`, and printing JSON or aligned text tables.

use std::io::{self, Write as _};

use anyhow::Context as _;
use exosphere_index::Index;
use serde::Serialize;

use crate::cli::IndexArgs;

/// Opens the index `args` names for a query; a missing one says to run `exosphere sync`.
pub fn open_index(args: &IndexArgs) -> anyhow::Result<Index> {
    let path = args.index_path()?;
    Ok(Index::open_existing(&path)?)
}

/// Splits `NAME@VERSION` into its parts (package names never contain `@`).
pub fn split_version(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (spec, None),
    }
}

/// Prints `value` as pretty JSON on standard output, for scripts.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context("cannot write JSON")?;
    writeln!(out).context("cannot write JSON")?;
    Ok(())
}

/// A text table: a header row and rows of cells, printed with aligned columns. The last
/// column is not padded, so long summaries do not push trailing spaces.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row (as many cells as headers).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table to `out`, or nothing but a note when it has no rows.
    pub fn write(&self, out: &mut impl io::Write, empty: &str) -> io::Result<()> {
        if self.rows.len() == 1 {
            return writeln!(out, "{empty}");
        }
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|row| row.get(c).map_or(0, |cell| cell.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[c] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }

    /// Prints the table on standard output.
    pub fn print(&self, empty: &str) -> anyhow::Result<()> {
        self.write(&mut io::stdout().lock(), empty)
            .context("cannot write to standard output")
    }
}

/// The day of an ISO-8601 timestamp (`2015-01-01`), or `-`.
pub fn day(iso: Option<&str>) -> String {
    iso.and_then(|iso| iso.get(..10)).unwrap_or("-").to_owned()
}

/// `text` cut to `max` characters with an ellipsis, on one line.
pub fn short(text: Option<&str>, max: usize) -> String {
    let line = text.unwrap_or("").lines().next().unwrap_or("").trim();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(&["NAME", "VERSION", "SUMMARY"]);
        table.row(vec!["iron:router".into(), "1.0.7".into(), "Routing".into()]);
        table.row(vec!["a".into(), "10.0.0-rc.1".into(), String::new()]);
        let mut out = Vec::new();
        table.write(&mut out, "nothing").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME         VERSION      SUMMARY\n\
             iron:router  1.0.7        Routing\n\
             a            10.0.0-rc.1\n"
        );
        let mut out = Vec::new();
        Table::new(&["NAME"])
            .write(&mut out, "no packages")
            .unwrap();
        assert_eq!(out, b"no packages\n");
    }

    #[test]
    fn names_split_from_versions() {
        assert_eq!(split_version("iron:router"), ("iron:router", None));
        assert_eq!(
            split_version("iron:router@1.0.7"),
            ("iron:router", Some("1.0.7"))
        );
    }

    #[test]
    fn text_is_shortened_on_one_line() {
        assert_eq!(short(Some("short"), 10), "short");
        assert_eq!(short(Some("first line\nsecond"), 40), "first line");
        assert_eq!(short(Some("abcdefghijkl"), 5), "abcd…");
        assert_eq!(short(None, 5), "");
        assert_eq!(day(Some("2015-01-01T00:00:00.000Z")), "2015-01-01");
        assert_eq!(day(None), "-");
    }
}
