//! The package publishing methods of spec §5.1–§5.11: packages, versions, builds,
//! READMEs and version metadata, with the name rules of §5.0.
//!
//! A version or build is created *pending*: its record waits in the publishing rows, not
//! in the synced collections, until its publish call has verified the uploads; then the
//! record is written in the same transaction that deletes the pending entry. Creating the
//! same pending version or build again replaces the old one, so a crashed publish can be
//! retried from the start.

use exosphere_catalog::accounts::{Pending, PendingKind};
use exosphere_catalog::files::PUBLISHED_PREFIX;
use exosphere_catalog::mirror::Claim;
use exosphere_catalog::{Collection, Lookup};
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{DdpError, MethodContext, Reply, random_id};
use exosphere_meteor::names::is_package_name;
use exosphere_meteor::version::is_version;
use serde_json::{Map, Value, json};

use super::fields::{METADATA_FIELDS, VERSION_FIELDS, check_fields};
use super::params::{
    MAX_NAME_LENGTH, MAX_VERSION_LENGTH, check_length, object_param, plain_params, string_field,
    string_param,
};
use super::publishing::Publishing;
use super::records::{check_room, date, load, now_ms, parse_object, person, save};
use super::rules::{creation_maintainers, maintained_package, maintains};
use super::tx::Tx;

/// Record keys only the server sets; a client sending them is ignored for those keys
/// (never stored, so not refused either).
const SERVER_KEYS: [&str; 7] = [
    "_id",
    "source",
    "readme",
    "published",
    "publishedBy",
    "lastUpdated",
    "unmigrated",
];

/// The package name from a method parameter, checked against `PV.validatePackageName`
/// and [`MAX_NAME_LENGTH`].
fn package_name(name: String) -> Result<String, DdpError> {
    check_length("package name", &name, MAX_NAME_LENGTH)?;
    if is_package_name(&name) {
        Ok(name)
    } else {
        Err(DdpError::bad_request(format!(
            "{name:?} is not a valid package name: use lowercase letters, digits, `.`, `-` \
             and one `:` after the prefix, with at least one letter, not starting with `.`, \
             `:` or `-` and without `..`"
        )))
    }
}

/// A version string the Meteor version parser accepts (`x.y.z`, `-pre`, `_wrap`; no
/// `+build`, spec §3.8).
fn version_string(version: String) -> Result<String, DdpError> {
    check_length("version", &version, MAX_VERSION_LENGTH)?;
    if is_version(&version) && !version.contains('+') {
        Ok(version)
    } else {
        Err(DdpError::bad_request(format!(
            "{version:?} is not a valid Meteor version (MAJOR.MINOR.PATCH with an optional \
             -prerelease and _wrap number)"
        )))
    }
}

/// The file-name spelling of a package name (`acme:widget` → `acme_widget`), as the tool
/// names its tarballs.
fn file_name(package: &str) -> String {
    package.replace(':', "_")
}

/// The blob key of a new file of `name@version`: a fresh directory per upload, so a
/// published file never changes under its URL (downloads are cached as immutable) and
/// a stale publish can never overwrite another one's file.
fn file_key(name: &str, version: &str, file: &str) -> String {
    format!(
        "{PUBLISHED_PREFIX}{}/{version}/{}/{file}",
        file_name(name),
        random_id()
    )
}

/// `createPackage({name})` (spec §5.3).
pub async fn create_package(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let name = package_name(string_field(
        &object_param(&params, 0, "the package spec")?,
        "name",
    )?)?;
    publishing
        .as_user(ctx, move |writer, user| {
            if let Some(package) = load(writer, &Lookup::Package(&name))? {
                // A `publish --create` that failed before its first version was published
                // is run again as a whole: let its maintainers re-create it.
                let unpublished = writer.find(&Lookup::VersionsOf(&name))?.is_empty();
                if unpublished && maintains(writer, user, &package)? {
                    return Ok(());
                }
                return Err(DdpError::new(409, format!("Package {name} already exists")).into());
            }
            let maintainers = creation_maintainers(writer, user, &name)?;
            let mut record = Map::new();
            record.insert("_id".into(), random_id().into());
            record.insert("name".into(), name.clone().into());
            record.insert("maintainers".into(), maintainers.clone().into());
            save(writer, Collection::Packages, record, now_ms())?;
            // A name made here is this server's: a mirror serves no upstream record of it.
            writer.mirror().claim(&Claim::Package(name.clone()))?;
            user.record(
                writer,
                "package.create",
                &name,
                Some(&name),
                json!({"maintainers": maintainers}),
            )
        })
        .await?;
    Ok(Reply::None)
}

/// `createPackageVersion(record)` (spec §5.4) → `{uploadToken, uploadUrl, readmeUrl}`.
pub async fn create_package_version(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let input = object_param(&params, 0, "the version record")?;
    let name = package_name(string_field(&input, "packageName")?)?;
    let version = version_string(string_field(&input, "version")?)?;
    check_fields(&input, VERSION_FIELDS, &SERVER_KEYS, "a version record")?;
    let mut record = Map::new();
    record.insert("packageName".into(), name.clone().into());
    record.insert("version".into(), version.clone().into());
    for (key, value) in input {
        if !SERVER_KEYS.contains(&key.as_str()) && key != "packageName" && key != "version" {
            record.insert(key, value);
        }
    }
    record
        .entry("dependencies")
        .or_insert_with(|| Value::Object(Map::new()));
    let record = Value::Object(record).to_string();
    check_room(Collection::Versions, &record)?;
    let owner = publishing.clone();
    let answer = publishing
        .as_user(ctx, move |writer, user| {
            maintained_package(writer, user, &name)?;
            if load(
                writer,
                &Lookup::Version {
                    package: &name,
                    version: &version,
                },
            )?
            .is_some()
            {
                return Err(DdpError::new(
                    409,
                    format!(
                        "{name}@{version} is already published; to add a build for another \
                         architecture run `meteor publish-for-arch {name}@{version}`"
                    ),
                )
                .into());
            }
            let (source, source_url) = owner.new_upload(
                writer,
                file_key(
                    &name,
                    &version,
                    &format!("{}-{version}-source.tgz", file_name(&name)),
                ),
            )?;
            let (readme, readme_url) =
                owner.new_upload(writer, file_key(&name, &version, "README.md"))?;
            let token = owner.new_pending(
                writer,
                &Pending {
                    kind: PendingKind::Version,
                    subject: format!("{name}@{version}"),
                    user_id: user.id.clone(),
                    record: record.clone(),
                    uploads: vec![source, readme],
                    expires: owner.expiry(),
                },
            )?;
            let target = format!("{name}@{version}");
            user.record(writer, "version.create", &target, Some(&name), json!({}))?;
            Ok(json!({"uploadToken": token, "uploadUrl": source_url, "readmeUrl": readme_url}))
        })
        .await?;
    reply(answer)
}

/// `publishPackageVersion(uploadToken, {tarballHash, treeHash, readmeHash})` (spec §5.5):
/// verifies the uploads and makes the version visible.
pub async fn publish_package_version(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let token = string_param(&params, 0, "the upload token")?;
    let hashes = object_param(&params, 1, "the hashes")?;
    let tarball_hash = string_field(&hashes, "tarballHash")?;
    let tree_hash = string_field(&hashes, "treeHash")?;
    let readme_hash = match hashes.get("readmeHash") {
        None | Some(Value::Null) => None,
        Some(Value::String(hash)) => Some(hash.clone()),
        Some(_) => return Err(DdpError::bad_request("`readmeHash` must be a string")),
    };
    let urls = publishing.clone();
    publishing
        .finish(
            ctx,
            &token,
            PendingKind::Version,
            vec![Some(tarball_hash.clone()), readme_hash],
            move |writer, user, pending, uploads| {
                let mut input = parse_object(&pending.record)?;
                let name = string_field(&input, "packageName")?;
                let version = string_field(&input, "version")?;
                if load(writer, &Lookup::Version { package: &name, version: &version })?.is_some() {
                    return Err(DdpError::new(409, format!("{name}@{version} is already published")).into());
                }
                let mut package = maintained_package(writer, user, &name)?;
                let now = now_ms();
                let mut record = Map::new();
                record.insert("_id".into(), random_id().into());
                record.append(&mut input);
                let source = uploads.first().cloned().flatten();
                let source = source.ok_or_else(|| DdpError::bad_request("The tarball hash is missing"))?;
                record.insert(
                    "source".into(),
                    json!({"url": urls.blob_url(&source.key), "tarballHash": source.sha256, "treeHash": tree_hash}),
                );
                if let Some(Some(readme)) = uploads.get(1) {
                    record.insert("readme".into(), json!({"url": urls.blob_url(&readme.key), "hash": readme.sha256}));
                }
                record.entry("releaseName").or_insert(Value::Null);
                record.insert("publishedBy".into(), person(&user.username, &user.id));
                record.insert("published".into(), date(now));
                save(writer, Collection::Versions, record, now)?;
                user.record(
                    writer,
                    "version.publish",
                    &format!("{name}@{version}"),
                    Some(&name),
                    json!({"tarballHash": source.sha256, "treeHash": tree_hash, "readmeHash": uploads.get(1).cloned().flatten().map(|readme| readme.sha256)}),
                )?;
                let empty = package
                    .get("maintainers")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if empty {
                    package.insert("maintainers".into(), json!([person(&user.username, &user.id)]));
                }
                save(writer, Collection::Packages, package, now)
            },
        )
        .await?;
    Ok(Reply::None)
}

/// The published version `name@version`, whose package `user` maintains.
fn maintained_version(
    writer: &mut dyn exosphere_catalog::CatalogWriter,
    user: &exosphere_catalog::accounts::User,
    name: &str,
    version: &str,
) -> Tx<Map<String, Value>> {
    maintained_package(writer, user, name)?;
    Ok(load(
        writer,
        &Lookup::Version {
            package: name,
            version,
        },
    )?
    .ok_or_else(|| DdpError::new(404, format!("{name}@{version} is not published")))?)
}

/// Reads `{packageName, version}` (spec §5.6, §5.9, §5.10).
fn version_identifier(params: &[Value]) -> Result<(Map<String, Value>, String, String), DdpError> {
    let spec = object_param(params, 0, "the version identifier")?;
    let name = package_name(string_field(&spec, "packageName")?)?;
    let version = version_string(string_field(&spec, "version")?)?;
    Ok((spec, name, version))
}

/// The operating-system architectures a build may name: `os` for portable server code, or
/// one of the platforms the tool builds binary code on (`tools/utils/archinfo.ts`, with
/// the 32-bit and ARM Linux builds older and newer tools publish).
const OS_ARCHITECTURES: [&str; 8] = [
    "os",
    "os.linux.aarch64",
    "os.linux.x86_32",
    "os.linux.x86_64",
    "os.osx.arm64",
    "os.osx.x86_64",
    "os.windows.x86_32",
    "os.windows.x86_64",
];

/// The client architectures of a build (`web.browser.modern` is spelled `web.browser`).
const WEB_ARCHITECTURES: [&str; 3] = ["web.browser", "web.browser.legacy", "web.cordova"];

/// `buildArchitectures` as the tool computes it (`isopack.js` `buildArchitectures`: the
/// unibuilds' architectures, de-duplicated, sorted and joined with `+`; spec §3.8, §5.6):
/// known architectures only, in ascending order without repeats, and at most one `os`
/// architecture (an isopack has one server unibuild, portable or for one platform). The
/// download side matches these names with `archinfo.mostSpecificMatch`, which throws on
/// a repeated name, so anything else would break every client that syncs the build.
fn architectures(text: String) -> Result<String, DdpError> {
    let archs: Vec<&str> = text.split('+').collect();
    let known = archs
        .iter()
        .all(|arch| OS_ARCHITECTURES.contains(arch) || WEB_ARCHITECTURES.contains(arch));
    let sorted = archs.windows(2).all(|pair| pair[0] < pair[1]);
    let servers = archs
        .iter()
        .filter(|arch| OS_ARCHITECTURES.contains(arch))
        .count();
    if known && sorted && servers <= 1 {
        Ok(text)
    } else {
        Err(DdpError::bad_request(format!(
            "{text:.200?} is not a valid `buildArchitectures`: the build's architectures, \
             sorted and joined with `+` without repeats, such as \
             os+web.browser+web.browser.legacy+web.cordova; each is one of {}, {}, and \
             at most one is an os architecture",
            OS_ARCHITECTURES.join(", "),
            WEB_ARCHITECTURES.join(", ")
        )))
    }
}

/// `createPackageBuild({packageName, version, buildArchitectures})` (spec §5.6) →
/// `{uploadUrl, uploadToken}`.
pub async fn create_package_build(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let (spec, name, version) = version_identifier(&params)?;
    let archs = architectures(string_field(&spec, "buildArchitectures")?)?;
    let owner = publishing.clone();
    let answer = publishing
        .as_user(ctx, move |writer, user| {
            let record = maintained_version(writer, user, &name, &version)?;
            let version_id = string_field(&record, "_id")?;
            ensure_no_build(writer, &version_id, &archs, &name, &version)?;
            let (upload, url) = owner.new_upload(
                writer,
                file_key(
                    &name,
                    &version,
                    &format!("{}-{version}-{archs}.tgz", file_name(&name)),
                ),
            )?;
            let pending = json!({"versionId": version_id, "buildArchitectures": archs});
            let token = owner.new_pending(
                writer,
                &Pending {
                    kind: PendingKind::Build,
                    subject: format!("{name}@{version} {archs}"),
                    user_id: user.id.clone(),
                    record: pending.to_string(),
                    uploads: vec![upload],
                    expires: owner.expiry(),
                },
            )?;
            user.record(
                writer,
                "build.create",
                &format!("{name}@{version}"),
                Some(&name),
                json!({"buildArchitectures": archs}),
            )?;
            Ok(json!({"uploadUrl": url, "uploadToken": token}))
        })
        .await?;
    reply(answer)
}

/// Refuses a second build with the same architectures (the conservative choice of spec
/// §5.6).
fn ensure_no_build(
    writer: &mut dyn exosphere_catalog::CatalogWriter,
    version_id: &str,
    archs: &str,
    name: &str,
    version: &str,
) -> Tx<()> {
    for text in writer.find(&Lookup::BuildsOf(version_id))? {
        let build = parse_object(&text)?;
        if build.get("buildArchitectures").and_then(Value::as_str) == Some(archs) {
            return Err(DdpError::new(
                409,
                format!("{name}@{version} already has a build for {archs}"),
            )
            .into());
        }
    }
    Ok(())
}

/// `publishPackageBuild(uploadToken, tarballHash, treeHash)` (spec §5.7).
pub async fn publish_package_build(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let token = string_param(&params, 0, "the upload token")?;
    let tarball_hash = string_param(&params, 1, "tarballHash")?;
    let tree_hash = string_param(&params, 2, "treeHash")?;
    let urls = publishing.clone();
    publishing
        .finish(
            ctx,
            &token,
            PendingKind::Build,
            vec![Some(tarball_hash)],
            move |writer, user, pending, uploads| {
                let pending = parse_object(&pending.record)?;
                let version_id = string_field(&pending, "versionId")?;
                let archs = string_field(&pending, "buildArchitectures")?;
                let tarball = uploads.first().cloned().flatten();
                let tarball = tarball.ok_or_else(|| DdpError::bad_request("The tarball hash is missing"))?;
                let version = writer
                    .get(Collection::Versions, &version_id)?
                    .ok_or_else(|| DdpError::new(404, "The version of this build was deleted"))?;
                let version = parse_object(&version)?;
                let name = string_field(&version, "packageName")?;
                let number = string_field(&version, "version")?;
                maintained_package(writer, user, &name)?;
                ensure_no_build(writer, &version_id, &archs, &name, &number)?;
                let now = now_ms();
                let mut record = Map::new();
                record.insert("_id".into(), random_id().into());
                record.insert("versionId".into(), version_id.into());
                record.insert("buildArchitectures".into(), archs.clone().into());
                record.insert(
                    "build".into(),
                    json!({"url": urls.blob_url(&tarball.key), "tarballHash": tarball.sha256, "treeHash": tree_hash}),
                );
                record.insert("builtBy".into(), person(&user.username, &user.id));
                record.insert("buildPublished".into(), date(now));
                save(writer, Collection::Builds, record, now)?;
                user.record(
                    writer,
                    "build.publish",
                    &format!("{name}@{number}"),
                    Some(&name),
                    json!({"buildArchitectures": archs, "tarballHash": tarball.sha256}),
                )
            },
        )
        .await?;
    Ok(Reply::None)
}

/// `changeVersionMetadata({packageName, version}, {git, description, longDescription})`
/// (spec §5.9).
pub async fn change_version_metadata(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let (_, name, version) = version_identifier(&params)?;
    let data = object_param(&params, 1, "the metadata")?;
    check_fields(&data, METADATA_FIELDS, &[], "the version metadata")?;
    publishing
        .as_user(ctx, move |writer, user| {
            let mut record = maintained_version(writer, user, &name, &version)?;
            let mut changed = Map::new();
            for key in ["git", "description", "longDescription"] {
                if let Some(value) = data.get(key) {
                    record.insert(key.into(), value.clone());
                    changed.insert(key.into(), value.clone());
                }
            }
            save(writer, Collection::Versions, record, now_ms())?;
            let target = format!("{name}@{version}");
            user.record(
                writer,
                "version.metadata",
                &target,
                Some(&name),
                changed.into(),
            )
        })
        .await?;
    Ok(Reply::None)
}

/// `createReadme({packageName, version})` (spec §5.10) → `{url, uploadToken}`.
pub async fn create_readme(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let (_, name, version) = version_identifier(&params)?;
    let owner = publishing.clone();
    let answer = publishing
        .as_user(ctx, move |writer, user| {
            let record = maintained_version(writer, user, &name, &version)?;
            let version_id = string_field(&record, "_id")?;
            let (upload, url) = owner.new_upload(writer, file_key(&name, &version, "README.md"))?;
            let token = owner.new_pending(
                writer,
                &Pending {
                    kind: PendingKind::Readme,
                    subject: format!("{name}@{version}"),
                    user_id: user.id.clone(),
                    record: json!({"versionId": version_id}).to_string(),
                    uploads: vec![upload],
                    expires: owner.expiry(),
                },
            )?;
            Ok(json!({"url": url, "uploadToken": token}))
        })
        .await?;
    reply(answer)
}

/// `publishReadme(uploadToken, {hash})` (spec §5.10): sets the version's `readme`.
pub async fn publish_readme(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let token = string_param(&params, 0, "the upload token")?;
    let hash = string_field(&object_param(&params, 1, "the options")?, "hash")?;
    let urls = publishing.clone();
    publishing
        .finish(
            ctx,
            &token,
            PendingKind::Readme,
            vec![Some(hash)],
            move |writer, user, pending, uploads| {
                let pending = parse_object(&pending.record)?;
                let version_id = string_field(&pending, "versionId")?;
                let readme = uploads.first().cloned().flatten();
                let readme =
                    readme.ok_or_else(|| DdpError::bad_request("The README hash is missing"))?;
                let text = writer
                    .get(Collection::Versions, &version_id)?
                    .ok_or_else(|| DdpError::new(404, "The version of this README was deleted"))?;
                let mut record = parse_object(&text)?;
                let name = string_field(&record, "packageName")?;
                maintained_package(writer, user, &name)?;
                let target = format!("{name}@{}", string_field(&record, "version")?);
                record.insert(
                    "readme".into(),
                    json!({"url": urls.blob_url(&readme.key), "hash": readme.sha256}),
                );
                save(writer, Collection::Versions, record, now_ms())?;
                user.record(
                    writer,
                    "version.readme",
                    &target,
                    Some(&name),
                    json!({"hash": readme.sha256}),
                )
            },
        )
        .await?;
    Ok(Reply::None)
}

/// Encodes a server-built JSON answer.
fn reply(answer: Value) -> Result<Reply, DdpError> {
    Ejson::from_json(answer)
        .map(Reply::Value)
        .map_err(|_| DdpError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use exosphere_blobs::BlobKey;

    #[test]
    fn the_longest_accepted_names_still_make_valid_file_keys() {
        let name = format!("acme:{}", "w".repeat(MAX_NAME_LENGTH - 5));
        let version = format!("1.0.0-{}", "r".repeat(MAX_VERSION_LENGTH - 8));
        let version = format!("{version}_9");
        let name = package_name(name).unwrap();
        let version = version_string(version).unwrap();
        let archs = "os.windows.x86_32+web.browser+web.browser.legacy+web.cordova";
        let archs = architectures(archs.to_owned()).unwrap();
        for file in [
            format!("{}-{version}-source.tgz", file_name(&name)),
            format!("{}-{version}-{archs}.tgz", file_name(&name)),
            "README.md".to_owned(),
        ] {
            let key = file_key(&name, &version, &file);
            assert!(BlobKey::new(&key).is_ok(), "{key} is not a valid blob key");
        }
    }

    #[test]
    fn build_architectures_follow_the_tools_form() {
        for good in [
            "os",
            "web.browser",
            "os+web.browser+web.browser.legacy+web.cordova",
            "os.linux.x86_64+web.browser+web.browser.legacy+web.cordova",
            "os.osx.arm64+web.browser",
            "web.browser+web.cordova",
        ] {
            assert!(architectures(good.to_owned()).is_ok(), "{good} refused");
        }
        for bad in [
            "",
            "+",
            "os+",
            "web.browser+os",
            "os+os",
            "os+os.linux.x86_64",
            "os.linux.x86_64+os.osx.arm64",
            "os.plan9.mips",
            "browser",
            "OS",
            "os web.browser",
            "web.browser.modern",
        ] {
            assert!(architectures(bad.to_owned()).is_err(), "{bad:?} accepted");
        }
        assert!(version_string("1.0.0".to_owned()).is_ok());
        let long = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LENGTH));
        let error = version_string(long).unwrap_err();
        assert!(
            error.reason.as_deref().unwrap_or("").contains("at most 64"),
            "{error:?}"
        );
    }
}
