//! Usage statistics over HTTP: the daily files at `/stats/v1/<day>` (spec §7.2), served
//! from [`StatsFiles`](crate::stats_files::StatsFiles) in chunks, one package's range at
//! `/api/v1/stats/packages/<name>`, and the same ranges as the web catalog's pages chart
//! them ([`CatalogUsage`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use exosphere_catalog::CatalogStore;
use exosphere_catalog::day::parse_day;
use exosphere_catalog::stats::{
    Adds as CatalogAdds, Interval, PackageStats, RangeError, VersionAdds as CatalogVersionAdds,
    package_stats,
};
use exosphere_meteor::names::is_package_name;
use exosphere_web::{
    Adds, PeriodAdds, Usage, UsageError, UsagePeriod, UsageRange, UsageSource, VersionAdds,
};
use serde::Deserialize;

use super::{AppState, internal_error};

/// The `max-age` of a finished day's answer, in seconds.
const MAX_AGE: u64 = 300;

/// `GET /stats/v1/YYYY-MM-DD` (spec §7.2): NDJSON rows, or 404 for a day without data. A
/// day from the current UTC day on (rolled up by hand) is unfinished: rendered for each
/// request and answered `no-store`, so no cache keeps its partial numbers.
pub async fn stats_day(State(state): State<AppState>, Path(day): Path<String>) -> Response {
    let finished = match parse_day(&day) {
        Ok(parsed) => parsed < chrono::Utc::now().date_naive(),
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    match state.stats_files.day(&day, finished).await {
        Ok(Some(rendered)) => {
            let caching = if finished {
                HeaderValue::from_str(&format!("public, max-age={MAX_AGE}"))
            } else {
                Ok(HeaderValue::from_static("no-store"))
            };
            let mut response = Response::new(Body::empty());
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rendered.len()));
            if let Ok(caching) = caching {
                headers.insert(header::CACHE_CONTROL, caching);
            }
            *response.body_mut() = Body::from_stream(rendered.chunks());
            response
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            format!("no package statistics for {day}\n"),
        )
            .into_response(),
        Err(error) => internal_error("rendering stats", &error),
    }
}

/// The query of `/api/v1/stats/packages/<name>`; every key is optional.
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    interval: Option<String>,
}

/// `GET /api/v1/stats/packages/<name>?from=D&to=D&interval=day|week|month`: one package's
/// adds over a range of UTC days (default: the 30 days ending today), summed, per version
/// and per period, with the trend against the range before. Answers from the same stats
/// rows as `/stats/v1`; 400 names what is wrong with a bad query.
pub async fn package_stats_range(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let bad = |reason: String| (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response();
    let Ok(Query(query)) = query else {
        return bad("the query accepts from, to and interval".into());
    };
    if !is_package_name(&name) {
        return bad(format!("{name:?} is not a Meteor package name"));
    }
    let day = |text: Option<&String>| text.map(|text| parse_day(text)).transpose();
    let (to, from, interval) = match (
        day(query.to.as_ref()),
        day(query.from.as_ref()),
        query
            .interval
            .as_deref()
            .unwrap_or("day")
            .parse::<Interval>(),
    ) {
        (Ok(to), Ok(from), Ok(interval)) => (to, from, interval),
        (Err(error), _, _) | (_, Err(error), _) => return bad(error.to_string()),
        (_, _, Err(error)) => return bad(error.to_string()),
    };
    let store = Arc::clone(&state.store);
    let max_days = state.stats_max_range_days;
    let answer =
        exosphere_task::blocking(move || adds_over(&*store, &name, from, to, interval, max_days))
            .await;
    match answer {
        Ok(Ok(stats)) => axum::Json(stats).into_response(),
        Ok(Err(RangeError::Store(error))) => internal_error("reading package stats", &error),
        Ok(Err(error)) => bad(error.to_string()),
        Err(error) => internal_error("reading package stats", &error),
    }
}

/// `name`'s adds from `from` to `to` (by default the 30 days ending today, UTC), per
/// `interval`: what `/api/v1/stats/packages/NAME` answers, and what the pages chart.
fn adds_over(
    store: &dyn CatalogStore,
    name: &str,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    interval: Interval,
    max_days: u64,
) -> Result<PackageStats, RangeError> {
    let to = to.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let from = from.unwrap_or_else(|| to - chrono::Days::new(29));
    package_stats(store, name, from, to, interval, max_days)
}

/// The web catalog's usage numbers: a package's adds over a chosen range, read from the
/// catalog's stats rows as `/api/v1/stats/packages/NAME` reads them. "All time" is the
/// longest range that endpoint serves (`--stats-max-range-days`), ending today.
pub struct CatalogUsage {
    /// The catalog.
    pub store: Arc<dyn CatalogStore>,
    /// The longest range, in days.
    pub max_days: u64,
}

impl UsageSource for CatalogUsage {
    fn usage(&self, name: &str, range: UsageRange) -> Result<Usage, UsageError> {
        let days = range
            .days()
            .unwrap_or(self.max_days)
            .clamp(1, self.max_days.max(1));
        let to = chrono::Utc::now().date_naive();
        let from = to - chrono::Days::new(days - 1);
        let interval = match range.period() {
            UsagePeriod::Day => Interval::Day,
            UsagePeriod::Week => Interval::Week,
            UsagePeriod::Month => Interval::Month,
        };
        let stats = adds_over(&*self.store, name, Some(from), Some(to), interval, days)
            .map_err(|error| UsageError(error.to_string()))?;
        Ok(Usage {
            periods: stats
                .periods
                .into_iter()
                .map(|period| PeriodAdds {
                    from: period.from.to_string(),
                    to: period.to.to_string(),
                    adds: adds(&period.adds),
                    versions: versions(period.versions),
                })
                .collect(),
            versions: versions(stats.range.versions),
        })
    }
}

fn adds(adds: &CatalogAdds) -> Adds {
    Adds {
        direct: adds.direct_adds,
        total: adds.total_adds,
    }
}

fn versions(versions: Vec<CatalogVersionAdds>) -> Vec<VersionAdds> {
    versions
        .into_iter()
        .map(|version| VersionAdds {
            adds: adds(&version.adds),
            version: version.version,
        })
        .collect()
}
