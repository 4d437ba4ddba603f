//! Usage statistics over HTTP: the daily files at `/stats/v1/<day>` (spec §7.2), served
//! from [`StatsFiles`](crate::stats_files::StatsFiles) in chunks, and the catalog's stats
//! rows as the web catalog asks for them ([`CatalogUsage`]): one package's range at
//! `/api/v1/stats/packages/<name>` (answered by `exosphere-web` with the rest of the API)
//! and the ranges the pages chart.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
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
    Adds, ApiError, PeriodAdds, RangeQuery, RangeStats, StatsSource, Usage, UsageError,
    UsagePeriod, UsageRange, UsageSource, VersionAdds,
};

use super::{AppState, internal_error};

/// The `max-age` of a finished day's answer, in seconds: of a `/stats/v1` file, and of a
/// range that ended before today. Late reports re-open a day only when rolled up again.
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

/// The web catalog's usage numbers, read from the catalog's stats rows: a package's adds
/// over any range for `/api/v1/stats/packages/NAME` ([`StatsSource`]), and over a chosen
/// range for the pages ([`UsageSource`]), whose "all time" is the longest range the API
/// serves (`--stats-max-range-days`), ending today.
pub struct CatalogUsage {
    /// The catalog.
    pub store: Arc<dyn CatalogStore>,
    /// The longest range, in days.
    pub max_days: u64,
}

impl StatsSource for CatalogUsage {
    /// `GET /api/v1/stats/packages/<name>?from=D&to=D&interval=day|week|month`: `name`'s
    /// adds over a range of UTC days (default: the 30 days ending today), summed, per
    /// version and per period, with the trend against the range before, from the same stats
    /// rows as `/stats/v1`; a `400` names what is wrong with a bad name or query.
    fn range(&self, name: &str, query: &RangeQuery) -> Result<RangeStats, ApiError> {
        let invalid = |message: String| ApiError::bad_request("invalid_parameter", message);
        if !is_package_name(name) {
            return Err(invalid(format!(
                "{name:?} is not a Meteor package name: ask for one such as iron:router or \
                 ecmascript"
            )));
        }
        let day = |key: &str, text: &Option<String>| {
            text.as_deref()
                .map(|text| parse_day(text).map_err(|error| invalid(format!("{key}: {error}"))))
                .transpose()
        };
        let (from, to) = (day("from", &query.from)?, day("to", &query.to)?);
        let interval = query
            .interval
            .as_deref()
            .unwrap_or("day")
            .parse::<Interval>()
            .map_err(|error| invalid(error.to_string()))?;
        let stats =
            adds_over(&*self.store, name, from, to, interval, self.max_days).map_err(|error| {
                match error {
                    RangeError::Store(error) => ApiError::internal(&error),
                    RangeError::Reversed { .. } => {
                        invalid(format!("{error}: give from on or before to"))
                    }
                    RangeError::TooLong { .. } => {
                        invalid(format!("{error}: ask for it in shorter ranges"))
                    }
                }
            })?;
        let finished = stats.range.to < chrono::Utc::now().date_naive();
        Ok(RangeStats {
            any_adds: stats.range.adds.total_adds > 0 || stats.trend.previous.total_adds > 0,
            max_age: finished.then_some(MAX_AGE),
            body: serde_json::to_value(&stats).map_err(|error| ApiError::internal(&error))?,
        })
    }
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
