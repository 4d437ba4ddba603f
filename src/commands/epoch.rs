//! `exosphere epoch new`: starts a new data epoch, for operators who put a catalog back in
//! time (a PostgreSQL restore or failover) where no server's seen-head file
//! ([`crate::seen_head`]) can notice it.

use anyhow::Context as _;
use serde_json::json;

use crate::cli::EpochCommand;
use crate::commands::{audit, catalog_location, open_catalog};

/// Runs one `exosphere epoch` subcommand.
pub fn run(command: EpochCommand) -> anyhow::Result<()> {
    let EpochCommand::New(args) = command;
    let args = args.data_dir;
    let store = open_catalog(&args)?;
    let old = store
        .state()
        .context("cannot read the catalog's data epoch")?;
    store
        .write(&mut |writer| {
            writer.start_epoch()?;
            audit::record(
                writer,
                "epoch.start",
                &old.epoch,
                None,
                json!({ "previous_epoch": old.epoch, "head_seq": old.head_seq }),
            )
        })
        .context(
            "cannot start a new data epoch; check that the database accepts writes (not a \
             standby still recovering), then run `exosphere epoch new` again",
        )?;
    let new = store.state().context("cannot read the new data epoch")?;
    tracing::info!(catalog = %catalog_location(&args), old_epoch = %old.epoch,
        new_epoch = %new.epoch, head_seq = new.head_seq, "started a new data epoch");
    println!(
        "Started the data epoch {} in {} (it was {}, at head sequence {}): every client gets \
         resetData once on its next sync.",
        new.epoch,
        catalog_location(&args),
        old.epoch,
        old.head_seq
    );
    if args.database_url.is_none() {
        println!(
            "Note: on SQLite, `exosphere restore` already starts a new data epoch; this was \
             needed only if the catalog file was put back by other means."
        );
    }
    Ok(())
}
