//! Code blocks, highlighted on the server with class names only (the pages' Content Security
//! Policy allows no inline style), and the stylesheet those classes need ([`STYLESHEET`]).
//!
//! The grammars are bat's (through `two-face`, which adds TypeScript, CoffeeScript, Stylus,
//! LESS and SCSS to syntect's defaults), run by syntect with `fancy-regex`, pure Rust. Each
//! token gets at most one class, from the innermost of its scopes that falls in one of a
//! dozen kinds ([`KINDS`]): syntect's own HTML writer nests a span per scope with a class per
//! scope part, about 40 bytes of HTML per byte of code. Highlighting is bounded, as the
//! grammars run at roughly 100 KB/s of JavaScript: a block over [`MAX_BLOCK_BYTES`] or with a
//! line over [`MAX_LINE_BYTES`] (minified code), and every block once a README has had
//! [`MAX_TOTAL_BYTES`] highlighted, is plain escaped text.

use std::sync::LazyLock;

use syntect::parsing::{ParseState, Scope, ScopeStack, SyntaxReference, SyntaxSet};
use syntect::util::LinesWithEndings;

use crate::escape::push_text;

/// The prefix of every class the highlighter writes (`hl-keyword`, `hl-string`, ...), and of
/// the code block's own class, `hl-code`; the sanitizer keeps classes with this prefix.
pub const CLASS_PREFIX: &str = "hl-";

/// The stylesheet for highlighted code: a light palette, and a dark one under
/// `prefers-color-scheme: dark`, each with the code block's own background so that every
/// colour keeps a contrast of at least 4.5:1 (WCAG AA) whatever the page around it. The
/// colours are GitHub's (Primer's "prettylights"). Pages serve it as a stylesheet file.
pub const STYLESHEET: &str = include_str!("highlight.css");

/// The largest code block that is highlighted.
pub const MAX_BLOCK_BYTES: usize = 32 * 1024;

/// The longest line a highlighted block may have: a longer one (minified code) is slow to
/// match and unreadable anyway, so its whole block is plain.
pub const MAX_LINE_BYTES: usize = 2 * 1024;

/// The most code highlighted in one README (about half a second of JavaScript at worst);
/// later blocks are plain.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024;

/// The kinds of token that get a class, as TextMate scope prefixes and their classes. A
/// token's class is that of its innermost scope with one of these prefixes, the first
/// that matches in this order.
const KINDS: &[(&str, &str)] = &[
    ("comment", "hl-comment"),
    ("string.regexp", "hl-regexp"),
    ("string", "hl-string"),
    ("constant", "hl-constant"),
    ("entity.name.tag", "hl-tag"),
    ("entity.other.attribute-name", "hl-attribute"),
    ("entity", "hl-entity"),
    ("keyword", "hl-keyword"),
    ("storage", "hl-keyword"),
    ("variable.language", "hl-keyword"),
    ("variable.parameter", "hl-variable"),
    ("support", "hl-support"),
    ("invalid", "hl-invalid"),
    ("markup.heading", "hl-heading"),
    ("markup.bold", "hl-bold"),
    ("markup.italic", "hl-italic"),
    ("markup.inserted", "hl-inserted"),
    ("markup.deleted", "hl-deleted"),
    ("markup.changed", "hl-changed"),
];

/// bat's grammars, read once (the first README with a code block pays for it, about a
/// tenth of a second).
static SYNTAXES: LazyLock<SyntaxSet> = LazyLock::new(two_face::syntax::extra_newlines);

/// [`KINDS`] as scopes.
static KIND_SCOPES: LazyLock<Vec<(Scope, &'static str)>> = LazyLock::new(|| {
    KINDS
        .iter()
        .filter_map(|&(prefix, class)| Some((Scope::new(prefix).ok()?, class)))
        .collect()
});

/// Names READMEs use for a language that the grammars do not list as a file extension or a
/// name, and what grammar to use for each.
const ALIASES: &[(&str, &str)] = &[
    ("javascript", "JavaScript"),
    ("node", "JavaScript"),
    ("jsx", "TypeScriptReact"),
    ("typescript", "TypeScript"),
    ("coffeescript", "CoffeeScript"),
    ("shell", "Bourne Again Shell (bash)"),
    ("console", "Bourne Again Shell (bash)"),
    ("shell-session", "Bourne Again Shell (bash)"),
    ("spacebars", "HTML"),
    ("handlebars", "HTML"),
    ("hbs", "HTML"),
    ("blaze", "HTML"),
    ("jsonc", "JSON"),
    ("json5", "JSON"),
];

/// Writes code blocks, and keeps the README's highlighting budget.
pub(crate) struct Highlighter {
    remaining: usize,
}

impl Highlighter {
    /// A highlighter that highlights at most `budget` bytes of code in all.
    pub(crate) fn new(budget: usize) -> Self {
        Highlighter { remaining: budget }
    }

    /// Appends `code` as `<pre class="hl-code"><code>…</code></pre>`, highlighted when `info`
    /// (a fenced block's info string) names a known language and the limits allow it.
    pub(crate) fn code_block(&mut self, out: &mut String, code: &str, info: &str) {
        out.push_str("<pre class=\"hl-code\"><code>");
        match self.highlighted(code, info) {
            Some(html) => out.push_str(&html),
            None => push_text(out, code),
        }
        out.push_str("</code></pre>\n");
    }

    fn highlighted(&mut self, code: &str, info: &str) -> Option<String> {
        if code.len() > MAX_BLOCK_BYTES
            || code.len() > self.remaining
            || code.lines().any(|line| line.len() > MAX_LINE_BYTES)
        {
            return None;
        }
        let syntax = syntax_for(info)?;
        self.remaining -= code.len();
        let mut parser = ParseState::new(syntax);
        let mut scopes = ScopeStack::new();
        let mut spans = Spans::default();
        for line in LinesWithEndings::from(code) {
            let mut at = 0;
            for (index, operation) in parser.parse_line(line, &SYNTAXES).ok()? {
                if index > at {
                    spans.push(line.get(at..index)?, kind(&scopes));
                    at = index;
                }
                scopes.apply(&operation).ok()?;
            }
            spans.push(line.get(at..)?, kind(&scopes));
        }
        Some(spans.finish())
    }
}

/// The class of a token with these scopes, if any.
fn kind(scopes: &ScopeStack) -> Option<&'static str> {
    scopes.as_slice().iter().rev().find_map(|&scope| {
        KIND_SCOPES
            .iter()
            .find(|(prefix, _)| prefix.is_prefix_of(scope))
            .map(|&(_, class)| class)
    })
}

/// Highlighted HTML being written: one span per run of tokens of the same kind.
#[derive(Default)]
struct Spans {
    html: String,
    open: Option<&'static str>,
}

impl Spans {
    fn push(&mut self, text: &str, class: Option<&'static str>) {
        if text.is_empty() {
            return;
        }
        if class != self.open {
            if self.open.is_some() {
                self.html.push_str("</span>");
            }
            if let Some(class) = class {
                self.html.push_str("<span class=\"");
                self.html.push_str(class);
                self.html.push_str("\">");
            }
            self.open = class;
        }
        push_text(&mut self.html, text);
    }

    fn finish(mut self) -> String {
        if self.open.is_some() {
            self.html.push_str("</span>");
        }
        self.html
    }
}

/// The grammar for a fenced block's info string (its first word: `js`, `sh`, `coffee`,
/// `html`, ...), by alias, file extension or name.
fn syntax_for(info: &str) -> Option<&'static SyntaxReference> {
    let token = info
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{')
        .next()?
        .trim_start_matches('.')
        .to_ascii_lowercase();
    if token.is_empty() || token == "text" || token == "txt" || token == "plain" {
        return None;
    }
    let syntaxes: &'static SyntaxSet = &SYNTAXES;
    match ALIASES.iter().find(|(alias, _)| *alias == token) {
        Some((_, name)) => syntaxes.find_syntax_by_name(name),
        None => syntaxes.find_syntax_by_token(&token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(code: &str, info: &str) -> String {
        let mut out = String::new();
        Highlighter::new(MAX_TOTAL_BYTES).code_block(&mut out, code, info);
        out
    }

    #[test]
    fn meteor_readme_languages_are_highlighted() {
        for info in [
            "js",
            "javascript",
            "jsx",
            "ts",
            "typescript",
            "json",
            "html",
            "css",
            "less",
            "styl",
            "bash",
            "sh",
            "shell",
            "console",
            "coffee",
            "coffeescript",
            "spacebars",
            "handlebars",
            "yaml",
            "diff",
        ] {
            let syntax = syntax_for(info).unwrap_or_else(|| panic!("no grammar for {info}"));
            assert_ne!(syntax.name, "Plain Text", "{info}");
        }
        for (alias, name) in ALIASES {
            assert!(
                SYNTAXES.find_syntax_by_name(name).is_some(),
                "{alias} names {name}, which is not a grammar"
            );
        }
    }

    #[test]
    fn tokens_get_one_class_of_their_kind_and_no_style() {
        assert_eq!(
            block("// hi <b>\nlet a = \"x\";\n", "js"),
            "<pre class=\"hl-code\"><code><span class=\"hl-comment\">// hi &lt;b&gt;\n</span>\
             <span class=\"hl-keyword\">let</span> a <span class=\"hl-keyword\">=</span> \
             <span class=\"hl-string\">\"x\"</span>;\n\
             </code></pre>\n"
        );
        let html = block("<div class=\"a\">{{b}}</div>\n", "html");
        assert!(html.contains("<span class=\"hl-tag\">div</span>"), "{html}");
        assert!(
            html.contains("<span class=\"hl-attribute\">class</span>"),
            "{html}"
        );
        assert!(!html.contains("style"));
        for (prefix, class) in KINDS {
            assert!(Scope::new(prefix).is_ok() && class.starts_with(CLASS_PREFIX));
        }
        assert_eq!(KIND_SCOPES.len(), KINDS.len());
    }

    #[test]
    fn unknown_languages_and_plain_blocks_are_escaped_text() {
        for info in ["", "text", "no-such-language", "{.js}"] {
            assert_eq!(
                block("<script>x</script>\n", info),
                "<pre class=\"hl-code\"><code>&lt;script&gt;x&lt;/script&gt;\n</code></pre>\n",
                "{info:?}"
            );
        }
    }

    #[test]
    fn oversized_blocks_long_lines_and_the_readme_budget_are_plain() {
        let large = "let a = 1;\n".repeat(MAX_BLOCK_BYTES / 11 + 1);
        assert!(!block(&large, "js").contains("<span"));
        let minified = format!("{};\n", "a=1".repeat(MAX_LINE_BYTES));
        assert!(!block(&minified, "js").contains("<span"));

        let chunk = "let a = 1;\n";
        let mut highlighter = Highlighter::new(5 * chunk.len());
        let mut highlighted = 0;
        for _ in 0..7 {
            let mut out = String::new();
            highlighter.code_block(&mut out, chunk, "js");
            highlighted += usize::from(out.contains("<span"));
        }
        assert_eq!(highlighted, 5);
    }

    /// WCAG's contrast ratio of two `#rrggbb` colours.
    fn contrast(a: &str, b: &str) -> f64 {
        let luminance = |hex: &str| {
            let channel = |i: usize| {
                let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
                if c <= 0.03928 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
        };
        let (a, b) = (luminance(a), luminance(b));
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    #[test]
    fn every_colour_has_aa_contrast_on_its_background() {
        let value = |rule: &str, key: &str| {
            let at = rule.find(key)? + key.len();
            let value = rule[at..].split(';').next()?.trim().to_owned();
            value.starts_with('#').then_some(value)
        };
        let (light, dark) = STYLESHEET.split_once("@media").unwrap();
        let mut checked = 0;
        for (part, block_background) in [(light, "#f6f8fa"), (dark, "#151b23")] {
            for rule in part.lines() {
                let Some(colour) = value(rule, " color:") else {
                    continue;
                };
                let background = value(rule, "background:");
                let background = background.as_deref().unwrap_or(block_background);
                let ratio = contrast(&colour, background);
                assert!(ratio >= 4.5, "{rule}: {ratio:.2} against {background}");
                checked += 1;
            }
        }
        assert!(checked > 16);
    }
}
