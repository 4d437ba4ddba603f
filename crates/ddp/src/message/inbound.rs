//! Parsing one client text frame (spec §1.2, §1.3).
//!
//! The order of checks is Meteor's (`Server` socket handler, `Session.processMessage`,
//! `protocol_handlers`), because it decides which protocol error a client sees:
//!
//! 1. not JSON, or not an object → `Bad request` without `offendingMessage`;
//! 2. `fields`/`params`/`result` fail EJSON decoding → `Parse error` (Meteor sends no
//!    `offendingMessage` for it either);
//! 3. `msg` missing or falsy → `Bad request` with the message;
//! 4. otherwise the message is classified; shape errors of `method`/`sub` become
//!    [`ClientMessage::Malformed`], reported only once the session exists (before that
//!    the session answers `Must connect first`).
//!
//! Unknown fields are ignored. The parsed object is kept as [`Inbound::raw`] so any
//! later error can quote it as `offendingMessage`.

use exosphere_ejson::Ejson;
use serde_json::{Map, Value};

/// A top-level protocol error, answered with `{"msg":"error","reason":…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    BadRequest,
    ParseError,
    MustConnectFirst,
    AlreadyConnected,
    MalformedSubscription,
    MalformedMethodInvocation,
}

impl ProtocolError {
    /// The exact `reason` text Meteor uses.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad request",
            Self::ParseError => "Parse error",
            Self::MustConnectFirst => "Must connect first",
            Self::AlreadyConnected => "Already connected",
            Self::MalformedSubscription => "Malformed subscription",
            Self::MalformedMethodInvocation => "Malformed method invocation",
        }
    }
}

/// A frame refused before it could be classified.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) error: ProtocolError,
    /// The parsed message to quote, when Meteor would quote it.
    pub(crate) offending: Option<Value>,
    /// Why, for the server's log.
    pub(crate) cause: String,
}

/// A method invocation that passed the shape checks.
#[derive(Debug, PartialEq)]
pub(crate) struct MethodCall {
    pub(crate) id: String,
    pub(crate) method: String,
    pub(crate) params: Vec<Ejson>,
}

/// A subscription request that passed the shape checks.
#[derive(Debug, PartialEq)]
pub(crate) struct SubRequest {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) params: Vec<Ejson>,
}

/// What a client frame asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum ClientMessage {
    /// `connect`: `version` if it is a string, `support` if it is an array of strings.
    Connect {
        version: Option<String>,
        support: Option<Vec<String>>,
    },
    /// `ping`, with its `id` (any JSON) to echo.
    Ping { id: Option<Value> },
    /// `pong`.
    Pong,
    /// `method`.
    Method(MethodCall),
    /// `sub`.
    Sub(SubRequest),
    /// `unsub`, with its `id` as sent (Meteor answers `nosub` echoing it, valid or not).
    Unsub { id: Option<Value> },
    /// A `method` or `sub` with the wrong field types.
    Malformed(ProtocolError),
    /// Any other `msg`.
    Unknown,
}

/// A parsed client frame.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) message: ClientMessage,
    /// The JSON object as received, for `offendingMessage`.
    pub(crate) raw: Value,
}

impl Inbound {
    /// Parses one text frame.
    pub(crate) fn parse(text: &str) -> Result<Inbound, Rejected> {
        let raw: Value = serde_json::from_str(text).map_err(|e| Rejected {
            error: ProtocolError::BadRequest,
            offending: None,
            cause: format!("invalid JSON: {e}"),
        })?;
        let Value::Object(object) = &raw else {
            return Err(Rejected {
                error: ProtocolError::BadRequest,
                offending: None,
                cause: "not a JSON object".to_owned(),
            });
        };
        let mut params = None;
        for key in ["fields", "params", "result"] {
            if let Some(value) = object.get(key) {
                let decoded = Ejson::from_json(value.clone()).map_err(|e| Rejected {
                    error: ProtocolError::ParseError,
                    offending: None,
                    cause: format!("`{key}`: {e}"),
                })?;
                if key == "params" {
                    params = Some(decoded);
                }
            }
        }
        if !is_truthy(object.get("msg")) {
            return Err(Rejected {
                error: ProtocolError::BadRequest,
                offending: Some(raw.clone()),
                cause: "missing `msg`".to_owned(),
            });
        }
        let message = classify(object, params);
        Ok(Inbound { message, raw })
    }
}

/// JavaScript truthiness of an optional field (`!msg.msg` in Meteor).
fn is_truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_) | Value::Object(_)) => true,
    }
}

fn classify(object: &Map<String, Value>, params: Option<Ejson>) -> ClientMessage {
    let Some(Value::String(msg)) = object.get("msg") else {
        return ClientMessage::Unknown;
    };
    match msg.as_str() {
        "connect" => ClientMessage::Connect {
            version: string_field(object, "version"),
            support: string_array(object.get("support")),
        },
        "ping" => ClientMessage::Ping {
            id: object.get("id").cloned(),
        },
        "pong" => ClientMessage::Pong,
        "method" => method(object, params),
        "sub" => sub(object, params),
        "unsub" => ClientMessage::Unsub {
            id: object.get("id").cloned(),
        },
        _ => ClientMessage::Unknown,
    }
}

/// Checks Meteor applies to `method`: string `id` and `method`, array `params` if present,
/// string `randomSeed` if present.
fn method(object: &Map<String, Value>, params: Option<Ejson>) -> ClientMessage {
    let malformed = ClientMessage::Malformed(ProtocolError::MalformedMethodInvocation);
    let (Some(id), Some(method), Some(params)) = (
        string_field(object, "id"),
        string_field(object, "method"),
        params_array(params),
    ) else {
        return malformed;
    };
    if object
        .get("randomSeed")
        .is_some_and(|seed| !seed.is_string())
    {
        return malformed;
    }
    ClientMessage::Method(MethodCall { id, method, params })
}

/// Checks Meteor applies to `sub`: string `id` and `name`, array `params` if present.
fn sub(object: &Map<String, Value>, params: Option<Ejson>) -> ClientMessage {
    match (
        string_field(object, "id"),
        string_field(object, "name"),
        params_array(params),
    ) {
        (Some(id), Some(name), Some(params)) => ClientMessage::Sub(SubRequest { id, name, params }),
        _ => ClientMessage::Malformed(ProtocolError::MalformedSubscription),
    }
}

/// Absent `params` mean none; present ones must be an array.
fn params_array(params: Option<Ejson>) -> Option<Vec<Ejson>> {
    match params {
        None => Some(Vec::new()),
        Some(Ejson::Array(items)) => Some(items),
        Some(_) => None,
    }
}

fn string_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn string_array(value: Option<&Value>) -> Option<Vec<String>> {
    value?
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(text: &str) -> ClientMessage {
        match Inbound::parse(text) {
            Ok(inbound) => inbound.message,
            Err(rejected) => panic!("rejected {text}: {rejected:?}"),
        }
    }

    fn rejected(text: &str) -> (ProtocolError, Option<Value>) {
        match Inbound::parse(text) {
            Ok(inbound) => panic!("accepted {text}: {inbound:?}"),
            Err(rejected) => (rejected.error, rejected.offending),
        }
    }

    #[test]
    fn reasons_are_meteors() {
        let all = [
            (ProtocolError::BadRequest, "Bad request"),
            (ProtocolError::ParseError, "Parse error"),
            (ProtocolError::MustConnectFirst, "Must connect first"),
            (ProtocolError::AlreadyConnected, "Already connected"),
            (
                ProtocolError::MalformedSubscription,
                "Malformed subscription",
            ),
            (
                ProtocolError::MalformedMethodInvocation,
                "Malformed method invocation",
            ),
        ];
        for (error, reason) in all {
            assert_eq!(error.reason(), reason);
        }
    }

    #[test]
    fn connect() {
        assert_eq!(
            message(r#"{"msg":"connect","version":"1","support":["1","pre2","pre1"]}"#),
            ClientMessage::Connect {
                version: Some("1".to_owned()),
                support: Some(vec!["1".to_owned(), "pre2".to_owned(), "pre1".to_owned()]),
            }
        );
        assert_eq!(
            message(r#"{"msg":"connect","version":1,"support":["1",2]}"#),
            ClientMessage::Connect {
                version: None,
                support: None
            }
        );
    }

    #[test]
    fn method_with_params_decoded() {
        assert_eq!(
            message(
                r#"{"msg":"method","id":"1","method":"m","params":[{"$date":5}],"extra":true}"#
            ),
            ClientMessage::Method(MethodCall {
                id: "1".to_owned(),
                method: "m".to_owned(),
                params: vec![Ejson::Date(5.0)],
            })
        );
        assert_eq!(
            message(r#"{"msg":"method","id":"2","method":"m","randomSeed":"s"}"#),
            ClientMessage::Method(MethodCall {
                id: "2".to_owned(),
                method: "m".to_owned(),
                params: vec![],
            })
        );
    }

    #[test]
    fn malformed_methods() {
        for text in [
            r#"{"msg":"method","id":1,"method":"m"}"#,
            r#"{"msg":"method","id":"1"}"#,
            r#"{"msg":"method","id":"1","method":"m","params":{}}"#,
            r#"{"msg":"method","id":"1","method":"m","params":null}"#,
            r#"{"msg":"method","id":"1","method":"m","randomSeed":null}"#,
        ] {
            assert_eq!(
                message(text),
                ClientMessage::Malformed(ProtocolError::MalformedMethodInvocation),
                "{text}"
            );
        }
    }

    #[test]
    fn subscriptions() {
        assert_eq!(
            message(r#"{"msg":"sub","id":"a","name":"n"}"#),
            ClientMessage::Sub(SubRequest {
                id: "a".to_owned(),
                name: "n".to_owned(),
                params: vec![],
            })
        );
        for text in [
            r#"{"msg":"sub","id":"a"}"#,
            r#"{"msg":"sub","id":["a"],"name":"n"}"#,
            r#"{"msg":"sub","id":"a","name":"n","params":"x"}"#,
        ] {
            assert_eq!(
                message(text),
                ClientMessage::Malformed(ProtocolError::MalformedSubscription),
                "{text}"
            );
        }
        assert_eq!(
            message(r#"{"msg":"unsub","id":7}"#),
            ClientMessage::Unsub { id: Some(json!(7)) }
        );
    }

    #[test]
    fn heartbeats_and_unknown_messages() {
        assert_eq!(
            message(r#"{"msg":"ping","id":"x"}"#),
            ClientMessage::Ping {
                id: Some(json!("x"))
            }
        );
        assert_eq!(
            message(r#"{"msg":"ping"}"#),
            ClientMessage::Ping { id: None }
        );
        assert_eq!(message(r#"{"msg":"pong","id":"x"}"#), ClientMessage::Pong);
        assert_eq!(message(r#"{"msg":"sleep"}"#), ClientMessage::Unknown);
        assert_eq!(message(r#"{"msg":5}"#), ClientMessage::Unknown);
    }

    #[test]
    fn bad_requests_without_offending_message() {
        for text in ["", "nope", "[1]", "null", "\"msg\"", "{\"msg\":"] {
            assert_eq!(rejected(text), (ProtocolError::BadRequest, None), "{text}");
        }
    }

    #[test]
    fn missing_or_falsy_msg_quotes_the_message() {
        for text in [
            r#"{"id":"1"}"#,
            r#"{"msg":""}"#,
            r#"{"msg":0}"#,
            r#"{"msg":null}"#,
            r#"{"msg":false}"#,
        ] {
            let raw: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            assert_eq!(
                rejected(text),
                (ProtocolError::BadRequest, Some(raw)),
                "{text}"
            );
        }
    }

    #[test]
    fn ejson_failures_are_parse_errors() {
        for text in [
            r#"{"msg":"method","id":"1","method":"m","params":[{"$type":"x","$value":1}]}"#,
            r#"{"msg":"added","fields":{"a":{"$date":"x"}}}"#,
            r#"{"msg":"result","result":{"$binary":"!"}}"#,
            r#"{"params":{"$InfNaN":"x"}}"#,
        ] {
            assert_eq!(rejected(text), (ProtocolError::ParseError, None), "{text}");
        }
    }

    #[test]
    fn raw_message_is_kept() {
        let text = r#"{"msg":"foo","a":[1,{"b":2}]}"#;
        let inbound = Inbound::parse(text).ok();
        assert_eq!(
            inbound.map(|i| i.raw),
            Some(json!({"msg": "foo", "a": [1, {"b": 2}]}))
        );
    }
}
