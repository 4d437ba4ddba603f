//! The README section of a package and version page, and the README the API answers: the
//! version's README file, read through the server's [`ReadmeSource`] and checked against
//! the hash its record names, or, when there is none to show, its README excerpt
//! (`longDescription`, what `meteor publish` sends, at most 1,500 characters); rendered by
//! `exosphere-readme` (GitHub-flavoured Markdown, highlighted code, an allowlist
//! sanitizer), with relative links resolved against the package's git repository when
//! that is an `https` URL.

use exosphere_index::VersionInfo;
use exosphere_readme::{RenderOptions, Rendered, Url, render};
use serde::Serialize;

use crate::readme_source::{NoReadme, ReadmeSource};

/// Where a README shown comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The README file published with the version, whole and as its hash promises.
    File,
    /// The version's README excerpt: it has no README file this server can show.
    Excerpt,
}

/// What the README section shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readme {
    /// The Markdown, as published.
    pub markdown: String,
    /// Where it comes from.
    pub origin: Origin,
    /// It rendered: HTML that is safe to place in a page as it is (the template does not
    /// escape it), and whether the README was cut short.
    pub rendered: Rendered,
    /// Whether the same version always shows this: `false` for an excerpt shown while the
    /// file may still come (not in the file store yet, or the store failed), so that an
    /// answer showing it is neither kept nor confirmed by its entity tag.
    pub lasting: bool,
}

impl Readme {
    /// Whether this is the README file rather than the excerpt (for the template).
    pub fn is_file(&self) -> bool {
        self.origin == Origin::File
    }
}

/// The README of `name`'s `version`: its README file from `source` when it has one the
/// source can show, else its excerpt; `None` when it has neither. Rendered with `options`
/// (their `link_base` is set from the version's git repository here). Blocking (the
/// source reads a file store): call it within a query turn.
pub fn readme(
    name: &str,
    version: &VersionInfo,
    source: Option<&dyn ReadmeSource>,
    options: &RenderOptions,
) -> Option<Readme> {
    let read = version.readme.as_ref().zip(source).map(|(file, source)| {
        source.readme(file).inspect_err(|reason| match reason {
            NoReadme::Mismatch | NoReadme::Failed(_) => tracing::warn!(
                package = name,
                version = version.version,
                url = file.url,
                %reason,
                "showing the README excerpt"
            ),
            _ => tracing::debug!(
                package = name,
                version = version.version,
                %reason,
                "showing the README excerpt"
            ),
        })
    });
    let lasting = !matches!(read, Some(Err(NoReadme::Coming | NoReadme::Failed(_))));
    let (markdown, origin) = match read {
        Some(Ok(text)) => (text, Origin::File),
        _ => (version.long_description.clone()?, Origin::Excerpt),
    };
    let rendered = rendered(&markdown, version.git.as_deref(), options);
    Some(Readme {
        markdown,
        origin,
        rendered,
        lasting,
    })
}

/// `markdown` rendered with `options`, relative links resolved against `git` when it is
/// an `https` repository.
fn rendered(markdown: &str, git: Option<&str>, options: &RenderOptions) -> Rendered {
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
        markdown,
        &RenderOptions {
            link_base,
            ..options.clone()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readme_source::ReadmeFile;

    #[test]
    fn the_excerpt_is_rendered_and_sanitized() {
        let shown = rendered(
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
        let without = rendered(
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

    /// A source holding one README file, at `http://h/readme.md`.
    struct OneFile;

    impl ReadmeSource for OneFile {
        fn readme(&self, file: &ReadmeFile) -> Result<String, NoReadme> {
            match file.url.as_str() {
                "http://h/readme.md" => Ok("# Whole\n\nEverything.".into()),
                "http://h/empty.md" => Err(NoReadme::Empty),
                "http://h/gone.md" => Err(NoReadme::Absent),
                _ => Err(NoReadme::Coming),
            }
        }
    }

    fn version(readme: Option<&str>, excerpt: Option<&str>) -> VersionInfo {
        VersionInfo {
            version: "1.0.0".into(),
            description: None,
            long_description: excerpt.map(str::to_owned),
            readme: readme.map(|url| ReadmeFile {
                url: url.into(),
                hash: "H".into(),
            }),
            git: None,
            published: None,
            published_by: None,
            deprecated: None,
            exports: Vec::new(),
            debug_only: false,
            prod_only: false,
            test_only: false,
            unmigrated: false,
            dependencies: Vec::new(),
            builds: Vec::new(),
        }
    }

    #[test]
    fn the_file_is_shown_when_the_source_has_it_and_the_excerpt_otherwise() {
        let options = RenderOptions::default();
        let shown = |readme, excerpt, source: Option<&dyn ReadmeSource>| {
            let version = version(readme, excerpt);
            super::readme("a:b", &version, source, &options)
                .map(|r| (r.origin, r.markdown, r.lasting))
        };
        let whole = shown(Some("http://h/readme.md"), Some("Short."), Some(&OneFile));
        assert_eq!(
            whole,
            Some((Origin::File, "# Whole\n\nEverything.".to_owned(), true))
        );
        let missing = shown(Some("http://h/other.md"), Some("Short."), Some(&OneFile));
        assert_eq!(
            missing,
            Some((Origin::Excerpt, "Short.".to_owned(), false)),
            "a file on its way may come"
        );
        for end in ["http://h/empty.md", "http://h/gone.md"] {
            let shown = shown(Some(end), Some("Short."), Some(&OneFile));
            assert_eq!(
                shown,
                Some((Origin::Excerpt, "Short.".to_owned(), true)),
                "{end}"
            );
        }
        let no_source = shown(Some("http://h/readme.md"), Some("Short."), None);
        assert_eq!(
            no_source,
            Some((Origin::Excerpt, "Short.".to_owned(), true))
        );
        assert_eq!(shown(Some("http://h/other.md"), None, Some(&OneFile)), None);
    }
}
