//! Logging in (spec §6.2): DDP `login` with `{resume: token}`, where the token comes from
//! `exosphere token create`, and the authorization pre-checks of spec §5.8.

use std::net::IpAddr;
use std::sync::Arc;

use exosphere_catalog::Lookup;
use exosphere_catalog::accounts::{Token, User, secret_hash};
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{DdpError, MethodContext, Reply};
use serde_json::{Value, json};

use super::audit::{Action, address, record};
use super::login::{Login, logged_out};
use super::params::{plain_params, string_param};
use super::publishing::Publishing;
use super::records::{date, load, now_ms};
use super::rules::maintains;

/// `login([{resume: token}])` → `{id, token, tokenExpires}`; the session is logged in as
/// the token's user from then on, while the token lasts (every method checks it again).
/// Any other login form, an unknown, revoked or expired token: 403 with Meteor's "logged
/// out" reason. Every login and failed login is in the audit log, and failed ones are
/// limited per address and per account ([`LoginThrottle`]): over a limit, `too-many-requests`.
pub async fn login(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let Some(token) = params
        .first()
        .and_then(|options| options.get("resume"))
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(DdpError::new(
            403,
            "This server only accepts resume tokens made with `exosphere token create` \
             (see spec §6.4); password and OAuth logins are not supported",
        ));
    };
    let ip = ctx.session.remote_addr.map(|addr| addr.ip());
    let throttle = Arc::clone(&publishing.login_throttle);
    if let Err(refusal) = throttle.admit(ip, None) {
        tracing::warn!(address = %shown(ip), "refused a login: too many failed logins from this address");
        ctx.session.set_user_id(None);
        return Err(refusal);
    }
    let hash = secret_hash(&token);
    let address = address(ctx);
    let outcome = publishing
        .transact(move |writer| {
            let stored = writer.accounts().token_by_hash(&hash)?;
            let user = match &stored {
                Some(stored) => writer.accounts().user_by_id(&stored.user_id)?,
                None => None,
            };
            let (outcome, actor) = match (stored, user) {
                (Some(stored), Some(user)) if stored.expires > now_ms() => {
                    match throttle.admit(None, Some(&user.id)) {
                        Ok(()) => (Outcome::In(user.clone(), stored), user.username),
                        Err(refusal) => (Outcome::Locked(refusal), user.username),
                    }
                }
                (Some(_), Some(user)) => {
                    throttle.fail(ip, Some(&user.id));
                    (Outcome::Failed("expired token"), user.username)
                }
                _ => {
                    throttle.fail(ip, None);
                    (
                        Outcome::Failed("unknown or revoked token"),
                        "anonymous".to_owned(),
                    )
                }
            };
            let (action, detail) = match &outcome {
                Outcome::In(_, stored) => ("login", json!({"token": stored.id})),
                Outcome::Failed(reason) => ("login.failed", json!({"reason": reason})),
                Outcome::Locked(_) => (
                    "login.failed",
                    json!({"reason": "too many failed logins for this account"}),
                ),
            };
            let what = Action {
                action,
                target: &actor,
                package: None,
                detail,
            };
            record(writer, &actor, address.clone(), what)?;
            Ok((outcome, actor))
        })
        .await?;
    let (user, stored) = match outcome {
        (Outcome::In(user, stored), _) => (user, stored),
        (Outcome::Failed(reason), actor) => {
            tracing::warn!(address = %shown(ip), user = %actor, reason, "failed login");
            ctx.session.set_user_id(None);
            return Err(logged_out());
        }
        (Outcome::Locked(refusal), actor) => {
            tracing::warn!(address = %shown(ip), user = %actor, "refused a login: too many failed logins for this account");
            ctx.session.set_user_id(None);
            return Err(refusal);
        }
    };
    tracing::info!(user = %user.username, token = %stored.id, "logged in");
    Login {
        user_id: user.id.clone(),
        token_hash: stored.hash,
    }
    .store(ctx);
    let expires = stored.expires;
    let answer = json!({"id": user.id, "token": token, "tokenExpires": date(expires)});
    Ejson::from_json(answer)
        .map(Reply::Value)
        .map_err(|_| DdpError::internal())
}

/// A client address for the log: the address, or `unknown` for a transport without one.
fn shown(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// How a login attempt ended, as decided in its transaction.
enum Outcome {
    /// Logged in as this user with this token.
    In(User, Token),
    /// The token was unknown, revoked or expired, for this reason.
    Failed(&'static str),
    /// The token was good, but its account has used up its failed logins: this refusal.
    Locked(DdpError),
}

/// `logout()`: the session forgets its login (the token itself stays valid).
pub async fn logout(ctx: &MethodContext) -> Result<Reply, DdpError> {
    ctx.session.set_user_id(None);
    Ok(Reply::None)
}

/// `amIAuthorizedPackage(name)` / `amIAuthorizedRelease(track)` (spec §5.8): `true`, or
/// the numeric 401 the tool tests for.
pub async fn am_i_authorized(
    publishing: &Publishing,
    ctx: &MethodContext,
    params: Vec<Ejson>,
    release: bool,
) -> Result<Reply, DdpError> {
    let params = plain_params(params);
    let name = string_param(&params, 0, "the name")?;
    let what = if release { "release track" } else { "package" };
    let refusal = DdpError::new(
        401,
        format!("You are not an authorized maintainer of {what} {name}"),
    );
    let authorized = publishing
        .as_user(ctx, move |writer, user| {
            let key = if release {
                Lookup::ReleaseTrack(&name)
            } else {
                Lookup::Package(&name)
            };
            match load(writer, &key)? {
                Some(record) => maintains(writer, user, &record),
                None => Ok(false),
            }
        })
        .await?;
    if authorized {
        Ok(Reply::Value(Ejson::Bool(true)))
    } else {
        Err(refusal)
    }
}
