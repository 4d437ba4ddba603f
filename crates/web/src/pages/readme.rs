//! The README section of a package and version page, and the README the API answers: the
//! version's README excerpt (`longDescription`, what `meteor publish` sends, at most 1,500
//! characters) rendered by `exosphere-readme` (GitHub-flavoured Markdown, highlighted code,
//! an allowlist sanitizer), with relative links resolved against the package's git
//! repository when that is an `https` URL.

use exosphere_readme::{RenderOptions, Rendered, Url, render};

/// What the README section shows: HTML that is safe to place in a page as it is (the
/// template does not escape it), and whether the README was cut short.
pub type Readme = Rendered;

/// The README of a version whose excerpt is `long_description` and whose repository is
/// `git`, rendered with `options` (their `link_base` is set from `git` here).
pub fn readme(long_description: &str, git: Option<&str>, options: &RenderOptions) -> Readme {
    let link_base = git
        .and_then(|git| Url::parse(git.trim_end_matches(".git")).ok())
        .filter(|url| url.scheme() == "https")
        .map(|mut url| {
            // On GitHub a repository's files are under `blob/HEAD/` (its default branch).
            if url.host_str() == Some("github.com") {
                let path = format!("{}/blob/HEAD/", url.path().trim_end_matches('/'));
                url.set_path(&path);
            }
            url
        });
    render(
        long_description,
        &RenderOptions {
            link_base,
            ..options.clone()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excerpt_is_rendered_and_sanitized() {
        let shown = readme(
            "# Title\n<script>alert(1)</script> & <img src=x onerror=y>\n\n[docs](docs/a.md)",
            Some("https://github.com/iron/router.git"),
            &RenderOptions::default(),
        );
        assert!(shown.html.contains("<h1"), "{}", shown.html);
        assert!(!shown.html.contains("<script") && !shown.html.contains("onerror"));
        assert!(
            shown
                .html
                .contains("href=\"https://github.com/iron/router/blob/HEAD/docs/a.md\""),
            "{}",
            shown.html
        );
        let without = readme(
            "[docs](docs/a.md)",
            Some("git@github.com:a/b"),
            &RenderOptions::default(),
        );
        assert!(
            !without.html.contains("href=\"docs/a.md\""),
            "{}",
            without.html
        );
    }
}
