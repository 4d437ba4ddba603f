//! The client's directions of the wire (spec §1.2, §1.3): client frames out, server frames in.
//!
//! Client frames are built with the same [`Frame`] builder as server frames, EJSON params
//! encoded by the EJSON crate. Server frames are classified into [`ServerFrame`]. A
//! `result` frame is only routed here, by the `id` at its head, and never decoded: the
//! caller parses its result once, borrowing from the frame text (sync pages are MB-sized).

use exosphere_ejson::{Ejson, EjsonMap};
use serde_json::{Map, Value};

use super::outbound::Frame;
use crate::error::DdpError;

/// One client → server message, borrowing its parts.
#[derive(Debug)]
pub(crate) enum ClientFrame<'a> {
    Connect {
        version: &'a str,
        support: &'a [&'a str],
    },
    Method {
        id: &'a str,
        method: &'a str,
        params: &'a [Ejson],
    },
    Sub {
        id: &'a str,
        name: &'a str,
        params: &'a [Ejson],
    },
    Unsub {
        id: &'a str,
    },
    Ping {
        id: &'a str,
    },
    Pong {
        id: Option<&'a Value>,
    },
}

impl ClientFrame<'_> {
    /// The frame text.
    pub(crate) fn encode(&self) -> String {
        let params = |params: &[Ejson]| Value::Array(params.iter().map(Ejson::to_json).collect());
        match self {
            Self::Connect { version, support } => {
                let mut frame = Frame::new("connect");
                frame.put("version", *version);
                frame.put("support", support.to_vec());
                frame.finish()
            }
            Self::Method {
                id,
                method,
                params: p,
            } => {
                let mut frame = Frame::new("method");
                frame.put("id", *id);
                frame.put("method", *method);
                frame.put("params", params(p));
                frame.finish()
            }
            Self::Sub {
                id,
                name,
                params: p,
            } => {
                let mut frame = Frame::new("sub");
                frame.put("id", *id);
                frame.put("name", *name);
                frame.put("params", params(p));
                frame.finish()
            }
            Self::Unsub { id } => {
                let mut frame = Frame::new("unsub");
                frame.put("id", *id);
                frame.finish()
            }
            Self::Ping { id } => {
                let mut frame = Frame::new("ping");
                frame.put("id", *id);
                frame.finish()
            }
            Self::Pong { id } => {
                let mut frame = Frame::new("pong");
                frame.put_opt("id", id.cloned());
                frame.finish()
            }
        }
    }
}

/// What a server frame means to a client.
#[derive(Debug, PartialEq)]
pub(crate) enum ServerFrame {
    Connected {
        session: String,
    },
    /// Version negotiation failed; `version` is the server's suggestion.
    Failed {
        version: Option<String>,
    },
    Ping {
        id: Option<Value>,
    },
    Pong,
    /// A top-level protocol error: the server could not accept something we sent.
    Error {
        reason: String,
        offending: Option<Value>,
    },
    /// The answer to method `id`; the frame itself carries `result` or `error`.
    Result {
        id: String,
    },
    Updated,
    Added {
        collection: String,
        id: String,
        fields: EjsonMap,
    },
    Changed {
        collection: String,
        id: String,
        fields: EjsonMap,
        cleared: Vec<String>,
    },
    Removed {
        collection: String,
        id: String,
    },
    Ready {
        subs: Vec<String>,
    },
    Nosub {
        id: String,
        error: Option<DdpError>,
    },
    /// Something a client ignores: an unknown `msg`, or the legacy `{"server_id":"0"}`
    /// welcome frame of older Meteor servers.
    Ignored,
}

/// How a result frame starts when the server writes `msg` and `id` first, as Meteor and
/// Exosphere do.
const RESULT_HEAD: &str = r#"{"msg":"result","id":""#;

impl ServerFrame {
    /// Classifies one text frame; `Err` says how the frame breaks the protocol.
    pub(crate) fn parse(text: &str) -> Result<ServerFrame, String> {
        if let Some(rest) = text.strip_prefix(RESULT_HEAD)
            && let Some(end) = rest.find(['"', '\\'])
            && rest.as_bytes()[end] == b'"'
        {
            // The caller parses the whole frame later and reports it if it is invalid.
            return Ok(ServerFrame::Result {
                id: rest[..end].to_owned(),
            });
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("a frame is not JSON ({e})"))?;
        let Value::Object(mut object) = value else {
            return Err("a frame is not a JSON object".to_owned());
        };
        if object.len() == 1 && object.contains_key("server_id") {
            return Ok(ServerFrame::Ignored);
        }
        let msg = match object.remove("msg") {
            Some(Value::String(msg)) => msg,
            _ => return Err("a frame has no `msg`".to_owned()),
        };
        let frame = match msg.as_str() {
            "connected" => ServerFrame::Connected {
                session: string(&mut object, "session", &msg)?,
            },
            "failed" => ServerFrame::Failed {
                version: optional_string(&mut object, "version"),
            },
            "ping" => ServerFrame::Ping {
                id: object.remove("id"),
            },
            "pong" => ServerFrame::Pong,
            "error" => ServerFrame::Error {
                reason: optional_string(&mut object, "reason").unwrap_or_default(),
                offending: object.remove("offendingMessage"),
            },
            "result" => ServerFrame::Result {
                id: string(&mut object, "id", &msg)?,
            },
            "updated" => ServerFrame::Updated,
            "added" => ServerFrame::Added {
                collection: string(&mut object, "collection", &msg)?,
                id: string(&mut object, "id", &msg)?,
                fields: fields(&mut object, &msg)?,
            },
            "changed" => ServerFrame::Changed {
                collection: string(&mut object, "collection", &msg)?,
                id: string(&mut object, "id", &msg)?,
                fields: fields(&mut object, &msg)?,
                cleared: match object.remove("cleared") {
                    None => Vec::new(),
                    Some(value) => {
                        strings(value).ok_or("`changed` with a `cleared` that is not strings")?
                    }
                },
            },
            "removed" => ServerFrame::Removed {
                collection: string(&mut object, "collection", &msg)?,
                id: string(&mut object, "id", &msg)?,
            },
            "ready" => ServerFrame::Ready {
                subs: object
                    .remove("subs")
                    .and_then(strings)
                    .ok_or("`ready` without a `subs` array of strings")?,
            },
            "nosub" => ServerFrame::Nosub {
                id: string(&mut object, "id", &msg)?,
                error: match object.remove("error") {
                    None | Some(Value::Null) => None,
                    Some(error) => Some(
                        DdpError::from_wire(&error)
                            .ok_or("`nosub` with an error object without a code")?,
                    ),
                },
            },
            _ => ServerFrame::Ignored,
        };
        Ok(frame)
    }
}

fn string(object: &mut Map<String, Value>, key: &str, msg: &str) -> Result<String, String> {
    optional_string(object, key).ok_or_else(|| format!("`{msg}` without a string `{key}`"))
}

fn optional_string(object: &mut Map<String, Value>, key: &str) -> Option<String> {
    match object.remove(key) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

fn strings(value: Value) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        return None;
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(text) => Some(text),
            _ => None,
        })
        .collect()
}

/// The EJSON `fields` of `added`/`changed`; absent means none.
fn fields(object: &mut Map<String, Value>, msg: &str) -> Result<EjsonMap, String> {
    let Some(value) = object.remove("fields") else {
        return Ok(EjsonMap::new());
    };
    match Ejson::from_json(value) {
        Ok(Ejson::Object(map)) => Ok(map),
        Ok(_) => Err(format!("`{msg}` with `fields` that are not an object")),
        Err(e) => Err(format!("`{msg}` with invalid EJSON in `fields`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    #[test]
    fn client_frames() {
        assert_eq!(
            ClientFrame::Connect {
                version: "1",
                support: &["1", "pre2", "pre1"]
            }
            .encode(),
            r#"{"msg":"connect","version":"1","support":["1","pre2","pre1"]}"#
        );
        assert_eq!(
            ClientFrame::Method {
                id: "1",
                method: "m",
                params: &[Ejson::Date(5.0), Ejson::from("x")]
            }
            .encode(),
            r#"{"msg":"method","id":"1","method":"m","params":[{"$date":5},"x"]}"#
        );
        assert_eq!(
            ClientFrame::Sub {
                id: "s",
                name: "changes",
                params: &[]
            }
            .encode(),
            r#"{"msg":"sub","id":"s","name":"changes","params":[]}"#
        );
        assert_eq!(
            ClientFrame::Unsub { id: "s" }.encode(),
            r#"{"msg":"unsub","id":"s"}"#
        );
        assert_eq!(
            ClientFrame::Ping { id: "p1" }.encode(),
            r#"{"msg":"ping","id":"p1"}"#
        );
        assert_eq!(
            ClientFrame::Pong {
                id: Some(&json!("x"))
            }
            .encode(),
            r#"{"msg":"pong","id":"x"}"#
        );
        assert_eq!(ClientFrame::Pong { id: None }.encode(), r#"{"msg":"pong"}"#);
    }

    #[test]
    fn result_frames_are_routed_by_their_head() {
        assert_eq!(
            ServerFrame::parse(r#"{"msg":"result","id":"12","result":{"big":"page"}}"#),
            Ok(ServerFrame::Result {
                id: "12".to_owned()
            })
        );
        // Another key order takes the full parse.
        assert_eq!(
            ServerFrame::parse(r#"{"id":"3","msg":"result","error":{"error":404}}"#),
            Ok(ServerFrame::Result { id: "3".to_owned() })
        );
        assert!(ServerFrame::parse(r#"{"msg":"result","id":3}"#).is_err());
    }

    #[test]
    fn data_frames_decode_ejson_fields() {
        let mut fields = EjsonMap::new();
        fields.insert("at".to_owned(), Ejson::Date(1.0));
        assert_eq!(
            ServerFrame::parse(
                r#"{"msg":"added","collection":"c","id":"x","fields":{"at":{"$date":1}}}"#
            ),
            Ok(ServerFrame::Added {
                collection: "c".to_owned(),
                id: "x".to_owned(),
                fields: fields.clone()
            })
        );
        assert_eq!(
            ServerFrame::parse(r#"{"msg":"changed","collection":"c","id":"x","cleared":["a"]}"#),
            Ok(ServerFrame::Changed {
                collection: "c".to_owned(),
                id: "x".to_owned(),
                fields: EjsonMap::new(),
                cleared: vec!["a".to_owned()]
            })
        );
        assert!(
            ServerFrame::parse(r#"{"msg":"added","collection":"c","id":"x","fields":[1]}"#)
                .is_err()
        );
        assert!(
            ServerFrame::parse(
                r#"{"msg":"added","collection":"c","id":"x","fields":{"a":{"$date":"x"}}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn subscription_and_session_frames() {
        assert_eq!(
            ServerFrame::parse(r#"{"msg":"ready","subs":["a","b"]}"#),
            Ok(ServerFrame::Ready {
                subs: vec!["a".to_owned(), "b".to_owned()]
            })
        );
        let nosub = ServerFrame::parse(
            r#"{"msg":"nosub","id":"s","error":{"error":404,"reason":"Subscription 'x' not found"}}"#,
        );
        assert_eq!(
            nosub,
            Ok(ServerFrame::Nosub {
                id: "s".to_owned(),
                error: Some(DdpError::sub_not_found("x"))
            })
        );
        assert_eq!(
            ServerFrame::parse(r#"{"msg":"connected","session":"abc"}"#),
            Ok(ServerFrame::Connected {
                session: "abc".to_owned()
            })
        );
        assert_eq!(
            ServerFrame::parse(r#"{"msg":"failed","version":"pre1"}"#),
            Ok(ServerFrame::Failed {
                version: Some("pre1".to_owned())
            })
        );
        assert_eq!(
            ServerFrame::parse(r#"{"msg":"ping","id":7}"#),
            Ok(ServerFrame::Ping { id: Some(json!(7)) })
        );
        assert_eq!(
            ServerFrame::parse(r#"{"server_id":"0"}"#),
            Ok(ServerFrame::Ignored)
        );
        assert_eq!(
            ServerFrame::parse(r#"{"msg":"somethingNew","x":1}"#),
            Ok(ServerFrame::Ignored)
        );
        let error = ServerFrame::parse(r#"{"msg":"nosub","id":"s","error":{"error":"x-y"}}"#);
        assert!(matches!(
            error,
            Ok(ServerFrame::Nosub { error: Some(DdpError { error: ErrorCode::Text(code), .. }), .. })
                if code == "x-y"
        ));
    }

    #[test]
    fn protocol_violations() {
        for text in ["", "nope", "[1]", r#"{"id":"1"}"#, r#"{"msg":"connected"}"#] {
            assert!(ServerFrame::parse(text).is_err(), "{text}");
        }
    }
}
