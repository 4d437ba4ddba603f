//! Catalog records as the publishing methods edit them: read as JSON objects, stamped with
//! `lastUpdated` and stored with a new sequence number, so syncing clients receive them.

use exosphere_catalog::record::{MAX_RECORD_SIZE, RecordError};
use exosphere_catalog::{CatalogWriter, Collection, Lookup, Record, StoreError};
use exosphere_ddp::DdpError;
use serde_json::{Map, Value, json};

use super::tx::Tx;

/// The current time in ms since the Unix epoch, as records store dates.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An EJSON date, as records carry them (spec §3.8).
pub fn date(ms: i64) -> Value {
    json!({ "$date": ms })
}

/// The key of a record field that names a user or an organization.
pub fn person(username: &str, id: &str) -> Value {
    json!({ "username": username, "id": id })
}

/// Reads the one record with this natural key, as an editable JSON object.
pub fn load(writer: &mut dyn CatalogWriter, key: &Lookup<'_>) -> Tx<Option<Map<String, Value>>> {
    let Some(text) = writer.find(key)?.into_iter().next() else {
        return Ok(None);
    };
    parse_object(&text).map(Some)
}

/// Parses stored JSON text (a record, or a pending publish's record) as an editable object;
/// the server wrote it, so anything else is corruption.
pub fn parse_object(text: &str) -> Tx<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Corrupt(format!("stored JSON is not an object: {text:.80}")).into()),
    }
}

/// Room left in a record the client sent for what the server adds when it is published
/// (`_id`, `lastUpdated`, `published`, the file URLs and hashes).
const SERVER_ADDS: usize = 4096;

/// Refuses, before any upload, a record the client sent that could not be stored once the
/// server added its fields: better a 400 now than after a 500 MB upload.
pub fn check_room(collection: Collection, sent: &str) -> Result<(), DdpError> {
    let size = sent.len() + SERVER_ADDS;
    if size > MAX_RECORD_SIZE {
        return Err(too_large(collection, size));
    }
    Ok(())
}

/// The 400 for a record over [`MAX_RECORD_SIZE`].
fn too_large(collection: Collection, size: usize) -> DdpError {
    DdpError::bad_request(format!(
        "The {collection} record would be {size} bytes long; this server stores records of \
         at most {MAX_RECORD_SIZE} bytes"
    ))
}

/// Stores an edited or new record with `lastUpdated` set to `now` (so `meteor search`
/// shows the change) and a new `seq` (so syncing clients receive it). A record that would
/// pass [`MAX_RECORD_SIZE`] (many maintainers, say) is refused with a 400.
pub fn save(
    writer: &mut dyn CatalogWriter,
    collection: Collection,
    mut record: Map<String, Value>,
    now: i64,
) -> Tx<()> {
    record.insert("lastUpdated".into(), date(now));
    let text = Value::Object(record).to_string();
    let record = match Record::from_json(collection, &text) {
        Ok(record) => record,
        Err(RecordError::TooLarge { size }) => return Err(too_large(collection, size).into()),
        Err(error) => {
            return Err(StoreError::Corrupt(format!("built an invalid record: {error}")).into());
        }
    };
    writer.upsert(&record)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_record_leaves_room_for_what_the_server_adds() {
        assert!(check_room(Collection::Versions, "{}").is_ok());
        let just_fits = "x".repeat(MAX_RECORD_SIZE - SERVER_ADDS);
        assert!(check_room(Collection::Versions, &just_fits).is_ok());
        let refused = check_room(Collection::Versions, &format!("{just_fits}x")).unwrap_err();
        assert_eq!(refused.error, 400.into());
        assert!(
            refused.message().contains("at most 262144 bytes"),
            "{}",
            refused.message()
        );
    }
}
