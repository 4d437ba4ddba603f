//! Building server frames (spec §1.2).
//!
//! Every frame is encoded exactly once into a `String` (handed to the socket without a
//! copy), field by field, without building a JSON value of the whole frame. `msg` comes
//! first, as in Meteor's frames. EJSON fields (`fields`, `result`) are encoded with EJSON
//! rules, everything else is plain JSON. A [`Reply::Raw`] result is spliced into the frame
//! verbatim, never re-parsed: that is the sync hot path, where the result is megabytes of
//! EJSON the catalog already has as text.

use exosphere_ejson::Ejson;
use serde::Serialize;
use serde_json::Value;

use crate::error::DdpError;
use crate::outbox::{FrameText, Spliced};
use crate::reply::{RawText, Reply};

/// One server → client message, borrowing its parts.
#[derive(Debug)]
pub(crate) enum ServerMessage<'a> {
    Connected {
        session: &'a str,
    },
    Failed {
        version: &'a str,
    },
    Ping,
    Pong {
        id: Option<&'a Value>,
    },
    Error {
        reason: &'a str,
        offending: Option<&'a Value>,
    },
    Result {
        id: &'a str,
        outcome: &'a Result<Reply, DdpError>,
    },
    Updated {
        method_id: &'a str,
    },
    /// `fields` is an EJSON object; empty fields are omitted, as Meteor's `stringifyDDP` does.
    Added {
        collection: &'a str,
        id: &'a str,
        fields: &'a Ejson,
    },
    Changed {
        collection: &'a str,
        id: &'a str,
        fields: &'a Ejson,
        cleared: &'a [String],
    },
    Removed {
        collection: &'a str,
        id: &'a str,
    },
    Ready {
        sub_id: &'a str,
    },
    Nosub {
        id: Option<&'a Value>,
        error: Option<&'a DdpError>,
    },
}

impl ServerMessage<'_> {
    /// The frame text.
    pub(crate) fn encode(&self) -> String {
        self.frame().into_string()
    }

    /// The frame text as it is queued: a `result` carrying a [`Reply::Raw`] keeps its shared
    /// body apart from the head and tail, so compressing writers can reuse the body's
    /// compressed form.
    pub(crate) fn frame(&self) -> FrameText {
        let mut frame = Frame::new(self.name());
        match self {
            Self::Connected { session } => frame.put("session", *session),
            Self::Failed { version } => frame.put("version", *version),
            Self::Ping => {}
            Self::Pong { id } => frame.put_opt("id", *id),
            Self::Error { reason, offending } => {
                frame.put("reason", *reason);
                frame.put_opt("offendingMessage", *offending);
            }
            Self::Result { id, outcome } => {
                frame.put("id", *id);
                match outcome {
                    Ok(Reply::None) => {}
                    Ok(Reply::Value(value)) => frame.put("result", value.to_json()),
                    Ok(Reply::Raw(raw)) => return frame.splice("result", raw),
                    Err(error) => frame.put("error", error.to_json()),
                }
            }
            Self::Updated { method_id } => frame.put("methods", [method_id]),
            Self::Added {
                collection,
                id,
                fields,
            } => {
                frame.put("collection", *collection);
                frame.put("id", *id);
                frame.put_fields(fields);
            }
            Self::Changed {
                collection,
                id,
                fields,
                cleared,
            } => {
                frame.put("collection", *collection);
                frame.put("id", *id);
                frame.put_fields(fields);
                if !cleared.is_empty() {
                    frame.put("cleared", cleared);
                }
            }
            Self::Removed { collection, id } => {
                frame.put("collection", *collection);
                frame.put("id", *id);
            }
            Self::Ready { sub_id } => frame.put("subs", [sub_id]),
            Self::Nosub { id, error } => {
                frame.put_opt("id", *id);
                frame.put_opt("error", error.map(DdpError::to_json));
            }
        }
        FrameText::Whole(frame.finish())
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Connected { .. } => "connected",
            Self::Failed { .. } => "failed",
            Self::Ping => "ping",
            Self::Pong { .. } => "pong",
            Self::Error { .. } => "error",
            Self::Result { .. } => "result",
            Self::Updated { .. } => "updated",
            Self::Added { .. } => "added",
            Self::Changed { .. } => "changed",
            Self::Removed { .. } => "removed",
            Self::Ready { .. } => "ready",
            Self::Nosub { .. } => "nosub",
        }
    }
}

/// A JSON object under construction, written straight into the frame's bytes: keys in
/// the order they are put, each value serialized once, no intermediate map.
pub(crate) struct Frame(Vec<u8>);

impl Frame {
    pub(crate) fn new(msg: &str) -> Self {
        let mut frame = Self(Vec::with_capacity(64));
        frame.0.extend_from_slice(b"{\"msg\":");
        frame.write(msg);
        frame
    }

    /// Appends `"key":value`. Keys are the protocol's own ASCII names, written unescaped.
    pub(crate) fn put(&mut self, key: &str, value: impl Serialize) {
        self.key(key);
        self.write(&value);
    }

    pub(crate) fn put_opt(&mut self, key: &str, value: Option<impl Serialize>) {
        if let Some(value) = value {
            self.put(key, value);
        }
    }

    /// `fields` of `added`/`changed`, omitted when empty.
    fn put_fields(&mut self, fields: &Ejson) {
        if fields.as_object().is_none_or(|map| !map.is_empty()) {
            self.put("fields", fields.to_json());
        }
    }

    fn key(&mut self, key: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    /// Appends `value` as compact JSON.
    fn write(&mut self, value: &(impl Serialize + ?Sized)) {
        // Cannot fail: the values are strings, JSON values and encoded EJSON, whose map
        // keys are all strings, and writing to a `Vec` does not fail.
        if let Err(error) = serde_json::to_writer(&mut self.0, value) {
            tracing::error!(%error, "could not encode a DDP frame field");
        }
    }

    /// The text so far, without the closing brace.
    fn into_text(self) -> String {
        // serde_json writes UTF-8, and so does everything else here.
        String::from_utf8(self.0)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }

    pub(crate) fn finish(mut self) -> String {
        self.0.push(b'}');
        self.into_text()
    }

    /// The frame with `"key": raw` appended, `raw` shared, not copied (never validated
    /// again: it is the megabytes of a sync page).
    fn splice(mut self, key: &str, raw: &RawText) -> FrameText {
        self.key(key);
        FrameText::Spliced(Box::new(Spliced {
            head: self.into_text(),
            body: raw.clone(),
            tail: "}",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(pairs: Vec<(&str, Ejson)>) -> Ejson {
        pairs.into_iter().collect()
    }

    #[test]
    fn handshake_and_heartbeat_frames() {
        assert_eq!(
            ServerMessage::Connected { session: "abc" }.encode(),
            r#"{"msg":"connected","session":"abc"}"#
        );
        assert_eq!(
            ServerMessage::Failed { version: "1" }.encode(),
            r#"{"msg":"failed","version":"1"}"#
        );
        assert_eq!(ServerMessage::Ping.encode(), r#"{"msg":"ping"}"#);
        assert_eq!(
            ServerMessage::Pong { id: None }.encode(),
            r#"{"msg":"pong"}"#
        );
        assert_eq!(
            ServerMessage::Pong {
                id: Some(&json!("7"))
            }
            .encode(),
            r#"{"msg":"pong","id":"7"}"#
        );
    }

    #[test]
    fn protocol_errors() {
        assert_eq!(
            ServerMessage::Error {
                reason: "Bad request",
                offending: None
            }
            .encode(),
            r#"{"msg":"error","reason":"Bad request"}"#
        );
        assert_eq!(
            ServerMessage::Error {
                reason: "Must connect first",
                offending: Some(&json!({"msg": "method", "id": "1"}))
            }
            .encode(),
            r#"{"msg":"error","reason":"Must connect first","offendingMessage":{"msg":"method","id":"1"}}"#
        );
    }

    #[test]
    fn results() {
        let encode = |outcome: Result<Reply, DdpError>| {
            ServerMessage::Result {
                id: "1",
                outcome: &outcome,
            }
            .encode()
        };
        assert_eq!(encode(Ok(Reply::None)), r#"{"msg":"result","id":"1"}"#);
        assert_eq!(
            encode(Ok(Reply::Value(Ejson::Null))),
            r#"{"msg":"result","id":"1","result":null}"#
        );
        assert_eq!(
            encode(Ok(Reply::Value(Ejson::Date(5.0)))),
            r#"{"msg":"result","id":"1","result":{"$date":5}}"#
        );
        assert_eq!(
            encode(Ok(Reply::Raw(r#"{"a": [1, 2]}"#.into()))),
            r#"{"msg":"result","id":"1","result":{"a": [1, 2]}}"#
        );
        // Spec §1.3: the exact frame Meteor produces for an unknown method.
        assert_eq!(
            ServerMessage::Result {
                id: "7",
                outcome: &Err(DdpError::method_not_found("foo"))
            }
            .encode(),
            r#"{"msg":"result","id":"7","error":{"isClientSafe":true,"error":404,"reason":"Method 'foo' not found","message":"Method 'foo' not found [404]","errorType":"Meteor.Error"}}"#
        );
        assert_eq!(
            ServerMessage::Updated { method_id: "1" }.encode(),
            r#"{"msg":"updated","methods":["1"]}"#
        );
    }

    #[test]
    fn data_messages() {
        let doc = fields(vec![("name", Ejson::from("a")), ("at", Ejson::Date(1.0))]);
        assert_eq!(
            ServerMessage::Added {
                collection: "c",
                id: "x",
                fields: &doc
            }
            .encode(),
            r#"{"msg":"added","collection":"c","id":"x","fields":{"name":"a","at":{"$date":1}}}"#
        );
        assert_eq!(
            ServerMessage::Added {
                collection: "c",
                id: "x",
                fields: &fields(vec![])
            }
            .encode(),
            r#"{"msg":"added","collection":"c","id":"x"}"#
        );
        let looks_tagged = fields(vec![("$date", Ejson::from(1_i64))]);
        assert_eq!(
            ServerMessage::Changed {
                collection: "c",
                id: "x",
                fields: &looks_tagged,
                cleared: &["old".to_owned()]
            }
            .encode(),
            r#"{"msg":"changed","collection":"c","id":"x","fields":{"$escape":{"$date":1}},"cleared":["old"]}"#
        );
        assert_eq!(
            ServerMessage::Changed {
                collection: "c",
                id: "x",
                fields: &fields(vec![]),
                cleared: &["old".to_owned()]
            }
            .encode(),
            r#"{"msg":"changed","collection":"c","id":"x","cleared":["old"]}"#
        );
        assert_eq!(
            ServerMessage::Removed {
                collection: "c",
                id: "x"
            }
            .encode(),
            r#"{"msg":"removed","collection":"c","id":"x"}"#
        );
    }

    #[test]
    fn subscription_messages() {
        assert_eq!(
            ServerMessage::Ready { sub_id: "s" }.encode(),
            r#"{"msg":"ready","subs":["s"]}"#
        );
        assert_eq!(
            ServerMessage::Nosub {
                id: Some(&json!("s")),
                error: None
            }
            .encode(),
            r#"{"msg":"nosub","id":"s"}"#
        );
        let error = DdpError::sub_not_found("x");
        assert_eq!(
            ServerMessage::Nosub {
                id: Some(&json!("s")),
                error: Some(&error)
            }
            .encode(),
            format!(r#"{{"msg":"nosub","id":"s","error":{}}}"#, error.to_json())
        );
    }
}
