//! Hostile READMEs through the public API: every XSS trick we know of comes out harmless
//! (checked by reading the output with html5ever's tokenizer, not by looking for strings),
//! benign Markdown survives, large and deeply nested READMEs render, and sanitizing the
//! output again changes nothing.

use std::cell::RefCell;

use exosphere_readme::{
    EXTERNAL_REL, ID_PREFIX, MAX_DEPTH, MAX_FORMATTING, RenderOptions, Rendered, render, sanitize,
};
use html5ever::interface::TokenizerResult;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use url::Url;

/// Every element the output may hold.
const ALLOWED: &[&str] = &[
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

/// Every attribute the output may hold.
const ATTRIBUTES: &[&str] = &[
    "class",
    "dir",
    "id",
    "lang",
    "title",
    "href",
    "name",
    "src",
    "alt",
    "width",
    "height",
    "align",
    "start",
    "reversed",
    "type",
    "value",
    "valign",
    "colspan",
    "rowspan",
    "open",
    "datetime",
    "rel",
    "referrerpolicy",
    "loading",
];

/// A tag of the output: its name and attributes.
#[derive(Debug)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
}

impl Element {
    fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Read {
    elements: Vec<Element>,
    text: String,
    comments: usize,
    max_depth: usize,
    depth: usize,
}

struct Reader(RefCell<Read>);

impl TokenSink for Reader {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut read = self.0.borrow_mut();
        match token {
            Token::TagToken(tag) => {
                let name = tag.name.to_string();
                let void = matches!(name.as_str(), "br" | "hr" | "img" | "wbr");
                match tag.kind {
                    TagKind::StartTag => {
                        if !void {
                            read.depth += 1;
                            read.max_depth = read.max_depth.max(read.depth);
                        }
                        read.elements.push(Element {
                            name,
                            attributes: tag
                                .attrs
                                .iter()
                                .map(|a| (a.name.local.to_string(), a.value.to_string()))
                                .collect(),
                        });
                    }
                    TagKind::EndTag => read.depth -= 1,
                }
            }
            Token::CharacterTokens(text) => read.text.push_str(&text),
            Token::CommentToken(_) | Token::DoctypeToken(_) => read.comments += 1,
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// The output read back as a browser's tokenizer reads it.
fn read(html: &str) -> Read {
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let tokenizer = Tokenizer::new(
        Reader(RefCell::new(Read::default())),
        TokenizerOpts::default(),
    );
    while let TokenizerResult::Script(_) = tokenizer.feed(&input) {}
    tokenizer.end();
    tokenizer.sink.0.into_inner()
}

/// Checks everything the output promises, and returns it read back.
fn assert_safe(html: &str, options: &RenderOptions) -> Read {
    let read = read(html);
    assert_eq!(read.comments, 0, "{html}");
    assert_eq!(read.depth, 0, "unbalanced: {html}");
    assert!(read.max_depth <= MAX_DEPTH, "{} deep", read.max_depth);
    for element in &read.elements {
        assert!(ALLOWED.contains(&element.name.as_str()), "{element:?}");
        for (name, value) in &element.attributes {
            assert!(ATTRIBUTES.contains(&name.as_str()), "{element:?}");
            let lower = value.to_ascii_lowercase();
            for scheme in ["javascript:", "vbscript:", "data:"] {
                assert!(
                    !(matches!(name.as_str(), "href" | "src") && lower.contains(scheme)),
                    "{element:?}"
                );
            }
        }
        if let Some(classes) = element.get("class") {
            for class in classes.split_whitespace() {
                assert!(
                    class.starts_with("hl-")
                        || class.starts_with("footnote-")
                        || class.starts_with("markdown-alert-")
                        || class == "readme-notice",
                    "{element:?}"
                );
            }
        }
        for id in [element.get("id"), element.get("name")]
            .into_iter()
            .flatten()
        {
            assert!(id.starts_with(ID_PREFIX), "{element:?}");
        }
        if let Some(href) = element.get("href") {
            if let Some(fragment) = href.strip_prefix('#') {
                assert!(
                    fragment.is_empty() || fragment.starts_with(ID_PREFIX),
                    "{element:?}"
                );
            } else {
                let url = Url::parse(href).unwrap_or_else(|e| panic!("{element:?}: {e}"));
                match url.scheme() {
                    "http" | "https" => assert_eq!(element.get("rel"), Some(EXTERNAL_REL)),
                    "mailto" => assert_eq!(element.get("rel"), None),
                    other => panic!("{other}: {element:?}"),
                }
            }
        }
        if element.name == "img" {
            assert!(options.remote_images, "{element:?}");
            let url = Url::parse(element.get("src").unwrap()).unwrap();
            assert_eq!(url.scheme(), "https");
            assert_eq!(element.get("referrerpolicy"), Some("no-referrer"));
            assert_eq!(element.get("loading"), Some("lazy"));
        }
    }
    assert_eq!(sanitize(html, options), html, "sanitizing again changed it");
    read
}

fn rendered(markdown: &str, options: &RenderOptions) -> Rendered {
    let rendered = render(markdown, options);
    assert_safe(&rendered.html, options);
    rendered
}

const XSS: &str = r#####"
<script>alert(1)</script>
<SCRIPT SRC=//evil.example/x.js></SCRIPT>
<ScRiPt >alert(1)</sCrIpT >
<script/xss src="//evil.example/x.js"></script>
<<script>script>alert(1)<</script>/script>
<scr<script>ipt>alert(1)</scr</script>ipt>
<img src=x onerror=alert(1)>
<img src="x" onerror="alert(1)"/>
<IMG SRC=javascript:alert('XSS')>
<img src=`javascript:alert(1)`>
<img """><script>alert(1)</script>">
<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">
<img srcset="https://evil.example/a.png 1x" src="https://ok.example/a.png" alt="srcset">
<svg onload=alert(1)><script>alert(1)</script><use href="data:image/svg+xml,<svg id='x'/>#x"/></svg>
<svg><a xlink:href="javascript:alert(1)"><text x="0" y="20">svg link</text></a></svg>
<svg><animate attributeName="href" values="javascript:alert(1)"/></svg>
<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>
<math href="javascript:alert(1)"><mi>x</mi></math>
<iframe src="javascript:alert(1)"></iframe>
<iframe srcdoc="<script>alert(1)</script>"></iframe>
<object data="javascript:alert(1)"></object>
<embed src="javascript:alert(1)">
<form action="javascript:alert(1)"><input type=submit formaction="javascript:alert(1)"><button formaction="javascript:alert(1)">go</button></form>
<meta http-equiv="refresh" content="0;url=javascript:alert(1)">
<base href="javascript:alert(1)//">
<link rel=stylesheet href="//evil.example/x.css">
<style>body{background:url(javascript:alert(1))}</style>
<div style="background-image:url(javascript:alert(1))">styled</div>
<p style="position:fixed;top:0;left:0;width:100%;height:100%">overlay</p>
<a href="javascript:alert(1)">js</a>
<a href="JaVaScRiPt:alert(1)">case</a>
<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">entities</a>
<a href="&#x6A;avascript&colon;alert(1)">hex entity</a>
<a href="java&#x09;script:alert(1)">tab</a>
<a href="java&#x0A;script:alert(1)">newline</a>
<a href=" &#14;  javascript:alert(1)">control characters</a>
<a href="&#0;javascript:alert(1)">nul</a>
<a href="vbscript:msgbox(1)">vbscript</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>
<a href="data:text/html,<script>alert(1)</script>">data html</a>
<a href="#" onclick="alert(1)">onclick</a>
<a href="https://ok.example/" onmouseover=alert(1) target=_blank rel=opener>hover</a>
<a href="//evil.example/">protocol relative</a>
<a href="\\evil.example/">backslashes</a>
<div onclick=alert(1) ONMOUSEOVER=alert(1) onfocus="alert(1)" tabindex=1>div</div>
<body onload=alert(1)>
<details open ontoggle=alert(1)><summary>s</summary>d</details>
<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>
<template><script>alert(1)</script></template>
<!-- <script>alert(1)</script> -->
<!--><script>alert(1)</script>-->
<!--[if IE]><script>alert(1)</script><![endif]-->
<![CDATA[<script>alert(1)</script>]]>
<textarea><script>alert(1)</script></textarea>
<title><script>alert(1)</script></title>
<xmp><script>alert(1)</script></xmp>
<select><option><script>alert(1)</script></option></select>
<img id="location" name="cookie" src="https://ok.example/c.png">
<form id="test"><input name="attributes"></form>
<h1 id="top">clobbered id</h1>

[markdown js](javascript:alert(1))
[markdown case](JAVASCRIPT:alert(1))
[markdown entity](javascript&#58;alert(1))
[markdown angle](<javascript:alert(1)>)
[markdown data](data:text/html,<script>alert(1)</script>)
[markdown vb](vbscript:msgbox(1))
[reference][r]

[r]: javascript:alert(1)

![markdown image](javascript:alert(1))
![data image](data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=)
![x" onerror="alert(1)](https://ok.example/a.png)
[title](https://ok.example/ "t\" onmouseover=\"alert(1)")
[title2](https://ok.example/ 'a" onclick="alert(1)')
<javascript:alert(1)>
<a href="https://ok.example/">[nested](javascript:alert(1))</a>
[<img src=x onerror=alert(1)>](https://ok.example/)
[**<script>alert(1)</script>**](https://ok.example/)
`<script>alert(1)</script>`

```html
<script>alert(1)</script>
```

<div>
<script>alert(1)</script>
</div>

<p <script>alert(1)</script>>
<a href="https://ok.example/"<script>alert(1)</script>>x</a>
<div id="user-content-x" class="hl-keyword evil">prefixed already</div>
<img src=x onerror=alert(1)//
"#####;

const BENIGN: &str = r#"
# Exosphere Test

## Installation

| name | kind |
|------|:----:|
| a    | b    |

- [x] done
- [ ] to do

```js
const a = 1; // comment
```

See [the docs](https://docs.example.org/x) and [install](#installation), or https://meteor.com.
A footnote[^1] and a <kbd>key</kbd>.

[^1]: The note.
"#;

#[test]
fn every_xss_trick_comes_out_harmless_and_benign_markdown_survives() {
    let options = RenderOptions::default();
    let rendered = rendered(&format!("{BENIGN}\n{XSS}"), &options);
    assert!(!rendered.truncated);
    let html = &rendered.html;
    let read = read(html);
    for text in ["alert", "msgbox"] {
        assert!(
            !read.elements.iter().any(|e| e
                .attributes
                .iter()
                .any(|(n, v)| n != "title" && n != "alt" && v.contains(text))),
            "{text} in an attribute"
        );
    }
    assert!(read.elements.iter().all(|e| e.name != "img"));

    assert!(html.contains("<h1 id=\"user-content-exosphere-test\">Exosphere Test</h1>"));
    assert!(html.contains("<h2 id=\"user-content-installation\">Installation</h2>"));
    assert!(html.contains("<th align=\"center\">kind</th>"), "{html}");
    assert!(html.contains("<li>☑ done</li>") && html.contains("<li>☐ to do</li>"));
    assert!(
        html.contains("<span class=\"hl-keyword\">const</span>"),
        "{html}"
    );
    assert!(html.contains(
        "<a href=\"https://docs.example.org/x\" rel=\"nofollow noopener noreferrer\">the docs</a>"
    ));
    assert!(html.contains("<a href=\"#user-content-installation\">install</a>"));
    assert!(html.contains(
        "<a href=\"https://meteor.com/\" rel=\"nofollow noopener noreferrer\">https://meteor.com</a>"
    ));
    assert!(html.contains("<a href=\"#user-content-1\">1</a>"), "{html}");
    assert!(html.contains("id=\"user-content-1\""));
    assert!(html.contains("<kbd>key</kbd>"));
    assert!(html.contains("<h1 id=\"user-content-top\">clobbered id</h1>"));
    assert!(
        html.contains("<div id=\"user-content-x\" class=\"hl-keyword\">prefixed already</div>")
    );
    assert!(html.contains("<a href=\"https://evil.example/\" rel=\"nofollow noopener noreferrer\">protocol relative</a>"));
    assert!(html.contains(
        "<a href=\"https://ok.example/a.png\" rel=\"nofollow noopener noreferrer\">x\" onerror=\"alert(1)</a>"
    ), "an image on another host is a link, its alt text escaped");
}

#[test]
fn remote_images_load_only_when_allowed_and_only_over_https() {
    let markdown = "![logo](https://ok.example/logo.png) ![plain](http://ok.example/p.png) \
                    ![rel](img/r.png) <img src=\"https://ok.example/raw.png\" onerror=\"x\">";
    let none = rendered(markdown, &RenderOptions::default()).html;
    assert!(!none.contains("<img"), "{none}");
    assert!(none.contains(">logo</a>") && none.contains(">plain</a>") && none.contains(" rel"));

    let options = RenderOptions {
        remote_images: true,
        link_base: Some(Url::parse("https://github.com/owner/repo/blob/HEAD/").unwrap()),
        ..RenderOptions::default()
    };
    let some = rendered(markdown, &options).html;
    assert_eq!(some.matches("<img").count(), 3, "{some}");
    assert!(some.contains("src=\"https://github.com/owner/repo/blob/HEAD/img/r.png\""));
    assert!(some.contains(
        "<a href=\"http://ok.example/p.png\" rel=\"nofollow noopener noreferrer\">plain</a>"
    ));
}

#[test]
fn relative_links_resolve_against_the_base_or_become_text() {
    let markdown =
        "[docs](docs/API.md) [top](/LICENSE) [here](#installation) [mail](mailto:a@b.example)";
    let without = rendered(markdown, &RenderOptions::default()).html;
    assert!(
        without.contains("<a>docs</a> <a>top</a> <a href=\"#user-content-installation\">here</a>")
    );
    assert!(without.contains("<a href=\"mailto:a@b.example\">mail</a>"));
    let options = RenderOptions {
        link_base: Some(Url::parse("https://github.com/owner/repo/blob/HEAD").unwrap()),
        ..RenderOptions::default()
    };
    let with = rendered(markdown, &options).html;
    assert!(with.contains("<a href=\"https://github.com/owner/repo/blob/HEAD/docs/API.md\" rel="));
    assert!(with.contains("<a href=\"https://github.com/LICENSE\" rel="));
}

/// A README like a real one, about `bytes` long.
fn realistic(bytes: usize) -> String {
    let section = "## Usage\n\nInstall it with `meteor add aldeed:collection2`, then:\n\n\
                   ```js\nimport SimpleSchema from 'simpl-schema';\nBooks.attachSchema(new SimpleSchema({\n  title: { type: String, max: 200 },\n}));\n```\n\n\
                   | option | default |\n|---|---|\n| `clean` | `true` |\n\n\
                   > **Note**: see <https://github.com/aldeed/meteor-collection2> and *more*.\n\n\
                   - one\n  - two\n    - [ ] three\n\n<p align=\"center\"><img src=\"https://img.example/badge.svg\" alt=\"badge\"></p>\n\n";
    section.repeat(bytes / section.len() + 1)
}

#[test]
fn a_one_megabyte_readme_renders_whole_and_a_longer_one_is_cut_with_a_notice() {
    let mut markdown = realistic(1_000_000);
    markdown.truncate(1_000_000);
    let whole = rendered(&markdown, &RenderOptions::default());
    assert!(!whole.truncated);
    assert!(!whole.html.contains("readme-notice"));
    assert_eq!(
        whole.html.matches("<h2 ").count(),
        markdown.matches("## Usage").count()
    );
    assert!(
        whole.html.contains("<span class=\"hl-"),
        "early code blocks are highlighted"
    );

    let options = RenderOptions {
        max_bytes: 100_000,
        ..RenderOptions::default()
    };
    let cut = rendered(&realistic(300_000), &options);
    assert!(cut.truncated);
    assert!(cut.html.ends_with("</p>\n"));
    assert!(
        cut.html
            .contains("<p class=\"readme-notice\"><strong>This README is cut short:")
    );
    assert!(cut.html.len() < 4 * options.max_bytes);

    let options = RenderOptions {
        max_bytes: 10_001,
        ..RenderOptions::default()
    };
    let cut = rendered(&"é".repeat(10_000), &options);
    assert!(cut.truncated);
    assert!(
        cut.html.contains("and only the first 10000 are shown"),
        "{}",
        cut.html
    );
}

#[test]
fn deep_nesting_and_long_runs_neither_overflow_nor_go_quadratic() {
    let options = RenderOptions::default();
    let cases = [
        ">".repeat(10_000),
        format!("{}x", "> ".repeat(10_000)),
        format!("{}x", "- * ".repeat(5_000)),
        "[".repeat(100_000),
        "<".repeat(100_000),
        format!("{}x", "<div>".repeat(100_000)),
        format!("{}x", "<table><tr><td>".repeat(20_000)),
        format!("{}x", "<a href=\"https://x.example/\">".repeat(20_000)),
        format!("{}x", "*".repeat(20_000)),
        format!("{}{}", "<b>".repeat(20_000), "</b>".repeat(20_000)),
        format!("{}x", "<svg>".repeat(20_000)),
        "[a](".repeat(20_000),
        "![a](".repeat(20_000),
        "`".repeat(100_000),
        "<!--".repeat(20_000),
        "&#x".repeat(20_000),
        "&amp;".repeat(20_000),
        "| a |\n|---|\n".to_owned() + &"|\n".repeat(20_000),
    ];
    for markdown in cases {
        let output = rendered(&markdown, &options);
        let read = read(&output.html);
        assert!(read.max_depth <= MAX_DEPTH, "{}", &markdown[..20]);
    }
}

#[test]
fn unclosed_formatting_elements_do_not_multiply_across_blocks() {
    let options = RenderOptions::default();
    let opened: String = (0..1_000).map(|i| format!("<b title=\"{i}\">")).collect();
    let markdown = format!("{opened}\n\n{}", "paragraph\n\n".repeat(5_000));
    let html = rendered(&markdown, &options).html;
    assert!(
        html.matches("<b").count() <= MAX_FORMATTING * 5_001,
        "{}",
        html.len()
    );
}

/// Inputs from a random soup of Markdown and HTML pieces whose output once changed when
/// sanitized again: a `dd` the parser moved out of a table into an `rt`, a `pre` losing a
/// leading newline at each pass, and one losing it after an image that became nothing.
#[test]
fn soup_that_once_changed_when_sanitized_again() {
    let options = RenderOptions::default();
    for input in [
        "<kbd><a href=\"//e.example\">![i](<p>_<ul><dd><thead><dd>- [^1]</table><wbr>-->- <td><rt><table>[a](><p><dd><details>- ",
        "# - <img src=rel.png><caption>)<thead><wbr><em><pre></td>\n\n<wbr><div><br></svg><dl><dt><col><a href=\"#t\">-->--><hr>1. <a href=\"#t\"># </pre>1. </table><tr><wbr><em><a href=\"//e.example\">",
        "# <img src=rel.png>_<pre>![i](<img src=rel.png><q>```\n)\u{a0}<caption>www.w.example<pre><img src=rel.png>\n# ~~<wbr>[a](**",
    ] {
        rendered(input, &options);
        assert_safe(&sanitize(input, &options), &options);
    }
}
