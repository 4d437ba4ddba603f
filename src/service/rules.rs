//! The permission rules of spec §5.0: who owns a name's prefix, who may create a package or
//! release track, and who maintains an existing one.

use exosphere_catalog::accounts::{Org, User};
use exosphere_catalog::{CatalogWriter, Lookup};
use exosphere_ddp::DdpError;
use serde_json::{Map, Value, json};

use super::records::{load, person};
use super::tx::Tx;

/// The refusal for someone who is not a maintainer (the reason text the tool's tests saw).
pub fn not_maintainer(what: &str) -> DdpError {
    DdpError::new(
        403,
        format!("You are not an authorized maintainer of {what}"),
    )
}

/// Who owns the prefix of a `prefix:name`: the user or organization of that name.
pub enum Owner {
    /// A user owns it.
    User(User),
    /// An organization owns it.
    Org(Org),
}

impl Owner {
    /// The `maintainers` entry for this owner (organizations are marked as real data does).
    pub fn entry(&self) -> Value {
        match self {
            Owner::User(user) => person(&user.username, &user.id),
            Owner::Org(org) => {
                json!({ "username": org.name, "id": org.id, "isOrganization": true })
            }
        }
    }

    /// The owner's id.
    pub fn id(&self) -> &str {
        match self {
            Owner::User(user) => &user.id,
            Owner::Org(org) => &org.id,
        }
    }
}

/// The user or organization called `name`.
pub fn owner_named(writer: &mut dyn CatalogWriter, name: &str) -> Tx<Option<Owner>> {
    if let Some(user) = writer.accounts().user_by_name(name)? {
        return Ok(Some(Owner::User(user)));
    }
    Ok(writer.accounts().org_by_name(name)?.map(Owner::Org))
}

/// Checks that `user` may create a package or track called `name` (spec §5.0): the owner
/// of its prefix or a member of that organization, and only administrators for names
/// without a prefix. Returns the `maintainers` list the new record starts with.
pub fn creation_maintainers(
    writer: &mut dyn CatalogWriter,
    user: &User,
    name: &str,
) -> Tx<Vec<Value>> {
    let creator = person(&user.username, &user.id);
    let Some((prefix, _)) = name.split_once(':') else {
        if user.admin {
            return Ok(vec![creator]);
        }
        return Err(DdpError::new(
            403,
            format!(
                "Only administrators may create names without a prefix; name it \
                 {}:{name} instead",
                user.username
            ),
        )
        .into());
    };
    let owner = owner_named(writer, prefix)?;
    let allowed = match &owner {
        Some(Owner::User(owner)) => owner.id == user.id || user.admin,
        Some(Owner::Org(org)) => {
            user.admin || writer.accounts().is_org_member(&org.id, &user.id)?
        }
        None => user.admin,
    };
    if !allowed {
        return Err(DdpError::new(
            403,
            format!(
                "You are not an authorized maintainer of the prefix {prefix}: (only {prefix} \
                 or members of the organization {prefix} may use it)"
            ),
        )
        .into());
    }
    let mut maintainers = Vec::new();
    if let Some(owner) = &owner {
        maintainers.push(owner.entry());
    }
    if owner.as_ref().is_none_or(|owner| owner.id() != user.id) {
        maintainers.push(creator);
    }
    Ok(maintainers)
}

/// Whether `user` maintains a record with this `maintainers` list: an administrator, a
/// listed user, or a member of a listed organization.
pub fn maintains(
    writer: &mut dyn CatalogWriter,
    user: &User,
    record: &Map<String, Value>,
) -> Tx<bool> {
    if user.admin {
        return Ok(true);
    }
    let Some(maintainers) = record.get("maintainers").and_then(Value::as_array) else {
        return Ok(false);
    };
    for entry in maintainers {
        let Some(id) = entry.get("id").and_then(Value::as_str) else {
            continue;
        };
        if id == user.id || writer.accounts().is_org_member(id, &user.id)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The published package called `name`, for a user who must maintain it.
pub fn maintained_package(
    writer: &mut dyn CatalogWriter,
    user: &User,
    name: &str,
) -> Tx<Map<String, Value>> {
    let package = load(writer, &Lookup::Package(name))?
        .ok_or_else(|| DdpError::new(404, format!("There is no package named {name}")))?;
    if !maintains(writer, user, &package)? {
        return Err(not_maintainer(&format!("package {name}")).into());
    }
    Ok(package)
}

/// The release track called `name`, for a user who must maintain it.
pub fn maintained_track(
    writer: &mut dyn CatalogWriter,
    user: &User,
    name: &str,
) -> Tx<Map<String, Value>> {
    let track = load(writer, &Lookup::ReleaseTrack(name))?
        .ok_or_else(|| DdpError::new(404, format!("There is no release track named {name}")))?;
    if !maintains(writer, user, &track)? {
        return Err(not_maintainer(&format!("release track {name}")).into());
    }
    Ok(track)
}
