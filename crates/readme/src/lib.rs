//! A package's README, which is hostile input, rendered to HTML that is safe to put in a
//! page: GitHub-flavoured Markdown in, sanitized HTML out. It knows nothing of HTTP, the
//! index or the catalog.
//!
//! [`render`] cuts the README at [`RenderOptions::max_bytes`], turns the Markdown into HTML
//! (`markdown`, with fenced code highlighted by `highlight` into class-only spans), and
//! sanitizes it. [`sanitize`] is the three passes any HTML goes through: `balance`, which
//! makes the tags balanced and bounds their depth so the parser after it stays linear;
//! `allowlist`, where `ammonia` parses as a browser would and keeps only listed elements,
//! attributes, URL schemes and classes; then `rewrite`, which decides where links point and
//! which images load. Sanitizing its own output changes nothing, which the fuzz target
//! `readme` checks.
//!
//! * `options`: [`RenderOptions`] and [`Rendered`];
//! * `markdown`: Markdown to HTML, with `autolink` (GitHub's bare URLs) and its bounds;
//! * `highlight`: code blocks and [`STYLESHEET`];
//! * `balance`, `allowlist` and `rewrite`: the sanitizer's passes; `escape`: writing HTML.

mod allowlist;
mod autolink;
mod balance;
mod escape;
mod highlight;
mod markdown;
mod options;
mod rewrite;

pub use allowlist::{DROPPED_WITH_CONTENT, ID_PREFIX};
pub use balance::{MAX_ATTRIBUTE_BYTES, MAX_DEPTH, MAX_FORMATTING};
pub use escape::MAX_TEXT_RUN;
pub use highlight::{CLASS_PREFIX, MAX_BLOCK_BYTES, MAX_LINE_BYTES, MAX_TOTAL_BYTES, STYLESHEET};
pub use markdown::MAX_NESTING;
pub use options::{DEFAULT_MAX_BYTES, RenderOptions, Rendered};
pub use rewrite::EXTERNAL_REL;
/// The URL type of [`RenderOptions::link_base`], so callers need not depend on `url`
/// themselves to build one.
pub use url::Url;

/// `markdown` rendered to sanitized HTML. Never fails: a README over
/// [`RenderOptions::max_bytes`] is cut at a character boundary (at the last line break
/// within the last 4 KiB of the allowance, if there is one) and ends with a notice.
pub fn render(markdown: &str, options: &RenderOptions) -> Rendered {
    let (markdown, truncated) = cut(markdown, options.max_bytes);
    let mut html = sanitize(&markdown::to_html(markdown), options);
    if truncated {
        html.push_str(&format!(
            "<p class=\"readme-notice\"><strong>This README is cut short:</strong> it is \
             longer than {} bytes, and only the first {} are shown.</p>\n",
            options.max_bytes,
            markdown.len()
        ));
    }
    Rendered { html, truncated }
}

/// `html` (any HTML: a README's raw HTML as well as the renderer's) reduced to what is safe
/// in a page, links and images rewritten for `options` (see the crate's documentation).
/// Idempotent: `sanitize(sanitize(x)) == sanitize(x)`.
pub fn sanitize(html: &str, options: &RenderOptions) -> String {
    rewrite::rewrite(&allowlist::clean(&balance::balance(html)), options)
}

/// `text` within `max_bytes`, and whether it had to be cut.
fn cut(text: &str, max_bytes: usize) -> (&str, bool) {
    if text.len() <= max_bytes {
        return (text, false);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let from = end.saturating_sub(4096);
    let line_end = text.as_bytes()[from..end]
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map(|at| from + at + 1);
    (&text[..line_end.unwrap_or(end)], true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_whole_characters_and_prefers_a_line_break() {
        assert_eq!(cut("héllo", 2), ("h", true));
        assert_eq!(cut("héllo", 3), ("hé", true));
        assert_eq!(cut("héllo", 6), ("héllo", false));
        assert_eq!(cut("ab\ncd", 4), ("ab\n", true));
        assert_eq!(cut("", 0), ("", false));
        assert_eq!(cut("x", 0), ("", true));
        let long = "€".repeat(3000);
        assert_eq!(cut(&long, 4500), (&long[..4500], true));
        let long = format!("{}\n{}", "€".repeat(1000), "€".repeat(1000));
        assert_eq!(cut(&long, 4500), (&long[..3001], true));
    }

    #[test]
    fn a_cut_readme_ends_with_the_notice_and_stays_sanitized() {
        let options = RenderOptions {
            max_bytes: 20,
            ..RenderOptions::default()
        };
        let rendered = render("# Title\n\n```js\nvar a = 1;\nvar b = 2;\n```\n", &options);
        assert!(rendered.truncated);
        assert!(
            rendered
                .html
                .contains("<h1 id=\"user-content-title\">Title</h1>")
        );
        assert!(
            rendered
                .html
                .ends_with("only the first 15 are shown.</p>\n"),
            "{}",
            rendered.html
        );
        assert_eq!(sanitize(&rendered.html, &options), rendered.html);
    }
}
