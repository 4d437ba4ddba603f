//! `exosphere search`: packages of the local index, ranked as the server's web catalog
//! ranks them ([`exosphere_index::Index::find`]).

use super::query::{Table, day, open_index, print_json, short};
use crate::cli::SearchArgs;
use exosphere_index::Search;

/// Prints the matching packages as a table or JSON.
pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let index = open_index(&args.index)?;
    let hits = index.find(&Search {
        text: args.query,
        sort: args.sort,
        maintainer: args.maintainer,
        published_within_days: args.published_within,
        include_deprecated: !args.hide_deprecated,
        include_unmigrated: args.include_unmigrated,
        exclude_core: args.exclude_core,
        offset: 0,
        limit: args.limit as usize,
    })?;
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
