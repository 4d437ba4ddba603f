//! JavaScript's `Date.prototype.toISOString`, reproduced exactly.
//!
//! Plain-JSON clients (spec §3.7) receive dates as the strings `JSON.stringify` would
//! print, so this follows ECMAScript to the letter: the time value is clipped (`TimeClip`:
//! at most 8.64e15 ms from the epoch, fractions truncated toward zero), years 0–9999 print
//! as four digits and all others as a sign plus six digits (`+275760-09-13T00:00:00.000Z`).

/// ECMAScript's limit on a `Date`'s distance from the epoch, in milliseconds.
const MAX_TIME_MS: f64 = 8.64e15;
const MS_PER_DAY: i64 = 86_400_000;

/// Formats `ms` since the epoch like JavaScript's `toISOString`, or `None` where
/// JavaScript has an invalid date (which `JSON.stringify` prints as `null`).
pub(crate) fn to_iso_string(ms: f64) -> Option<String> {
    if !ms.is_finite() || ms.abs() > MAX_TIME_MS {
        return None;
    }
    // In range after the check above, so the conversion is exact.
    let time = ms.trunc() as i64;
    let (year, month, day) = civil_from_days(time.div_euclid(MS_PER_DAY));
    let in_day = time.rem_euclid(MS_PER_DAY);
    let (hours, minutes) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (seconds, millis) = (in_day / 1000 % 60, in_day % 1000);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:06}", -year)
    } else {
        format!("+{year:06}")
    };
    Some(format!(
        "{year}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z"
    ))
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`: shift to eras of 400 years starting on 0000-03-01
/// so that leap days fall at the end of each year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(ms: f64) -> String {
        to_iso_string(ms).unwrap_or_else(|| "invalid".to_owned())
    }

    #[test]
    fn ordinary_dates() {
        assert_eq!(iso(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1424908800000.0), "2015-02-26T00:00:00.000Z");
        assert_eq!(iso(951782400000.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso(1729159506789.0), "2024-10-17T10:05:06.789Z");
        assert_eq!(iso(-1.0), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn fractions_truncate_toward_zero() {
        assert_eq!(iso(1.9), "1970-01-01T00:00:00.001Z");
        assert_eq!(iso(-1.5), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso(-0.5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn extended_years() {
        assert_eq!(iso(-62167219200000.0), "0000-01-01T00:00:00.000Z");
        assert_eq!(iso(-62167219200001.0), "-000001-12-31T23:59:59.999Z");
        assert_eq!(iso(253402300799999.0), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso(253402300800000.0), "+010000-01-01T00:00:00.000Z");
        assert_eq!(iso(8.64e15), "+275760-09-13T00:00:00.000Z");
        assert_eq!(iso(-8.64e15), "-271821-04-20T00:00:00.000Z");
    }

    #[test]
    fn invalid_dates() {
        assert_eq!(to_iso_string(8.64e15 + 1.0), None);
        assert_eq!(to_iso_string(-8.64e15 - 1.0), None);
        assert_eq!(to_iso_string(f64::NAN), None);
        assert_eq!(to_iso_string(f64::INFINITY), None);
    }
}
