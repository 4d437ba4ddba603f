//! Daily package-usage statistics as served at `GET /stats/v1/<day>` (spec §7.2): day
//! validation and the newline-delimited JSON body.

use chrono::NaiveDate;

use crate::record::StatsRow;

/// The error for a day that is not a real calendar date written as `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid day {0:?}: expected a calendar date written YYYY-MM-DD")]
pub struct InvalidDay(pub String);

/// Parses a day written exactly `YYYY-MM-DD` (four-digit year, zero-padded month and day)
/// that names a real calendar date, so that `/stats/v1/<day>` URLs and stored rows agree
/// on one spelling per day.
pub fn parse_day(day: &str) -> Result<NaiveDate, InvalidDay> {
    let bytes = day.as_bytes();
    let shaped = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| InvalidDay(day.to_owned()))
}

/// Renders a day's rows as the `/stats/v1/<day>` body: one
/// `{"name":…,"version":…,"directAdds":N,"totalAdds":N}` object per line, each followed
/// by `\n`; no rows give an empty body.
pub fn render_stats_day(rows: &[StatsRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 80);
    for row in rows {
        write_stats_doc(&mut out, row);
        out.push('\n');
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_must_be_real_and_zero_padded() {
        for ok in ["2015-01-01", "2016-02-29", "1999-12-31"] {
            assert_eq!(parse_day(ok).map(|d| d.to_string()).as_deref(), Ok(ok));
        }
        for bad in [
            "2015-02-29",
            "2015-13-01",
            "2015-00-10",
            "2015-1-01",
            "2015-01-1",
            "15-01-01",
            "2015-01-01 ",
            "2015/01/01",
            "+015-01-01",
            "",
            "2015-01-0١",
        ] {
            assert_eq!(parse_day(bad), Err(InvalidDay(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn renders_one_json_object_per_line() {
        let rows = [
            StatsRow::new("2015-01-02", "tracker", "1.0.1", 250, 1000).unwrap(),
            StatsRow::new("2015-01-02", "iron:router", "1.0.0", 200, 800).unwrap(),
        ];
        assert_eq!(
            render_stats_day(&rows),
            "{\"name\":\"tracker\",\"version\":\"1.0.1\",\"directAdds\":250,\"totalAdds\":1000}\n\
             {\"name\":\"iron:router\",\"version\":\"1.0.0\",\"directAdds\":200,\"totalAdds\":800}\n"
        );
        assert_eq!(render_stats_day(&[]), "");
    }

    #[test]
    fn strings_are_json_escaped() {
        let row = StatsRow::new("2015-01-02", "a\"b\\c\u{1}\n", "1.0.0-é", 0, 0).unwrap();
        let line = render_stats_day(std::slice::from_ref(&row));
        let parsed: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(parsed["name"], "a\"b\\c\u{1}\n");
        assert_eq!(parsed["version"], "1.0.0-é");
    }
}
