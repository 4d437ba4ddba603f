//! A README, rendered as the catalog's pages render it, and the same bytes sanitized as HTML.
//! The first byte picks the options (bit 0: remote images, bit 1: a link base, bit 2: a
//! 200-byte cap), the rest is the text. Both outputs are sanitized already (sanitizing them
//! again changes nothing), hold no comment, no element or attribute outside the allowlist,
//! no `on…` handler or `style`, no URL but `http:`, `https:`, `mailto:` and `#…`, an `<img>`
//! only when allowed and over `https:`, and are at most 64 bytes per byte read.
#![no_main]

use std::cell::RefCell;

use exosphere_readme::{ID_PREFIX, MAX_DEPTH, RenderOptions, render, sanitize};
use html5ever::interface::TokenizerResult;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use libfuzzer_sys::fuzz_target;
use url::Url;

/// Every element sanitized HTML may hold.
const ELEMENTS: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "cite", "code", "dd", "del",
    "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "rp",
    "rt", "ruby", "s", "samp", "small", "span", "strike", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var",
    "wbr",
];

/// Every attribute sanitized HTML may hold.
const ATTRIBUTES: &[&str] = &[
    "class", "dir", "id", "lang", "title", "href", "name", "src", "alt", "width", "height",
    "align", "start", "reversed", "type", "value", "valign", "colspan", "rowspan", "open",
    "datetime", "rel", "referrerpolicy", "loading",
];

/// Reads sanitized HTML as a browser's tokenizer does and panics at anything unsafe.
struct Checker {
    remote_images: bool,
    depth: RefCell<usize>,
}

impl TokenSink for Checker {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::TagToken(tag) => {
                let name = &*tag.name;
                assert!(ELEMENTS.contains(&name), "<{name}>");
                let void = matches!(name, "br" | "hr" | "img" | "wbr");
                let mut depth = self.depth.borrow_mut();
                match tag.kind {
                    TagKind::StartTag if !void => *depth += 1,
                    TagKind::EndTag => *depth -= 1,
                    TagKind::StartTag => {}
                }
                assert!(*depth <= MAX_DEPTH, "{} deep", *depth);
                for attribute in &tag.attrs {
                    let (attribute, value) = (&*attribute.name.local, &*attribute.value);
                    assert!(ATTRIBUTES.contains(&attribute), "<{name} {attribute}>");
                    match attribute {
                        "href" | "src" if value.starts_with('#') => {
                            let fragment = &value[1..];
                            assert!(fragment.is_empty() || fragment.starts_with(ID_PREFIX));
                        }
                        "href" | "src" => {
                            let url = Url::parse(value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
                            let allowed: &[&str] = if attribute == "src" {
                                &["https"]
                            } else {
                                &["http", "https", "mailto"]
                            };
                            assert!(allowed.contains(&url.scheme()), "{value:?}");
                        }
                        "id" | "name" => assert!(value.starts_with(ID_PREFIX), "{value:?}"),
                        _ => {}
                    }
                }
                if name == "img" {
                    assert!(self.remote_images, "an image though remote images are off");
                }
            }
            Token::CommentToken(_) | Token::DoctypeToken(_) => panic!("a comment or doctype"),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

fn check(html: &str, options: &RenderOptions) {
    assert!(!html.to_ascii_lowercase().contains("<script"));
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let checker = Checker {
        remote_images: options.remote_images,
        depth: RefCell::new(0),
    };
    let tokenizer = Tokenizer::new(checker, TokenizerOpts::default());
    while let TokenizerResult::Script(_) = tokenizer.feed(&input) {}
    tokenizer.end();
    assert_eq!(*tokenizer.sink.depth.borrow(), 0, "unbalanced");
    let again = sanitize(html, options);
    assert!(again == html, "sanitizing again changed\n{html}\ninto\n{again}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let options = RenderOptions {
        remote_images: flags & 1 != 0,
        link_base: (flags & 2 != 0).then(|| Url::parse("https://git.example/o/r/blob/HEAD/").unwrap()),
        max_bytes: if flags & 4 != 0 { 200 } else { 1 << 20 },
    };
    let rendered = render(text, &options);
    assert_eq!(rendered.truncated, text.len() > options.max_bytes);
    let read = text.len().min(options.max_bytes);
    assert!(rendered.html.len() <= 64 * read + 512, "{} bytes from {read}", rendered.html.len());
    check(&rendered.html, &options);

    let sanitized = sanitize(text, &options);
    assert!(sanitized.len() <= 64 * text.len() + 512);
    check(&sanitized, &options);
});
