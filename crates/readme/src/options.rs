//! What a caller may choose about a rendering ([`RenderOptions`]) and what it gets back
//! ([`Rendered`]).

use url::Url;

/// The default cap on a README's size: 1 MiB (1,048,576 bytes). Issue 13 asks that a 1 MB
/// README render whole; the largest READMEs on packages.meteor.com are a few hundred
/// kilobytes, and past the cap the rest is cut with a notice rather than refused.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// How a README is rendered: which images may load, what relative links are relative to,
/// and how much of it is read. The pages and the JSON API build one per package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// Whether `https:` images on other hosts are kept as images (with
    /// `referrerpolicy="no-referrer"` and `loading="lazy"`). Off by default, so a page makes
    /// no request to another host and the catalog works air-gapped: each such image becomes
    /// a link to its URL. `http:` images are links either way.
    pub remote_images: bool,
    /// The directory a README's relative links and images are relative to, such as a
    /// package's repository (`https://github.com/owner/repo/blob/HEAD/`; a path without a
    /// trailing `/` is taken as a directory too). Only `http:` and `https:` bases are used.
    /// Without one, relative links become plain text (they would not resolve on the
    /// catalog's own server) and relative images become their alt text.
    pub link_base: Option<Url>,
    /// The most bytes of a README that are rendered; the rest is cut at a character
    /// boundary and a notice says so ([`Rendered::truncated`]).
    pub max_bytes: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            remote_images: false,
            link_base: None,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// A rendered README: HTML that is safe to put inside a page as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The sanitized HTML fragment (block elements; no `<html>` or `<body>`).
    pub html: String,
    /// Whether the README was longer than [`RenderOptions::max_bytes`] and was cut, in which
    /// case `html` ends with a notice saying so.
    pub truncated: bool,
}
