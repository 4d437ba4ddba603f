//! Meteor's naming rules: which strings are package names.

/// Meteor's package name rules (`utils.validatePackageName`): lowercase letters, digits,
/// `.`, `-` and at most one `:`, at least one letter, not starting with `.`, `:` or `-`.
pub fn is_package_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":.-".contains(&b))
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with(['.', ':', '-'])
        && !name.ends_with(['.', ':'])
        && !name.contains("..")
        && name.matches(':').count() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_meteor() {
        for ok in ["tracker", "iron:router", "mrt:moment.js", "a1-b", "1a"] {
            assert!(is_package_name(ok), "{ok}");
        }
        for bad in [
            "", "Tracker", "a::b", "a:b:c", ".a", "-a", "a.", "a..b", "123", "a b",
        ] {
            assert!(!is_package_name(bad), "{bad}");
        }
    }
}
