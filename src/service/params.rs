//! Reading a publishing method's positional parameters, with a 400 that names what is wrong.

use exosphere_ddp::DdpError;
use exosphere_ddp::ejson::Ejson;
use serde_json::{Map, Value};

/// Longest package or release track name this server accepts. Meteor's
/// `PV.validatePackageName` sets no limit (names on the official server stay far below
/// it); this one keeps every file name a publish creates within the blob store's name
/// limits, so a long name is refused when the package is created, not at publish time.
pub const MAX_NAME_LENGTH: usize = 100;

/// Longest package version this server accepts. Meteor sets no limit; this one keeps
/// every file name a publish creates (`<name>-<version>-<architectures>.tgz`) within the
/// blob store's name limits, so a long version is refused before any upload, rather than
/// failing at publish time.
pub const MAX_VERSION_LENGTH: usize = 64;

/// Refuses a name or version longer than `limit` bytes with the same 400 as the other
/// validation errors, before any record, ticket or file is made.
pub fn check_length(what: &str, text: &str, limit: usize) -> Result<(), DdpError> {
    if text.len() <= limit {
        Ok(())
    } else {
        Err(DdpError::bad_request(format!(
            "The {what} is {} bytes long; this server accepts at most {limit} bytes",
            text.len()
        )))
    }
}

/// Reads positional parameters as plain JSON (publishing parameters carry no EJSON types
/// the server needs).
pub fn plain_params(params: Vec<Ejson>) -> Vec<Value> {
    params.into_iter().map(|param| param.to_json()).collect()
}

/// Parameter `index` as a string, or 400 naming it.
pub fn string_param(params: &[Value], index: usize, what: &str) -> Result<String, DdpError> {
    params
        .get(index)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| DdpError::bad_request(format!("{what} must be a string")))
}

/// Parameter `index` as an object, or 400 naming it.
pub fn object_param(
    params: &[Value],
    index: usize,
    what: &str,
) -> Result<Map<String, Value>, DdpError> {
    params
        .get(index)
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| DdpError::bad_request(format!("{what} must be an object")))
}

/// Field `key` of an object as a string, or 400 naming it.
pub fn string_field(object: &Map<String, Value>, key: &str) -> Result<String, DdpError> {
    object
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| DdpError::bad_request(format!("`{key}` must be a string")))
}
