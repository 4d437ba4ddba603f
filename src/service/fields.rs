//! The fields a publisher may put into a record, each with its type and its bound.
//!
//! Records are spliced into every client's sync pages, so what a publisher sends is stored
//! only when it is a field the `meteor` tool sends and reads (spec §3.8, §5.4, §5.9, §5.12,
//! §5.13), within a length limit: an unknown key, a wrong type or an over-long value is
//! refused with a 400 that names the field and the limit, before anything is written.
//! Homepages must be `http`/`https` URLs and git URLs one of the forms `git clone` takes,
//! so no `javascript:` link reaches a web page that shows them. The limits sit far above
//! what real packages hold (the 2015 catalog's largest record is under 4 KiB), and a whole
//! record is bounded too ([`MAX_RECORD_SIZE`](exosphere_catalog::record::MAX_RECORD_SIZE)).

use exosphere_ddp::DdpError;
use serde_json::{Map, Value};

use super::params::{MAX_NAME_LENGTH, MAX_VERSION_LENGTH, check_length};

/// Longest `description` (summary) of a version or release, in characters: the tool's own
/// limit (`package-client.js`, `commands-packages.js`, spec §5.0).
pub const MAX_SUMMARY: usize = 100;

/// Longest `longDescription` (README excerpt), in characters: the tool's own limit.
pub const MAX_LONG_DESCRIPTION: usize = 1500;

/// Longest `deprecatedMessage`, in characters (the tool sets none; the README excerpt's).
pub const MAX_DEPRECATED_MESSAGE: usize = 1500;

/// Longest homepage or git URL, in bytes (real ones are under 100).
pub const MAX_URL_LENGTH: usize = 1024;

/// Longest short identifier field (`compilerVersion`, `releaseName`, an export's name, an
/// architecture, `orderKey`, legacy version fields), in bytes.
pub const MAX_SHORT_TEXT: usize = 256;

/// Longest dependency constraint (`1.0.0 || 2.0.0 …`), in bytes.
pub const MAX_CONSTRAINT_LENGTH: usize = 1024;

/// Most entries of a version's `dependencies` or `exports`, or of a release's `packages`
/// (a release names about 200 packages, a package a few dozen dependencies).
pub const MAX_ENTRIES: usize = 1000;

/// Most references of one dependency, or architectures of one export (one per
/// architecture and kind of use; the tool writes at most a handful).
pub const MAX_REFERENCES: usize = 64;

/// Longest release banner text, in characters (Meteor's banners are a few lines).
pub const MAX_BANNER_TEXT: usize = 1000;

/// What a field must hold.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// Checked by the method itself (names and versions, parsed on their own).
    Own,
    /// A string of at most this many characters, or null.
    Text(usize),
    /// A string of at most this many bytes without control characters, or null.
    Short(usize),
    /// `true`, `false` or null.
    Bool,
    /// A git URL (see [`check_git_url`]), `""` or null.
    Git,
    /// `[{name, architectures: [arch…]}]` (spec §5.4).
    Exports,
    /// `{name: {constraint, references: [{arch, weak?, unordered?, implied?}]}}` (spec §3.8).
    Dependencies,
    /// `{name: version}` (spec §5.12).
    Packages,
}

/// The fields of `createPackageVersion` (spec §5.4): what the tool's `uploadRec` holds,
/// plus the legacy fields older tools sent (spec §3.8).
pub const VERSION_FIELDS: &[(&str, Check)] = &[
    ("packageName", Check::Own),
    ("version", Check::Own),
    ("description", Check::Text(MAX_SUMMARY)),
    ("longDescription", Check::Text(MAX_LONG_DESCRIPTION)),
    ("git", Check::Git),
    ("compilerVersion", Check::Short(MAX_SHORT_TEXT)),
    ("containsPlugins", Check::Bool),
    ("debugOnly", Check::Bool),
    ("prodOnly", Check::Bool),
    ("testOnly", Check::Bool),
    ("deprecated", Check::Bool),
    ("deprecatedMessage", Check::Text(MAX_DEPRECATED_MESSAGE)),
    ("exports", Check::Exports),
    ("releaseName", Check::Short(MAX_SHORT_TEXT)),
    ("dependencies", Check::Dependencies),
    (
        "earliestCompatibleVersion",
        Check::Short(MAX_VERSION_LENGTH),
    ),
    ("ecRecordFormat", Check::Short(MAX_SHORT_TEXT)),
];

/// The fields of `changeVersionMetadata`'s data (spec §5.9).
pub const METADATA_FIELDS: &[(&str, Check)] = &[
    ("git", Check::Git),
    ("description", Check::Text(MAX_SUMMARY)),
    ("longDescription", Check::Text(MAX_LONG_DESCRIPTION)),
];

/// The fields of `createReleaseVersion`'s record (spec §5.12; the tool sends exactly these).
pub const RELEASE_FIELDS: &[(&str, Check)] = &[
    ("track", Check::Own),
    ("version", Check::Own),
    ("orderKey", Check::Short(MAX_SHORT_TEXT)),
    ("description", Check::Text(MAX_SUMMARY)),
    ("recommended", Check::Bool),
    (
        "tool",
        Check::Short(MAX_NAME_LENGTH + 1 + MAX_VERSION_LENGTH),
    ),
    ("packages", Check::Packages),
];

/// Checks every key of `record` against `fields`, where `what` names the record in errors
/// ("a version record"). Keys in `ignored` are left for the caller (fields the server sets
/// itself and never takes from a client).
pub fn check_fields(
    record: &Map<String, Value>,
    fields: &[(&str, Check)],
    ignored: &[&str],
    what: &str,
) -> Result<(), DdpError> {
    for (key, value) in record {
        if ignored.contains(&key.as_str()) {
            continue;
        }
        let Some((_, check)) = fields.iter().find(|(name, _)| name == key) else {
            let known: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
            return Err(DdpError::bad_request(format!(
                "{:?} is not a field of {what}; this server accepts only {}",
                truncate(key),
                known.join(", ")
            )));
        };
        check_value(key, value, *check)?;
    }
    Ok(())
}

fn check_value(key: &str, value: &Value, check: Check) -> Result<(), DdpError> {
    if value.is_null() {
        return Ok(());
    }
    match check {
        Check::Own => Ok(()),
        Check::Text(limit) => text(key, value, limit).map(drop),
        Check::Short(limit) => short(key, value, limit).map(drop),
        Check::Bool if value.is_boolean() => Ok(()),
        Check::Bool => Err(DdpError::bad_request(format!(
            "`{key}` must be true or false"
        ))),
        Check::Git => match short(key, value, MAX_URL_LENGTH)? {
            "" => Ok(()),
            url => check_git_url(key, url),
        },
        Check::Exports => exports(key, value),
        Check::Dependencies => dependencies(key, value),
        Check::Packages => packages(key, value),
    }
}

/// A string of at most `limit` characters.
pub fn text<'a>(key: &str, value: &'a Value, limit: usize) -> Result<&'a str, DdpError> {
    let text = string(key, value)?;
    let length = text.chars().count();
    if length > limit {
        return Err(DdpError::bad_request(format!(
            "`{key}` is {length} characters long; this server accepts at most {limit}"
        )));
    }
    Ok(text)
}

/// A string of at most `limit` bytes without control characters.
fn short<'a>(key: &str, value: &'a Value, limit: usize) -> Result<&'a str, DdpError> {
    let text = string(key, value)?;
    if text.len() > limit {
        return Err(DdpError::bad_request(format!(
            "`{key}` is {} bytes long; this server accepts at most {limit}",
            text.len()
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(DdpError::bad_request(format!(
            "`{key}` must not contain control characters"
        )));
    }
    Ok(text)
}

fn string<'a>(key: &str, value: &'a Value) -> Result<&'a str, DdpError> {
    value
        .as_str()
        .ok_or_else(|| DdpError::bad_request(format!("`{key}` must be a string")))
}

fn array<'a>(key: &str, value: &'a Value, limit: usize) -> Result<&'a [Value], DdpError> {
    let items = value
        .as_array()
        .ok_or_else(|| DdpError::bad_request(format!("`{key}` must be an array")))?;
    entries(key, items.len(), limit)?;
    Ok(items)
}

fn object<'a>(
    key: &str,
    value: &'a Value,
    limit: usize,
) -> Result<&'a Map<String, Value>, DdpError> {
    let map = value
        .as_object()
        .ok_or_else(|| DdpError::bad_request(format!("`{key}` must be an object")))?;
    entries(key, map.len(), limit)?;
    Ok(map)
}

fn entries(key: &str, count: usize, limit: usize) -> Result<(), DdpError> {
    if count > limit {
        return Err(DdpError::bad_request(format!(
            "`{key}` has {count} entries; this server accepts at most {limit}"
        )));
    }
    Ok(())
}

/// `exports`: `[{name, architectures: [arch…]}]`.
fn exports(key: &str, value: &Value) -> Result<(), DdpError> {
    for export in array(key, value, MAX_ENTRIES)? {
        let export = object(&format!("{key}[]"), export, usize::MAX)?;
        let fields = [
            ("name", Check::Short(MAX_SHORT_TEXT)),
            ("architectures", Check::Own),
        ];
        check_fields(export, &fields, &[], "an export")?;
        let name = format!("{key}[].architectures");
        if let Some(archs) = export.get("architectures").filter(|archs| !archs.is_null()) {
            for arch in array(&name, archs, MAX_REFERENCES)? {
                short(&name, arch, MAX_SHORT_TEXT)?;
            }
        }
    }
    Ok(())
}

/// `dependencies`: `{name: {constraint, references: [{arch, weak?, unordered?, implied?}]}}`.
fn dependencies(key: &str, value: &Value) -> Result<(), DdpError> {
    for (name, dependency) in object(key, value, MAX_ENTRIES)? {
        named_package(key, name)?;
        let entry = format!("{key}.{}", truncate(name));
        let dependency = object(&entry, dependency, usize::MAX)?;
        let fields = [
            ("constraint", Check::Short(MAX_CONSTRAINT_LENGTH)),
            ("references", Check::Own),
        ];
        check_fields(dependency, &fields, &[], "a dependency")?;
        let name = format!("{entry}.references");
        if let Some(references) = dependency.get("references").filter(|refs| !refs.is_null()) {
            for reference in array(&name, references, MAX_REFERENCES)? {
                let reference = object(&name, reference, usize::MAX)?;
                let fields = [
                    ("arch", Check::Short(MAX_SHORT_TEXT)),
                    ("weak", Check::Bool),
                    ("unordered", Check::Bool),
                    ("implied", Check::Bool),
                ];
                check_fields(reference, &fields, &[], "a dependency reference")?;
            }
        }
    }
    Ok(())
}

/// Refuses a package name, as a key of `key`, longer than any package name may be.
fn named_package(key: &str, name: &str) -> Result<(), DdpError> {
    check_length(&format!("package name in `{key}`"), name, MAX_NAME_LENGTH)
}

/// A release's `packages`: `{name: version}`.
fn packages(key: &str, value: &Value) -> Result<(), DdpError> {
    for (name, version) in object(key, value, MAX_ENTRIES)? {
        named_package(key, name)?;
        short(&format!("{key}.{name}"), version, MAX_VERSION_LENGTH)?;
    }
    Ok(())
}

/// The first 100 characters of a client-sent name, for an error message.
fn truncate(text: &str) -> String {
    text.chars().take(100).collect()
}

/// Checks a URL a web page may show as a link: well-formed, at most
/// [`MAX_URL_LENGTH`] bytes, without whitespace or control characters, with a host, and
/// with one of `schemes`.
fn check_url(key: &str, text: &str, schemes: &[&str]) -> Result<(), DdpError> {
    let refuse = |why: String| {
        DdpError::bad_request(format!(
            "`{key}` must be a well-formed {} URL of at most {MAX_URL_LENGTH} bytes: {why}",
            schemes.join("/")
        ))
    };
    if text.len() > MAX_URL_LENGTH {
        return Err(refuse(format!("it is {} bytes long", text.len())));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse(
            "it contains whitespace or control characters".into(),
        ));
    }
    let url = url::Url::parse(text).map_err(|error| refuse(error.to_string()))?;
    if !schemes.contains(&url.scheme()) {
        return Err(refuse(format!("`{}:` URLs are not accepted", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("it has no host".into()));
    }
    Ok(())
}

/// Checks a package homepage (`_changePackageHomepage`, spec §5.13): `""` (none) or an
/// `http`/`https` URL.
pub fn check_homepage(url: &str) -> Result<(), DdpError> {
    if url.is_empty() {
        return Ok(());
    }
    check_url("homepage", url, &["http", "https"])
}

/// Checks a version's `git` (spec §5.4, §5.9): an `http`/`https` URL, or one of the other
/// forms `git clone` takes and real packages use (`git://`, `ssh://`, `git+ssh://`,
/// `git+https://`, and the scp-like `git@github.com:owner/repo.git`, which a browser reads
/// as a relative link). No other scheme (`javascript:`, `data:`, …) is accepted.
pub fn check_git_url(key: &str, url: &str) -> Result<(), DdpError> {
    if is_scp_like(url) {
        return Ok(());
    }
    check_url(
        key,
        url,
        &["http", "https", "git", "ssh", "git+ssh", "git+https"],
    )
}

/// `user@host:path`, the scp-like syntax of git remotes.
fn is_scp_like(url: &str) -> bool {
    let Some((user, rest)) = url.split_once('@') else {
        return false;
    };
    let Some((host, path)) = rest.split_once(':') else {
        return false;
    };
    let word = |text: &str, extra: &[u8]| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    url.len() <= MAX_URL_LENGTH
        && word(user, b"._-")
        && word(host, b".-")
        && !path.is_empty()
        && !path.starts_with("//")
        && path.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reason(error: DdpError) -> String {
        error.reason.unwrap_or_default()
    }

    fn version(record: Value) -> Result<(), DdpError> {
        check_fields(
            record.as_object().unwrap(),
            VERSION_FIELDS,
            &[],
            "a version record",
        )
    }

    #[test]
    fn homepages_are_http_urls() {
        for good in [
            "",
            "https://github.com/acme/widget",
            "http://example.com:8080/a?b=c#d",
            "HTTPS://EXAMPLE.COM",
        ] {
            assert!(check_homepage(good).is_ok(), "{good} refused");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "//evil.example/x",
            "/relative",
            "ftp://example.com",
            "https://",
            "https://exa mple.com",
            "https://example.com/\n",
            "not a url",
        ] {
            let error = check_homepage(bad).expect_err(bad);
            assert!(reason(error).contains("`homepage`"), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LENGTH));
        let error = reason(check_homepage(&long).unwrap_err());
        assert!(error.contains("at most 1024 bytes"), "{error}");
    }

    #[test]
    fn git_urls_take_the_forms_git_clone_takes() {
        for good in [
            "https://github.com/acme/widget.git",
            "git://github.com/acme/widget.git",
            "ssh://git@github.com/acme/widget.git",
            "git+ssh://git@github.com/acme/widget.git",
            "git@github.com:acme/widget.git",
            "deploy_user@git.example.com:widget",
        ] {
            assert!(check_git_url("git", good).is_ok(), "{good} refused");
        }
        for bad in [
            "javascript:alert(1)",
            "javascript://github.com/%0aalert(1)",
            "git@github.com",
            "git@github.com:",
            "git@github.com://x",
            "@github.com:x",
            "a@b:c d",
            "file:///etc/passwd",
        ] {
            assert!(check_git_url("git", bad).is_err(), "{bad:?} accepted");
        }
        assert!(version(json!({"git": ""})).is_ok());
        assert!(version(json!({"git": null})).is_ok());
        let error = reason(version(json!({"git": "javascript:alert(1)"})).unwrap_err());
        assert!(error.contains("`git`"), "{error}");
    }

    #[test]
    fn a_version_record_as_the_tool_sends_it_is_accepted() {
        // `package-client.js` `uploadRec` of Meteor 3, for a package with a plugin, a
        // weak and an implied dependency, and exports on every architecture.
        let archs = ["os", "web.browser", "web.browser.legacy", "web.cordova"];
        let record = json!({
            "packageName": "acme:widget",
            "version": "1.2.3-rc.1_2",
            "description": "d".repeat(100),
            "longDescription": "é".repeat(1500),
            "git": "https://github.com/acme/widget.git",
            "compilerVersion": "meteor/34",
            "containsPlugins": true,
            "debugOnly": false,
            "prodOnly": false,
            "testOnly": false,
            "deprecated": true,
            "deprecatedMessage": "use acme:gadget",
            "exports": [{"name": "Widget", "architectures": archs}],
            "releaseName": "METEOR@3.0.4",
            "dependencies": {
                "meteor": {"constraint": null, "references": [{"arch": "os"}, {"arch": "web.browser"}]},
                "ecmascript": {"constraint": "0.16.9 || 1.0.0", "references": [{"arch": "os", "unordered": true}]},
                "acme:base": {"constraint": "1.0.0", "references": [{"arch": "web.cordova", "weak": true, "implied": true}]},
                "isobuild:isopack-2": {"constraint": "1.0.0", "references": [{"arch": "os"}]}
            }
        });
        version(record).unwrap();
        // Older tools: a subset, `releaseName: null` from a checkout, legacy fields.
        version(json!({
            "packageName": "acme:widget", "version": "0.9.0", "description": "old",
            "earliestCompatibleVersion": "0.9.0", "containsPlugins": false,
            "releaseName": null, "dependencies": {}
        }))
        .unwrap();
    }

    #[test]
    fn unknown_keys_and_over_long_values_name_the_field_and_the_limit() {
        let error = reason(version(json!({"junk": "x"})).unwrap_err());
        assert!(
            error.contains("\"junk\" is not a field of a version record"),
            "{error}"
        );
        assert!(error.contains("longDescription"), "{error}");
        let cases = [
            (
                json!({"description": "d".repeat(101)}),
                "`description` is 101 characters long; this server accepts at most 100",
            ),
            (
                json!({"compilerVersion": "c".repeat(300)}),
                "`compilerVersion` is 300 bytes long; this server accepts at most 256",
            ),
            (
                json!({"containsPlugins": "yes"}),
                "`containsPlugins` must be true or false",
            ),
            (
                json!({"exports": [{"name": "A", "architectures": ["os"], "x": 1}]}),
                "\"x\" is not a field of an export",
            ),
            (
                json!({"exports": vec![json!({"name": "A"}); MAX_ENTRIES + 1]}),
                "`exports` has 1001 entries; this server accepts at most 1000",
            ),
            (
                json!({"dependencies": {"a": {"constraint": "1", "references": [], "junk": 1}}}),
                "\"junk\" is not a field of a dependency",
            ),
            (
                json!({"dependencies": {"a": {"references": [{"arch": "os", "evil": true}]}}}),
                "\"evil\" is not a field of a dependency reference",
            ),
            (
                json!({"dependencies": {"a": {"constraint": "1".repeat(2000)}}}),
                "`constraint` is 2000 bytes long",
            ),
            (
                json!({"dependencies": []}),
                "`dependencies` must be an object",
            ),
        ];
        for (record, want) in cases {
            let error = reason(version(record.clone()).unwrap_err());
            assert!(error.contains(want), "{record}: {error}");
        }
    }

    #[test]
    fn release_records_are_checked_field_by_field() {
        let release = |record: Value| {
            check_fields(
                record.as_object().unwrap(),
                RELEASE_FIELDS,
                &[],
                "a release record",
            )
        };
        release(json!({
            "track": "METEOR", "version": "3.0.4", "orderKey": "0003.0000.0004$",
            "description": "The official Meteor distribution", "recommended": true,
            "tool": "meteor-tool@3.0.4",
            "packages": {"meteor": "2.0.1", "ecmascript": "0.16.9"}
        }))
        .unwrap();
        let error = reason(release(json!({"orderKey": "k".repeat(1 << 20)})).unwrap_err());
        assert!(
            error.contains("`orderKey` is 1048576 bytes long; this server accepts at most 256"),
            "{error}"
        );
        let error = reason(release(json!({"banner": {"text": "x"}})).unwrap_err());
        assert!(
            error.contains("\"banner\" is not a field of a release record"),
            "{error}"
        );
        let error = reason(release(json!({"packages": {"a": "1\n"}})).unwrap_err());
        assert!(error.contains("control characters"), "{error}");
    }
}
