//! The sanitizer's first pass: HTML as written (a README's raw HTML among the renderer's)
//! made well-nested and shallow before the real parser sees it.
//!
//! An HTML parser is quadratic in nesting depth (each start tag looks down the stack of open
//! elements: 200,000 nested `<div>`s took `html5ever` six minutes) and re-creates every
//! unclosed formatting element in each new block (distinct `<b x=1><b x=2>…` then many
//! paragraphs multiply). So this pass reads the tokens and writes them again: elements the
//! allowlist drops anyway lose their tags (their text stays), the raw-text elements and SVG,
//! MathML and templates are dropped with their content ([`DROPPED_WITH_CONTENT`]), every end
//! tag closes what is open above it, unmatched end tags go, and a start tag that would open
//! more than [`MAX_DEPTH`] elements, or more than [`MAX_FORMATTING`] formatting elements,
//! is dropped (its content stays). What the parser would close or create on its own is
//! written out (an open `p` closed before a block, an `li` before the next `li`, a cell
//! before a row, a table's missing `tbody` and `tr`), and what it would move out of a table
//! is dropped. The parser then sees explicit, balanced tags and builds the tree they spell,
//! as shallow as this pass's count, and that tree serializes back to the same tags: which is
//! what makes sanitizing twice change nothing (the rewrite pass cuts what is still too deep).
//!
//! Nothing here decides what is safe: the allowlist parses this pass's output as a browser
//! would and keeps only what it lists.

use std::cell::RefCell;

use html5ever::interface::TokenizerResult;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use crate::allowlist::{DROPPED_WITH_CONTENT, is_allowed};
use crate::escape::{push_start_tag, push_text_run};

/// The most elements open at once in sanitized HTML. The renderer's own nesting stays well
/// within it ([`crate::MAX_NESTING`] containers and a few inline elements).
pub const MAX_DEPTH: usize = 64;

/// The most formatting elements (`a`, `b`, `em`, `code`, ...) open at once.
pub const MAX_FORMATTING: usize = 8;

/// The longest attribute value kept; a longer one is dropped (the serializer inside the
/// allowlist is quadratic in a value's count of `&`, as in texts, see [`crate::MAX_TEXT_RUN`]).
pub const MAX_ATTRIBUTE_BYTES: usize = 2048;

/// Elements the parser ignores outside a table, which would join the texts around them.
const TABLE_PARTS: &[&str] = &["caption", "tbody", "td", "tfoot", "th", "thead", "tr"];

/// The elements that end the parser's search for an element "in scope" (those of them that
/// are allowed: `html`, `applet`, `marquee`, `object` and `template` never reach it).
const SCOPE: &[&str] = &["caption", "table", "td", "th"];

/// The allowed elements HTML calls special, which end the search for an `li`, `dd` or `dt`
/// to close.
const SPECIAL: &[&str] = &[
    "blockquote",
    "caption",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "ol",
    "p",
    "pre",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
];

/// The allowed elements whose start tag closes an open `p` (no-quirks mode).
const CLOSES_P: &[&str] = &[
    "blockquote",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "li",
    "ol",
    "p",
    "pre",
    "summary",
    "table",
    "ul",
];

const HEADINGS: &[&str] = &["h1", "h2", "h3", "h4", "h5", "h6"];

/// The allowed elements that have no end tag.
const VOID: &[&str] = &["br", "hr", "img", "wbr"];

/// HTML's formatting elements, which the parser re-creates in each block while unclosed.
const FORMATTING: &[&str] = &[
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u",
];

/// Whether `name` is an element with no end tag.
pub(crate) fn is_void(name: &str) -> bool {
    VOID.contains(&name)
}

/// Whether `name` is one of HTML's formatting elements.
pub(crate) fn is_formatting(name: &str) -> bool {
    FORMATTING.contains(&name)
}

/// Open elements, counted as [`MAX_DEPTH`] and [`MAX_FORMATTING`] count them.
#[derive(Default)]
pub(crate) struct Depth {
    pub(crate) open: usize,
    pub(crate) formatting: usize,
}

impl Depth {
    /// Whether an element `name` may open here.
    pub(crate) fn admits(&self, name: &str) -> bool {
        self.open < MAX_DEPTH && (!is_formatting(name) || self.formatting < MAX_FORMATTING)
    }

    /// Counts an element `name` opening.
    pub(crate) fn enter(&mut self, name: &str) {
        self.open += 1;
        self.formatting += usize::from(is_formatting(name));
    }

    /// Counts an element `name` closing.
    pub(crate) fn leave(&mut self, name: &str) {
        self.open = self.open.saturating_sub(1);
        if is_formatting(name) {
            self.formatting = self.formatting.saturating_sub(1);
        }
    }
}

/// `html` with balanced tags, no deeper than the limits (see the module's documentation).
pub(crate) fn balance(html: &str) -> String {
    let sink = Balancer(RefCell::new(State {
        out: String::with_capacity(html.len()),
        open: Vec::new(),
        depth: Depth::default(),
        skipping: None,
        run: 0,
    }));
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    while let TokenizerResult::Script(_) = tokenizer.feed(&input) {}
    tokenizer.end();
    let mut state = tokenizer.sink.0.into_inner();
    state.close_from(0);
    state.out
}

struct Balancer(RefCell<State>);

struct State {
    out: String,
    /// The elements open, outermost first.
    open: Vec<String>,
    depth: Depth,
    /// The element being dropped with its content, and how many of it are open.
    skipping: Option<(String, usize)>,
    /// Bytes of text written since the last tag.
    run: usize,
}

impl State {
    /// Writes the end tags of the open elements from `at` up.
    fn close_from(&mut self, at: usize) {
        for name in self.open.drain(at..).rev() {
            self.depth.leave(&name);
            self.run = 0;
            self.out.push_str("</");
            self.out.push_str(&name);
            self.out.push('>');
        }
    }

    fn tag(&mut self, tag: Tag) -> TokenSinkResult<()> {
        let name = &*tag.name;
        if let Some((skipped, open)) = &mut self.skipping {
            if name == skipped {
                match tag.kind {
                    TagKind::StartTag => *open += 1,
                    TagKind::EndTag => *open -= 1,
                }
                if *open == 0 {
                    self.skipping = None;
                }
            }
            return TokenSinkResult::Continue;
        }
        if tag.kind == TagKind::EndTag {
            if let Some(at) = self.open.iter().rposition(|open| open == name) {
                self.close_from(at);
            }
            return TokenSinkResult::Continue;
        }
        if DROPPED_WITH_CONTENT.contains(&name) {
            let raw = match name {
                "title" | "textarea" => Some(TokenSinkResult::RawData(RawKind::Rcdata)),
                "script" => Some(TokenSinkResult::RawData(RawKind::ScriptData)),
                "plaintext" => Some(TokenSinkResult::Plaintext),
                "svg" | "math" | "template" => None,
                _ => Some(TokenSinkResult::RawData(RawKind::Rawtext)),
            };
            // A self-closed `<svg/>` or `<math/>` has no content.
            if raw.is_some() || !tag.self_closing || name == "template" {
                self.skipping = Some((name.to_owned(), 1));
            }
            return raw.unwrap_or(TokenSinkResult::Continue);
        }
        if !is_allowed(name) || !self.make_room(name) {
            return TokenSinkResult::Continue;
        }
        if is_void(name) || self.depth.admits(name) {
            self.open_element(
                name,
                tag.attrs
                    .iter()
                    .filter(|attribute| attribute.value.len() <= MAX_ATTRIBUTE_BYTES)
                    .map(|attribute| (&*attribute.name.local, &*attribute.value)),
            );
        }
        TokenSinkResult::Continue
    }

    fn open_element<'a>(
        &mut self,
        name: &str,
        attributes: impl Iterator<Item = (&'a str, &'a str)>,
    ) {
        push_start_tag(&mut self.out, name, attributes);
        self.run = 0;
        if !is_void(name) {
            self.depth.enter(name);
            self.open.push(name.to_owned());
        }
    }

    /// The innermost open element named one of `names`, unless one of `boundaries` (or, with
    /// `special_boundaries`, a special element other than `div` and `p`) is open inside it.
    fn find(&self, names: &[&str], boundaries: &[&str], special_boundaries: bool) -> Option<usize> {
        for (at, open) in self.open.iter().enumerate().rev() {
            let open = open.as_str();
            if names.contains(&open) {
                return Some(at);
            }
            if boundaries.contains(&open)
                || (special_boundaries && SPECIAL.contains(&open) && !matches!(open, "div" | "p"))
            {
                return None;
            }
        }
        None
    }

    fn top_is(&self, names: &[&str]) -> bool {
        self.open
            .last()
            .is_some_and(|top| names.contains(&top.as_str()))
    }

    /// Closes explicitly what the parser would close on its own before a start tag `name`
    /// (an open `p` before a block, an `li` before an `li`, a cell before a row, ...) and
    /// opens the table sections and rows it would create, so that the tree the parser builds
    /// is the one these tags spell, and serializes to them again. Whether `name` may open.
    fn make_room(&mut self, name: &str) -> bool {
        if TABLE_PARTS.contains(&name) {
            let Some(table) = self.open.iter().rposition(|open| open == "table") else {
                return false;
            };
            match name {
                "caption" => return self.open.len() == table + 1,
                "tbody" | "thead" | "tfoot" => self.close_from(table + 1),
                _ => {
                    let section = self.open[table + 1..]
                        .iter()
                        .position(|open| matches!(open.as_str(), "tbody" | "thead" | "tfoot"))
                        .map(|at| table + 1 + at);
                    let row = section.and_then(|section| {
                        self.open[section + 1..]
                            .iter()
                            .position(|open| open == "tr")
                            .map(|at| section + 1 + at)
                    });
                    match (name, section, row) {
                        ("tr", Some(section), _) => self.close_from(section + 1),
                        (_, Some(_), Some(row)) => self.close_from(row + 1),
                        (_, Some(section), None) => {
                            self.close_from(section + 1);
                            self.open_element("tr", std::iter::empty());
                        }
                        (_, None, _) => {
                            self.close_from(table + 1);
                            self.open_element("tbody", std::iter::empty());
                            if name != "tr" {
                                self.open_element("tr", std::iter::empty());
                            }
                        }
                    }
                }
            }
            return true;
        }
        if self.top_is(&["table", "tbody", "thead", "tfoot", "tr"]) {
            // The parser would move anything else out of the table ("foster parenting"),
            // to a place its end tag does not close, and a table here closes the open one.
            if name != "table" {
                return false;
            }
            if let Some(table) = self.open.iter().rposition(|open| open == "table") {
                self.close_from(table);
            }
        }
        match name {
            "li" => {
                if let Some(at) = self.find(&["li"], &[], true) {
                    self.close_from(at);
                }
            }
            "dd" | "dt" => {
                if let Some(at) = self.find(&["dd", "dt"], &[], true) {
                    self.close_from(at);
                }
            }
            "rt" | "rp" if self.find(&["ruby"], SCOPE, false).is_some() => {
                while self.top_is(&["dd", "dt", "li", "p", "rp", "rt"]) {
                    self.close_from(self.open.len() - 1);
                }
            }
            "a" => {
                if let Some(at) = self.find(&["a"], &["td", "th", "caption"], false) {
                    self.close_from(at);
                }
            }
            _ => {}
        }
        if CLOSES_P.contains(&name)
            && let Some(at) = self.find(&["p"], SCOPE, false)
        {
            self.close_from(at);
        }
        if name.len() == 2 && name.starts_with('h') && self.top_is(HEADINGS) {
            self.close_from(self.open.len() - 1);
        }
        true
    }
}

impl TokenSink for Balancer {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut state = self.0.borrow_mut();
        match token {
            Token::TagToken(tag) => return state.tag(tag),
            Token::CharacterTokens(text) if state.skipping.is_none() => {
                let State { out, run, .. } = &mut *state;
                push_text_run(out, &text, run);
            }
            Token::NullCharacterToken if state.skipping.is_none() => {
                let State { out, run, .. } = &mut *state;
                push_text_run(out, "\u{fffd}", run);
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_balanced_and_unknown_ones_lose_only_their_tags() {
        assert_eq!(
            balance("<p>a<b>b<i>c</b>d</p></i></span><custom x=1>e</custom><P>f"),
            "<p>a<b>b<i>c</i></b>d</p>e<p>f</p>"
        );
        assert_eq!(balance("<div/>x<br/>y"), "<div>x<br>y</div>");
        assert_eq!(
            balance("<td>a</td><table><td>b</td></table>"),
            "a<table><tbody><tr><td>b</td></tr></tbody></table>"
        );
    }

    #[test]
    fn what_the_parser_would_close_or_open_on_its_own_is_written_out() {
        assert_eq!(balance("<p>a<b>b<div>c"), "<p>a<b>b</b></p><div>c</div>");
        assert_eq!(
            balance("<ul><li>a<span>b<li>c<ul><li>d</ul></ul>"),
            "<ul><li>a<span>b</span></li><li>c<ul><li>d</li></ul></li></ul>"
        );
        assert_eq!(
            balance("<dl><dd>a<ruby>b<rt>c<dd>d"),
            "<dl><dd>a<ruby>b<rt>c</rt></ruby></dd><dd>d</dd></dl>"
        );
        assert_eq!(
            balance("<ruby>a<rt>b<rt>c"),
            "<ruby>a<rt>b</rt><rt>c</rt></ruby>"
        );
        assert_eq!(balance("<a>a<b>b<a>c"), "<a>a<b>b</b></a><a>c</a>");
        assert_eq!(balance("<h1>a<h2>b"), "<h1>a</h1><h2>b</h2>");
        assert_eq!(
            balance("<table><tr><td>a<div>b<td>c<tr><th>d<caption>e<table>f"),
            "<table><tbody><tr><td>a<div>b</div></td><td>c</td></tr><tr><th>de<table>f</table>\
             </th></tr></tbody></table>"
        );
    }

    #[test]
    fn raw_text_svg_math_and_templates_go_with_their_content() {
        assert_eq!(
            balance(
                "a<script>x</p><b>y</script>b<style>p{}</style>c<svg><svg></svg>\
                 <text>t</text></svg>d<svg/>e<template><p>t</p></template>f\
                 <textarea></textarea><b>g</b>"
            ),
            "abcdef<b>g</b>"
        );
        assert_eq!(balance("a<plaintext></plaintext><p>b"), "a");
        assert_eq!(balance("a<svg><p>unclosed"), "a");
    }

    #[test]
    fn depth_and_formatting_elements_are_bounded() {
        let html = balance(&format!("{}x", "<div>".repeat(1000)));
        assert_eq!(html.matches("<div>").count(), MAX_DEPTH);
        assert_eq!(html.matches("</div>").count(), MAX_DEPTH);
        let html = balance(
            &(0..100)
                .map(|i| format!("<b title={i}>"))
                .collect::<String>(),
        );
        assert_eq!(html.matches("<b ").count(), MAX_FORMATTING);
    }

    #[test]
    fn long_texts_are_split_and_long_attribute_values_dropped() {
        let html = balance(&format!(
            "<p title=\"{}\">{}</p>",
            "&".repeat(3000),
            "&amp;".repeat(3000)
        ));
        assert_eq!(
            html,
            format!(
                "<p>{}<wbr>{}</p>",
                "&amp;".repeat(2048),
                "&amp;".repeat(952)
            )
        );
        assert_eq!(balance(&html), html);
    }
}
