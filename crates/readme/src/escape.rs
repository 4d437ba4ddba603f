//! Writing HTML: text and double-quoted attribute values escaped, and start tags. The code
//! blocks the renderer writes and the sanitizer's own passes are built with these, never
//! with `format!` alone.

/// The most text the sanitizer writes between two tags; a longer run is split with `<wbr>`
/// (after a space where there is one in the run). `html5ever`'s serializer, inside the
/// allowlist, looks from each `&` or Latin-1 character of a text to the text's next `<` or
/// `>`, which is quadratic in a long text (100,000 `&` took thirty seconds).
pub const MAX_TEXT_RUN: usize = 2048;

/// Appends `text` as HTML text, `run` being the bytes of text already written since the last
/// tag, and splits it with `<wbr>` to keep runs within [`MAX_TEXT_RUN`].
pub(crate) fn push_text_run(out: &mut String, text: &str, run: &mut usize) {
    let mut rest = text;
    while !rest.is_empty() {
        let room = MAX_TEXT_RUN - (*run).min(MAX_TEXT_RUN);
        if rest.len() <= room {
            push_text(out, rest);
            *run += rest.len();
            return;
        }
        let mut end = room;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if let Some(space) = rest[..end].rfind(' ') {
            end = space + 1;
        }
        push_text(out, &rest[..end]);
        out.push_str("<wbr>");
        *run = 0;
        rest = &rest[end..];
    }
}

/// Appends `text` as HTML text: `&`, `<` and `>` escaped.
pub(crate) fn push_text(out: &mut String, text: &str) {
    push_escaped(out, text, false);
}

/// Appends `value` for a double-quoted attribute: `&`, `"`, `<` and `>` escaped.
pub(crate) fn push_attribute(out: &mut String, value: &str) {
    push_escaped(out, value, true);
}

/// Appends the start tag `<name a="v" ...>` (the names as the tokenizer read them).
pub(crate) fn push_start_tag<'a>(
    out: &mut String,
    name: &str,
    attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    out.push('<');
    out.push_str(name);
    for (name, value) in attributes {
        out.push(' ');
        out.push_str(name);
        out.push_str("=\"");
        push_attribute(out, value);
        out.push('"');
    }
    out.push('>');
}

fn push_escaped(out: &mut String, text: &str, attribute: bool) {
    let mut rest = text;
    while let Some(at) = rest.find(|c| matches!(c, '&' | '<' | '>') || (attribute && c == '"')) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            _ => "&quot;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_escape_what_would_end_them() {
        let mut text = String::new();
        push_text(&mut text, r#"a < b && "c" > d"#);
        assert_eq!(text, r#"a &lt; b &amp;&amp; "c" &gt; d"#);
        let mut value = String::new();
        push_attribute(&mut value, r#"x" onload="y"#);
        assert_eq!(value, "x&quot; onload=&quot;y");
        let mut tag = String::new();
        push_start_tag(&mut tag, "a", [("href", "x\"y"), ("title", "<&>")]);
        assert_eq!(tag, "<a href=\"x&quot;y\" title=\"&lt;&amp;&gt;\">");
    }

    #[test]
    fn long_text_runs_are_split_after_a_space_where_there_is_one() {
        let mut out = String::new();
        let mut run = MAX_TEXT_RUN - 3;
        push_text_run(&mut out, "ab cdef", &mut run);
        assert_eq!((out.as_str(), run), ("ab <wbr>cdef", 4));

        let mut out = String::new();
        let mut run = 0;
        let word = "é".repeat(MAX_TEXT_RUN);
        push_text_run(&mut out, &word, &mut run);
        assert_eq!(out.matches("<wbr>").count(), 1);
        assert_eq!(out.replace("<wbr>", ""), word);
        assert_eq!(run, MAX_TEXT_RUN);
        push_text_run(&mut out, "&", &mut run);
        assert!(out.ends_with("<wbr>&amp;"));
    }
}
