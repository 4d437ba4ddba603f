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
//! is dropped (its content stays). The parser then sees explicit, balanced tags, so its tree
//! is as shallow as this pass's count (tables add their implied rows; the rewrite pass cuts
//! what is still too deep).
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
        let outside_table =
            TABLE_PARTS.contains(&name) && !self.open.iter().any(|open| open == "table");
        if !is_allowed(name) || outside_table || !(is_void(name) || self.depth.admits(name)) {
            return TokenSinkResult::Continue;
        }
        push_start_tag(
            &mut self.out,
            name,
            tag.attrs
                .iter()
                .filter(|attribute| attribute.value.len() <= MAX_ATTRIBUTE_BYTES)
                .map(|attribute| (&*attribute.name.local, &*attribute.value)),
        );
        self.run = 0;
        if !is_void(name) {
            self.depth.enter(name);
            self.open.push(name.to_owned());
        }
        TokenSinkResult::Continue
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
            "a<table><td>b</td></table>"
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
