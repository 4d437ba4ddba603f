//! Who a session is logged in as, and the refusals for sessions that are not (spec §6): the
//! login is kept in the DDP session and checked again in every method's transaction, so a
//! revoked or expired token ends its open sessions too.

use exosphere_catalog::CatalogWriter;
use exosphere_catalog::accounts::User;
use exosphere_ddp::{DdpError, MethodContext};

use super::records::now_ms;
use super::tx::Tx;

/// The 401 the tool treats as "not authorized" (spec §5.8) and unauthenticated calls get.
pub fn not_logged_in() -> DdpError {
    DdpError::new(
        401,
        "You must be logged in: put a token from `exosphere token create` in your \
         ~/.meteorsession (spec §6.4)",
    )
}

/// What Meteor answers a bad resume token; the tool then falls back to its OAuth flow.
/// Also the answer to a call on a session whose token was revoked or expired.
const LOGGED_OUT: &str = "You've been logged out by the server. Please log in again.";

/// The 403 for an unknown, revoked or expired login token.
pub fn logged_out() -> DdpError {
    DdpError::new(403, LOGGED_OUT)
}

/// Who a session is logged in as: the user and the hash of the token it logged in with,
/// so every method can check in its transaction that the token still exists and has not
/// expired (a revoked token ends its open sessions too). Kept in the DDP session's user
/// slot as `<user id>:<token hash>`; only this type writes and reads that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The user's id.
    pub user_id: String,
    /// [`secret_hash`](exosphere_catalog::accounts::secret_hash) of the login token.
    pub token_hash: String,
}

impl Login {
    /// Logs the session in as this login.
    pub fn store(&self, ctx: &MethodContext) {
        ctx.session
            .set_user_id(Some(format!("{}:{}", self.user_id, self.token_hash)));
    }

    /// The session's login, if any.
    fn of(ctx: &MethodContext) -> Option<Login> {
        let text = ctx.session.user_id()?;
        let (user_id, token_hash) = text.split_once(':')?;
        Some(Login {
            user_id: user_id.to_owned(),
            token_hash: token_hash.to_owned(),
        })
    }
}

/// The login of this call's session, or 401.
pub fn session_user(ctx: &MethodContext) -> Result<Login, DdpError> {
    Login::of(ctx).ok_or_else(not_logged_in)
}

/// The user of a session's login, if its token still exists, belongs to that user and has
/// not expired (else 403 as for a bad token, and the method dispatcher logs the session
/// out), and the user still exists (else 401).
pub fn require_user(writer: &mut dyn CatalogWriter, login: &Login) -> Tx<User> {
    let token = writer.accounts().token_by_hash(&login.token_hash)?;
    if !token.is_some_and(|token| token.user_id == login.user_id && token.expires > now_ms()) {
        return Err(logged_out().into());
    }
    Ok(writer
        .accounts()
        .user_by_id(&login.user_id)?
        .ok_or_else(not_logged_in)?)
}
