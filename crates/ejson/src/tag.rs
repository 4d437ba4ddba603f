//! Recognising the wire shape of EJSON's tagged values.
//!
//! Decoding and encoding must agree on exactly which objects look like tagged values:
//! the decoder interprets them, the encoder wraps user objects of that shape in
//! `$escape`. Both use [`Tag::of_keys`], which implements the converter order of spec §2
//! (`fromJSONValueHelper`): Date, RegExp, InfNaN, Binary, Escape, Custom.

/// Which tagged EJSON type an object's keys denote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    Date,
    Regexp,
    InfNaN,
    Binary,
    Escape,
    Custom,
}

impl Tag {
    /// Matches an object with `len` keys, `has` telling whether a key is present.
    ///
    /// Objects with more than two keys, or with a key not starting with `$`, are never
    /// tagged values; neither is a candidate that matches no converter (`{"$foo": 1}`).
    pub(crate) fn of_keys<'a>(keys: impl Iterator<Item = &'a str> + Clone) -> Option<Tag> {
        let len = keys.clone().count();
        if len == 0 || len > 2 || !keys.clone().all(|k| k.starts_with('$')) {
            return None;
        }
        let has = |name: &str| keys.clone().any(|k| k == name);
        if len == 1 && has("$date") {
            Some(Tag::Date)
        } else if len == 2 && has("$regexp") && has("$flags") {
            Some(Tag::Regexp)
        } else if len == 1 && has("$InfNaN") {
            Some(Tag::InfNaN)
        } else if len == 1 && has("$binary") {
            Some(Tag::Binary)
        } else if len == 1 && has("$escape") {
            Some(Tag::Escape)
        } else if len == 2 && has("$type") && has("$value") {
            Some(Tag::Custom)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(keys: &[&str]) -> Option<Tag> {
        Tag::of_keys(keys.iter().copied())
    }

    #[test]
    fn recognises_every_tag() {
        assert_eq!(tag(&["$date"]), Some(Tag::Date));
        assert_eq!(tag(&["$flags", "$regexp"]), Some(Tag::Regexp));
        assert_eq!(tag(&["$InfNaN"]), Some(Tag::InfNaN));
        assert_eq!(tag(&["$binary"]), Some(Tag::Binary));
        assert_eq!(tag(&["$escape"]), Some(Tag::Escape));
        assert_eq!(tag(&["$value", "$type"]), Some(Tag::Custom));
    }

    #[test]
    fn non_matching_shapes_are_plain() {
        assert_eq!(tag(&[]), None);
        assert_eq!(tag(&["$foo"]), None);
        assert_eq!(tag(&["$date", "$foo"]), None);
        assert_eq!(tag(&["$date", "x"]), None);
        assert_eq!(tag(&["$regexp"]), None);
        assert_eq!(tag(&["$type"]), None);
        assert_eq!(tag(&["$type", "$value", "$x"]), None);
        assert_eq!(tag(&["date"]), None);
    }
}
