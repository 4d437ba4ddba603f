//! The plan: everything later passes need to agree on, kept in memory, and the lookups
//! the passes use.

use std::borrow::Cow;
use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::helpers::{
    Sem, community_name, community_versions, creation_time, is_final, make_releases, make_users,
    meteor_id, prerelease, skewed, spread_picks, stream, tool_version, touched,
};
use crate::model::{Homepage, Package, Pick, Release, Track, User, Ver};
use crate::output::UserRef;
use crate::params::{
    CORE_NAMES, MIGRATIONS_FROM, MIGRATIONS_UNTIL, Params, RELEASES_FROM, STREAM_PLAN, Scale, TOOL,
};

/// The part of a catalog that must stay in memory for the passes to agree: small next
/// to the output (about 14 MB at atmosphere scale).
pub(crate) struct Plan {
    pub(crate) params: Params,
    pub(crate) key: [u8; 32],
    pub(crate) users: Vec<User>,
    pub(crate) migrations: Vec<i64>,
    pub(crate) tracks: Vec<Track>,
    /// METEOR releases first (index = METEOR release index), then the other tracks'.
    pub(crate) releases: Vec<Release>,
    meteor_releases: usize,
    /// Indices of final METEOR releases, in publication order.
    meteor_finals: Vec<usize>,
    /// Core packages first, then community packages in creation order.
    pub(crate) packages: Vec<Package>,
    /// Versions of each core package (they follow the releases, so they are planned).
    core_versions: Vec<Vec<Ver>>,
    /// Core package indices sorted by name, `meteor-tool` left out: release package maps.
    pub(crate) core_by_name: Vec<usize>,
    /// Indices of packages with a dot in their name.
    pub(crate) dotted: Vec<usize>,
}

impl Plan {
    pub(crate) fn new(scale: Scale, seed: u64) -> Plan {
        let params = Params::for_scale(scale);
        let key = ChaCha8Rng::seed_from_u64(seed).get_seed();
        let mut rng = stream(&key, STREAM_PLAN, 0);
        let users = make_users(&mut rng, params.users);
        let gap = (MIGRATIONS_UNTIL - MIGRATIONS_FROM) / params.migrations as i64;
        let migrations = (0..params.migrations as i64)
            .map(|k| MIGRATIONS_FROM + k * gap + rng.random_range(0..gap / 2))
            .collect();
        let (tracks, releases, meteor_releases) = make_releases(&params, &mut rng);
        let meteor_finals = (0..meteor_releases)
            .filter(|&r| is_final(&releases[r].version))
            .collect();
        let mut core_by_name: Vec<usize> = (0..params.core).filter(|&c| c != TOOL).collect();
        core_by_name.sort_by_key(|&c| CORE_NAMES[c]);
        let mut plan = Plan {
            params,
            key,
            users,
            migrations,
            tracks,
            releases,
            meteor_releases,
            meteor_finals,
            packages: Vec::new(),
            core_versions: Vec::new(),
            core_by_name,
            dotted: Vec::new(),
        };
        plan.add_core_packages(&mut rng);
        plan.add_community_packages(&mut rng);
        plan
    }

    fn add_core_packages(&mut self, rng: &mut ChaCha8Rng) {
        for (c, name) in CORE_NAMES[..self.params.core].iter().enumerate() {
            let versions = self.walk_core(c, rng);
            let created = versions.first().map_or(RELEASES_FROM, |v| v.published);
            let last = versions.last().map_or(created, |v| v.published);
            let last_updated = touched(&self.migrations, rng, last);
            let picks = versions
                .iter()
                .filter(|v| is_final(&v.version))
                .map(|v| Pick {
                    version: v.version.clone(),
                    published: v.published,
                })
                .collect();
            let homepage = if rng.random_ratio(1, 2) {
                Homepage::Url
            } else {
                Homepage::Null
            };
            self.packages.push(Package {
                name: (*name).to_string(),
                id: meteor_id(rng),
                maintainers: vec![0],
                homepage,
                created,
                binary: c == TOOL,
                picks,
                last_updated,
            });
            self.core_versions.push(versions);
        }
    }

    /// Versions of core package `c`, walking the METEOR releases: the package appears in
    /// some release and then gets a new version in some of the later ones, as a
    /// pre-release in pre-releases (`1.2.0-rc.1`) and final in the series' final release.
    /// `meteor-tool` gets a version in every release, named after it.
    fn walk_core(&self, c: usize, rng: &mut ChaCha8Rng) -> Vec<Ver> {
        let count = self.meteor_releases;
        let first = if c < 8 {
            0
        } else {
            rng.random_range(0..(count * 6 / 10).max(1))
        };
        let permille = self.params.core_bump_permille * rng.random_range(50..=150) / 100;
        let mut current =
            [Sem(1, 0, 0), Sem(1, 0, 0), Sem(0, 9, 0), Sem(2, 0, 0)][rng.random_range(0..4)];
        let mut pending: Option<Sem> = None;
        let mut versions = Vec::new();
        for r in first..count {
            let release = &self.releases[r];
            let version = if c == TOOL {
                Some(tool_version(&release.version))
            } else {
                let fresh = versions.is_empty();
                let bump = fresh || rng.random_range(0..1000) < permille;
                match prerelease(&release.version) {
                    None => match pending.take() {
                        Some(target) => {
                            current = target;
                            Some(target.to_string())
                        }
                        None if bump => {
                            if !fresh {
                                current = current.next(rng);
                            }
                            Some(current.to_string())
                        }
                        None => None,
                    },
                    Some(pre) if bump || (pending.is_some() && rng.random_ratio(1, 3)) => {
                        let target = *pending
                            .get_or_insert_with(|| if fresh { current } else { current.next(rng) });
                        Some(format!("{target}-{pre}"))
                    }
                    Some(_) => None,
                }
            };
            if let Some(version) = version {
                versions.push(Ver {
                    version,
                    id: meteor_id(rng),
                    published: release.published,
                    release: Some(r),
                });
            }
        }
        versions
    }

    fn add_community_packages(&mut self, rng: &mut ChaCha8Rng) {
        let mut created: Vec<i64> = (0..self.params.community)
            .map(|_| creation_time(rng))
            .collect();
        created.sort_unstable();
        let mut taken: HashSet<String> = CORE_NAMES.iter().map(|n| (*n).to_string()).collect();
        for created in created {
            let index = self.packages.len();
            let owner = 1 + skewed(rng, self.users.len() - 1);
            let (name, dotted) = community_name(rng, &self.users[owner].name, &mut taken);
            let mut maintainers = vec![owner];
            if rng.random_ratio(3, 20) {
                let other = 1 + rng.random_range(0..self.users.len() - 1);
                if other != owner {
                    maintainers.push(other);
                }
            }
            let homepage = match rng.random_range(0..10) {
                0..4 => Homepage::Url,
                4..7 => Homepage::Null,
                _ => Homepage::Absent,
            };
            let binary = rng.random_range(0..1000) < self.params.binary_permille;
            let id = meteor_id(rng);
            let versions = community_versions(&self.key, &self.params, index, created);
            let last = versions.last().map_or(created, |v| v.published);
            let last_updated = touched(&self.migrations, rng, last);
            if dotted {
                self.dotted.push(index);
            }
            self.packages.push(Package {
                name,
                id,
                maintainers,
                homepage,
                created,
                binary,
                picks: spread_picks(&versions),
                last_updated,
            });
        }
    }

    /// Core packages come first in `packages`.
    pub(crate) fn is_core(&self, package: usize) -> bool {
        package < self.params.core
    }

    /// All versions of a package, oldest first: planned for core packages, re-derived
    /// from the package's own stream for community packages.
    pub(crate) fn versions(&self, package: usize) -> Cow<'_, [Ver]> {
        match self.core_versions.get(package) {
            Some(versions) => Cow::Borrowed(versions),
            None => Cow::Owned(community_versions(
                &self.key,
                &self.params,
                package,
                self.packages[package].created,
            )),
        }
    }

    /// The picks of a package published at or before `t`.
    pub(crate) fn picks_before(&self, package: usize, t: i64) -> &[Pick] {
        let picks = &self.packages[package].picks;
        &picks[..picks.partition_point(|p| p.published <= t)]
    }

    /// The newest version of core package `c` shipped by METEOR release `r` or earlier.
    pub(crate) fn core_at(&self, c: usize, r: usize) -> Option<&Ver> {
        let versions = &self.core_versions[c];
        versions[..versions.partition_point(|v| v.release.is_some_and(|x| x <= r))].last()
    }

    /// The newest final METEOR release published at or before `t`.
    pub(crate) fn meteor_final_before(&self, t: i64) -> Option<&Release> {
        let n = self
            .meteor_finals
            .partition_point(|&r| self.releases[r].published <= t);
        n.checked_sub(1)
            .map(|k| &self.releases[self.meteor_finals[k]])
    }

    /// A user as records reference them: `{username, id}`.
    pub(crate) fn user(&self, index: usize) -> UserRef<'_> {
        let user = &self.users[index];
        UserRef {
            username: &user.name,
            id: &user.id,
        }
    }

    /// One of the package's maintainers, as `publishedBy` / `builtBy`.
    pub(crate) fn publisher(&self, package: &Package, rng: &mut ChaCha8Rng) -> UserRef<'_> {
        self.user(package.maintainers[rng.random_range(0..package.maintainers.len())])
    }
}
