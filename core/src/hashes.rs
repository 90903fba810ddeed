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
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical_json::{check_numbers, write_members, CanonicalMembers};
use crate::error::{Error, Result};
use crate::redaction::{kept_top_level_keys, redact_content};
use crate::room_version::{EventFormat, RoomVersion};

fn as_object(event: &Value) -> Result<&Map<String, Value>> {
    event.as_object().ok_or_else(|| Error::bad_json("(root)", "a PDU must be a JSON object"))
}

fn sha256_of_members<'m>(members: impl IntoIterator<Item = (&'m str, &'m [u8])>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    write_members(&mut hasher, members).expect("hashing cannot fail");
    hasher.finalize().into()
}

/// The raw sha256 content hash of a PDU serialised once ([`CanonicalMembers`]).
pub fn content_hash_of(members: &CanonicalMembers<'_>) -> [u8; 32] {
    sha256_of_members(members.iter().filter(|(k, _)| !matches!(*k, "unsigned" | "signatures" | "hashes")))
}

/// Whether `hashes.sha256` of `event` matches the content hash of its members. `false` when it
/// is absent or wrong.
pub fn content_hash_matches_members(event: &Map<String, Value>, members: &CanonicalMembers<'_>) -> bool {
    let claimed = event.get("hashes").and_then(|h| h.get("sha256")).and_then(Value::as_str);
    let Some(claimed) = claimed else { return false };
    // Servers emit unpadded base64, but tolerate padding on the way in.
    claimed.trim_end_matches('=') == STANDARD_NO_PAD.encode(content_hash_of(members))
}

/// The raw sha256 reference hash of a PDU serialised once: its members in room version `rv`'s
/// redacted form, without `signatures` and `unsigned`; only the redacted content is serialised
/// again.
pub fn reference_hash_of(event: &Map<String, Value>, members: &CanonicalMembers<'_>, rv: &RoomVersion) -> [u8; 32] {
    let event_type = event.get("type").and_then(Value::as_str).unwrap_or("");
    let content = match event.get("content") {
        Some(Value::Object(c)) => Value::Object(redact_content(event_type, c, rv)),
        _ => Value::Object(Map::new()),
    };
    let content = serde_json::to_vec(&content).expect("serialising a serde_json::Value cannot fail");
    let keep = kept_top_level_keys(rv);
    let mut entries: Vec<(&str, &[u8])> =
        members.iter().filter(|(k, _)| keep.contains(k) && !matches!(*k, "signatures" | "content")).collect();
    entries.push(("content", &content));
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    sha256_of_members(entries)
}

/// An event ID from a reference hash: unpadded base64, standard in v3, URL-safe from v4.
pub fn event_id_from_reference_hash(hash: &[u8; 32], rv: &RoomVersion) -> String {
    match rv.event_format {
        EventFormat::V3 => format!("${}", URL_SAFE_NO_PAD.encode(hash)),
        _ => format!("${}", STANDARD_NO_PAD.encode(hash)),
    }
}

/// The raw sha256 content hash.
pub fn content_hash_bytes(event: &Value) -> Result<[u8; 32]> {
    let obj = as_object(event)?;
    check_numbers(event, "", false)?;
    Ok(content_hash_of(&CanonicalMembers::of(obj)))
}

/// The content hash as it appears in `hashes.sha256`: unpadded standard base64.
pub fn content_hash(event: &Value) -> Result<String> {
    Ok(STANDARD_NO_PAD.encode(content_hash_bytes(event)?))
}

/// Whether `hashes.sha256` matches the content. `Ok(false)` when it is absent or wrong.
pub fn content_hash_matches(event: &Value) -> Result<bool> {
    let obj = as_object(event)?;
    check_numbers(event, "", false)?;
    Ok(content_hash_matches_members(obj, &CanonicalMembers::of(obj)))
}

/// The raw sha256 reference hash of `event` in room version `rv`: the redacted event without
/// `signatures`, `unsigned` (and the legacy `age_ts`), hashed without building a copy of it.
pub fn reference_hash_bytes(event: &Value, rv: &RoomVersion) -> Result<[u8; 32]> {
    let obj = as_object(event)?;
    check_numbers(event, "", false)?;
    Ok(reference_hash_of(obj, &CanonicalMembers::of(obj), rv))
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
        EventFormat::V2 | EventFormat::V3 => Ok(event_id_from_reference_hash(&reference_hash_bytes(event, rv)?, rv)),
    }
}

/// The room ID a v12 create event defines: `!` + its reference hash, URL-safe unpadded base64.
pub fn room_id_from_create_event(create: &Value, rv: &RoomVersion) -> Result<String> {
    Ok(room_id_from_reference_hash(&reference_hash_bytes(create, rv)?))
}

/// A v12 room ID from its create event's reference hash.
pub fn room_id_from_reference_hash(hash: &[u8; 32]) -> String {
    format!("!{}", URL_SAFE_NO_PAD.encode(hash))
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

    /// The streaming reference hash equals the definition: sha256 of the canonical JSON of the
    /// redacted event without signatures and unsigned.
    #[test]
    fn reference_hash_matches_its_definition() {
        use crate::canonical_json::to_canonical_bytes;
        use crate::redaction::redact;
        let events = [
            json!({"type": "m.room.member", "state_key": "@a:x", "content": {"membership": "join", "displayname": "A"},
                   "signatures": {"x": {"k": "s"}}, "unsigned": {"age": 1}, "origin": "x", "age_ts": 5, "zzz": 1}),
            json!({"type": "m.room.message", "sender": "@a:x"}),
            json!({"type": "m.room.create", "content": {"creator": "@a:x", "room_version": "11"}, "prev_state": []}),
        ];
        for ev in &events {
            for rv in crate::room_version::ALL {
                let mut redacted = redact(ev, &rv);
                let obj = redacted.as_object_mut().unwrap();
                obj.remove("signatures");
                obj.remove("unsigned");
                obj.remove("age_ts");
                let expected: [u8; 32] = Sha256::digest(to_canonical_bytes(&redacted).unwrap()).into();
                assert_eq!(reference_hash_bytes(ev, &rv).unwrap(), expected, "room version {}", rv.id);
            }
        }
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
