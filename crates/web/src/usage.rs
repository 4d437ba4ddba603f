//! How many apps add a package, as the pages' stats section and the adds badge show it, and
//! as `GET /api/v1/stats/packages/{name}` answers it over a range. The numbers are the
//! catalog's usage statistics, which this crate must not know: the binary hands the pages
//! a [`UsageSource`] and the API a [`StatsSource`] that read them, and this module is the
//! whole of what the two sides agree on.

use serde::Deserialize;

use crate::reply::ApiError;

/// The days a usage chart covers, chosen on the page with `?range=`: each ends with the
/// current UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageRange {
    /// The last 30 days, a bar per day (`30d`, the default).
    Days30,
    /// The last 90 days, a bar per ISO week (`90d`).
    Days90,
    /// The last 365 days, a bar per month (`1y`).
    Year,
    /// Every day the source keeps, up to its longest range, a bar per month (`all`).
    All,
}

/// How a range is split into the chart's bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsagePeriod {
    /// One bar per UTC day.
    Day,
    /// One bar per ISO week (Monday to Sunday).
    Week,
    /// One bar per calendar month.
    Month,
}

impl UsageRange {
    /// Every range, in the order the page offers them.
    pub const ALL: [UsageRange; 4] = [
        UsageRange::Days30,
        UsageRange::Days90,
        UsageRange::Year,
        UsageRange::All,
    ];

    /// How many days it covers, ending today; `None` for as many as the source keeps.
    pub fn days(self) -> Option<u64> {
        match self {
            UsageRange::Days30 => Some(30),
            UsageRange::Days90 => Some(90),
            UsageRange::Year => Some(365),
            UsageRange::All => None,
        }
    }

    /// How its bars divide it.
    pub fn period(self) -> UsagePeriod {
        match self {
            UsageRange::Days30 => UsagePeriod::Day,
            UsageRange::Days90 => UsagePeriod::Week,
            UsageRange::Year | UsageRange::All => UsagePeriod::Month,
        }
    }

    /// Its value in `?range=`.
    pub fn param(self) -> &'static str {
        match self {
            UsageRange::Days30 => "30d",
            UsageRange::Days90 => "90d",
            UsageRange::Year => "1y",
            UsageRange::All => "all",
        }
    }

    /// How the page names it.
    pub fn label(self) -> &'static str {
        match self {
            UsageRange::Days30 => "30 days",
            UsageRange::Days90 => "90 days",
            UsageRange::Year => "1 year",
            UsageRange::All => "All time",
        }
    }

    /// The range a `?range=` value names.
    pub fn from_param(param: &str) -> Option<UsageRange> {
        UsageRange::ALL
            .into_iter()
            .find(|range| range.param() == param)
    }
}

/// Adds of a package (or one version of it) over some days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Adds {
    /// Apps that added it themselves (`directAdds`).
    pub direct: u64,
    /// Apps that added it, themselves or as a dependency (`totalAdds`); never below
    /// `direct`.
    pub total: u64,
}

/// One version's adds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionAdds {
    /// The version.
    pub version: String,
    /// Its adds.
    pub adds: Adds,
}

/// Adds over one bar's days.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeriodAdds {
    /// Its first day, `YYYY-MM-DD`.
    pub from: String,
    /// Its last day, `YYYY-MM-DD` (included).
    pub to: String,
    /// Every version together.
    pub adds: Adds,
    /// Per version that has adds in it, most total adds first.
    pub versions: Vec<VersionAdds>,
}

/// A package's adds over a [`UsageRange`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    /// One entry per period of the range, oldest first, each clipped to the range.
    pub periods: Vec<PeriodAdds>,
    /// The whole range per version, most total adds first.
    pub versions: Vec<VersionAdds>,
}

/// Why a [`UsageSource`] could not answer: the page then shows no numbers (and says so)
/// rather than failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the pages get usage numbers from; the binary implements it over the catalog's
/// stats rows, reading them as `GET /api/v1/stats/packages/NAME` does.
///
/// Its contract, which every implementation MUST keep:
///
/// * `usage` is blocking: the pages call it on the blocking pool, within one of the
///   bounded query turns (`--api-max-queries`), so it may read a database.
/// * The range ends with the current UTC day and covers [`UsageRange::days`] days; for
///   [`UsageRange::All`], as many as the source keeps, at most its longest range.
/// * `periods` cover the range without gaps, oldest first, split by
///   [`UsageRange::period`], the first and last clipped to the range, periods without adds
///   included (with zero adds and no versions).
/// * Every [`Adds`] has `direct <= total`; `versions` lists only versions with adds, most
///   total adds first; the sum over `periods` is the sum over `versions`.
/// * A name the source knows nothing of (a package nobody reported, or any string) has
///   zero adds: an error is only a failure of the source itself, which the page reports
///   as "numbers unavailable" without failing.
/// * Two calls with the same name and range on the same day that see the same stored
///   numbers return equal values: the pages hash the answer into their entity tags.
pub trait UsageSource: Send + Sync + 'static {
    /// `name`'s adds over `range`.
    fn usage(&self, name: &str, range: UsageRange) -> Result<Usage, UsageError>;
}

/// The query of `GET /api/v1/stats/packages/{name}` as the request gave it: each key is
/// optional, and the [`StatsSource`] reads and checks them.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct RangeQuery {
    /// The first day, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// The last day, `YYYY-MM-DD` (included).
    pub to: Option<String>,
    /// How the range is split: `day`, `week` or `month`.
    pub interval: Option<String>,
}

/// A package's adds over a range, as `/api/v1/stats/packages/{name}` answers them.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeStats {
    /// The answer's body, in the shape the API document gives it (`PackageStats`).
    pub body: serde_json::Value,
    /// Whether anything was added in the range or in the one before it (the trend's): a
    /// name without adds may be one the catalog does not hold, which answers `404`.
    pub any_adds: bool,
    /// How many seconds the numbers may be kept without asking again: a range that ended
    /// before the current UTC day changes only when late reports are rolled up; `None` for
    /// one that is still being counted (revalidate every time).
    pub max_age: Option<u64>,
}

/// Where `GET /api/v1/stats/packages/{name}` gets its answers; the binary implements it
/// over the catalog's stats rows, as [`UsageSource`] for the pages.
///
/// Its contract, which every implementation MUST keep:
///
/// * `range` is blocking: the API calls it on the blocking pool within one of the bounded
///   query turns (`--api-max-queries`), so it may read a database.
/// * It checks `name` and `query` itself and refuses what it cannot answer with a `400`
///   [`ApiError`] whose message says what is wrong (a name that is not a package name, a
///   bad date, an unknown interval, a reversed or too long range), and reports its own
///   failure as [`ApiError::internal`]; a name it holds no numbers of has zero adds.
/// * Two calls with the same name and query that see the same stored numbers on the same
///   day return equal bodies: the API's entity tags hash them.
pub trait StatsSource: Send + Sync + 'static {
    /// `name`'s adds over the range `query` asks for.
    fn range(&self, name: &str, query: &RangeQuery) -> Result<RangeStats, ApiError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_through_their_parameter() {
        for range in UsageRange::ALL {
            assert_eq!(UsageRange::from_param(range.param()), Some(range));
        }
        assert_eq!(UsageRange::from_param("7d"), None);
        assert_eq!(UsageRange::Days30.days(), Some(30));
        assert_eq!(UsageRange::All.days(), None);
        assert_eq!(UsageRange::Days90.period(), UsagePeriod::Week);
    }
}
