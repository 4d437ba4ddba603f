//! `exosphere user`, `org` and `token`: the accounts behind publishing (spec §5.0, §6.4),
//! written straight into the catalog database, so they work while a server runs.

use anyhow::bail;
use exosphere_catalog::accounts::{Org, Token, User, secret_hash};
use exosphere_catalog::{CatalogWriter, Refusal, StoreError, write_or_refuse};
use exosphere_ddp::random_id;
use exosphere_meteor::names::is_package_name;
use serde_json::json;

use crate::cli::{DataDirArg, OrgCommand, TokenCommand, UserCommand};
use crate::commands::audit::record;
use crate::commands::open_catalog;
use crate::service::secrets::new_secret;

/// Runs one write transaction whose body may refuse with a message of its own.
fn transact<T>(
    dirs: &DataDirArg,
    body: impl FnMut(&mut dyn CatalogWriter) -> Result<T, Refusal<String>>,
) -> anyhow::Result<T> {
    let store = open_catalog(dirs)?;
    Ok(write_or_refuse(&*store, body)?)
}

/// A user or organization name must be a package-name prefix.
fn check_name(name: &str) -> anyhow::Result<()> {
    if is_package_name(name) && !name.contains(':') {
        Ok(())
    } else {
        bail!(
            "{name:?} cannot be a package-name prefix: use lowercase letters, digits, `.` and \
             `-`, with at least one letter"
        )
    }
}

/// Whether a user or an organization already has `name`.
fn name_taken(writer: &mut dyn CatalogWriter, name: &str) -> Result<bool, StoreError> {
    Ok(writer.accounts().user_by_name(name)?.is_some()
        || writer.accounts().org_by_name(name)?.is_some())
}

/// `exosphere user add|list`.
pub fn run_user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add(args) => {
            check_name(&args.name)?;
            let user = User {
                id: random_id(),
                username: args.name.clone(),
                admin: args.admin,
            };
            transact(&args.data_dir, |writer| {
                if name_taken(writer, &user.username)? {
                    return Err(Refusal::Refused(format!(
                        "the name {} is already taken",
                        user.username
                    )));
                }
                writer.accounts().insert_user(&user)?;
                let detail = json!({"id": user.id, "admin": user.admin});
                Ok(record(writer, "user.add", &user.username, None, detail)?)
            })?;
            let role = if user.admin { " (administrator)" } else { "" };
            println!("added user {} with id {}{role}", user.username, user.id);
        }
        UserCommand::List(args) => {
            let users = transact(&args.data_dir, |writer| Ok(writer.accounts().users()?))?;
            for user in users {
                let role = if user.admin { "admin" } else { "user" };
                println!("{}\t{}\t{role}", user.username, user.id);
            }
        }
    }
    Ok(())
}

/// `exosphere org add`.
pub fn run_org(command: OrgCommand) -> anyhow::Result<()> {
    let OrgCommand::Add(args) = command;
    check_name(&args.name)?;
    let members = transact(&args.data_dir, |writer| {
        let org = match writer.accounts().org_by_name(&args.name)? {
            Some(org) => org,
            None if writer.accounts().user_by_name(&args.name)?.is_some() => {
                return Err(Refusal::Refused(format!(
                    "the name {} is already a user's",
                    args.name
                )));
            }
            None => {
                let org = Org {
                    id: random_id(),
                    name: args.name.clone(),
                };
                writer.accounts().insert_org(&org)?;
                record(writer, "org.add", &org.name, None, json!({"id": org.id}))?;
                org
            }
        };
        for member in &args.members {
            let Some(user) = writer.accounts().user_by_name(member)? else {
                return Err(Refusal::Refused(format!("there is no user named {member}")));
            };
            if !writer.accounts().is_org_member(&org.id, &user.id)? {
                writer.accounts().add_org_member(&org.id, &user.id)?;
                record(
                    writer,
                    "org.member.add",
                    &org.name,
                    None,
                    json!({"member": member}),
                )?;
            }
        }
        Ok(writer.accounts().org_members(&org.id)?)
    })?;
    println!("organization {}: members {}", args.name, members.join(", "));
    Ok(())
}

/// `exosphere token create|list|revoke`.
pub fn run_token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            let host = session_host(&args.public_url)?;
            let secret = new_secret();
            let now = chrono::Utc::now().timestamp_millis();
            let user = transact(&args.data_dir, |writer| {
                let Some(user) = writer.accounts().user_by_name(&args.user)? else {
                    return Err(Refusal::Refused(format!(
                        "there is no user named {}; add one with `exosphere user add`",
                        args.user
                    )));
                };
                let token = Token {
                    id: random_id(),
                    hash: secret_hash(&secret),
                    user_id: user.id.clone(),
                    created: now,
                    expires: now + i64::from(args.days) * 86_400_000,
                };
                writer.accounts().insert_token(&token)?;
                let detail = json!({"user": user.username, "days": args.days});
                record(writer, "token.create", &token.id, None, detail)?;
                Ok(user)
            })?;
            let session = json!({"sessions": {
                "www.meteor.com": {"type": "meteor-account", "username": user.username, "userId": user.id},
                host: {"type": "package-server", "token": secret},
            }});
            println!("{secret}");
            println!("{session}");
        }
        TokenCommand::List(args) => {
            let tokens = transact(&args.data_dir, |writer| {
                let user_id = match &args.user {
                    None => None,
                    Some(name) => match writer.accounts().user_by_name(name)? {
                        Some(user) => Some(user.id),
                        None => {
                            return Err(Refusal::Refused(format!("there is no user named {name}")));
                        }
                    },
                };
                let mut listed = Vec::new();
                for token in writer.accounts().tokens(user_id.as_deref())? {
                    let name = writer
                        .accounts()
                        .user_by_id(&token.user_id)?
                        .map_or_else(|| "<deleted>".to_owned(), |user| user.username);
                    listed.push((token, name));
                }
                Ok(listed)
            })?;
            for (token, name) in tokens {
                println!(
                    "{}\t{name}\tcreated {}\texpires {}",
                    token.id,
                    day(token.created),
                    day(token.expires)
                );
            }
        }
        TokenCommand::Revoke(args) => {
            let withdrawn = transact(&args.data_dir, |writer| {
                let withdrawn = writer.accounts().revoke_token(&args.id)?.ok_or_else(|| {
                    Refusal::Refused(format!(
                        "there is no token with id {}; `exosphere token list` shows them",
                        args.id
                    ))
                })?;
                let detail = json!({"withdrawnPublishes": withdrawn});
                record(writer, "token.revoke", &args.id, None, detail)?;
                Ok(withdrawn)
            })?;
            println!("revoked token {}", args.id);
            if withdrawn > 0 {
                println!(
                    "withdrew {withdrawn} unfinished publish(es) of its user: their upload \
                     URLs no longer take files; the user publishes again"
                );
            }
        }
    }
    Ok(())
}

/// The key the `meteor` tool files a server's session under (spec §0.2): what Node's
/// `url.parse(url).host` gives, the authority without user info, lowercased, with the
/// port only when the URL spells one out (even the scheme's default).
fn session_host(url: &str) -> anyhow::Result<String> {
    let scheme_end = url.find("://").unwrap_or(0);
    let scheme = url[..scheme_end].to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        bail!("{url:?} is not an http:// or https:// URL");
    }
    let rest = &url[scheme_end + 3..];
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        bail!("{url:?} has no host");
    }
    Ok(host.to_ascii_lowercase())
}

/// A stored ms timestamp as a UTC date and time for listings.
fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |time| time.format("%Y-%m-%d %H:%M").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_key_is_host_and_port() {
        assert_eq!(
            session_host("http://localhost:3000").unwrap(),
            "localhost:3000"
        );
        assert_eq!(
            session_host("https://packages.example.com/").unwrap(),
            "packages.example.com"
        );
        assert_eq!(
            session_host("HTTPS://user:pw@Packages.Example.COM:443/x?y").unwrap(),
            "packages.example.com:443"
        );
        assert_eq!(
            session_host("http://Pkgs.Example.com?q#f").unwrap(),
            "pkgs.example.com"
        );
        assert_eq!(session_host("http://[::1]:3000/").unwrap(), "[::1]:3000");
        assert!(session_host("ftp://x").is_err());
        assert!(session_host("localhost:3000").is_err());
        assert!(session_host("http://user@:80/").is_err());
        assert!(session_host("http://").is_err());
    }
}
