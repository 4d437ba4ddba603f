//! The `meteor admin` methods of spec §5.13 on packages and tracks: maintainers,
//! homepage and migration status.

use exosphere_catalog::{Collection, Lookup};
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{DdpError, MethodContext, Reply};
use serde_json::{Value, json};

use super::fields::check_homepage;
use super::params::{plain_params, string_param};
use super::publishing::Publishing;
use super::records::{load, now_ms, save};
use super::rules::{maintained_package, maintained_track, owner_named};

/// Which record a maintainer method edits.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A package (`addMaintainer`, `removeMaintainer`).
    Package,
    /// A release track (`addReleaseMaintainer`, `removeReleaseMaintainer`).
    Track,
}

/// `addMaintainer`/`removeMaintainer(package, username)` and the release-track versions:
/// the username may name a user or an organization. The owner of the name's prefix stays
/// a maintainer.
pub async fn change_maintainer(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
    target: Target,
    add: bool,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let name = string_param(&params, 0, "the name")?;
    let username = string_param(&params, 1, "the username")?;
    publishing
        .as_user(ctx, move |writer, user| {
            let (mut record, collection, kind) = match target {
                Target::Package => (
                    maintained_package(writer, user, &name)?,
                    Collection::Packages,
                    "package",
                ),
                Target::Track => (
                    maintained_track(writer, user, &name)?,
                    Collection::ReleaseTracks,
                    "release track",
                ),
            };
            let owner = owner_named(writer, &username)?.ok_or_else(|| {
                DdpError::new(
                    404,
                    format!("There is no user or organization named {username}"),
                )
            })?;
            let mut maintainers = record
                .get("maintainers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let listed = maintainers
                .iter()
                .position(|entry| entry.get("id").and_then(Value::as_str) == Some(owner.id()));
            match (add, listed) {
                (true, Some(_)) => return Ok(()),
                (true, None) => maintainers.push(owner.entry()),
                (false, None) => {
                    return Err(DdpError::bad_request(format!(
                        "{username} is not a maintainer of {name}"
                    ))
                    .into());
                }
                (false, Some(index)) => {
                    if name
                        .split_once(':')
                        .is_some_and(|(prefix, _)| prefix == username)
                    {
                        return Err(DdpError::new(
                            403,
                            format!(
                                "You cannot remove the maintainer in the package name prefix: \
                                 {username} owns {username}:"
                            ),
                        )
                        .into());
                    }
                    maintainers.remove(index);
                }
            }
            record.insert("maintainers".into(), maintainers.into());
            save(writer, collection, record, now_ms())?;
            let action = if add {
                "maintainer.add"
            } else {
                "maintainer.remove"
            };
            let detail = json!({"maintainer": username, "of": kind});
            user.record(writer, action, &name, Some(&name), detail)
        })
        .await?;
    Ok(Reply::None)
}

/// `_changePackageHomepage(package, url)`: an `http`/`https` URL, or `""` for none.
pub async fn change_homepage(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let name = string_param(&params, 0, "the package name")?;
    let url = string_param(&params, 1, "the homepage")?;
    check_homepage(&url)?;
    publishing
        .as_user(ctx, move |writer, user| {
            let mut record = maintained_package(writer, user, &name)?;
            record.insert("homepage".into(), url.clone().into());
            save(writer, Collection::Packages, record, now_ms())?;
            let detail = json!({"homepage": url});
            user.record(writer, "package.homepage", &name, Some(&name), detail)
        })
        .await?;
    Ok(Reply::None)
}

/// `_changeVersionMigrationStatus(package, version, unmigrated)`: the third parameter is
/// the new value of `unmigrated`.
pub async fn change_migration_status(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let name = string_param(&params, 0, "the package name")?;
    let version = string_param(&params, 1, "the version")?;
    let unmigrated = params
        .get(2)
        .and_then(Value::as_bool)
        .ok_or_else(|| DdpError::bad_request("unmigrated must be true or false"))?;
    publishing
        .as_user(ctx, move |writer, user| {
            maintained_package(writer, user, &name)?;
            let mut record = load(
                writer,
                &Lookup::Version {
                    package: &name,
                    version: &version,
                },
            )?
            .ok_or_else(|| DdpError::new(404, format!("{name}@{version} is not published")))?;
            record.insert("unmigrated".into(), unmigrated.into());
            save(writer, Collection::Versions, record, now_ms())?;
            let target = format!("{name}@{version}");
            let detail = json!({"unmigrated": unmigrated});
            user.record(writer, "version.migration", &target, Some(&name), detail)
        })
        .await?;
    Ok(Reply::None)
}
