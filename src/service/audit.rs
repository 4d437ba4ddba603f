//! Audit entries of the DDP methods: who called (the session's user), from which client
//! address, what they did and to what, written in the method's own transaction
//! ([`exosphere_catalog::audit`]), so a change that rolled back leaves no entry.

use std::ops::Deref;

use exosphere_catalog::CatalogWriter;
use exosphere_catalog::accounts::User;
use exosphere_catalog::audit::AuditEntry;
use exosphere_ddp::MethodContext;
use serde_json::Value;

use super::records::now_ms;
use super::tx::Tx;

/// The logged-in user of a method call and the client address it came from: what every
/// method body gets, so the entries it writes say who and from where. Derefs to the
/// [`User`], which is what the permission rules look at.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The session's user, checked in this transaction.
    pub user: User,
    /// The client address of the session, if the transport knows it.
    pub address: Option<String>,
}

impl Deref for Caller {
    type Target = User;

    fn deref(&self) -> &User {
        &self.user
    }
}

impl Caller {
    /// Records that this caller did `action` to `target` (about `package`, a package or
    /// release track name, when there is one), with `detail`.
    pub fn record(
        &self,
        writer: &mut dyn CatalogWriter,
        action: &str,
        target: &str,
        package: Option<&str>,
        detail: Value,
    ) -> Tx<()> {
        record(
            writer,
            &self.user.username,
            self.address.clone(),
            Action {
                action,
                target,
                package,
                detail,
            },
        )
    }
}

/// What an entry says was done: the action, its target and package, and particulars.
pub struct Action<'a> {
    /// The action's dotted name.
    pub action: &'a str,
    /// What it was done to.
    pub target: &'a str,
    /// The package or release track concerned, if any.
    pub package: Option<&'a str>,
    /// Particulars, a small JSON object.
    pub detail: Value,
}

/// The client address of a method call's session, as the audit log keeps it.
pub fn address(ctx: &MethodContext) -> Option<String> {
    ctx.session.remote_addr.map(|addr| addr.ip().to_string())
}

/// Records `what`, done now by `actor` from `address`: for callers without a checked
/// login (logging in), where there is no [`Caller`] yet.
pub fn record(
    writer: &mut dyn CatalogWriter,
    actor: &str,
    address: Option<String>,
    what: Action<'_>,
) -> Tx<()> {
    writer.audit(&AuditEntry {
        time: now_ms(),
        actor: actor.to_owned(),
        address,
        action: what.action.to_owned(),
        target: what.target.to_owned(),
        package: what.package.map(str::to_owned),
        detail: what.detail,
    })?;
    Ok(())
}
