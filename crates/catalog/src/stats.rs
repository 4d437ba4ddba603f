//! Daily package-usage statistics as served at `GET /stats/v1/<day>` (spec §7.2): the
//! newline-delimited JSON body; and, beyond the seed API, one package's
//! totals over a date range, per period and per version, with a trend against the period
//! before ([`package_stats`]).

use std::collections::BTreeMap;

use chrono::{Datelike as _, Days, Months, NaiveDate};
use serde::Serialize;

use crate::error::StoreError;
use crate::record::StatsRow;
use crate::store::CatalogStore;

/// Appends one row's line of the `/stats/v1/<day>` body: a
/// `{"name":…,"version":…,"directAdds":N,"totalAdds":N}` object followed by `\n`. The body
/// is these lines in the store's order; a day without rows has an empty body.
pub fn push_stats_line(out: &mut String, row: &StatsRow) {
    write_stats_doc(out, row);
    out.push('\n');
}

/// Appends one row as a JSON object (no newline); shared by the HTTP body and dumps.
pub(crate) fn write_stats_doc(out: &mut String, row: &StatsRow) {
    out.push_str("{\"name\":");
    push_json_string(out, row.name());
    out.push_str(",\"version\":");
    push_json_string(out, row.version());
    out.push_str(",\"directAdds\":");
    out.push_str(&row.direct_adds().to_string());
    out.push_str(",\"totalAdds\":");
    out.push_str(&row.total_adds().to_string());
    out.push('}');
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// How a range is split into periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// One period per UTC day.
    Day,
    /// ISO weeks (Monday to Sunday).
    Week,
    /// Calendar months.
    Month,
}

/// The error for an interval other than `day`, `week` or `month`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid interval {0:?}: expected day, week or month")]
pub struct InvalidInterval(pub String);

impl std::str::FromStr for Interval {
    type Err = InvalidInterval;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Interval::Day),
            "week" => Ok(Interval::Week),
            "month" => Ok(Interval::Month),
            _ => Err(InvalidInterval(s.to_owned())),
        }
    }
}

impl Interval {
    /// The first day of the period holding `day`.
    fn start_of(self, day: NaiveDate) -> NaiveDate {
        match self {
            Interval::Day => day,
            Interval::Week => day - Days::new(u64::from(day.weekday().num_days_from_monday())),
            Interval::Month => day.with_day(1).unwrap_or(day),
        }
    }

    /// The first day of the period after the one starting at `start`.
    fn next(self, start: NaiveDate) -> Option<NaiveDate> {
        match self {
            Interval::Day => start.checked_add_days(Days::new(1)),
            Interval::Week => start.checked_add_days(Days::new(7)),
            Interval::Month => start.checked_add_months(Months::new(1)),
        }
    }
}

/// Adds of one version (or of all versions together) in some span of days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Adds {
    /// Apps that added it directly.
    pub direct_adds: u64,
    /// Apps that added it, directly or as a dependency.
    pub total_adds: u64,
}

impl Adds {
    fn add(&mut self, row: &StatsRow) {
        self.direct_adds = self.direct_adds.saturating_add(row.direct_adds());
        self.total_adds = self.total_adds.saturating_add(row.total_adds());
    }
}

/// One version's adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionAdds {
    /// The version.
    pub version: String,
    /// Its adds.
    #[serde(flatten)]
    pub adds: Adds,
}

/// Adds over a span of days: summed, and per version (most total adds first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanAdds {
    /// First day of the span.
    pub from: NaiveDate,
    /// Last day of the span (included).
    pub to: NaiveDate,
    /// All versions together.
    #[serde(flatten)]
    pub adds: Adds,
    /// Per version.
    pub versions: Vec<VersionAdds>,
}

impl SpanAdds {
    fn new(from: NaiveDate, to: NaiveDate, rows: &[&StatsRow]) -> SpanAdds {
        let mut adds = Adds::default();
        let mut versions: BTreeMap<&str, Adds> = BTreeMap::new();
        for row in rows {
            adds.add(row);
            versions.entry(row.version()).or_default().add(row);
        }
        let mut versions: Vec<VersionAdds> = versions
            .into_iter()
            .map(|(version, adds)| VersionAdds {
                version: version.to_owned(),
                adds,
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.adds.total_adds));
        SpanAdds {
            from,
            to,
            adds,
            versions,
        }
    }
}

/// This range against the range of the same length just before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trend {
    /// The previous range's first day.
    pub previous_from: NaiveDate,
    /// The previous range's last day.
    pub previous_to: NaiveDate,
    /// The previous range's adds.
    pub previous: Adds,
    /// Relative change of `totalAdds` (0.25 is +25 %); `null` when the previous range had
    /// none.
    pub total_adds_change: Option<f64>,
    /// Relative change of `directAdds`; `null` when the previous range had none.
    pub direct_adds_change: Option<f64>,
}

/// One package's adds over a date range: `GET /api/v1/stats/packages/NAME`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageStats {
    /// The package name.
    pub name: String,
    /// How `periods` splits the range.
    pub interval: Interval,
    /// The whole range: summed and per version.
    #[serde(flatten)]
    pub range: SpanAdds,
    /// One entry per period that overlaps the range (clipped to it), oldest first.
    pub periods: Vec<SpanAdds>,
    /// The range against the one before it.
    pub trend: Trend,
}

/// Why a range query was refused.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    /// `from` is after `to`.
    #[error("from ({from}) is after to ({to})")]
    Reversed {
        /// The first day asked for.
        from: NaiveDate,
        /// The last day asked for.
        to: NaiveDate,
    },
    /// The range has more days than allowed.
    #[error("the range has {days} days; at most {max} are allowed")]
    TooLong {
        /// Days in the range.
        days: u64,
        /// The configured limit.
        max: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sums `name`'s stats rows from `from` to `to` (included): in total, per version and per
/// `interval`, plus the trend against the `days`-long range right before `from`. Reads the
/// stats rows only (rolled-up and imported alike), in one query. Ranges longer than
/// `max_days` are refused, so one request cannot ask for unbounded work.
pub fn package_stats(
    store: &dyn CatalogStore,
    name: &str,
    from: NaiveDate,
    to: NaiveDate,
    interval: Interval,
    max_days: u64,
) -> Result<PackageStats, RangeError> {
    if from > to {
        return Err(RangeError::Reversed { from, to });
    }
    let days = u64::try_from((to - from).num_days())
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    if days > max_days {
        return Err(RangeError::TooLong {
            days,
            max: max_days,
        });
    }
    let previous_to = from.pred_opt().unwrap_or(from);
    let previous_from = from
        .checked_sub_days(Days::new(days))
        .unwrap_or(NaiveDate::MIN);
    let rows = store.package_stats_rows(name, previous_from, to)?;
    let first_day = from.to_string();
    let (previous_rows, current): (Vec<&StatsRow>, Vec<&StatsRow>) =
        rows.iter().partition(|row| row.date() < first_day.as_str());
    let periods = split_periods(&current, from, to, interval);
    let range = SpanAdds::new(from, to, &current);
    let previous = SpanAdds::new(previous_from, previous_to, &previous_rows).adds;
    let change =
        |now: u64, before: u64| (before > 0).then(|| (now as f64 - before as f64) / before as f64);
    let trend = Trend {
        previous_from,
        previous_to,
        total_adds_change: change(range.adds.total_adds, previous.total_adds),
        direct_adds_change: change(range.adds.direct_adds, previous.direct_adds),
        previous,
    };
    Ok(PackageStats {
        name: name.to_owned(),
        interval,
        range,
        periods,
        trend,
    })
}

/// Splits `rows` (days `from` ..= `to`, ordered by day as
/// [`CatalogStore::package_stats_rows`] returns them) into one [`SpanAdds`] per `interval`
/// period, clipped to the range. One pass over the rows: each period takes the run of rows
/// up to its last day, so a long range of short periods costs rows + periods, not their
/// product.
fn split_periods(
    rows: &[&StatsRow],
    from: NaiveDate,
    to: NaiveDate,
    interval: Interval,
) -> Vec<SpanAdds> {
    let mut periods = Vec::new();
    let mut rest = rows;
    let mut start = interval.start_of(from);
    while start <= to {
        let next = interval.next(start);
        let end = next
            .and_then(|next| next.pred_opt())
            .unwrap_or(NaiveDate::MAX)
            .min(to);
        let last_day = end.to_string();
        let taken = rest.partition_point(|row| row.date() <= last_day.as_str());
        let (in_period, after) = rest.split_at(taken);
        periods.push(SpanAdds::new(start.max(from), end, in_period));
        rest = after;
        match next {
            Some(next) => start = next,
            None => break,
        }
    }
    periods
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::day::parse_day;

    fn day(text: &str) -> NaiveDate {
        parse_day(text).unwrap()
    }

    /// The one-pass split gives each period exactly its own rows, over a long range of
    /// short periods with rows on period edges, several per day and empty periods between.
    #[test]
    fn periods_take_exactly_their_rows_in_one_pass() {
        let from = day("2015-01-01");
        let to = from + Days::new(3659);
        let mut rows = Vec::new();
        let mut expected_per_week: BTreeMap<NaiveDate, u64> = BTreeMap::new();
        let mut d = from;
        let mut n = 0;
        while d <= to {
            if n % 5 != 3 {
                for version in ["1.0.0", "1.1.0"] {
                    rows.push(StatsRow::new(d.to_string(), "p", version, 1, n % 7).unwrap());
                }
                *expected_per_week
                    .entry(Interval::Week.start_of(d).max(from))
                    .or_default() += 2 * (n % 7);
            }
            d = d.succ_opt().unwrap();
            n += 1;
        }
        let refs: Vec<&StatsRow> = rows.iter().collect();
        let days = split_periods(&refs, from, to, Interval::Day);
        assert_eq!(days.len(), 3660);
        for (i, period) in days.iter().enumerate() {
            let i = i as u64;
            let want = if i % 5 == 3 { 0 } else { 2 * (i % 7) };
            assert_eq!(period.adds.total_adds, want, "{}", period.from);
            assert_eq!(period.from, period.to);
        }
        let weeks = split_periods(&refs, from, to, Interval::Week);
        let got: BTreeMap<NaiveDate, u64> =
            weeks.iter().map(|w| (w.from, w.adds.total_adds)).collect();
        assert_eq!(got, expected_per_week);
        assert_eq!(
            weeks.first().map(|w| w.from),
            Some(from),
            "clipped to the range"
        );
        assert_eq!(weeks.last().map(|w| w.to), Some(to));
        let months = split_periods(&refs, from, to, Interval::Month);
        assert_eq!(months.len(), 121);
        let all: u64 = months.iter().map(|m| m.adds.direct_adds).sum();
        assert_eq!(all, rows.len() as u64, "every row lands in one period");
    }

    #[test]
    fn renders_one_json_object_per_line() {
        let rows = [
            StatsRow::new("2015-01-02", "tracker", "1.0.1", 250, 1000).unwrap(),
            StatsRow::new("2015-01-02", "iron:router", "1.0.0", 200, 800).unwrap(),
        ];
        let mut body = String::new();
        rows.iter().for_each(|row| push_stats_line(&mut body, row));
        assert_eq!(
            body,
            "{\"name\":\"tracker\",\"version\":\"1.0.1\",\"directAdds\":250,\"totalAdds\":1000}\n\
             {\"name\":\"iron:router\",\"version\":\"1.0.0\",\"directAdds\":200,\"totalAdds\":800}\n"
        );
    }

    #[test]
    fn strings_are_json_escaped() {
        let row = StatsRow::new("2015-01-02", "a\"b\\c\u{1}\n", "1.0.0-é", 0, 0).unwrap();
        let mut line = String::new();
        push_stats_line(&mut line, &row);
        let parsed: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(parsed["name"], "a\"b\\c\u{1}\n");
        assert_eq!(parsed["version"], "1.0.0-é");
    }
}
