//! Golden queries: what a person types, and what must come first (issue 13, "Search that
//! finds what people mean"). The catalog is made up here so that descriptions, adds and
//! dates say what each query is about; the 2015 fixture's descriptions are only names.

use exosphere_index::{Index, PackageAdds, Search, SearchSort};
use serde_json::json;

/// One made-up package: name, description, maintainer, published (days ago), direct adds
/// over the last 30 days, whether its latest version is deprecated, and whether its only
/// version is unmigrated (spec §3.8: published before Meteor 0.9).
struct Made {
    name: &'static str,
    description: &'static str,
    maintainer: &'static str,
    days_ago: i64,
    adds: u64,
    deprecated: bool,
    unmigrated: bool,
}

const fn made(
    name: &'static str,
    description: &'static str,
    maintainer: &'static str,
    days_ago: i64,
    adds: u64,
) -> Made {
    Made {
        name,
        description,
        maintainer,
        days_ago,
        adds,
        deprecated: false,
        unmigrated: false,
    }
}

const CATALOG: [Made; 17] = [
    made(
        "aldeed:collection2",
        "Automatic validation of insert and update operations on the client and server",
        "aldeed",
        400,
        900,
    ),
    made(
        "aldeed:collection2-core",
        "Core package for aldeed:collection2",
        "aldeed",
        300,
        100,
    ),
    made(
        "matb33:collection-hooks",
        "Extends Mongo.Collection with before and after hooks for insert and update",
        "matb33",
        200,
        300,
    ),
    made(
        "mongo",
        "Adaptor for using MongoDB and Minimongo over DDP",
        "mdg",
        100,
        5000,
    ),
    made(
        "iron:router",
        "Routing specifically designed for Meteor",
        "iron",
        900,
        800,
    ),
    made(
        "kadira:flow-router",
        "Carefully designed client side router for Meteor",
        "kadira",
        700,
        1200,
    ),
    made(
        "ostrio:flow-router-extra",
        "Carefully extended flow-router with waitOn and template context",
        "ostrio",
        20,
        200,
    ),
    Made {
        deprecated: true,
        ..made(
            "zzz:abandoned-router",
            "An old router nobody should use",
            "zzz",
            2000,
            0,
        )
    },
    Made {
        unmigrated: true,
        ..made(
            "zzz:classic-router",
            "A router for Meteor 0.8 apps, never migrated",
            "zzz",
            3000,
            50,
        )
    },
    made("webapp", "Serves a Meteor app over HTTP", "mdg", 100, 5000),
    made(
        "percolate:synced-cron",
        "Allows you to define and run scheduled jobs across multiple servers",
        "percolate",
        500,
        150,
    ),
    made(
        "momentjs:moment",
        "Moment.js: a JavaScript date library for parsing, validating and formatting dates",
        "momentjs",
        60,
        600,
    ),
    made(
        "quote:stuff",
        "Handles \"foo and (bar) OR baz* NEAR everything",
        "quote",
        10,
        1,
    ),
    made(
        "email",
        "Send email messages with attachments",
        "mdg",
        100,
        40,
    ),
    made(
        "postal:mailer",
        "Send email messages through templates",
        "postal",
        100,
        30,
    ),
    made(
        "a:chart",
        "Draw charts of your data with a small API",
        "a",
        100,
        10,
    ),
    made(
        "b:chart",
        "Draw charts of your data with a small API",
        "b",
        100,
        500,
    ),
];

fn catalog() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let mut lines = Vec::new();
    for (n, package) in CATALOG.iter().enumerate() {
        let date = json!({"$date": now - package.days_ago * 86_400_000});
        lines.push(json!({"collection": "packages", "doc": {
            "_id": format!("p{n}"), "name": package.name,
            "maintainers": [{"username": package.maintainer, "id": format!("u{n}")}],
            "lastUpdated": date,
        }}));
        lines.push(json!({"collection": "versions", "doc": {
            "_id": format!("v{n}"), "packageName": package.name, "version": "1.0.0",
            "description": package.description, "longDescription": "",
            "published": date, "lastUpdated": date, "deprecated": package.deprecated,
            "unmigrated": package.unmigrated, "dependencies": {},
        }}));
    }
    let dump: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    index.load_dump(&dump, 100).unwrap();
    let adds: Vec<PackageAdds> = CATALOG
        .iter()
        .map(|package| PackageAdds {
            package: package.name.to_owned(),
            direct_30d: package.adds,
            total_30d: package.adds * 3,
            direct_7d: package.adds / 4,
            direct_prior_28d: package.adds - package.adds / 4,
        })
        .collect();
    index.replace_adds("2026-12-05", &adds).unwrap();
    (dir, index)
}

fn find(index: &Index, search: Search) -> Vec<String> {
    index
        .find(&Search {
            limit: 20,
            ..search
        })
        .unwrap()
        .into_iter()
        .map(|hit| hit.name)
        .collect()
}

fn text(index: &Index, words: &str) -> Vec<String> {
    find(
        index,
        Search {
            text: words.into(),
            ..Search::default()
        },
    )
}

#[test]
fn a_base_name_finds_its_package_first() {
    let (_dir, index) = catalog();
    let hits = text(&index, "collection2");
    assert_eq!(hits[..2], ["aldeed:collection2", "aldeed:collection2-core"]);
    let hits = text(&index, "Collection2");
    assert_eq!(
        hits[0], "aldeed:collection2",
        "names are matched without case"
    );
}

#[test]
fn a_full_name_is_searched_never_parsed() {
    let (_dir, index) = catalog();
    assert_eq!(text(&index, "aldeed:collection2")[0], "aldeed:collection2");
    assert_eq!(text(&index, "\"foo"), ["quote:stuff"]);
    assert_eq!(text(&index, "(bar) OR"), ["quote:stuff"]);
    assert_eq!(text(&index, "baz* NEAR"), ["quote:stuff"]);
}

#[test]
fn names_come_before_descriptions_and_popular_before_rare() {
    let (_dir, index) = catalog();
    let hits = text(&index, "router");
    // The base name first; then the names that contain it, the most added first; the
    // deprecated one is left out.
    assert_eq!(
        hits,
        [
            "iron:router",
            "kadira:flow-router",
            "ostrio:flow-router-extra"
        ]
    );
    assert_eq!(text(&index, "hooks"), ["matb33:collection-hooks"]);
}

#[test]
fn descriptions_find_what_a_package_does() {
    let (_dir, index) = catalog();
    assert_eq!(text(&index, "scheduled jobs"), ["percolate:synced-cron"]);
    assert_eq!(text(&index, "date library"), ["momentjs:moment"]);
    // Two packages alike in words: the one added more often first.
    assert_eq!(text(&index, "charts"), ["b:chart", "a:chart"]);
}

#[test]
fn core_packages_do_not_crowd_out_the_rest() {
    let (_dir, index) = catalog();
    // `email` (core, 40 adds) and `postal:mailer` (30 adds) match alike: the community
    // package is not buried under the core one.
    assert_eq!(text(&index, "messages"), ["postal:mailer", "email"]);
    // An exact name still comes first, core or not.
    assert_eq!(text(&index, "mongo")[0], "mongo");
}

#[test]
fn filters_narrow_the_hits() {
    let (_dir, index) = catalog();
    let deprecated = find(
        &index,
        Search {
            text: "router".into(),
            include_deprecated: true,
            ..Search::default()
        },
    );
    assert!(deprecated.contains(&"zzz:abandoned-router".to_owned()));
    // A deprecated package named exactly is shown anyway.
    assert_eq!(text(&index, "abandoned-router"), ["zzz:abandoned-router"]);

    let no_core = find(
        &index,
        Search {
            exclude_core: true,
            ..Search::default()
        },
    );
    assert!(no_core.iter().all(|name| name.contains(':')), "{no_core:?}");
    let recent = find(
        &index,
        Search {
            published_within_days: Some(30),
            ..Search::default()
        },
    );
    assert_eq!(recent, ["ostrio:flow-router-extra", "quote:stuff"]);
    let aldeed = find(
        &index,
        Search {
            maintainer: Some("aldeed".into()),
            sort: SearchSort::Name,
            ..Search::default()
        },
    );
    assert_eq!(aldeed, ["aldeed:collection2", "aldeed:collection2-core"]);
}

/// Issue 13, "include deprecated/unmigrated": a package whose every version is unmigrated
/// is left out of search, its lists and the browse list unless asked for, even named
/// exactly; asked for, it is found like any other, by name or by words, with its greatest
/// version, and `show` knows it.
#[test]
fn unmigrated_packages_are_found_only_when_asked_for() {
    let (_dir, index) = catalog();
    let unmigrated = |search: Search| {
        find(
            &index,
            Search {
                include_unmigrated: true,
                ..search
            },
        )
    };
    assert!(!text(&index, "router").contains(&"zzz:classic-router".to_owned()));
    assert_eq!(text(&index, "classic-router"), Vec::<String>::new());
    assert_eq!(text(&index, "zzz:classic-router"), Vec::<String>::new());
    assert_eq!(
        unmigrated(Search {
            text: "classic-router".into(),
            ..Search::default()
        }),
        ["zzz:classic-router"]
    );
    assert_eq!(
        unmigrated(Search {
            text: "never migrated".into(),
            ..Search::default()
        }),
        ["zzz:classic-router"],
        "its words are searched too"
    );
    let routers = unmigrated(Search {
        text: "router".into(),
        ..Search::default()
    });
    assert_eq!(
        routers[..3],
        text(&index, "router")[..],
        "the others keep their order"
    );
    assert!(
        routers.contains(&"zzz:classic-router".to_owned()),
        "{routers:?}"
    );
    let everything = unmigrated(Search {
        sort: SearchSort::Name,
        include_deprecated: true,
        ..Search::default()
    });
    assert_eq!(everything.len(), CATALOG.len());
    let zzz = unmigrated(Search {
        maintainer: Some("zzz".into()),
        include_deprecated: true,
        sort: SearchSort::Name,
        ..Search::default()
    });
    assert_eq!(zzz, ["zzz:abandoned-router", "zzz:classic-router"]);

    // The lists leave it out whatever its adds.
    let listed = |hits: Vec<exosphere_index::SearchHit>| -> Vec<String> {
        hits.into_iter().map(|hit| hit.name).collect()
    };
    assert!(!listed(index.most_added(20).unwrap()).contains(&"zzz:classic-router".to_owned()));
    let browsed = index.browse(None, 100).unwrap();
    assert_eq!(browsed.total, CATALOG.len() as u64 - 1);
    assert!(!listed(browsed.items).contains(&"zzz:classic-router".to_owned()));
    let recent = index.recently_published(100).unwrap();
    assert!(
        recent
            .iter()
            .all(|package| package.name != "zzz:classic-router")
    );

    // Found, it can be shown: its latest version is its greatest, marked unmigrated.
    let info = index.show("zzz:classic-router", None).unwrap();
    assert_eq!(info.latest, "1.0.0");
    assert!(info.version.unmigrated);
    assert_eq!(info.versions.len(), 1);
    assert_eq!(
        listed(index.summaries(&["zzz:classic-router"]).unwrap()),
        ["zzz:classic-router"]
    );
}

#[test]
fn sort_orders_and_lists() {
    let (_dir, index) = catalog();
    let by = |sort| {
        find(
            &index,
            Search {
                sort,
                include_deprecated: true,
                ..Search::default()
            },
        )
    };
    let names = by(SearchSort::Name);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // Every package but the unmigrated one, which is only found when asked for.
    assert_eq!(names.len(), CATALOG.len() - 1);
    assert_eq!(
        by(SearchSort::Newest)[..2],
        ["quote:stuff", "ostrio:flow-router-extra"]
    );
    assert_eq!(by(SearchSort::Updated)[0], "quote:stuff");
    assert_eq!(by(SearchSort::MostAdded)[..2], ["mongo", "webapp"]);
    assert_eq!(by(SearchSort::Relevance)[..2], ["mongo", "webapp"]);

    let most: Vec<String> = index
        .most_added(3)
        .unwrap()
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert_eq!(most, ["mongo", "webapp", "kadira:flow-router"]);
    let hit = &index.most_added(1).unwrap()[0];
    assert_eq!(hit.direct_adds_30d, 5000);
    assert_eq!(index.adds_through().unwrap().as_deref(), Some("2026-12-05"));
}

#[test]
fn trending_is_growth_against_the_weeks_before() {
    let (_dir, mut index) = catalog();
    let adds = |package: &str, direct_7d, direct_prior_28d| PackageAdds {
        package: package.into(),
        direct_30d: direct_7d + direct_prior_28d,
        total_30d: direct_7d + direct_prior_28d,
        direct_7d,
        direct_prior_28d,
    };
    index
        .replace_adds(
            "2026-12-06",
            &[
                // Steady: 100 a week before and now.
                adds("mongo", 100, 400),
                // From 10 a week to 60.
                adds("a:chart", 60, 40),
                // From nothing to two: too few to trend.
                adds("b:chart", 2, 0),
            ],
        )
        .unwrap();
    let trending: Vec<String> = index
        .trending(10)
        .unwrap()
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert_eq!(trending, ["a:chart", "mongo"]);
    // Replacing drops packages no longer counted.
    assert_eq!(index.most_added(10).unwrap().len(), 3);
}
