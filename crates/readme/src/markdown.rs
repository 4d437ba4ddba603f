//! GitHub-flavoured Markdown to HTML that is not yet safe: `pulldown-cmark`'s events, changed
//! on the way to its HTML writer. Raw HTML passes through here; the sanitizer decides.
//!
//! The changes: fenced code goes through the highlighter; table alignment becomes `align`
//! (the writer's `style` would be removed); task list boxes become ☐ and ☑ (no `<input>`);
//! GitHub's alerts get their title; headings get GitHub's ids; bare URLs become links; and
//! two bounds keep the HTML proportional to the Markdown: containers and emphasis nest at
//! most [`MAX_NESTING`] deep (deeper ones are flattened, their content kept), and reference
//! links copy at most as many bytes of destinations and titles as the README has (the rest
//! show as their text), so a short definition used a million times cannot multiply.

use std::collections::HashMap;

use pulldown_cmark::{
    Alignment, BlockQuoteKind, CodeBlockKind, CowStr, Event, LinkType, Options, Parser, Tag,
    TagEnd, html,
};

use crate::autolink;
use crate::highlight::{Highlighter, MAX_TOTAL_BYTES};

/// How deep block quotes, lists, list items and emphasis nest before deeper ones are
/// flattened. Real READMEs nest a handful of levels.
pub const MAX_NESTING: usize = 32;

/// `markdown` as HTML, with raw HTML passed through.
pub(crate) fn to_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_GFM;
    let mut events = Events::new(markdown.len());
    for event in Parser::new_ext(markdown, options) {
        events.push(event);
    }
    let mut events = events.finish();
    add_heading_ids(&mut events);
    let mut out = String::with_capacity(markdown.len() + markdown.len() / 2);
    html::push_html(&mut out, events.into_iter());
    out
}

/// The event stream being changed, and what the changes need to remember.
struct Events<'a> {
    out: Vec<Event<'a>>,
    /// Consecutive text, joined so that autolinks are found across the parser's splits.
    text: String,
    /// The code block being read: its info string and its text.
    code: Option<(String, String)>,
    highlighter: Highlighter,
    /// The alignments of the table being read, whether its head is being read, and the
    /// index of the next cell in the row.
    table: (Vec<Alignment>, bool, usize),
    /// For each open link or image, whether it was kept.
    links: Vec<bool>,
    /// For each open nestable container or emphasis, whether it was kept; and how many are.
    nesting: Vec<bool>,
    nested: usize,
    /// Open `<a>` tags written as inline HTML (no autolinks inside them).
    raw_anchors: usize,
    /// Bytes reference links may still copy.
    expansion_budget: usize,
}

impl<'a> Events<'a> {
    fn new(budget: usize) -> Self {
        Events {
            out: Vec::new(),
            text: String::new(),
            code: None,
            highlighter: Highlighter::new(MAX_TOTAL_BYTES),
            table: (Vec::new(), false, 0),
            links: Vec::new(),
            nesting: Vec::new(),
            nested: 0,
            raw_anchors: 0,
            expansion_budget: budget,
        }
    }

    fn push(&mut self, event: Event<'a>) {
        if let Some((_, code)) = &mut self.code {
            match event {
                Event::Text(text) => code.push_str(&text),
                Event::End(TagEnd::CodeBlock) => {
                    let (info, code) = self.code.take().unwrap_or_default();
                    let mut html = String::new();
                    self.highlighter.code_block(&mut html, &code, &info);
                    self.out.push(Event::Html(html.into()));
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Text(text) => {
                self.text.push_str(&text);
                return;
            }
            Event::TaskListMarker(done) => {
                self.text.push_str(if done { "☑ " } else { "☐ " });
                return;
            }
            _ => self.flush_text(),
        }
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::InlineHtml(html) => {
                let tag = html.trim_start().to_ascii_lowercase();
                if tag.starts_with("</a") {
                    self.raw_anchors = self.raw_anchors.saturating_sub(1);
                } else if tag.starts_with("<a")
                    && tag[2..].starts_with(|c: char| c.is_whitespace() || c == '>')
                {
                    self.raw_anchors += 1;
                }
                self.out.push(Event::InlineHtml(html));
            }
            other => self.out.push(other),
        }
    }

    fn start(&mut self, tag: Tag<'a>) {
        match tag {
            Tag::CodeBlock(kind) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.into_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                self.code = Some((info, String::new()));
            }
            Tag::Table(alignments) => {
                self.table = (alignments, false, 0);
                self.out.push(Event::Start(Tag::Table(Vec::new())));
            }
            Tag::TableHead => {
                self.table.1 = true;
                self.table.2 = 0;
                self.out.push(Event::Start(Tag::TableHead));
            }
            Tag::TableRow => {
                self.table.2 = 0;
                self.out.push(Event::Start(Tag::TableRow));
            }
            Tag::TableCell => {
                let (alignments, head, cell) = &mut self.table;
                let align = match alignments.get(*cell) {
                    Some(Alignment::Left) => " align=\"left\"",
                    Some(Alignment::Center) => " align=\"center\"",
                    Some(Alignment::Right) => " align=\"right\"",
                    _ => "",
                };
                *cell += 1;
                let name = if *head { "th" } else { "td" };
                self.out
                    .push(Event::Html(format!("<{name}{align}>").into()));
            }
            Tag::BlockQuote(kind) if self.nest() => {
                self.out.push(Event::Start(Tag::BlockQuote(kind)));
                if let Some(kind) = kind {
                    let title = match kind {
                        BlockQuoteKind::Note => "Note",
                        BlockQuoteKind::Tip => "Tip",
                        BlockQuoteKind::Important => "Important",
                        BlockQuoteKind::Warning => "Warning",
                        BlockQuoteKind::Caution => "Caution",
                    };
                    let title = format!("<p class=\"markdown-alert-title\">{title}</p>\n");
                    self.out.push(Event::Html(title.into()));
                }
            }
            Tag::List(_) | Tag::Item | Tag::Emphasis | Tag::Strong | Tag::Strikethrough
                if self.nest() =>
            {
                self.out.push(Event::Start(tag));
            }
            Tag::BlockQuote(_)
            | Tag::List(_)
            | Tag::Item
            | Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough => {}
            Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            } => {
                if self.afford(link_type, &dest_url, &title) {
                    self.out.push(Event::Start(Tag::Link {
                        link_type,
                        dest_url,
                        title,
                        id,
                    }));
                }
            }
            Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            } => {
                if self.afford(link_type, &dest_url, &title) {
                    self.out.push(Event::Start(Tag::Image {
                        link_type,
                        dest_url,
                        title,
                        id,
                    }));
                }
            }
            other => self.out.push(Event::Start(other)),
        }
    }

    fn end(&mut self, tag: TagEnd) {
        let kept = match tag {
            TagEnd::TableHead => {
                self.table.1 = false;
                true
            }
            TagEnd::BlockQuote(_)
            | TagEnd::List(_)
            | TagEnd::Item
            | TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough => {
                let kept = self.nesting.pop().unwrap_or(true);
                self.nested -= usize::from(kept);
                kept
            }
            TagEnd::Link | TagEnd::Image => self.links.pop().unwrap_or(true),
            _ => true,
        };
        if kept {
            self.out.push(Event::End(tag));
        }
    }

    /// Opens a nestable container or emphasis: whether it is kept.
    fn nest(&mut self) -> bool {
        let kept = self.nested < MAX_NESTING;
        self.nesting.push(kept);
        self.nested += usize::from(kept);
        kept
    }

    /// Opens a link or image: whether it is kept, charging a reference link's copy of its
    /// destination and title to the budget.
    fn afford(&mut self, link_type: LinkType, dest_url: &str, title: &str) -> bool {
        let copied = matches!(
            link_type,
            LinkType::Reference | LinkType::Collapsed | LinkType::Shortcut
        );
        let cost = if copied {
            dest_url.len() + title.len()
        } else {
            0
        };
        let kept = cost <= self.expansion_budget;
        if kept {
            self.expansion_budget -= cost;
        }
        self.links.push(kept);
        kept
    }

    /// Writes the text read so far, with its bare URLs as links unless it is already inside
    /// a link.
    fn flush_text(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.text);
        let links = if self.links.is_empty() && self.raw_anchors == 0 {
            autolink::find(&text)
        } else {
            Vec::new()
        };
        let mut at = 0;
        for link in links {
            if link.range.start > at {
                self.out
                    .push(Event::Text(text[at..link.range.start].to_owned().into()));
            }
            self.out.push(Event::Start(Tag::Link {
                link_type: LinkType::Autolink,
                dest_url: link.url.into(),
                title: CowStr::Borrowed(""),
                id: CowStr::Borrowed(""),
            }));
            self.out
                .push(Event::Text(text[link.range.clone()].to_owned().into()));
            self.out.push(Event::End(TagEnd::Link));
            at = link.range.end;
        }
        if at < text.len() {
            let rest = if at == 0 { text } else { text[at..].to_owned() };
            self.out.push(Event::Text(rest.into()));
        }
    }

    fn finish(mut self) -> Vec<Event<'a>> {
        self.flush_text();
        self.out
    }
}

/// Gives each heading GitHub's id: its text, lowercased, without punctuation, spaces as
/// `-`, and `-1`, `-2`, ... on repeats. (The sanitizer prefixes ids, and the links to them,
/// with `user-content-`.)
fn add_heading_ids(events: &mut [Event<'_>]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut at = 0;
    while at < events.len() {
        if !matches!(events[at], Event::Start(Tag::Heading { .. })) {
            at += 1;
            continue;
        }
        let mut text = String::new();
        let mut end = at + 1;
        while end < events.len() && !matches!(events[end], Event::End(TagEnd::Heading(_))) {
            if let Event::Text(part) | Event::Code(part) = &events[end] {
                text.push_str(part);
            }
            end += 1;
        }
        let slug = slug(&text);
        if !slug.is_empty() {
            let id = match seen.get_mut(&slug) {
                Some(repeats) => {
                    *repeats += 1;
                    format!("{slug}-{repeats}")
                }
                None => {
                    seen.insert(slug.clone(), 0);
                    slug
                }
            };
            if let Event::Start(Tag::Heading { id: heading_id, .. }) = &mut events[at] {
                *heading_id = Some(id.into());
            }
        }
        at = end;
    }
}

/// GitHub's anchor for a heading's text.
fn slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gfm_tables_task_lists_and_strikethrough() {
        let html = to_html(
            "| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |\n\n- [x] done\n- [ ] to do\n\n~~old~~\n",
        );
        assert!(html.contains("<th align=\"left\">a</th><th align=\"center\">b</th>"));
        assert!(html.contains("<td align=\"right\">3</td>"), "{html}");
        assert!(!html.contains("style"), "{html}");
        assert!(html.contains("<li>☑ done</li>") && html.contains("<li>☐ to do</li>"));
        assert!(!html.contains("<input"));
        assert!(html.contains("<del>old</del>"));
    }

    #[test]
    fn headings_get_github_ids_and_repeats_are_numbered() {
        let html = to_html("# Hello, `World`!\n## Hello World\n## hello world\n## ???\n");
        assert!(html.contains("<h1 id=\"hello-world\">"), "{html}");
        assert!(html.contains("<h2 id=\"hello-world-1\">"), "{html}");
        assert!(html.contains("<h2 id=\"hello-world-2\">"), "{html}");
        assert!(html.contains("<h2>???</h2>"), "{html}");
    }

    #[test]
    fn fenced_code_is_highlighted_and_bare_urls_become_links_outside_code_and_links() {
        let html = to_html(
            "```js\nvar a = 'https://x.org';\n```\n\nSee https://meteor.com and \
             [https://a.org](https://b.org) and <a href=\"https://c.org\">https://c.org</a>.\n",
        );
        assert!(html.contains("<pre class=\"hl-code\"><code><span class=\"hl-"));
        assert!(!html.contains("href=\"https://x.org"), "{html}");
        assert!(html.contains("<a href=\"https://meteor.com\">https://meteor.com</a>"));
        assert_eq!(html.matches("href=").count(), 3, "{html}");
    }

    #[test]
    fn alerts_get_a_title() {
        let html = to_html("> [!WARNING]\n> Careful.\n");
        assert!(
            html.contains("<blockquote class=\"markdown-alert-warning\">"),
            "{html}"
        );
        assert!(html.contains("<p class=\"markdown-alert-title\">Warning</p>"));
    }

    #[test]
    fn nesting_is_flattened_past_the_limit() {
        let html = to_html(&format!("{} deep\n", ">".repeat(10_000)));
        assert_eq!(html.matches("<blockquote>").count(), MAX_NESTING);
        assert!(html.contains("deep"));
        let html = to_html(&format!("{}x{}", "*".repeat(1000), "*".repeat(1000)));
        assert!(html.matches("<em>").count() + html.matches("<strong>").count() <= MAX_NESTING);
    }

    #[test]
    fn reference_links_copy_no_more_than_the_readme_holds() {
        let markdown = format!(
            "[a]: https://x.org/{}\n\n{}",
            "y".repeat(1000),
            "[a] ".repeat(5000)
        );
        let html = to_html(&markdown);
        assert!(
            html.len() < 4 * markdown.len(),
            "{} from {}",
            html.len(),
            markdown.len()
        );
        assert!(html.contains("<a href=\"https://x.org/yyy"));
    }
}
