//! The pages' URLs, built in one place so every link, canonical URL, redirect and feed
//! entry names a page the same way. They are permanent: `/package/NAME` and
//! `/package/NAME/VERSION` (singular `package`, so they can never collide with the file
//! URLs under `/packages/...` that published records hold forever), `/maintainer/USER`,
//! `/release/TRACK/VERSION`. Names go into the path as they are where Meteor's name rules
//! allow (`iron:router`, `1.0.0+build`); anything else a record may hold is
//! percent-encoded.

/// `/package/NAME`.
pub fn package(name: &str) -> String {
    format!("/package/{}", segment(name))
}

/// `/package/NAME/VERSION`.
pub fn version(name: &str, version: &str) -> String {
    format!("/package/{}/{}", segment(name), segment(version))
}

/// `/maintainer/USER`.
pub fn maintainer(user: &str) -> String {
    format!("/maintainer/{}", segment(user))
}

/// `/release/TRACK`.
pub fn track(track: &str) -> String {
    format!("/release/{}", segment(track))
}

/// `/release/TRACK/VERSION`.
pub fn release(track: &str, version: &str) -> String {
    format!("/release/{}/{}", segment(track), segment(version))
}

/// `path` with one query parameter, its value percent-encoded.
pub fn with_query(path: &str, key: &str, value: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(key, value)
        .finish();
    format!("{path}?{query}")
}

/// `text` as one path segment: the characters of package names, versions, usernames and
/// track names stay as they are (letters, digits, `-._~:@+`); every other byte is
/// percent-encoded, so nothing in a record can add a segment, a query or markup.
pub fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@+".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Whether `url` may be a link's target: an `http` or `https` URL (records hold what
/// publishers or an upstream sent; a `javascript:` or `data:` one is shown as text).
pub fn is_web_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_readable_and_anything_else_is_encoded() {
        assert_eq!(package("iron:router"), "/package/iron:router");
        assert_eq!(version("a", "1.0.0+b_1"), "/package/a/1.0.0+b_1");
        assert_eq!(
            maintainer("x/../\"><script>"),
            "/maintainer/x%2F..%2F%22%3E%3Cscript%3E"
        );
        assert_eq!(release("METEOR", "1.1-rc.0"), "/release/METEOR/1.1-rc.0");
        assert_eq!(segment("é ?#"), "%C3%A9%20%3F%23");
        assert_eq!(with_query("/search", "q", "a&b c"), "/search?q=a%26b+c");
    }

    #[test]
    fn only_web_urls_are_links() {
        assert!(is_web_url("https://github.com/iron/router"));
        assert!(is_web_url("HTTP://example.com"));
        for hostile in [
            "javascript:alert(1)",
            "data:text/html,<script>",
            " javascript:x",
            "//evil.example",
            "https://a\n.example",
        ] {
            assert!(!is_web_url(hostile), "{hostile}");
        }
    }
}
