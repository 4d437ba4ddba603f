//! Why decoding EJSON can fail.
//!
//! Decoding mirrors Meteor's `EJSON.fromJSONValue`, which throws on malformed tagged
//! values; every such case maps to one [`EjsonError`] variant so callers (the DDP layer
//! answers them with a `Parse error`) can report a precise reason.

use serde_json::Value;

/// A failure to read EJSON text or to decode a JSON value as EJSON.
#[derive(Debug, thiserror::Error)]
pub enum EjsonError {
    /// The text is not JSON at all.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `{"$date": x}` where `x` is not a number.
    #[error("`$date` must be a number of milliseconds, found {0}")]
    InvalidDate(&'static str),
    /// `{"$binary": x}` where `x` is not a string of standard base64.
    #[error("`$binary` must be a standard base64 string: {0}")]
    InvalidBinary(String),
    /// `{"$InfNaN": x}` where `x` is not a number.
    #[error("`$InfNaN` must be a number, found {0}")]
    InvalidInfNaN(&'static str),
    /// `{"$regexp": s, "$flags": f}` where `s` or `f` is not a string.
    #[error("`$regexp` and `$flags` must both be strings")]
    InvalidRegexp,
    /// `{"$escape": x}` where `x` is not an object.
    #[error("`$escape` must wrap an object, found {0}")]
    InvalidEscape(&'static str),
    /// `{"$type": t, "$value": v}`: no custom EJSON types are registered here.
    #[error("custom EJSON type {0} is not defined")]
    UnknownCustomType(String),
}

/// A short name of a JSON value's type ("a string", "an object"), for error messages here
/// and in crates that validate JSON input.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            EjsonError::InvalidDate(json_kind(&json!("x"))).to_string(),
            "`$date` must be a number of milliseconds, found a string"
        );
        assert_eq!(
            EjsonError::UnknownCustomType("\"oid\"".to_owned()).to_string(),
            "custom EJSON type \"oid\" is not defined"
        );
        assert_eq!(json_kind(&json!([])), "an array");
        assert_eq!(json_kind(&json!({})), "an object");
        assert_eq!(json_kind(&json!(null)), "null");
        assert_eq!(json_kind(&json!(true)), "a boolean");
    }
}
