//! `exosphere search`: packages of the local index ranked by relevance, then recency.

use super::query::{Table, day, open_index, print_json, short};
use crate::cli::SearchArgs;

/// Prints the matching packages as a table or JSON.
pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let index = open_index(&args.index)?;
    let hits = index.search(&args.query, args.maintainer.as_deref(), args.limit as usize)?;
    if args.json {
        return print_json(&hits);
    }
    let mut table = Table::new(&["NAME", "LATEST", "UPDATED", "SUMMARY"]);
    for hit in &hits {
        table.row(vec![
            hit.name.clone(),
            hit.version.clone(),
            day(hit.last_updated.as_deref()),
            short(hit.description.as_deref(), 70),
        ]);
    }
    table.print("no packages match")
}
