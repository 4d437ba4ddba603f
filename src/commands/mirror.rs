//! `exosphere mirror status|accept`: the upstream mirror's state as the catalog holds it,
//! and applying a catalog the mirror held for an operator. Both work beside a running
//! server: they are catalog transactions.

use std::path::Path;

use anyhow::{Context as _, bail};
use exosphere_catalog::mirror::MirrorState;
use exosphere_catalog::{CatalogStore, Refusal, write_or_refuse};
use exosphere_catalog_sqlite::open_sqlite;
use exosphere_mirror::{ApplyOutcome, apply_staged};
use serde_json::json;

use crate::cli::MirrorCommand;

/// Runs one `exosphere mirror` subcommand.
pub fn run(command: MirrorCommand) -> anyhow::Result<()> {
    match command {
        MirrorCommand::Status { data_dir, json } => status(&data_dir.data_dir, json),
        MirrorCommand::Accept { data_dir } => accept(&data_dir.data_dir),
    }
}

fn open(data_dir: &Path) -> anyhow::Result<impl CatalogStore> {
    open_sqlite(data_dir)
        .with_context(|| format!("cannot open the catalog in {}", data_dir.display()))
}

/// The time `ms` (since the Unix epoch) in RFC 3339, UTC.
fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn status(data_dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let Some(state) = open(data_dir)?.mirror_state()? else {
        if as_json {
            println!("{}", json!({"mirror": null}));
        } else {
            println!(
                "No mirror has run on {}: start one with `exosphere serve --upstream URL`.",
                data_dir.display()
            );
        }
        return Ok(());
    };
    if as_json {
        println!("{}", status_json(&state));
        return Ok(());
    }
    println!("Upstream: {}", state.upstream);
    println!(
        "Served catalog: {}",
        if state.token.is_some() {
            "mirrored"
        } else {
            "not yet mirrored (the first full sync is under way)"
        }
    );
    match (&state.held, &state.staging_token, &state.token) {
        (Some(reason), _, _) => println!("Held for an operator: {reason}"),
        (None, Some(_), Some(_)) => {
            println!("A full resync is under way beside the served catalog.")
        }
        _ => {}
    }
    match state.last_success_ms {
        Some(ms) => println!("Last successful sync: {}", at(ms)),
        None => println!("Last successful sync: never"),
    }
    if let Some((ms, error)) = &state.last_error {
        println!("Last error ({}): {error}", at(*ms));
    }
    Ok(())
}

/// The state as `mirror status --json` prints it.
fn status_json(state: &MirrorState) -> serde_json::Value {
    json!({"mirror": {
        "upstream": state.upstream,
        "mirrored": state.token.is_some(),
        "resyncing": state.staging_token.is_some() && state.token.is_some(),
        "held": state.held,
        "last_success_ms": state.last_success_ms,
        "last_error": state.last_error.as_ref().map(|(ms, error)| json!({"at_ms": ms, "error": error})),
    }})
}

fn accept(data_dir: &Path) -> anyhow::Result<()> {
    let store = open(data_dir)?;
    let outcome = write_or_refuse(&store, |writer| {
        let Some(mut state) = writer.mirror().state()? else {
            return Err(Refusal::Refused("no mirror has run on this data directory"));
        };
        if state.held.is_none() {
            return Err(Refusal::Refused(
                "the mirror holds no catalog for an operator (see `exosphere mirror status`)",
            ));
        }
        let outcome = apply_staged(writer, &mut state, 1.0, true)?;
        writer.mirror().put_state(&state)?;
        Ok(outcome)
    })?;
    match outcome {
        ApplyOutcome::Applied { records, shadowed } => {
            println!(
                "Applied the held upstream catalog: {records} records served, {shadowed} left \
                 out because a local package or track holds their name."
            );
            Ok(())
        }
        ApplyOutcome::Held(reason) => bail!("the held catalog was not applied: {reason}"),
    }
}
