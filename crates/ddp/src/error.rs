//! Errors a service returns to DDP clients, and the "session is gone" signal.
//!
//! [`DdpError`] is a `Meteor.Error`: the client rebuilds `new Meteor.Error(error, reason,
//! details)` from it and shows `reason [error]`, so its wire shape follows spec §1.3 to
//! the key. [`SessionClosed`] tells publications and internals to stop producing output.

use std::fmt;

use serde_json::{Map, Value};

/// The `error` code of a [`DdpError`]: Meteor allows numbers (HTTP-like) and strings.
///
/// The type matters to clients: the `meteor` tool compares `err.error === 401` (a number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// A numeric code such as `404` or `401`.
    Number(i64),
    /// A textual code such as `"not-authorized"`.
    Text(String),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(s) => f.write_str(s),
        }
    }
}

impl From<i64> for ErrorCode {
    fn from(code: i64) -> Self {
        Self::Number(code)
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        Self::Text(code.to_owned())
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        Self::Text(code)
    }
}

/// A client-safe error (`Meteor.Error`) sent in a method `result` or a `nosub`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.message())]
pub struct DdpError {
    /// The code the client branches on.
    pub error: ErrorCode,
    /// The human-readable explanation the `meteor` tool prints.
    pub reason: Option<String>,
    /// Optional structured detail, sent as-is.
    pub details: Option<Value>,
}

impl DdpError {
    /// An error with `code` and a human `reason`.
    pub fn new(code: impl Into<ErrorCode>, reason: impl Into<String>) -> Self {
        Self {
            error: code.into(),
            reason: Some(reason.into()),
            details: None,
        }
    }

    /// Attaches structured `details`.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 `Method '<name>' not found`, the answer to an unknown method (spec §1.3).
    pub fn method_not_found(name: &str) -> Self {
        Self::new(404, format!("Method '{name}' not found"))
    }

    /// 404 `Subscription '<name>' not found`, the answer to an unknown publication.
    pub fn sub_not_found(name: &str) -> Self {
        Self::new(404, format!("Subscription '{name}' not found"))
    }

    /// 500 `Internal server error`: what clients see instead of an unexpected failure.
    pub fn internal() -> Self {
        Self::new(500, "Internal server error")
    }

    /// 400 with `reason`: the client sent something the service cannot accept.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(400, reason)
    }

    /// Meteor's `message`: `"<reason> [<error>]"`, or `"[<error>]"` without a reason.
    pub fn message(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{reason} [{}]", self.error),
            None => format!("[{}]", self.error),
        }
    }

    /// Rebuilds an error object a server sent (in a `result` or a `nosub`) as Meteor's
    /// client does, from `error`, `reason` and `details` only (spec §1.3). `None` when it
    /// is not an object with a string or numeric code.
    pub fn from_wire(value: &Value) -> Option<DdpError> {
        let error = match value.get("error")? {
            Value::String(code) => ErrorCode::Text(code.clone()),
            Value::Number(code) => match code.as_i64() {
                Some(code) => ErrorCode::Number(code),
                None => ErrorCode::Text(code.to_string()),
            },
            _ => return None,
        };
        Some(DdpError {
            error,
            reason: value
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
            details: value.get("details").cloned(),
        })
    }

    /// The wire object, keys in the order Meteor emits them (spec §1.3).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("isClientSafe".to_owned(), Value::Bool(true));
        let code = match &self.error {
            ErrorCode::Number(n) => Value::from(*n),
            ErrorCode::Text(s) => Value::from(s.as_str()),
        };
        map.insert("error".to_owned(), code);
        if let Some(reason) = &self.reason {
            map.insert("reason".to_owned(), Value::from(reason.as_str()));
        }
        if let Some(details) = &self.details {
            map.insert("details".to_owned(), details.clone());
        }
        map.insert("message".to_owned(), Value::from(self.message()));
        map.insert("errorType".to_owned(), Value::from("Meteor.Error"));
        Value::Object(map)
    }
}

/// The session (or the subscription) has ended; nothing more can be sent through it.
///
/// Publications get this from [`Subscription`](crate::Subscription) calls after `unsub`,
/// after the subscription stopped itself, or once the connection is gone; they should
/// then stop producing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the DDP session or subscription has ended")]
pub struct SessionClosed;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_method_matches_meteor_byte_for_byte() {
        // Spec §1.3: the exact error object of an unknown method.
        assert_eq!(
            DdpError::method_not_found("foo").to_json().to_string(),
            r#"{"isClientSafe":true,"error":404,"reason":"Method 'foo' not found","message":"Method 'foo' not found [404]","errorType":"Meteor.Error"}"#
        );
    }

    #[test]
    fn errors_from_the_wire_round_trip() {
        let sent = DdpError::new("not-authorized", "Nope").with_details(json!({"pkg": "a"}));
        assert_eq!(DdpError::from_wire(&sent.to_json()), Some(sent));
        assert_eq!(
            DdpError::from_wire(&DdpError::method_not_found("foo").to_json()),
            Some(DdpError::method_not_found("foo"))
        );
        assert_eq!(DdpError::from_wire(&json!({"reason": "no code"})), None);
        assert_eq!(DdpError::from_wire(&json!("text")), None);
    }

    #[test]
    fn constructors() {
        assert_eq!(
            DdpError::internal().message(),
            "Internal server error [500]"
        );
        assert_eq!(DdpError::bad_request("no").error, ErrorCode::Number(400));
        assert_eq!(
            DdpError::sub_not_found("x").reason.as_deref(),
            Some("Subscription 'x' not found")
        );
    }

    #[test]
    fn text_codes_details_and_missing_reason() {
        let err = DdpError::new("not-authorized", "Nope").with_details(json!({"pkg": "a"}));
        assert_eq!(
            err.to_json(),
            json!({"isClientSafe": true, "error": "not-authorized", "reason": "Nope",
                   "details": {"pkg": "a"}, "message": "Nope [not-authorized]",
                   "errorType": "Meteor.Error"})
        );
        let bare = DdpError {
            error: ErrorCode::Number(401),
            reason: None,
            details: None,
        };
        assert_eq!(bare.to_string(), "[401]");
        assert_eq!(bare.to_json()["message"], json!("[401]"));
        assert!(bare.to_json().get("reason").is_none());
    }
}
