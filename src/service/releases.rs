//! Release publishing (spec §5.12) and the release admin commands of §5.13: tracks,
//! release versions, patch releases, recommendations and banners.

use exosphere_catalog::mirror::Claim;
use exosphere_catalog::{CatalogWriter, Collection, Lookup};
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{DdpError, MethodContext, Reply, random_id};
use exosphere_meteor::names::is_track_name;
use serde_json::{Map, Value, json};

use super::audit::Caller;
use super::fields::{MAX_BANNER_TEXT, RELEASE_FIELDS, check_fields};
use super::params::{
    MAX_NAME_LENGTH, check_length, object_param, plain_params, string_field, string_param,
};
use super::publishing::Publishing;
use super::records::{date, load, now_ms, person, save};
use super::rules::{creation_maintainers, maintained_track};
use super::tx::Tx;

/// Longest release version accepted; Meteor sets no limit, and release versions name no
/// files, so this only bounds what a record may hold.
const MAX_RELEASE_VERSION_LENGTH: usize = 100;

/// A release track name: like a package name, but upper case is allowed (`METEOR`).
fn track_name(name: String) -> Result<String, DdpError> {
    check_length("release track name", &name, MAX_NAME_LENGTH)?;
    if is_track_name(&name) {
        Ok(name)
    } else {
        Err(DdpError::bad_request(format!(
            "{name:?} is not a valid release track name: use letters, digits, `.`, `-` and \
             one `:` after the prefix"
        )))
    }
}

/// A release version string (free-form in Meteor, e.g. `3.0.4` or `1.2-rc.1`), kept to
/// printable characters.
fn release_version(version: String) -> Result<String, DdpError> {
    check_length("release version", &version, MAX_RELEASE_VERSION_LENGTH)?;
    let valid = !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if valid {
        Ok(version)
    } else {
        Err(DdpError::bad_request(format!(
            "{version:?} is not a valid release version"
        )))
    }
}

/// `createReleaseTrack({name})` (spec §5.12 step 3).
pub async fn create_release_track(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let name = track_name(string_field(
        &object_param(&params, 0, "the track spec")?,
        "name",
    )?)?;
    publishing
        .as_user(ctx, move |writer, user| {
            if load(writer, &Lookup::ReleaseTrack(&name))?.is_some() {
                return Err(
                    DdpError::new(409, format!("Release track {name} already exists")).into(),
                );
            }
            let maintainers = creation_maintainers(writer, user, &name)?;
            let mut record = Map::new();
            record.insert("_id".into(), random_id().into());
            record.insert("name".into(), name.clone().into());
            record.insert("maintainers".into(), maintainers.clone().into());
            save(writer, Collection::ReleaseTracks, record, now_ms())?;
            // A name made here is this server's: a mirror serves no upstream record of it.
            writer.mirror().claim(&Claim::Track(name.clone()))?;
            let detail = json!({"maintainers": maintainers});
            user.record(writer, "release.track.create", &name, Some(&name), detail)
        })
        .await?;
    Ok(Reply::None)
}

/// The checked fields of a release record (spec §5.12 step 4).
struct ReleaseInput {
    track: String,
    version: String,
    record: Map<String, Value>,
    tool: (String, String),
    packages: Vec<(String, String)>,
}

fn release_input(input: Map<String, Value>) -> Result<ReleaseInput, DdpError> {
    check_fields(&input, RELEASE_FIELDS, &[], "a release record")?;
    let track = track_name(string_field(&input, "track")?)?;
    let version = release_version(string_field(&input, "version")?)?;
    let description = string_field(&input, "description")?;
    let recommended = input
        .get("recommended")
        .and_then(Value::as_bool)
        .ok_or_else(|| DdpError::bad_request("`recommended` must be true or false"))?;
    let order_key = match input.get("orderKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(key.clone()),
        Some(_) => return Err(DdpError::bad_request("`orderKey` must be a string")),
    };
    if recommended && order_key.is_none() {
        return Err(DdpError::bad_request(
            "A recommended release needs an `orderKey`",
        ));
    }
    let tool_text = string_field(&input, "tool")?;
    let tool = tool_text
        .split_once('@')
        .map(|(name, version)| (name.to_owned(), version.to_owned()))
        .ok_or_else(|| DdpError::bad_request("`tool` must be `<package>@<version>`"))?;
    let packages = input
        .get("packages")
        .and_then(Value::as_object)
        .ok_or_else(|| DdpError::bad_request("`packages` must be an object of name → version"))?;
    let mut pinned = Vec::new();
    for (name, version) in packages {
        let version = version.as_str().ok_or_else(|| {
            DdpError::bad_request(format!("the version of {name} must be a string"))
        })?;
        pinned.push((name.clone(), version.to_owned()));
    }
    let mut record = Map::new();
    record.insert("track".into(), track.clone().into());
    record.insert("version".into(), version.clone().into());
    if let Some(key) = order_key {
        record.insert("orderKey".into(), key.into());
    }
    record.insert("description".into(), description.into());
    record.insert("recommended".into(), recommended.into());
    record.insert("tool".into(), tool_text.into());
    record.insert("packages".into(), Value::Object(packages.clone()));
    Ok(ReleaseInput {
        track,
        version,
        record,
        tool,
        packages: pinned,
    })
}

/// Writes a new release version after checking the track, the tool and every package
/// version it names; returns the track name for patch bookkeeping.
fn insert_release(writer: &mut dyn CatalogWriter, user: &Caller, input: &ReleaseInput) -> Tx<()> {
    maintained_track(writer, user, &input.track)?;
    let key = Lookup::ReleaseVersion {
        track: &input.track,
        version: &input.version,
    };
    if load(writer, &key)?.is_some() {
        return Err(DdpError::new(
            409,
            format!("Release {}@{} already exists", input.track, input.version),
        )
        .into());
    }
    let mut missing = Vec::new();
    for (name, version) in std::iter::once(&input.tool).chain(&input.packages) {
        let found = load(
            writer,
            &Lookup::Version {
                package: name,
                version,
            },
        )?;
        if found.is_none() {
            missing.push(format!("{name}@{version}"));
        }
    }
    if !missing.is_empty() {
        return Err(DdpError::bad_request(format!(
            "The release names package versions that are not published: {}",
            missing.join(", ")
        ))
        .into());
    }
    let now = now_ms();
    let mut record = Map::new();
    record.insert("_id".into(), random_id().into());
    record.extend(input.record.clone());
    record.insert("publishedBy".into(), person(&user.username, &user.id));
    record.insert("published".into(), date(now));
    save(writer, Collection::ReleaseVersions, record, now)?;
    let target = format!("{}@{}", input.track, input.version);
    let detail = json!({"tool": format!("{}@{}", input.tool.0, input.tool.1), "packages": input.packages.len()});
    user.record(
        writer,
        "release.create",
        &target,
        Some(&input.track),
        detail,
    )
}

/// `createReleaseVersion(record)` (spec §5.12).
pub async fn create_release_version(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let input = release_input(object_param(&params, 0, "the release record")?)?;
    publishing
        .as_user(ctx, move |writer, user| {
            insert_release(writer, user, &input)
        })
        .await?;
    Ok(Reply::None)
}

/// `createPatchReleaseVersion(record, patchFrom)` (spec §5.12): the new release, and on
/// each release it patches `recommended: false` and `patchReleaseVersion`.
pub async fn create_patch_release_version(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let input = release_input(object_param(&params, 0, "the release record")?)?;
    let patch_from: Vec<String> = params
        .get(1)
        .and_then(Value::as_array)
        .and_then(|versions| {
            versions
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .ok_or_else(|| DdpError::bad_request("patchFrom must be an array of version strings"))?;
    publishing
        .as_user(ctx, move |writer, user| {
            insert_release(writer, user, &input)?;
            let now = now_ms();
            for old in &patch_from {
                let key = Lookup::ReleaseVersion {
                    track: &input.track,
                    version: old,
                };
                let mut record = load(writer, &key)?.ok_or_else(|| {
                    DdpError::bad_request(format!(
                        "patchFrom names {}@{old}, which does not exist",
                        input.track
                    ))
                })?;
                record.insert("recommended".into(), false.into());
                record.insert("patchReleaseVersion".into(), input.version.clone().into());
                save(writer, Collection::ReleaseVersions, record, now)?;
            }
            let target = format!("{}@{}", input.track, input.version);
            let detail = json!({"patchFrom": patch_from});
            user.record(writer, "release.patch", &target, Some(&input.track), detail)
        })
        .await?;
    Ok(Reply::None)
}

/// `recommendVersion(track, version)` / `unrecommendVersion(track, version)` (spec §5.13).
pub async fn set_recommended(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
    recommended: bool,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let track = string_param(&params, 0, "the track")?;
    let version = string_param(&params, 1, "the version")?;
    publishing
        .as_user(ctx, move |writer, user| {
            maintained_track(writer, user, &track)?;
            let mut record = load(
                writer,
                &Lookup::ReleaseVersion {
                    track: &track,
                    version: &version,
                },
            )?
            .ok_or_else(|| DdpError::new(404, format!("There is no release {track}@{version}")))?;
            if recommended && !record.get("orderKey").is_some_and(Value::is_string) {
                return Err(DdpError::bad_request(format!(
                    "{track}@{version} has no orderKey, so it cannot be recommended"
                ))
                .into());
            }
            record.insert("recommended".into(), recommended.into());
            save(writer, Collection::ReleaseVersions, record, now_ms())?;
            let action = if recommended {
                "release.recommend"
            } else {
                "release.unrecommend"
            };
            let target = format!("{track}@{version}");
            user.record(writer, action, &target, Some(&track), json!({}))
        })
        .await?;
    Ok(Reply::None)
}

/// `setBannersOnReleases(track, [{versions, banner: {text}}])` (spec §5.13): each listed
/// release gets `banner: {text, lastUpdated: now}` (the tool re-shows a banner whose
/// `lastUpdated` is newer than the one it showed).
pub async fn set_banners(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let track = string_param(&params, 0, "the track")?;
    let mut banners = Vec::new();
    for entry in params
        .get(1)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = entry
            .get("banner")
            .and_then(|banner| banner.get("text"))
            .ok_or_else(|| DdpError::bad_request("each banner needs `banner.text`"))?;
        let text = super::fields::text("banner.text", text, MAX_BANNER_TEXT)?;
        let versions = entry
            .get("versions")
            .and_then(Value::as_array)
            .ok_or_else(|| DdpError::bad_request("each banner needs `versions`"))?;
        for version in versions {
            let version = version
                .as_str()
                .ok_or_else(|| DdpError::bad_request("banner versions must be strings"))?;
            banners.push((version.to_owned(), text.to_owned()));
        }
    }
    if params.get(1).and_then(Value::as_array).is_none() {
        return Err(DdpError::bad_request(
            "banners must be an array of {versions, banner}",
        ));
    }
    publishing
        .as_user(ctx, move |writer, user| {
            maintained_track(writer, user, &track)?;
            let now = now_ms();
            for (version, text) in &banners {
                let mut record = load(
                    writer,
                    &Lookup::ReleaseVersion {
                        track: &track,
                        version,
                    },
                )?
                .ok_or_else(|| {
                    DdpError::new(404, format!("There is no release {track}@{version}"))
                })?;
                record.insert(
                    "banner".into(),
                    json!({"text": text, "lastUpdated": date(now)}),
                );
                save(writer, Collection::ReleaseVersions, record, now)?;
                let target = format!("{track}@{version}");
                let detail = json!({"banner": text});
                user.record(writer, "release.banner", &target, Some(&track), detail)?;
            }
            Ok(())
        })
        .await?;
    Ok(Reply::None)
}
