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
//! The frame is parsed once, straight into the fields DDP reads, EJSON included
//! ([`Decoded`]); unknown fields are skipped without being built. The frame's text is kept
//! as [`Inbound::raw`] so a later error can quote it as `offendingMessage`; only then is
//! it parsed again, into a JSON value (and only if it is at most [`MAX_QUOTED_MESSAGE`]
//! bytes).

use std::fmt;

use axum::extract::ws::Utf8Bytes;
use exosphere_ejson::{Decoded, Ejson};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

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
    /// The frame as received, for `offendingMessage`.
    pub(crate) raw: Utf8Bytes,
}

impl Inbound {
    /// Parses one text frame.
    pub(crate) fn parse(text: Utf8Bytes) -> Result<Inbound, Rejected> {
        let fields: Fields = serde_json::from_str(&text).map_err(|e| Rejected {
            error: ProtocolError::BadRequest,
            offending: None,
            cause: format!("invalid JSON: {e}"),
        })?;
        for (key, decoded) in [
            ("fields", &fields.fields),
            ("params", &fields.params),
            ("result", &fields.result),
        ] {
            if let Some(Decoded(Err(e))) = decoded {
                return Err(Rejected {
                    error: ProtocolError::ParseError,
                    offending: None,
                    cause: format!("`{key}`: {e}"),
                });
            }
        }
        if !is_truthy(fields.msg.as_ref()) {
            return Err(Rejected {
                error: ProtocolError::BadRequest,
                offending: quote(&text),
                cause: "missing `msg`".to_owned(),
            });
        }
        let message = classify(fields);
        Ok(Inbound { message, raw: text })
    }

    /// The frame as a JSON value, to quote as `offendingMessage`.
    pub(crate) fn offending(&self) -> Option<Value> {
        quote(&self.raw)
    }
}

/// The longest frame an error quotes back as `offendingMessage`.
///
/// Meteor quotes any frame, and the client only logs the error (spec §1.3); quoting a frame
/// of `--max-message-size` would make the server build and send a reply as large as every
/// bad frame, which a `permessage-deflate` client can send for a thousandth of its size.
/// Longer frames get their error without the quote. Every message the `meteor` tool sends
/// that could be answered with a protocol error is far smaller.
pub(crate) const MAX_QUOTED_MESSAGE: usize = 16 << 10;

/// The JSON value of a frame that already parsed as a JSON object, unless it is longer than
/// [`MAX_QUOTED_MESSAGE`].
fn quote(text: &str) -> Option<Value> {
    if text.len() > MAX_QUOTED_MESSAGE {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// The top-level fields DDP reads from a client frame. Like a JSON object, the last of
/// repeated keys wins.
#[derive(Default)]
struct Fields {
    msg: Option<Value>,
    id: Option<Value>,
    method: Option<Value>,
    name: Option<Value>,
    version: Option<Value>,
    support: Option<Value>,
    random_seed: Option<Value>,
    params: Option<Decoded>,
    fields: Option<Decoded>,
    result: Option<Decoded>,
}

/// The keys of [`Fields`]; any other key is skipped unread.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Key {
    Msg,
    Id,
    Method,
    Name,
    Version,
    Support,
    RandomSeed,
    Params,
    Fields,
    Result,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key()? {
            match key {
                Key::Msg => fields.msg = Some(map.next_value()?),
                Key::Id => fields.id = Some(map.next_value()?),
                Key::Method => fields.method = Some(map.next_value()?),
                Key::Name => fields.name = Some(map.next_value()?),
                Key::Version => fields.version = Some(map.next_value()?),
                Key::Support => fields.support = Some(map.next_value()?),
                Key::RandomSeed => fields.random_seed = Some(map.next_value()?),
                Key::Params => fields.params = Some(map.next_value()?),
                Key::Fields => fields.fields = Some(map.next_value()?),
                Key::Result => fields.result = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
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

fn classify(fields: Fields) -> ClientMessage {
    let Some(Value::String(msg)) = &fields.msg else {
        return ClientMessage::Unknown;
    };
    match msg.as_str() {
        "connect" => ClientMessage::Connect {
            version: string_field(fields.version),
            support: string_array(fields.support),
        },
        "ping" => ClientMessage::Ping { id: fields.id },
        "pong" => ClientMessage::Pong,
        "method" => method(fields),
        "sub" => sub(fields),
        "unsub" => ClientMessage::Unsub { id: fields.id },
        _ => ClientMessage::Unknown,
    }
}

/// Checks Meteor applies to `method`: string `id` and `method`, array `params` if present,
/// string `randomSeed` if present.
fn method(fields: Fields) -> ClientMessage {
    let malformed = ClientMessage::Malformed(ProtocolError::MalformedMethodInvocation);
    if fields
        .random_seed
        .as_ref()
        .is_some_and(|seed| !seed.is_string())
    {
        return malformed;
    }
    let (Some(id), Some(method), Some(params)) = (
        string_field(fields.id),
        string_field(fields.method),
        params_array(fields.params),
    ) else {
        return malformed;
    };
    ClientMessage::Method(MethodCall { id, method, params })
}

/// Checks Meteor applies to `sub`: string `id` and `name`, array `params` if present.
fn sub(fields: Fields) -> ClientMessage {
    match (
        string_field(fields.id),
        string_field(fields.name),
        params_array(fields.params),
    ) {
        (Some(id), Some(name), Some(params)) => ClientMessage::Sub(SubRequest { id, name, params }),
        _ => ClientMessage::Malformed(ProtocolError::MalformedSubscription),
    }
}

/// Absent `params` mean none; present ones must be an array. EJSON failures were answered
/// before classification.
fn params_array(params: Option<Decoded>) -> Option<Vec<Ejson>> {
    match params {
        None => Some(Vec::new()),
        Some(Decoded(Ok(Ejson::Array(items)))) => Some(items),
        Some(_) => None,
    }
}

fn string_field(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn string_array(value: Option<Value>) -> Option<Vec<String>> {
    let Value::Array(items) = value? else {
        return None;
    };
    items
        .into_iter()
        .map(|item| string_field(Some(item)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Inbound, Rejected> {
        Inbound::parse(Utf8Bytes::from(text.to_owned()))
    }

    fn message(text: &str) -> ClientMessage {
        match parse(text) {
            Ok(inbound) => inbound.message,
            Err(rejected) => panic!("rejected {text}: {rejected:?}"),
        }
    }

    fn rejected(text: &str) -> (ProtocolError, Option<Value>) {
        match parse(text) {
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
        for text in [
            "",
            "nope",
            "[1]",
            "null",
            "\"msg\"",
            "{\"msg\":",
            // Invalid EJSON first, then invalid JSON: the frame is not JSON.
            r#"{"msg":"method","params":[{"$date":"x"}],"id":}"#,
            r#"{"msg":"sub"} trailing"#,
        ] {
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
    fn repeated_keys_keep_the_last_value() {
        assert_eq!(
            message(r#"{"msg":"sub","name":"x","id":1,"id":"a","name":"n","msg":"sub"}"#),
            ClientMessage::Sub(SubRequest {
                id: "a".to_owned(),
                name: "n".to_owned(),
                params: vec![],
            })
        );
        assert_eq!(
            rejected(r#"{"msg":"ping","msg":""}"#),
            (ProtocolError::BadRequest, Some(json!({"msg": ""})))
        );
    }

    #[test]
    fn only_short_messages_are_quoted() {
        let padding = "x".repeat(MAX_QUOTED_MESSAGE);
        let long = format!(r#"{{"msg":"","pad":"{padding}"}}"#);
        assert_eq!(rejected(&long), (ProtocolError::BadRequest, None));
        let unknown = format!(r#"{{"msg":"foo","pad":"{padding}"}}"#);
        assert_eq!(parse(&unknown).ok().and_then(|i| i.offending()), None);
        let fits = format!(
            r#"{{"msg":"","pad":"{}"}}"#,
            &padding[..MAX_QUOTED_MESSAGE - 19]
        );
        assert_eq!(fits.len(), MAX_QUOTED_MESSAGE);
        assert!(rejected(&fits).1.is_some());
    }

    #[test]
    fn raw_message_is_kept() {
        let text = r#"{"msg":"foo","a":[1,{"b":2}]}"#;
        let inbound = parse(text).ok();
        assert_eq!(
            inbound.and_then(|i| i.offending()),
            Some(json!({"msg": "foo", "a": [1, {"b": 2}]}))
        );
    }
}
