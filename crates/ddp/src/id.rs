//! Meteor-style random identifiers.
//!
//! Meteor's `Random.id()` makes 17 characters from an alphabet without look-alike
//! characters (spec §1.2). Session ids use it; services may use it for document ids.

use rand::Rng as _;

/// `Random.id()`'s alphabet: no `0`, `1`, `I`, `O`, `V`, `l`.
const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";

/// The length of a `Random.id()`.
const ID_LEN: usize = 17;

/// A fresh 17-character id from a cryptographically secure generator.
pub fn random_id() -> String {
    let mut rng = rand::rng();
    (0..ID_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let id = random_id();
        assert_eq!(id.len(), 17);
        assert!(id.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(ALPHABET.len(), 55);
        assert_ne!(random_id(), id);
    }
}
