//! Content hashes, reference hashes, event IDs and (room version 12) room IDs.
//!
//! - content hash: sha256 of the canonical JSON of the PDU without `unsigned`, `signatures` and
//!   `hashes`; unpadded standard base64 (spec "Calculating the content hash for an event").
//! - reference hash: sha256 of the canonical JSON of the *redacted* PDU without `signatures` and
//!   `unsigned`; the event ID from v3 on is `$` + its unpadded base64 (standard in v3, URL-safe
//!   from v4).
//! - v12 (MSC4291): the room ID is `!` + the create event's reference hash, URL-safe.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical_json::to_canonical_bytes;
use crate::error::{Error, Result};
use crate::redaction::redact;
use crate::room_version::{EventFormat, RoomVersion};

fn object_without(event: &Value, drop: &[&str]) -> Result<Value> {
    let Value::Object(obj) = event else {
        return Err(Error::bad_json("(root)", "a PDU must be a JSON object"));
    };
    let mut obj = obj.clone();
    for k in drop {
        obj.remove(*k);
    }
    Ok(Value::Object(obj))
}

/// The raw sha256 content hash.
pub fn content_hash_bytes(event: &Value) -> Result<[u8; 32]> {
    let stripped = object_without(event, &["unsigned", "signatures", "hashes"])?;
    Ok(Sha256::digest(to_canonical_bytes(&stripped)?).into())
}

/// The content hash as it appears in `hashes.sha256`: unpadded standard base64.
pub fn content_hash(event: &Value) -> Result<String> {
    Ok(STANDARD_NO_PAD.encode(content_hash_bytes(event)?))
}

/// Whether `hashes.sha256` matches the content. `Ok(false)` when it is absent or wrong.
pub fn content_hash_matches(event: &Value) -> Result<bool> {
    let claimed = event.get("hashes").and_then(|h| h.get("sha256")).and_then(Value::as_str);
    let Some(claimed) = claimed else { return Ok(false) };
    // Servers emit unpadded base64, but tolerate padding on the way in.
    let claimed = claimed.trim_end_matches('=');
    Ok(claimed == content_hash(event)?)
}

/// The raw sha256 reference hash of `event` in room version `rv`.
pub fn reference_hash_bytes(event: &Value, rv: &RoomVersion) -> Result<[u8; 32]> {
    let redacted = redact(event, rv);
    let stripped = object_without(&redacted, &["signatures", "unsigned", "age_ts"])?;
    Ok(Sha256::digest(to_canonical_bytes(&stripped)?).into())
}

/// The event ID of `event` in room version `rv`: the given `event_id` for v1/v2, the reference
/// hash for v3 and later.
pub fn event_id(event: &Value, rv: &RoomVersion) -> Result<String> {
    match rv.event_format {
        EventFormat::V1 => match event.get("event_id") {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Error::wrong_type("event_id", "a string")),
            None => Err(Error::missing("event_id")),
        },
        EventFormat::V2 => Ok(format!("${}", STANDARD_NO_PAD.encode(reference_hash_bytes(event, rv)?))),
        EventFormat::V3 => Ok(format!("${}", URL_SAFE_NO_PAD.encode(reference_hash_bytes(event, rv)?))),
    }
}

/// The room ID a v12 create event defines: `!` + its reference hash, URL-safe unpadded base64.
pub fn room_id_from_create_event(create: &Value, rv: &RoomVersion) -> Result<String> {
    Ok(format!("!{}", URL_SAFE_NO_PAD.encode(reference_hash_bytes(create, rv)?)))
}

/// Sets `hashes.sha256` of `event` to its content hash (used by event builders and the room
/// generator).
pub fn with_content_hash(mut event: Value) -> Result<Value> {
    let hash = content_hash(&event)?;
    if let Value::Object(obj) = &mut event {
        let mut hashes = serde_json::Map::new();
        hashes.insert("sha256".to_owned(), Value::String(hash));
        obj.insert("hashes".to_owned(), Value::Object(hashes));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The spec appendix example "Signing events" uses this minimal event; its content hash is
    // given in the appendix as the `hashes.sha256` of the signed event.
    #[test]
    fn spec_appendix_minimal_event_content_hash() {
        let ev = json!({
            "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
            "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X",
            "content": {}, "prev_events": [], "auth_events": [], "depth": 3,
            "unsigned": {"age_ts": 1000000}
        });
        assert_eq!(content_hash(&ev).unwrap(), "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
    }

    #[test]
    fn v1_event_ids_are_taken_from_the_pdu() {
        let rv = RoomVersion::from_id("1").unwrap();
        assert_eq!(event_id(&json!({"event_id": "$a:b"}), &rv).unwrap(), "$a:b");
        assert!(event_id(&json!({}), &rv).is_err());
        assert!(event_id(&json!({"event_id": 3}), &rv).is_err());
    }

    #[test]
    fn v3_and_v4_differ_only_in_alphabet() {
        // Find an event whose hash has a '+' or '/' so the two encodings differ.
        for i in 0..64 {
            let ev = json!({"type": "m.room.message", "room_id": "!r:x", "sender": "@a:x",
                "content": {"body": i}, "depth": 1, "prev_events": [], "auth_events": [],
                "origin_server_ts": 0, "hashes": {"sha256": "x"}});
            let v3 = event_id(&ev, &RoomVersion::from_id("3").unwrap()).unwrap();
            let v4 = event_id(&ev, &RoomVersion::from_id("4").unwrap()).unwrap();
            assert_eq!(v3.replace('+', "-").replace('/', "_"), v4);
            assert_eq!(v3.len(), 44);
            if v3 != v4 {
                return;
            }
        }
        panic!("no hash with + or / in 64 tries");
    }

    #[test]
    fn content_hash_ignores_unsigned_signatures_and_hashes() {
        let a = json!({"type": "X", "content": {"a": 1}, "unsigned": {"x": 1}, "signatures": {"s": {}}, "hashes": {"sha256": "q"}});
        let b = json!({"type": "X", "content": {"a": 1}});
        assert_eq!(content_hash(&a).unwrap(), content_hash(&b).unwrap());
        let signed = with_content_hash(b.clone()).unwrap();
        assert!(content_hash_matches(&signed).unwrap());
        assert!(!content_hash_matches(&b).unwrap());
    }
}
