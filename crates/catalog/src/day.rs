//! UTC days as `/stats/v1/<day>` URLs, stats rows and usage recordings write them:
//! exactly `YYYY-MM-DD`, one spelling per day.

use chrono::NaiveDate;

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
}
