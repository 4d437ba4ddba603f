//! Logging in (spec §6.2): DDP `login` with `{resume: token}`, where the token comes from
//! `exosphere token create`, and the authorization pre-checks of spec §5.8.

use exosphere_catalog::Lookup;
use exosphere_catalog::accounts::secret_hash;
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{DdpError, MethodContext, Reply};
use serde_json::{Value, json};

use super::login::{Login, logged_out};
use super::params::{plain_params, string_param};
use super::publishing::Publishing;
use super::records::{date, load, now_ms};
use super::rules::maintains;

/// `login([{resume: token}])` → `{id, token, tokenExpires}`; the session is logged in as
/// the token's user from then on, while the token lasts (every method checks it again).
/// Any other login form, an unknown, revoked or expired token: 403 with Meteor's "logged
/// out" reason.
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
    let hash = secret_hash(&token);
    let found = publishing
        .transact(move |writer| {
            let Some(stored) = writer.accounts().token_by_hash(&hash)? else {
                return Ok(None);
            };
            if stored.expires <= now_ms() {
                return Ok(None);
            }
            let user = writer.accounts().user_by_id(&stored.user_id)?;
            Ok(user.map(|user| (user, stored)))
        })
        .await?;
    let Some((user, stored)) = found else {
        ctx.session.set_user_id(None);
        return Err(logged_out());
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
