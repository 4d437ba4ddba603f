//! The passes, one per collection, each streaming its records to the [`Sink`], and the
//! per-package [`Profile`] the version and build passes re-derive.

use std::io;

use chrono::{DateTime, Days, Utc};
use exosphere_meteor::Collection;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::helpers::{
    camel_case, compiler_version, describe, hash, is_final, long_text, meteor_id, order_key,
    skewed, slug, stream, tool_version, touched, tree_hash, weighted,
};
use crate::model::{Homepage, Ver};
use crate::output::{
    Banner, Blob, BuildDoc, Date, DepDoc, DepMap, ExportDoc, PackageDoc, PairMap, Readme, Refs,
    ReleaseDoc, Sink, StatsDoc, TrackDoc, VersionDoc,
};
use crate::params::{
    BLANK_HASH, CORE_NAMES, DAY_MS, EPOCH_END, EPOCH_START, EXPORT_SUFFIXES, ISOBUILD_SINCE,
    LEGACY_BROWSER_SINCE, LINUX_AARCH64_SINCE, METEOR, OSX_ARM64_SINCE, RELEASES_FROM,
    STREAM_BUILDS, STREAM_DETAIL, STREAM_RELEASES, STREAM_STATS, TOOL, WINDOWS_SINCE,
};
use crate::plan::Plan;

impl Plan {
    pub(crate) fn write_packages(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for package in &self.packages {
            let slug = slug(&package.name);
            let doc = PackageDoc {
                id: &package.id,
                name: &package.name,
                maintainers: package.maintainers.iter().map(|&u| self.user(u)).collect(),
                homepage: match package.homepage {
                    Homepage::Absent => None,
                    Homepage::Null => Some(None),
                    Homepage::Url => Some(Some(format!("https://example.invalid/home/{slug}"))),
                },
                last_updated: Date(package.last_updated),
            };
            sink.record(Collection::Packages, &doc)?;
        }
        Ok(())
    }

    pub(crate) fn write_versions(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for (index, package) in self.packages.iter().enumerate() {
            let mut rng = stream(&self.key, STREAM_DETAIL, index as u64);
            let profile = Profile::new(self, index, &mut rng);
            let slug = slug(&package.name);
            let versions = self.versions(index);
            for (n, ver) in versions.iter().enumerate() {
                let t = ver.published;
                let legacy = t >= LEGACY_BROWSER_SINCE;
                let dependencies = self.dependencies(index, &profile, ver, &mut rng);
                let exports: Vec<ExportDoc<'_>> = profile
                    .exports
                    .iter()
                    .map(|(name, scope)| ExportDoc {
                        name,
                        architectures: scope.arches(legacy),
                    })
                    .collect();
                let release_name = match ver.release {
                    Some(r) => Some(&self.releases[r]),
                    None if rng.random_ratio(1, 30) => None,
                    None => self.meteor_final_before(t),
                }
                .map(|release| format!("METEOR@{}", release.version));
                let deprecated = profile.deprecated && n + 1 == versions.len();
                let doc = VersionDoc {
                    id: &ver.id,
                    package_name: &package.name,
                    version: &ver.version,
                    description: &profile.description,
                    long_description: &profile.long_description,
                    git: profile.git.as_deref(),
                    dependencies: DepMap(&dependencies),
                    exports: &exports,
                    compiler_version: compiler_version(t),
                    contains_plugins: profile.contains_plugins,
                    debug_only: profile.debug_only,
                    prod_only: profile.prod_only,
                    test_only: profile.test_only,
                    deprecated: deprecated.then_some(true),
                    deprecated_message: deprecated.then_some("No longer maintained."),
                    release_name,
                    source: Blob {
                        url: format!(
                            "https://example.invalid/source/{slug}/{}/{}.tgz",
                            ver.version, ver.id
                        ),
                        tarball_hash: hash(&mut rng),
                        tree_hash: tree_hash(&mut rng, t),
                    },
                    readme: Readme {
                        url: format!(
                            "https://example.invalid/readme/{slug}/{}/{}.md",
                            ver.version, ver.id
                        ),
                        hash: if profile.long_description.is_empty() {
                            BLANK_HASH.to_string()
                        } else {
                            hash(&mut rng)
                        },
                    },
                    published_by: self.publisher(package, &mut rng),
                    published: Date(t),
                    last_updated: Date(touched(&self.migrations, &mut rng, t)),
                };
                sink.record(Collection::Versions, &doc)?;
            }
        }
        Ok(())
    }

    /// The dependency map of one version: `meteor` first (null constraint mostly), then
    /// the package's usual dependencies resolved to versions that existed when it was
    /// published, then `isobuild:` pseudo-packages.
    fn dependencies<'p>(
        &'p self,
        index: usize,
        profile: &'p Profile,
        ver: &Ver,
        rng: &mut ChaCha8Rng,
    ) -> Vec<DepDoc<'p>> {
        let t = ver.published;
        let legacy = t >= LEGACY_BROWSER_SINCE;
        let mut deps = Vec::with_capacity(profile.deps.len() + 3);
        // Core packages depend on what their own release ships; community packages on
        // what was published before them.
        let resolve = |package: usize, lag: usize| -> Option<(&'p str, &'p str)> {
            match ver.release {
                Some(r) => self
                    .core_at(package, r)
                    .map(|v| (v.version.as_str(), v.version.as_str())),
                None => {
                    let picks = self.picks_before(package, t);
                    let first = picks.first()?;
                    let chosen = &picks[picks.len().saturating_sub(1 + lag)];
                    Some((first.version.as_str(), chosen.version.as_str()))
                }
            }
        };
        if index != METEOR
            && index != TOOL
            && let Some((_, current)) = resolve(METEOR, 0)
        {
            let null = if self.is_core(index) {
                rng.random_ratio(1, 2)
            } else {
                rng.random_ratio(7, 10)
            };
            deps.push(DepDoc {
                name: CORE_NAMES[METEOR],
                constraint: (!null).then(|| current.to_string()),
                refs: Refs::plain(Scope::All.arches(legacy)),
            });
        }
        let keep = if rng.random_ratio(1, 6) {
            profile.deps.len().saturating_sub(1)
        } else {
            profile.deps.len()
        };
        for dep in &profile.deps[..keep] {
            let Some((first, chosen)) = resolve(dep.package, dep.lag) else {
                continue;
            };
            let constraint = match dep.form {
                Form::Exact => format!("={chosen}"),
                Form::Either if first != chosen => format!("{first} || {chosen}"),
                Form::Either | Form::Compatible => chosen.to_string(),
            };
            deps.push(DepDoc {
                name: &self.packages[dep.package].name,
                constraint: Some(constraint),
                refs: Refs {
                    arches: dep.scope.arches(legacy),
                    weak: dep.weak,
                    unordered: dep.unordered,
                    implied: dep.implied,
                },
            });
        }
        if t >= ISOBUILD_SINCE {
            let pseudo = [
                ("isobuild:isopack-2", profile.isobuild),
                ("isobuild:compiler-plugin", profile.contains_plugins),
            ];
            for (name, used) in pseudo {
                if used {
                    deps.push(DepDoc {
                        name,
                        constraint: Some("1.0.0".to_string()),
                        refs: Refs::plain(Scope::All.arches(legacy)),
                    });
                }
            }
        }
        deps
    }

    pub(crate) fn write_builds(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for (index, package) in self.packages.iter().enumerate() {
            let mut rng = stream(&self.key, STREAM_BUILDS, index as u64);
            let slug = slug(&package.name);
            for ver in self.versions(index).iter() {
                let mut published = ver.published;
                if !rng.random_ratio(3, 5) {
                    published += rng.random_range(1..=600_000);
                }
                let builds = self.build_architectures(index, ver.published, &mut rng);
                for (k, architectures) in builds.iter().enumerate() {
                    // Other hosts' builds often come later, from `publish-for-arch`.
                    if k > 0 && !rng.random_ratio(1, 3) {
                        published += rng.random_range(1..=3 * DAY_MS);
                    }
                    let id = meteor_id(&mut rng);
                    let doc = BuildDoc {
                        build: Blob {
                            url: format!(
                                "https://example.invalid/build/{slug}/{}/{id}.tgz",
                                ver.version
                            ),
                            tarball_hash: hash(&mut rng),
                            tree_hash: tree_hash(&mut rng, published),
                        },
                        id,
                        version_id: &ver.id,
                        build_architectures: architectures,
                        built_by: self.publisher(package, &mut rng),
                        build_published: Date(published),
                        last_updated: Date(touched(&self.migrations, &mut rng, published)),
                    };
                    sink.record(Collection::Builds, &doc)?;
                }
            }
        }
        Ok(())
    }

    /// The `buildArchitectures` of each build of one version: a single portable
    /// `os+web…` build, or one build per host OS that existed at the time (some
    /// missing) for binary packages; `meteor-tool` builds are host-only.
    fn build_architectures(&self, index: usize, t: i64, rng: &mut ChaCha8Rng) -> Vec<String> {
        let web = if t >= LEGACY_BROWSER_SINCE {
            "+web.browser+web.browser.legacy+web.cordova"
        } else {
            "+web.browser+web.cordova"
        };
        if !self.packages[index].binary {
            return vec![format!("os{web}")];
        }
        let hosts = [
            ("os.linux.x86_64", EPOCH_START),
            ("os.osx.x86_64", EPOCH_START),
            ("os.windows.x86_64", WINDOWS_SINCE),
            ("os.osx.arm64", OSX_ARM64_SINCE),
            ("os.linux.aarch64", LINUX_AARCH64_SINCE),
        ];
        let tool = index == TOOL;
        hosts
            .iter()
            .enumerate()
            .filter(|&(k, &(_, since))| t >= since && (k == 0 || tool || !rng.random_ratio(1, 10)))
            .map(|(_, &(host, _))| {
                if tool {
                    host.to_string()
                } else {
                    format!("{host}{web}")
                }
            })
            .collect()
    }

    pub(crate) fn write_tracks(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for (t, track) in self.tracks.iter().enumerate() {
            let last_updated = self
                .releases
                .iter()
                .filter(|r| r.track == t)
                .map(|r| r.published)
                .fold(RELEASES_FROM, i64::max);
            let doc = TrackDoc {
                id: &track.id,
                name: track.name,
                maintainers: vec![self.user(0)],
                last_updated: Date(last_updated),
            };
            sink.record(Collection::ReleaseTracks, &doc)?;
        }
        Ok(())
    }

    pub(crate) fn write_releases(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for (index, release) in self.releases.iter().enumerate() {
            let mut rng = stream(&self.key, STREAM_RELEASES, index as u64);
            let track = &self.tracks[release.track];
            let packages: Vec<(&str, &str)> = self
                .core_by_name
                .iter()
                .filter_map(|&c| {
                    self.core_at(c, release.meteor)
                        .map(|v| (CORE_NAMES[c], v.version.as_str()))
                })
                .filter(|&(name, _)| {
                    release.track == 0 || name == CORE_NAMES[METEOR] || rng.random_ratio(1, 2)
                })
                .collect();
            let recommended = is_final(&release.version);
            let banner =
                (recommended && release.track == 0 && rng.random_ratio(1, 40)).then(|| Banner {
                    text: format!(
                        "=> Meteor {} is available. Update with `meteor update`.",
                        release.version
                    ),
                    last_updated: Date(release.published),
                });
            let doc = ReleaseDoc {
                id: &release.id,
                track: track.name,
                version: &release.version,
                description: track.description,
                recommended,
                order_key: order_key(&release.version),
                tool: format!(
                    "meteor-tool@{}",
                    tool_version(&self.releases[release.meteor].version)
                ),
                packages: PairMap(&packages),
                published_by: self.user(0),
                published: Date(release.published),
                last_updated: Date(release.published),
                banner,
                patch_release_version: release.patch.map(|p| self.releases[p].version.as_str()),
            };
            sink.record(Collection::ReleaseVersions, &doc)?;
        }
        Ok(())
    }

    /// Daily usage rows for the last `stats_days` days before [`EPOCH_END`]: most core
    /// packages and some community packages, each with its newest version of the day
    /// and sometimes an older one.
    pub(crate) fn write_stats(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        let end_day = (EPOCH_END / DAY_MS) as u64;
        for day in end_day - self.params.stats_days..end_day {
            let mut rng = stream(&self.key, STREAM_STATS, day);
            let date = (DateTime::<Utc>::UNIX_EPOCH.date_naive() + Days::new(day)).to_string();
            let day_end = (day as i64 + 1) * DAY_MS - 1;
            for index in 0..self.packages.len() {
                let (chance, most) = if self.is_core(index) {
                    (900, 5_000)
                } else {
                    (self.params.stats_permille, 300)
                };
                if rng.random_range(0..1000) >= chance {
                    continue;
                }
                let picks = self.picks_before(index, day_end);
                let Some(newest) = picks.last() else {
                    continue;
                };
                let older = (picks.len() > 1 && rng.random_ratio(1, 4))
                    .then(|| &picks[rng.random_range(0..picks.len() - 1)]);
                for pick in std::iter::once(newest).chain(older) {
                    let ceiling = rng.random_range(1..=most);
                    let total_adds = rng.random_range(1..=ceiling);
                    let doc = StatsDoc {
                        name: &self.packages[index].name,
                        version: &pick.version,
                        direct_adds: rng.random_range(0..=total_adds),
                        total_adds,
                    };
                    sink.stats(&date, &doc)?;
                }
            }
        }
        Ok(())
    }
}

/// What stays the same across a package's versions: texts, flags, usual dependencies.
struct Profile {
    description: String,
    long_description: String,
    git: Option<String>,
    exports: Vec<(String, Scope)>,
    contains_plugins: bool,
    debug_only: bool,
    prod_only: bool,
    test_only: bool,
    deps: Vec<BaseDep>,
    /// Declares `isobuild:isopack-2` (once that exists).
    isobuild: bool,
    /// The newest version is marked deprecated.
    deprecated: bool,
}

/// A dependency a package keeps across its versions, minus the version it names.
struct BaseDep {
    package: usize,
    scope: Scope,
    weak: bool,
    unordered: bool,
    implied: bool,
    form: Form,
    /// How many picks behind the newest the constraint names (community packages).
    lag: usize,
}

/// The shape of a constraint: `1.2.0`, `=1.2.0` or `1.0.0 || 1.2.0`.
#[derive(Clone, Copy)]
enum Form {
    Compatible,
    Exact,
    Either,
}

/// Which architectures a dependency or export applies to.
#[derive(Clone, Copy)]
enum Scope {
    All,
    Server,
    Client,
    Plugin,
}

impl Scope {
    fn arches(self, legacy: bool) -> &'static [&'static str] {
        match (self, legacy) {
            (Scope::All, true) => &["os", "web.browser", "web.browser.legacy", "web.cordova"],
            (Scope::All, false) => &["os", "web.browser", "web.cordova"],
            (Scope::Server, _) => &["os"],
            (Scope::Client, true) => &["web.browser", "web.browser.legacy", "web.cordova"],
            (Scope::Client, false) => &["web.browser", "web.cordova"],
            (Scope::Plugin, _) => &["plugin"],
        }
    }

    fn random(rng: &mut ChaCha8Rng) -> Scope {
        match rng.random_range(0..20) {
            0..14 => Scope::All,
            14..17 => Scope::Server,
            _ => Scope::Client,
        }
    }
}

impl Profile {
    fn new(plan: &Plan, index: usize, rng: &mut ChaCha8Rng) -> Profile {
        let package = &plan.packages[index];
        let core = plan.is_core(index);
        let base = package.name.rsplit(':').next().unwrap_or(&package.name);
        let description = describe(rng, base, core);
        let long_description = if rng.random_ratio(3, 10) {
            String::new()
        } else {
            long_text(rng, &package.name, &description)
        };
        let git = if core {
            Some("https://example.invalid/meteor/meteor.git".to_string())
        } else {
            rng.random_ratio(4, 5).then(|| {
                format!(
                    "https://example.invalid/git/{}.git",
                    package.name.replace(':', "/")
                )
            })
        };
        let camel = camel_case(base);
        let exports = (0..weighted(rng, &[3, 4, 2, 1]))
            .map(|k| {
                let name = if k == 0 {
                    camel.clone()
                } else {
                    format!("{camel}{}", EXPORT_SUFFIXES[k - 1])
                };
                (name, Scope::random(rng))
            })
            .collect();
        let contains_plugins = rng.random_ratio(1, 12);
        let only = weighted(rng, &[95, 2, 1, 2]);
        let mut deps: Vec<BaseDep> = Vec::new();
        let wanted = if core {
            if index > 2 {
                rng.random_range(0..=5)
            } else {
                0
            }
        } else {
            match rng.random_range(0..10) {
                0 => 0,
                1..4 => rng.random_range(1..=2),
                4..8 => rng.random_range(3..=5),
                _ => rng.random_range(6..=10),
            }
        };
        let core_count = plan.params.core;
        let dotted_before = plan.dotted.partition_point(|&d| d < index);
        for _ in 0..wanted {
            let target = if core {
                2 + rng.random_range(0..index - 2)
            } else {
                match rng.random_range(0..20) {
                    0 if dotted_before > 0 => plan.dotted[rng.random_range(0..dotted_before)],
                    1..8 if index > core_count => core_count + skewed(rng, index - core_count),
                    _ => 2 + skewed(rng, core_count - 2),
                }
            };
            if deps.iter().any(|d| d.package == target) {
                continue;
            }
            let scope = if contains_plugins && deps.is_empty() {
                Scope::Plugin
            } else {
                Scope::random(rng)
            };
            deps.push(BaseDep {
                package: target,
                scope,
                weak: rng.random_ratio(1, 16),
                unordered: rng.random_ratio(1, 40),
                implied: rng.random_ratio(1, 20),
                form: match rng.random_range(0..100) {
                    0..10 => Form::Exact,
                    10..17 => Form::Either,
                    _ => Form::Compatible,
                },
                lag: weighted(rng, &[6, 3, 1]),
            });
        }
        Profile {
            description,
            long_description,
            git,
            exports,
            contains_plugins,
            debug_only: only == 1,
            prod_only: only == 2,
            test_only: only == 3,
            deps,
            isobuild: rng.random_ratio(1, 8),
            deprecated: !core && rng.random_ratio(1, 100),
        }
    }
}
