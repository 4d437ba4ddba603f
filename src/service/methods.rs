//! The publishing methods of spec Appendix A by name: one table maps each name to its
//! handler in a method family (`auth`, `packages`, `releases`, `admin`), and whether a
//! method is a publishing method at all is read from the same table.

use std::future::Future;
use std::pin::Pin;

use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{DdpError, MethodContext, Reply};

use super::admin::{self, Target};
use super::login::logged_out;
use super::publishing::Publishing;
use super::{auth, packages, releases};

/// A method's answer, boxed so that every handler fits one table.
type Answer<'a> = Pin<Box<dyn Future<Output = Result<Reply, DdpError>> + Send + 'a>>;

/// One handler: the publishing state, the caller's context and the call's parameters.
type Handler = for<'a> fn(&'a Publishing, &'a MethodContext, Vec<Ejson>) -> Answer<'a>;

/// Every publishing method this server answers, and its handler.
static METHODS: [(&str, Handler); 24] = [
    ("login", |p, ctx, params| {
        Box::pin(auth::login(p, ctx, params))
    }),
    ("logout", |_, ctx, _| Box::pin(auth::logout(ctx))),
    ("amIAuthorizedPackage", |p, ctx, params| {
        Box::pin(auth::am_i_authorized(p, ctx, params, false))
    }),
    ("amIAuthorizedRelease", |p, ctx, params| {
        Box::pin(auth::am_i_authorized(p, ctx, params, true))
    }),
    ("createPackage", |p, ctx, params| {
        Box::pin(packages::create_package(p, ctx, params))
    }),
    ("createPackageVersion", |p, ctx, params| {
        Box::pin(packages::create_package_version(p, ctx, params))
    }),
    ("publishPackageVersion", |p, ctx, params| {
        Box::pin(packages::publish_package_version(p, ctx, params))
    }),
    ("createPackageBuild", |p, ctx, params| {
        Box::pin(packages::create_package_build(p, ctx, params))
    }),
    ("publishPackageBuild", |p, ctx, params| {
        Box::pin(packages::publish_package_build(p, ctx, params))
    }),
    ("changeVersionMetadata", |p, ctx, params| {
        Box::pin(packages::change_version_metadata(p, ctx, params))
    }),
    ("createReadme", |p, ctx, params| {
        Box::pin(packages::create_readme(p, ctx, params))
    }),
    ("publishReadme", |p, ctx, params| {
        Box::pin(packages::publish_readme(p, ctx, params))
    }),
    ("createReleaseTrack", |p, ctx, params| {
        Box::pin(releases::create_release_track(p, ctx, params))
    }),
    ("createReleaseVersion", |p, ctx, params| {
        Box::pin(releases::create_release_version(p, ctx, params))
    }),
    ("createPatchReleaseVersion", |p, ctx, params| {
        Box::pin(releases::create_patch_release_version(p, ctx, params))
    }),
    ("recommendVersion", |p, ctx, params| {
        Box::pin(releases::set_recommended(p, ctx, params, true))
    }),
    ("unrecommendVersion", |p, ctx, params| {
        Box::pin(releases::set_recommended(p, ctx, params, false))
    }),
    ("setBannersOnReleases", |p, ctx, params| {
        Box::pin(releases::set_banners(p, ctx, params))
    }),
    ("addMaintainer", |p, ctx, params| {
        Box::pin(admin::change_maintainer(
            p,
            ctx,
            params,
            Target::Package,
            true,
        ))
    }),
    ("removeMaintainer", |p, ctx, params| {
        Box::pin(admin::change_maintainer(
            p,
            ctx,
            params,
            Target::Package,
            false,
        ))
    }),
    ("addReleaseMaintainer", |p, ctx, params| {
        Box::pin(admin::change_maintainer(
            p,
            ctx,
            params,
            Target::Track,
            true,
        ))
    }),
    ("removeReleaseMaintainer", |p, ctx, params| {
        Box::pin(admin::change_maintainer(
            p,
            ctx,
            params,
            Target::Track,
            false,
        ))
    }),
    ("_changePackageHomepage", |p, ctx, params| {
        Box::pin(admin::change_homepage(p, ctx, params))
    }),
    ("_changeVersionMigrationStatus", |p, ctx, params| {
        Box::pin(admin::change_migration_status(p, ctx, params))
    }),
];

/// The handler of a publishing method, if `method` is one.
fn handler(method: &str) -> Option<Handler> {
    METHODS
        .iter()
        .find(|(name, _)| *name == method)
        .map(|(_, handler)| *handler)
}

/// Whether `method` is a publishing method (answered only where publishing is enabled).
pub fn is_publishing_method(method: &str) -> bool {
    handler(method).is_some()
}

/// Answers a publishing method. A call refused because the session's token was revoked or
/// expired also logs the session out, as Meteor does, so the tool asks for a new login.
pub async fn call(
    publishing: &Publishing,
    ctx: &MethodContext,
    method: &str,
    params: Vec<Ejson>,
) -> Result<Reply, DdpError> {
    let Some(handler) = handler(method) else {
        return Err(DdpError::method_not_found(method));
    };
    let answer = handler(publishing, ctx, params).await;
    if let Err(error) = &answer
        && method != "login"
        && *error == logged_out()
    {
        ctx.session.set_user_id(None);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_listed_once() {
        let mut names: Vec<&str> = METHODS.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METHODS.len());
        assert!(is_publishing_method("createPackageVersion"));
        assert!(!is_publishing_method("syncNewPackageData"));
    }
}
