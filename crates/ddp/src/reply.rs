//! What a method call returns to the client: nothing, an EJSON value, or EJSON text.
//!
//! A leaf shared by the [`Service`](crate::Service) boundary, which produces replies, and
//! the message encoder, which writes them into `result` frames.

use exosphere_ejson::Ejson;

/// A method's successful outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The method returned nothing: the `result` key is omitted (JavaScript `undefined`).
    None,
    /// An EJSON value, encoded by the DDP layer (`Ejson::Null` is sent as `"result":null`).
    Value(Ejson),
    /// Already-encoded EJSON text, embedded in the frame verbatim without re-parsing.
    ///
    /// This is the sync hot path. The text must be exactly one valid JSON value in EJSON
    /// encoding; it is not checked.
    Raw(String),
}

impl From<Ejson> for Reply {
    fn from(value: Ejson) -> Self {
        Self::Value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_from_value() {
        assert_eq!(Reply::from(Ejson::Null), Reply::Value(Ejson::Null));
    }
}
