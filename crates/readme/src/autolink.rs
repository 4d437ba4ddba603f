//! GitHub's extended autolinks: `https://…`, `http://…` and `www.…` in plain text become
//! links, as on GitHub (the GFM spec's "Autolinks (extension)"), without the email form.
//! CommonMark's own `<https://…>` autolinks are the Markdown parser's.

use std::ops::Range;

/// A URL found in text: where it is and what it links to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Autolink {
    /// The bytes of the text that are the link's text.
    pub(crate) range: Range<usize>,
    /// The link's destination (`www.` links get `http://`, as GitHub gives them).
    pub(crate) url: String,
}

/// The autolinks in `text`, in order. Linear in the text's length: a candidate starts only
/// after whitespace or `*`, `_`, `~`, `(`, and the scan resumes after each link.
pub(crate) fn find(text: &str) -> Vec<Autolink> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if matches!(bytes[at], b'h' | b'H' | b'w' | b'W')
            && starts_a_word(text, at)
            && let Some(link) = link_at(text, at)
        {
            at = link.range.end;
            found.push(link);
            continue;
        }
        at += 1;
    }
    found
}

fn starts_a_word(text: &str, at: usize) -> bool {
    text[..at]
        .chars()
        .next_back()
        .is_none_or(|c| c.is_whitespace() || matches!(c, '*' | '_' | '~' | '('))
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn link_at(text: &str, start: usize) -> Option<Autolink> {
    let rest = &text[start..];
    let (domain_start, scheme) = if starts_with_ignore_case(rest, "https://") {
        (start + 8, "")
    } else if starts_with_ignore_case(rest, "http://") {
        (start + 7, "")
    } else if starts_with_ignore_case(rest, "www.") {
        (start, "http://")
    } else {
        return None;
    };
    let domain_end = scan(text, domain_start, |c| {
        c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
    });
    let mut end = scan(text, domain_end, |c| !c.is_whitespace() && c != '<');
    let (opens, mut closes) = text[start..end].bytes().fold((0, 0), |(o, c), b| {
        (o + usize::from(b == b'('), c + usize::from(b == b')'))
    });
    while let Some(last) = text[start..end].chars().next_back() {
        match last {
            '?' | '!' | '.' | ',' | ':' | '*' | '_' | '~' | '\'' | '"' => end -= 1,
            ')' if closes > opens => {
                end -= 1;
                closes -= 1;
            }
            ';' => match entity_start(&text[start..end]) {
                Some(at) => end = start + at,
                None => break,
            },
            _ => break,
        }
    }
    let domain = &text[domain_start..domain_end.min(end)];
    let valid = if scheme.is_empty() {
        domain.starts_with(|c: char| c.is_alphanumeric())
    } else {
        domain.len() > 4
    };
    let labels = domain.trim_end_matches('.').rsplit('.').take(2);
    if !valid || labels.clone().any(|label| label.contains('_')) {
        return None;
    }
    Some(Autolink {
        range: start..end,
        url: format!("{scheme}{}", &text[start..end]),
    })
}

/// The end of the run of characters from `at` that `keep` accepts.
fn scan(text: &str, at: usize, keep: impl Fn(char) -> bool) -> usize {
    text[at..]
        .char_indices()
        .find(|&(_, c)| !keep(c))
        .map_or(text.len(), |(i, _)| at + i)
}

/// Where a trailing entity-like `&name;` starts in `text`, which ends with `;`.
fn entity_start(text: &str) -> Option<usize> {
    let body = &text[..text.len() - 1];
    let amp = body.rfind('&')?;
    let name = &body[amp + 1..];
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(amp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(text: &str) -> Vec<(&str, String)> {
        find(text)
            .into_iter()
            .map(|link| (&text[link.range], link.url))
            .collect()
    }

    #[test]
    fn urls_in_text_are_found_without_trailing_punctuation() {
        assert_eq!(
            links("See https://example.com/a?b=1. Or www.meteor.com, or HTTP://localhost:3000/x!"),
            [
                (
                    "https://example.com/a?b=1",
                    "https://example.com/a?b=1".to_owned()
                ),
                ("www.meteor.com", "http://www.meteor.com".to_owned()),
                (
                    "HTTP://localhost:3000/x",
                    "HTTP://localhost:3000/x".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn parentheses_balance_and_entities_are_trimmed() {
        assert_eq!(
            links("(www.example.com/a_(b)) and https://x.org/q&amp;"),
            [
                (
                    "www.example.com/a_(b)",
                    "http://www.example.com/a_(b)".to_owned()
                ),
                ("https://x.org/q", "https://x.org/q".to_owned()),
            ]
        );
        assert_eq!(links("https://x.org/a<b")[0].0, "https://x.org/a");
    }

    #[test]
    fn words_that_only_contain_a_url_and_bad_domains_are_not_links() {
        assert!(links("foohttps://example.com").is_empty());
        assert!(links("www. and www._x.y and https://a_b.c_d").is_empty());
        assert!(links("https:// nothing").is_empty());
        assert!(links("whatever wh w").is_empty());
    }

    #[test]
    fn many_closing_parentheses_are_trimmed_in_linear_time() {
        let text = format!("https://a.b{}", ")".repeat(200_000));
        assert_eq!(links(&text)[0].0, "https://a.b");
    }
}
