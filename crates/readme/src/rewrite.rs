//! The pass after the allowlist: where each link may point and which images may load.
//!
//! It reads the allowlist's output (well-formed HTML, every element closed, only allowed
//! elements and attributes) with `html5ever`'s tokenizer and writes it again, escaping
//! every text and attribute value itself, with these changes:
//!
//! * a link to another host (`http:` or `https:`, or a relative URL resolved against
//!   [`RenderOptions::link_base`]) gets `rel="nofollow noopener noreferrer"`; a relative
//!   link without a base loses its `href` and is plain text; `mailto:` and fragment links
//!   stay as they are;
//! * an image is kept only when [`RenderOptions::remote_images`] allows it and its URL is
//!   `https:`, with `referrerpolicy="no-referrer"` and `loading="lazy"`; any other image
//!   on another host becomes a link to it whose text is its alt text (or "image"; inside a
//!   link, just that text), and an image that has no usable URL becomes its alt text.
//!
//! Protocol-relative URLs (`//host/…`, and `\\host` as browsers read it) are other hosts,
//! made `https:`. An element the parser nested deeper than the balance pass's limits (tables
//! add rows it did not count) is dropped with its content, so the output holds to the limits
//! and a second balance pass finds nothing to drop. What the pass adds it adds again when
//! sanitizing its own output, so sanitizing twice changes nothing.

use std::cell::RefCell;

use html5ever::interface::TokenizerResult;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use url::Url;

use crate::balance::{Depth, is_void};
use crate::escape::{push_start_tag, push_text_run};
use crate::options::RenderOptions;

/// The `rel` of links to other hosts: no ranking credit, no `window.opener`, no referrer.
pub const EXTERNAL_REL: &str = "nofollow noopener noreferrer";

/// What a link or image URL is, once read the way a browser reads it.
#[derive(Debug, PartialEq)]
enum Target {
    /// Another host, as an absolute `http:` or `https:` URL.
    External(Url),
    /// A `mailto:` link or a link within the README (`#…`), kept as written.
    Local,
    /// Nothing usable: a relative URL without a base, or anything else.
    Unusable,
}

/// What the rewrite may use from the options.
struct Policy {
    remote_images: bool,
    base: Option<Url>,
}

impl Policy {
    fn new(options: &RenderOptions) -> Self {
        let base = options
            .link_base
            .as_ref()
            .filter(|base| matches!(base.scheme(), "http" | "https"))
            .map(|base| {
                let mut base = base.clone();
                if !base.path().ends_with('/') {
                    let path = format!("{}/", base.path());
                    base.set_path(&path);
                }
                base.set_query(None);
                base.set_fragment(None);
                base
            });
        Policy {
            remote_images: options.remote_images,
            base,
        }
    }

    fn target(&self, value: &str) -> Target {
        match Url::parse(value) {
            Ok(url) => match url.scheme() {
                "http" | "https" => Target::External(url),
                "mailto" => Target::Local,
                _ => Target::Unusable,
            },
            Err(url::ParseError::RelativeUrlWithoutBase) => self.relative(value),
            Err(_) => Target::Unusable,
        }
    }

    fn relative(&self, value: &str) -> Target {
        // As the URL parser reads it: no leading or trailing C0 controls or spaces, no tabs
        // or newlines anywhere, and `\` as `/`.
        let value: String = value
            .trim_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .collect();
        let mut start = value.chars().take(2).map(|c| c == '/' || c == '\\');
        if start.next() == Some(true) && start.next() == Some(true) {
            return match Url::parse(&format!("https:{value}")) {
                Ok(url) if url.has_host() => Target::External(url),
                _ => Target::Unusable,
            };
        }
        if value.starts_with('#') {
            return Target::Local;
        }
        match self.base.as_ref().map(|base| base.join(&value)) {
            Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => Target::External(url),
            _ => Target::Unusable,
        }
    }
}

/// `html`, the allowlist's output, with links and images rewritten for `options`.
pub(crate) fn rewrite(html: &str, options: &RenderOptions) -> String {
    let sink = Writer {
        policy: Policy::new(options),
        state: RefCell::new(State {
            out: String::with_capacity(html.len() + html.len() / 8),
            anchors: 0,
            depth: Depth::default(),
            skipping: 0,
            run: 0,
            pre_end: None,
        }),
    };
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    while let TokenizerResult::Script(_) = tokenizer.feed(&input) {}
    tokenizer.end();
    tokenizer.sink.state.into_inner().out
}

struct Writer {
    policy: Policy,
    state: RefCell<State>,
}

struct State {
    out: String,
    /// Open `<a>` elements around the current token.
    anchors: usize,
    depth: Depth,
    /// Open elements of a subtree being dropped for its depth.
    skipping: usize,
    /// Bytes of text written since the last tag.
    run: usize,
    /// Where the output ended after the last `<pre>` written.
    pre_end: Option<usize>,
}

impl State {
    fn text(&mut self, text: &str) {
        // The parser drops a newline just after `<pre>`, and html5ever's serializer does not
        // write the one that would keep a text's own leading newline: write it here.
        if self.pre_end == Some(self.out.len()) && text.starts_with('\n') {
            push_text_run(&mut self.out, "\n", &mut self.run);
        }
        push_text_run(&mut self.out, text, &mut self.run);
    }

    fn start_tag<'a>(
        &mut self,
        name: &str,
        attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        push_start_tag(&mut self.out, name, attributes);
        self.run = 0;
    }
}

impl TokenSink for Writer {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut state = self.state.borrow_mut();
        match token {
            Token::TagToken(tag) => self.tag(&mut state, tag),
            Token::CharacterTokens(text) if state.skipping == 0 => state.text(&text),
            Token::NullCharacterToken if state.skipping == 0 => state.text("\u{fffd}"),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

impl Writer {
    fn tag(&self, state: &mut State, tag: Tag) {
        let name = &*tag.name;
        if is_void(name) && (state.skipping > 0 || tag.kind == TagKind::EndTag) {
            return;
        }
        if state.skipping > 0 {
            match tag.kind {
                TagKind::StartTag => state.skipping += 1,
                TagKind::EndTag => state.skipping -= 1,
            }
            return;
        }
        if tag.kind == TagKind::EndTag {
            if name == "a" {
                state.anchors = state.anchors.saturating_sub(1);
            }
            state.depth.leave(name);
            state.out.push_str("</");
            state.out.push_str(name);
            state.out.push('>');
            state.run = 0;
            return;
        }
        if !is_void(name) {
            if !state.depth.admits(name) {
                state.skipping = 1;
                return;
            }
            state.depth.enter(name);
        }
        match name {
            "a" => {
                state.anchors += 1;
                self.anchor(state, &tag);
            }
            "img" => self.image(state, &tag),
            _ => {
                state.start_tag(name, attributes(&tag));
                if name == "pre" {
                    state.pre_end = Some(state.out.len());
                }
            }
        }
    }

    fn anchor(&self, state: &mut State, tag: &Tag) {
        let href = attribute(tag, "href").map(|href| (href, self.policy.target(href)));
        let others = attributes(tag).filter(|(name, _)| *name != "href");
        match &href {
            Some((_, Target::External(url))) => state.start_tag(
                "a",
                std::iter::once(("href", url.as_str()))
                    .chain(others)
                    .chain([("rel", EXTERNAL_REL)]),
            ),
            Some((href, Target::Local)) => {
                state.start_tag("a", std::iter::once(("href", *href)).chain(others))
            }
            Some((_, Target::Unusable)) | None => state.start_tag("a", others),
        }
    }

    fn image(&self, state: &mut State, tag: &Tag) {
        let alt = attribute(tag, "alt").unwrap_or("");
        let target = attribute(tag, "src").map(|src| self.policy.target(src));
        let Some(Target::External(url)) = target else {
            state.text(alt);
            return;
        };
        if self.policy.remote_images && url.scheme() == "https" {
            let others = attributes(tag).filter(|(name, _)| *name != "src");
            state.start_tag(
                "img",
                std::iter::once(("src", url.as_str()))
                    .chain(others)
                    .chain([("referrerpolicy", "no-referrer"), ("loading", "lazy")]),
            );
            return;
        }
        let text = if alt.trim().is_empty() { "image" } else { alt };
        // Inside a link, or where a link could not open, the text alone.
        if state.anchors > 0 || !state.depth.admits("a") {
            state.text(text);
            return;
        }
        let title = attribute(tag, "title").map(|title| ("title", title));
        state.start_tag(
            "a",
            std::iter::once(("href", url.as_str()))
                .chain(title)
                .chain([("rel", EXTERNAL_REL)]),
        );
        state.text(text);
        state.out.push_str("</a>");
        state.run = 0;
    }
}

/// The value of `tag`'s attribute `name`.
fn attribute<'t>(tag: &'t Tag, name: &str) -> Option<&'t str> {
    tag.attrs
        .iter()
        .find(|attribute| &*attribute.name.local == name)
        .map(|attribute| &*attribute.value)
}

/// `tag`'s attributes as names and values.
fn attributes(tag: &Tag) -> impl Iterator<Item = (&str, &str)> {
    tag.attrs
        .iter()
        .map(|attribute| (&*attribute.name.local, &*attribute.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(remote_images: bool, base: Option<&str>) -> RenderOptions {
        RenderOptions {
            remote_images,
            link_base: base.map(|base| Url::parse(base).unwrap()),
            ..RenderOptions::default()
        }
    }

    #[test]
    fn links_to_other_hosts_get_rel_and_relative_links_need_a_base() {
        let html = "<a href=\"https://x.org/a\">x</a><a href=\"docs/a.md\" title=\"t\">d</a>\
                    <a href=\"mailto:a@b.c\">m</a><a href=\"#user-content-a\">f</a>";
        assert_eq!(
            rewrite(html, &with(false, None)),
            "<a href=\"https://x.org/a\" rel=\"nofollow noopener noreferrer\">x</a>\
             <a title=\"t\">d</a><a href=\"mailto:a@b.c\">m</a><a href=\"#user-content-a\">f</a>"
        );
        assert!(
            rewrite(html, &with(false, Some("https://github.com/o/r/blob/HEAD"))).contains(
                "<a href=\"https://github.com/o/r/blob/HEAD/docs/a.md\" title=\"t\" rel="
            )
        );
        assert!(
            !rewrite(html, &with(false, Some("file:///etc/"))).contains("docs"),
            "only http(s) bases are used"
        );
    }

    #[test]
    fn a_leading_newline_in_pre_is_kept_through_the_parser() {
        let options = with(false, None);
        assert_eq!(
            rewrite(
                "<pre>\nx</pre><pre>y\n</pre><pre><img src=a.png>\nz</pre>",
                &options
            ),
            "<pre>\n\nx</pre><pre>y\n</pre><pre>\n\nz</pre>"
        );
    }

    #[test]
    fn protocol_relative_urls_are_other_hosts() {
        for href in [
            "//evil.example/x",
            " \\\\evil.example/x",
            "/\t/evil.example/x",
            "\\/evil.example/x",
        ] {
            let html = format!("<a href=\"{href}\">x</a>");
            assert_eq!(
                rewrite(&html, &with(false, None)),
                "<a href=\"https://evil.example/x\" rel=\"nofollow noopener noreferrer\">x</a>",
                "{href:?}"
            );
        }
    }

    #[test]
    fn remote_images_become_links_unless_allowed_and_https() {
        let html = "<p><img src=\"https://x.org/a.png\" alt=\"A &amp; B\">\
                    <img src=\"http://x.org/b.png\"><img src=\"logo.png\" alt=\"logo\">\
                    <a href=\"https://ci.org\"><img src=\"https://ci.org/badge.svg\" alt=\"\"></a></p>";
        assert_eq!(
            rewrite(html, &with(false, None)),
            "<p><a href=\"https://x.org/a.png\" rel=\"nofollow noopener noreferrer\">A &amp; B</a>\
             <a href=\"http://x.org/b.png\" rel=\"nofollow noopener noreferrer\">image</a>logo\
             <a href=\"https://ci.org/\" rel=\"nofollow noopener noreferrer\">image</a></p>"
        );
        let allowed = rewrite(html, &with(true, Some("https://h.org/r/")));
        assert!(allowed.starts_with(
            "<p><img src=\"https://x.org/a.png\" alt=\"A &amp; B\" \
             referrerpolicy=\"no-referrer\" loading=\"lazy\">\
             <a href=\"http://x.org/b.png\" rel=\"nofollow noopener noreferrer\">image</a>\
             <img src=\"https://h.org/r/logo.png\" alt=\"logo\" referrerpolicy=\"no-referrer\" loading=\"lazy\">"
        ), "{allowed}");
    }
}
