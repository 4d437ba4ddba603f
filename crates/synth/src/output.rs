//! Output: the records as serde types, the [`SynthSummary`] of what was written, and the
//! buffered line writer.

use std::io::{self, Write};

use exosphere_meteor::Collection;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use crate::params::FLUSH_BYTES;

/// What [`generate`] wrote, so the CLI can report it and callers can size their work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynthSummary {
    /// `packages` records written.
    pub packages: u64,
    /// `versions` records written.
    pub versions: u64,
    /// `builds` records written.
    pub builds: u64,
    /// `releaseTracks` records written.
    pub release_tracks: u64,
    /// `releaseVersions` records written.
    pub release_versions: u64,
    /// `stats` rows written.
    pub stats_rows: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
}

/// Writes dump lines through a reused buffer and counts what it wrote.
pub(crate) struct Sink<'w> {
    out: &'w mut dyn Write,
    buf: Vec<u8>,
    summary: SynthSummary,
}

impl<'w> Sink<'w> {
    pub(crate) fn new(out: &'w mut dyn Write) -> Sink<'w> {
        Sink {
            out,
            buf: Vec::with_capacity(FLUSH_BYTES + 4096),
            summary: SynthSummary::default(),
        }
    }

    pub(crate) fn record<T: Serialize>(
        &mut self,
        collection: Collection,
        doc: &T,
    ) -> io::Result<()> {
        let counter = match collection {
            Collection::Packages => &mut self.summary.packages,
            Collection::Versions => &mut self.summary.versions,
            Collection::Builds => &mut self.summary.builds,
            Collection::ReleaseTracks => &mut self.summary.release_tracks,
            Collection::ReleaseVersions => &mut self.summary.release_versions,
        };
        *counter += 1;
        self.line(&Line {
            collection: collection.as_str(),
            doc,
        })
    }

    pub(crate) fn stats(&mut self, date: &str, doc: &StatsDoc<'_>) -> io::Result<()> {
        self.summary.stats_rows += 1;
        self.line(&StatsLine {
            collection: "stats",
            date,
            doc,
        })
    }

    fn line<T: Serialize>(&mut self, line: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.buf, line)?;
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.summary.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<SynthSummary> {
        self.flush()?;
        self.out.flush()?;
        Ok(self.summary)
    }
}

#[derive(Serialize)]
struct Line<'a, T> {
    pub(crate) collection: &'static str,
    pub(crate) doc: &'a T,
}

#[derive(Serialize)]
struct StatsLine<'a> {
    pub(crate) collection: &'static str,
    pub(crate) date: &'a str,
    pub(crate) doc: &'a StatsDoc<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatsDoc<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: &'a str,
    pub(crate) direct_adds: u64,
    pub(crate) total_adds: u64,
}

/// An EJSON date: `{"$date": ms}`.
pub(crate) struct Date(pub(crate) i64);

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("$date", &self.0)?;
        map.end()
    }
}

#[derive(Serialize)]
pub(crate) struct UserRef<'a> {
    pub(crate) username: &'a str,
    pub(crate) id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PackageDoc<'a> {
    #[serde(rename = "_id")]
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) maintainers: Vec<UserRef<'a>>,
    /// Absent, null or a URL, all three as in real data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) homepage: Option<Option<String>>,
    pub(crate) last_updated: Date,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VersionDoc<'a> {
    #[serde(rename = "_id")]
    pub(crate) id: &'a str,
    pub(crate) package_name: &'a str,
    pub(crate) version: &'a str,
    pub(crate) description: &'a str,
    pub(crate) long_description: &'a str,
    pub(crate) git: Option<&'a str>,
    pub(crate) dependencies: DepMap<'a>,
    pub(crate) exports: &'a [ExportDoc<'a>],
    pub(crate) compiler_version: String,
    pub(crate) contains_plugins: bool,
    pub(crate) debug_only: bool,
    pub(crate) prod_only: bool,
    pub(crate) test_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deprecated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deprecated_message: Option<&'a str>,
    pub(crate) release_name: Option<String>,
    pub(crate) source: Blob,
    pub(crate) readme: Readme,
    pub(crate) published_by: UserRef<'a>,
    pub(crate) published: Date,
    pub(crate) last_updated: Date,
}

#[derive(Serialize)]
pub(crate) struct ExportDoc<'a> {
    pub(crate) name: &'a str,
    pub(crate) architectures: &'static [&'static str],
}

/// `source` of a version and `build` of a build.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Blob {
    pub(crate) url: String,
    pub(crate) tarball_hash: String,
    pub(crate) tree_hash: String,
}

#[derive(Serialize)]
pub(crate) struct Readme {
    pub(crate) url: String,
    pub(crate) hash: String,
}

/// One entry of a `dependencies` map.
pub(crate) struct DepDoc<'a> {
    pub(crate) name: &'a str,
    pub(crate) constraint: Option<String>,
    pub(crate) refs: Refs,
}

/// `dependencies`: name → `{constraint, references}`, in insertion order.
pub(crate) struct DepMap<'a>(pub(crate) &'a [DepDoc<'a>]);

impl Serialize for DepMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            constraint: Option<&'a str>,
            references: &'a Refs,
        }
        serializer.collect_map(self.0.iter().map(|dep| {
            (
                dep.name,
                Body {
                    constraint: dep.constraint.as_deref(),
                    references: &dep.refs,
                },
            )
        }))
    }
}

/// `references`: one `{arch, weak?, unordered?, implied?}` per architecture.
pub(crate) struct Refs {
    pub(crate) arches: &'static [&'static str],
    pub(crate) weak: bool,
    pub(crate) unordered: bool,
    pub(crate) implied: bool,
}

impl Refs {
    pub(crate) fn plain(arches: &'static [&'static str]) -> Refs {
        Refs {
            arches,
            weak: false,
            unordered: false,
            implied: false,
        }
    }
}

impl Serialize for Refs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Reference {
            arch: &'static str,
            #[serde(skip_serializing_if = "is_false")]
            weak: bool,
            #[serde(skip_serializing_if = "is_false")]
            unordered: bool,
            #[serde(skip_serializing_if = "is_false")]
            implied: bool,
        }
        let mut seq = serializer.serialize_seq(Some(self.arches.len()))?;
        for &arch in self.arches {
            seq.serialize_element(&Reference {
                arch,
                weak: self.weak,
                unordered: self.unordered,
                implied: self.implied,
            })?;
        }
        seq.end()
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BuildDoc<'a> {
    #[serde(rename = "_id")]
    pub(crate) id: String,
    pub(crate) version_id: &'a str,
    pub(crate) build_architectures: &'a str,
    pub(crate) build: Blob,
    pub(crate) built_by: UserRef<'a>,
    pub(crate) build_published: Date,
    pub(crate) last_updated: Date,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrackDoc<'a> {
    #[serde(rename = "_id")]
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) maintainers: Vec<UserRef<'a>>,
    pub(crate) last_updated: Date,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReleaseDoc<'a> {
    #[serde(rename = "_id")]
    pub(crate) id: &'a str,
    pub(crate) track: &'a str,
    pub(crate) version: &'a str,
    pub(crate) description: &'a str,
    pub(crate) recommended: bool,
    pub(crate) order_key: Option<String>,
    pub(crate) tool: String,
    pub(crate) packages: PairMap<'a>,
    pub(crate) published_by: UserRef<'a>,
    pub(crate) published: Date,
    pub(crate) last_updated: Date,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) banner: Option<Banner>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) patch_release_version: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Banner {
    pub(crate) text: String,
    pub(crate) last_updated: Date,
}

/// A release's `packages` map, in the given order.
pub(crate) struct PairMap<'a>(pub(crate) &'a [(&'a str, &'a str)]);

impl Serialize for PairMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().copied())
    }
}
