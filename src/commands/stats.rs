//! `exosphere stats`: package usage statistics by hand. `stats rollup` runs the same rollup
//! as the server's daily job, on a chosen day or on every pending one.

use anyhow::{Context as _, bail};
use chrono::Utc;
use exosphere_catalog::day::parse_day;
use exosphere_catalog::usage;

use crate::cli::{StatsCommand, StatsRollupArgs};
use crate::commands::open_catalog;

/// Runs the chosen `stats` subcommand.
pub fn run(command: StatsCommand) -> anyhow::Result<()> {
    match command {
        StatsCommand::Rollup(args) => rollup(&args),
    }
}

/// Rolls up `--date`, or catches up on every pending day before today, printing one line
/// per day.
fn rollup(args: &StatsRollupArgs) -> anyhow::Result<()> {
    let store = open_catalog(&args.data_dir)?;
    let today = Utc::now().date_naive();
    let Some(date) = &args.date else {
        let done = usage::catch_up(&*store, today).context("rolling up failed")?;
        if done.is_empty() {
            println!("nothing to roll up: no day before {today} has new recordings");
        }
        for (day, rows) in done {
            println!("rolled up {day}: {rows} rows");
        }
        return Ok(());
    };
    let day = parse_day(date)?;
    if day > today {
        bail!("{day} has not begun yet (today is {today} UTC)");
    }
    match usage::roll_up(&*store, day).context("rolling up failed")? {
        Some(rows) => println!("rolled up {day}: {rows} rows"),
        None => println!("nothing was recorded on {day}; its stats are left as they are"),
    }
    Ok(())
}
