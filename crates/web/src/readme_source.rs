//! A version's full README, which the pages and `/api/v1/.../readme` show in place of its
//! excerpt when they can. Every published version's README is uploaded as a file (spec
//! §5.1, §5.10) that its record names with its hash ([`ReadmeFile`]); the file is in the
//! server's file store (or only its upstream's, for a mirrored version), which this crate
//! must not know: the binary hands the web catalog a [`ReadmeSource`] that reads it, and
//! this module is the whole of what the two sides agree on.

pub use exosphere_index::ReadmeFile;

/// Why a README file is not shown: the version's excerpt (`longDescription`) is, instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoReadme {
    /// The URL is not one of this server's files (published here, or mirrored): a
    /// catalog imported from another server names files of other hosts, which the server
    /// never fetches.
    Elsewhere,
    /// The file is this server's but its file store does not hold it, and nothing is
    /// bringing it: a published file that went missing, a mirrored one on a server that no
    /// longer mirrors.
    Absent,
    /// The file store does not hold it yet, and the source is fetching it (a mirrored
    /// file, from the upstream, in the background): a later answer may show it.
    Coming,
    /// The file is empty: the `meteor` tool uploads an empty README for a package that
    /// has none.
    Empty,
    /// The file is larger than the source reads (`--readme-max-bytes`), so its hash
    /// cannot be checked.
    TooLarge {
        /// Its size in bytes.
        size: u64,
        /// The most the source reads.
        limit: u64,
    },
    /// Its bytes do not hash to what the record promises.
    Mismatch,
    /// The file store failed (its message).
    Failed(String),
}

impl std::fmt::Display for NoReadme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoReadme::Elsewhere => f.write_str("the README file is on another host"),
            NoReadme::Absent => f.write_str("the README file is not in the file store"),
            NoReadme::Coming => f.write_str("the README file is being fetched from the upstream"),
            NoReadme::Empty => f.write_str("the README file is empty"),
            NoReadme::TooLarge { size, limit } => write!(
                f,
                "the README file has {size} bytes, more than the {limit} read (--readme-max-bytes)"
            ),
            NoReadme::Mismatch => {
                f.write_str("the README file's bytes do not match the hash its record names")
            }
            NoReadme::Failed(error) => write!(f, "reading the README file failed: {error}"),
        }
    }
}

/// Where the pages and the README API get a version's full README from; the binary
/// implements it over its file store, where `src/http/files.rs` serves the same files.
///
/// Its contract, which every implementation MUST keep:
///
/// * `readme` is blocking: it is called on the blocking pool within one of the bounded
///   query turns (`--api-max-queries`), with a reader of the read model held, so it MUST
///   return promptly: it reads the server's own file store and MUST NOT wait on another
///   host. A file only the upstream has is [`NoReadme::Coming`] when the source starts
///   fetching it in the background, through the mirror, for a later answer.
/// * It answers `Ok` only with the text of bytes whose SHA-256 (standard base64) is
///   `file.hash`, read whole and never more than its limit of bytes (bytes that are not
///   UTF-8 are decoded lossily); an empty file is [`NoReadme::Empty`]. The same file thus
///   always gives the same text, so the text needs no entity tag of its own.
/// * Every answer but [`NoReadme::Coming`] and [`NoReadme::Failed`] is final for its
///   file: the same file always gets it. Those two may pass (a file fetched, a store that
///   recovers), so a page or API answer that shows the excerpt for one of them is never
///   kept and its entity tag never confirmed; every other answer keeps its tag until the
///   read model's next pass (a file put back in the store by hand shows then).
pub trait ReadmeSource: Send + Sync + 'static {
    /// The verified text of the README file `file`, or why there is none to show.
    fn readme(&self, file: &ReadmeFile) -> Result<String, NoReadme>;
}
