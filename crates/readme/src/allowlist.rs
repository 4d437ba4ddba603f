//! The sanitizer's allowlist, applied by `ammonia` (which parses with `html5ever`, as a
//! browser would): which elements, attributes, URL schemes and classes survive. Everything
//! else goes: an element not listed is replaced by its content, and the content of
//! [`DROPPED_WITH_CONTENT`] goes with it (the balance pass drops those already; this is the
//! second line). Comments go too.
//!
//! Ids and `<a name>` get GitHub's `user-content-` prefix, and so do the fragment links to
//! them, so a README cannot take the name of an element of the page around it. URLs may be
//! `http:`, `https:`, `mailto:` or relative; the rewrite pass then decides what each link
//! and image may point at.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use ammonia::{Builder, UrlRelative};

use crate::highlight::CLASS_PREFIX;

/// The prefix of every id and anchor name a README keeps, as on GitHub.
pub const ID_PREFIX: &str = "user-content-";

/// Elements removed with everything inside them: those whose content a browser reads as
/// text (scripts, styles, embedded documents, form text), and SVG, MathML and templates.
pub const DROPPED_WITH_CONTENT: &[&str] = &[
    "script",
    "style",
    "noscript",
    "iframe",
    "noembed",
    "noframes",
    "xmp",
    "textarea",
    "title",
    "plaintext",
    "svg",
    "math",
    "template",
];

/// Elements kept, with the attributes in [`ATTRIBUTES`]: GitHub's list for READMEs, less
/// what could load something (`picture`, `source`) or be a form control.
const TAGS: &[&str] = &[
    "a",
    "abbr",
    "b",
    "bdi",
    "bdo",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "dd",
    "del",
    "details",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "kbd",
    "li",
    "mark",
    "ol",
    "p",
    "pre",
    "q",
    "rp",
    "rt",
    "ruby",
    "s",
    "samp",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "time",
    "tr",
    "tt",
    "u",
    "ul",
    "var",
    "wbr",
];

/// Attributes every kept element may have (`class` and `id` are filtered below).
const GENERIC_ATTRIBUTES: &[&str] = &["class", "dir", "id", "lang", "title"];

/// Attributes particular elements may have.
const ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href", "name"]),
    ("img", &["src", "alt", "width", "height", "align"]),
    ("ol", &["start", "reversed", "type"]),
    ("li", &["value"]),
    ("td", &["align", "valign", "colspan", "rowspan"]),
    ("th", &["align", "valign", "colspan", "rowspan"]),
    ("details", &["open"]),
    ("time", &["datetime"]),
    ("p", &["align"]),
    ("div", &["align"]),
    ("h1", &["align"]),
    ("h2", &["align"]),
    ("h3", &["align"]),
    ("h4", &["align"]),
    ("h5", &["align"]),
    ("h6", &["align"]),
];

/// Classes the renderer writes besides the highlighter's `hl-` ones: footnotes and GitHub's
/// alerts (pulldown-cmark's names), and the truncation notice.
const CLASSES: &[&str] = &[
    "footnote-definition",
    "footnote-definition-label",
    "footnote-reference",
    "markdown-alert-note",
    "markdown-alert-tip",
    "markdown-alert-important",
    "markdown-alert-warning",
    "markdown-alert-caution",
    "markdown-alert-title",
    "readme-notice",
];

/// URL schemes a link may have (an image only `http:` and `https:`, see the rewrite pass).
const URL_SCHEMES: &[&str] = &["http", "https", "mailto"];

/// The sanitizer, built once.
static CLEANER: LazyLock<Builder<'static>> = LazyLock::new(|| {
    let mut builder = Builder::empty();
    builder
        .tags(TAGS.iter().copied().collect())
        .clean_content_tags(DROPPED_WITH_CONTENT.iter().copied().collect())
        .generic_attributes(GENERIC_ATTRIBUTES.iter().copied().collect())
        .tag_attributes(
            ATTRIBUTES
                .iter()
                .map(|&(tag, attributes)| (tag, attributes.iter().copied().collect()))
                .collect::<HashMap<_, HashSet<_>>>(),
        )
        .url_schemes(URL_SCHEMES.iter().copied().collect())
        .url_relative(UrlRelative::PassThrough)
        .link_rel(None)
        .strip_comments(true)
        .id_prefix(Some(ID_PREFIX))
        .attribute_filter(filter);
    builder
});

/// Whether elements named `name` are kept.
pub(crate) fn is_allowed(name: &str) -> bool {
    TAGS.contains(&name)
}

/// `html` with only what the allowlist keeps, serialized.
pub(crate) fn clean(html: &str) -> String {
    CLEANER.clean(html).to_string()
}

/// Values of allowed attributes: classes the renderer writes, anchor names and fragment
/// links prefixed, and enumerated or numeric attributes only with values of their kind.
fn filter<'v>(element: &str, attribute: &str, value: &'v str) -> Option<Cow<'v, str>> {
    let value_in = |allowed: &[&str]| {
        let lower = value.trim().to_ascii_lowercase();
        allowed
            .contains(&lower.as_str())
            .then_some(Cow::Owned(lower))
    };
    match attribute {
        "class" => {
            let kept: Vec<&str> = value
                .split_ascii_whitespace()
                .filter(|class| class.starts_with(CLASS_PREFIX) || CLASSES.contains(class))
                .collect();
            (!kept.is_empty()).then(|| Cow::Owned(kept.join(" ")))
        }
        "name" => Some(prefixed(value)),
        "href" => match value.trim_start().strip_prefix('#') {
            Some(fragment) if !fragment.is_empty() => {
                Some(Cow::Owned(format!("#{}", prefixed(fragment))))
            }
            _ => Some(Cow::Borrowed(value)),
        },
        "align" if element == "img" => value_in(&["left", "right", "top", "middle", "bottom"]),
        "align" => value_in(&["left", "center", "right", "justify"]),
        "valign" => value_in(&["top", "middle", "bottom", "baseline"]),
        "dir" => value_in(&["ltr", "rtl", "auto"]),
        "type" => ["1", "a", "A", "i", "I"]
            .contains(&value)
            .then_some(Cow::Borrowed(value)),
        "width" | "height" => {
            let digits = value.strip_suffix('%').unwrap_or(value);
            let numeric = !digits.is_empty() && digits.len() <= 5;
            (numeric && digits.bytes().all(|b| b.is_ascii_digit())).then_some(Cow::Borrowed(value))
        }
        "start" | "value" | "colspan" | "rowspan" => {
            let numeric = !value.is_empty() && value.len() <= 6;
            (numeric && value.bytes().all(|b| b.is_ascii_digit())).then_some(Cow::Borrowed(value))
        }
        _ => Some(Cow::Borrowed(value)),
    }
}

/// `name` with [`ID_PREFIX`], once.
fn prefixed(name: &str) -> Cow<'_, str> {
    if name.starts_with(ID_PREFIX) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{ID_PREFIX}{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_fragment_links_are_prefixed_once() {
        let html = clean(
            "<h2 id=\"install\">I</h2><a name=\"top\"></a><a href=\"#install\">i</a>\
             <a href=\"#user-content-top\">t</a><a href=\"#\">x</a>",
        );
        assert_eq!(
            html,
            "<h2 id=\"user-content-install\">I</h2><a name=\"user-content-top\"></a>\
             <a href=\"#user-content-install\">i</a><a href=\"#user-content-top\">t</a>\
             <a href=\"#\">x</a>"
        );
        assert_eq!(clean(&html), html);
    }

    #[test]
    fn classes_are_only_the_renderers() {
        assert_eq!(
            clean("<span class=\"hl-string evil footnote-reference\">x</span><p class=\"x\">y</p>"),
            "<span class=\"hl-string footnote-reference\">x</span><p>y</p>"
        );
    }

    #[test]
    fn enumerated_and_numeric_attributes_keep_only_their_values() {
        assert_eq!(
            clean(
                "<p align=\"CENTER\">a</p><p align=\"x\">b</p><img width=\"100%\" height=\"1e9\">\
                 <ol start=\"3\" type=\"disc\"><li value=\"-1\">c</li></ol>"
            ),
            "<p align=\"center\">a</p><p>b</p><img width=\"100%\"><ol start=\"3\"><li>c</li></ol>"
        );
    }
}
