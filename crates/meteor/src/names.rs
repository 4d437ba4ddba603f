//! Meteor's naming rules: which strings are package names and release track names.

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

/// A release track name: a package name's rules, but upper case is allowed (`METEOR`).
pub fn is_track_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":.-".contains(&b))
        && name.bytes().any(|b| b.is_ascii_alphabetic())
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

    #[test]
    fn track_names_follow_meteor_and_allow_upper_case() {
        for ok in ["METEOR", "acme:RELEASE", "a1-b.c"] {
            assert!(is_track_name(ok), "{ok}");
        }
        for bad in ["", "a::b", ".A", "A.", "A..B", "123", "A B", "a:b:c"] {
            assert!(!is_track_name(bad), "{bad}");
        }
    }
}
