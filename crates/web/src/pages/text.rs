//! How values read on a page, for the templates to call (`text::day(date)`): dates as
//! days, lists joined, counts with their noun.

use exosphere_index::Export;

/// The day of an ISO-8601 date (`2015-01-22` of `2015-01-22T00:00:00.000Z`).
pub fn day(date: &str) -> &str {
    date.get(..10).unwrap_or(date)
}

/// An export's architectures as the page lists them.
pub fn architectures(export: &Export) -> String {
    if export.architectures.is_empty() {
        "all".to_owned()
    } else {
        export.architectures.join(", ")
    }
}

/// `count` and its noun, singular or plural (`1 package`, `2 packages`); by reference,
/// as templates pass their values.
pub fn count(count: &u64, one: &str, many: &str) -> String {
    format!("{count} {}", if *count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_words() {
        assert_eq!(day("2015-01-22T00:00:00.000Z"), "2015-01-22");
        assert_eq!(day("2015"), "2015");
        assert_eq!(count(&1, "package", "packages"), "1 package");
        assert_eq!(count(&0, "package", "packages"), "0 packages");
        let export = Export {
            name: "Router".into(),
            architectures: vec![],
        };
        assert_eq!(architectures(&export), "all");
    }
}
