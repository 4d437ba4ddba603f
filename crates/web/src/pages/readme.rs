//! The README section of a package and version page: its one slot for HTML that is
//! already safe. Today it holds the version's README excerpt (`longDescription`) as
//! escaped, preformatted text; the README renderer (Markdown to sanitized HTML) fills it
//! here, and only here, so no template changes when it does.

use askama::Template;

use super::page::render;
use crate::reply::ApiError;

/// What the README section shows: HTML that is safe to place in a page as it is (the
/// template does not escape it), and whether the README was cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readme {
    /// Safe HTML: escaped text, or a renderer's sanitized output.
    pub html: String,
    /// Whether only the start of the README is shown.
    pub truncated: bool,
}

/// The README excerpt as preformatted text, every character escaped.
#[derive(Template)]
#[template(path = "readme.html")]
struct Excerpt<'a> {
    text: &'a str,
}

/// The README section for a version whose README excerpt is `long_description`.
pub fn readme(long_description: &str) -> Result<Readme, ApiError> {
    Ok(Readme {
        html: render(&Excerpt {
            text: long_description,
        })?,
        truncated: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excerpt_is_escaped_text() {
        let shown = readme("# Title\n<script>alert(1)</script> & <img src=x onerror=y>").unwrap();
        assert!(shown.html.starts_with("<pre class=\"readme-text\">"));
        assert!(
            shown
                .html
                .contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; &#60;img")
        );
        assert!(!shown.html.contains("<script") && !shown.html.contains("<img"));
    }
}
