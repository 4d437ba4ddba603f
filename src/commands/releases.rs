//! `exosphere releases`: the release tracks of the local index, or one track's versions.

use exosphere_index::Releases;

use super::query::{Table, day, open_index, print_json, short};
use crate::cli::ReleasesArgs;

/// Prints the tracks, or the versions of `TRACK` newest first, as a table or JSON.
pub fn run(args: ReleasesArgs) -> anyhow::Result<()> {
    let index = open_index(&args.index)?;
    let releases = index.releases(args.track.as_deref())?;
    if args.json {
        return print_json(&releases);
    }
    match releases {
        Releases::Tracks(tracks) => {
            let mut table = Table::new(&["TRACK", "RELEASES", "RECOMMENDED", "MAINTAINERS"]);
            for track in tracks {
                table.row(vec![
                    track.track,
                    track.versions.to_string(),
                    track.recommended.unwrap_or_else(|| "-".into()),
                    track.maintainers.join(", "),
                ]);
            }
            table.print("no release tracks")
        }
        Releases::Track { track, versions } => {
            let mut table = Table::new(&[
                "RELEASE",
                "RECOMMENDED",
                "PUBLISHED",
                "TOOL",
                "PACKAGES",
                "DESCRIPTION",
            ]);
            for release in versions {
                table.row(vec![
                    format!("{track}@{}", release.version),
                    if release.recommended { "yes" } else { "no" }.into(),
                    day(release.published.as_deref()),
                    release.tool.unwrap_or_else(|| "-".into()),
                    release.packages.to_string(),
                    short(release.description.as_deref(), 50),
                ]);
            }
            table.print("no releases on this track")
        }
    }
}
