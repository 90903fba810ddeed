//! How a PDU is stored: the fields that become columns or edge rows are taken out, the rest is
//! kept as JSON. The SQL function `roomserver_internal.stored_pdus` puts a stored event back
//! together; the tests here prove that the split loses nothing, so what comes out equals what
//! went in under canonical JSON.
//!
//! Also decides, before anything is parsed, which room version an incoming PDU is in.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::event::Pdu;
use crate::hashes::content_hash_matches_members;
use crate::redaction::redact;
use crate::room_version::{EventFormat, RoomVersion};

/// Keys always held outside the JSON remainder.
const COLUMN_KEYS: &[&str] =
    &["room_id", "type", "state_key", "sender", "depth", "origin_server_ts", "prev_events", "auth_events"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    Prev,
    Auth,
}

impl EdgeKind {
    /// The one-letter code stored in `event_edges.kind`.
    pub fn code(self) -> &'static str {
        match self {
            EdgeKind::Prev => "p",
            EdgeKind::Auth => "a",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub kind: EdgeKind,
    pub position: i16,
    pub target_event_id: String,
    /// Room versions 1-2: the hashes object of an `[event_id, hashes]` reference.
    pub ref_hashes: Option<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredForm {
    pub pdu: Pdu,
    /// Whether `hashes.sha256` matched; when not, `rest` comes from the redacted event.
    pub content_hash_ok: bool,
    /// True when the PDU has no `room_id` key (a room version 12 create event).
    pub room_id_implied: bool,
    pub rest: Value,
    pub edges: Vec<Edge>,
}

/// The room version an incoming PDU must be parsed with.
///
/// A create event states its own version (`content.room_version`, "1" when absent); any other
/// event takes the version of its (already known) room, `known_room_version`. `requested` is the
/// caller's claim: it fills in for an unknown room and must agree with what is known.
pub fn room_version_for(json: &Value, known_room_version: Option<&str>, requested: Option<&str>) -> Result<RoomVersion> {
    let obj = json.as_object().ok_or_else(|| Error::bad_json("(root)", "a PDU must be a JSON object"))?;
    // The room ID is the key for the room lookup, so check it before anything is looked up.
    match obj.get("room_id") {
        Some(Value::String(r)) if r.len() > crate::event::MAX_ID_BYTES => {
            return Err(Error::new(
                crate::ErrorKind::StringTooLong,
                Some("room_id"),
                format!("\"room_id\" is {} bytes; the limit is {}", r.len(), crate::event::MAX_ID_BYTES),
            ))
        }
        Some(Value::String(r)) if !r.starts_with('!') => {
            return Err(Error::bad_json("room_id", "\"room_id\" must start with '!'"))
        }
        Some(Value::String(_)) | None => {}
        Some(_) => return Err(Error::wrong_type("room_id", "a string")),
    }
    let is_create = obj.get("type").and_then(Value::as_str) == Some("m.room.create")
        && obj.get("state_key").and_then(Value::as_str) == Some("");
    let declared = if is_create {
        match obj.get("content").and_then(|c| c.get("room_version")) {
            Some(Value::String(v)) => Some(v.as_str()),
            Some(_) => return Err(Error::wrong_type("content.room_version", "a string")),
            None => Some("1"),
        }
    } else {
        None
    };
    let chosen = declared.or(known_room_version).or(requested).ok_or_else(|| {
        let room = obj.get("room_id").and_then(Value::as_str).unwrap_or("(none)");
        Error::not_found(format!(
            "room {room} is unknown and no room_version was given: ingest its create event first or pass the room version"
        ))
    })?;
    for (what, other) in [("the room's", known_room_version), ("the requested", requested)] {
        if let Some(other) = other {
            if other != chosen {
                return Err(Error::invalid(
                    Some("room_version"),
                    format!("{what} room version \"{other}\" does not match \"{chosen}\""),
                ));
            }
        }
    }
    RoomVersion::from_id(chosen)
}

/// Validates `json` as a PDU of `rv` and splits it for storage.
pub fn split(json: &Value, rv: &RoomVersion) -> Result<StoredForm> {
    let (pdu, members) = Pdu::parse(json, rv)?;
    let Value::Object(object) = json else { unreachable!("Pdu::parse accepted a non-object") };
    let content_hash_ok = content_hash_matches_members(object, &members);
    // Spec: an event whose content hash does not match is redacted before it is processed further.
    let redacted;
    let kept = if content_hash_ok {
        json
    } else {
        redacted = redact(json, rv);
        &redacted
    };
    let Value::Object(obj) = kept else { unreachable!("Pdu::from_json accepted a non-object") };
    let room_id_implied = !obj.contains_key("room_id");

    let rest: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !COLUMN_KEYS.contains(&k.as_str()) && !(rv.event_format == EventFormat::V1 && k.as_str() == "event_id"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let mut edges = Vec::with_capacity(pdu.prev_events.len() + pdu.auth_events.len());
    for (kind, key) in [(EdgeKind::Prev, "prev_events"), (EdgeKind::Auth, "auth_events")] {
        let items = obj.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        if items.len() > i16::MAX as usize {
            return Err(Error::invalid(Some(key), format!("\"{key}\" has {} entries", items.len())));
        }
        for (i, item) in items.iter().enumerate() {
            let (target, hashes) = match item {
                Value::Array(pair) => (pair[0].as_str().unwrap_or_default(), Some(pair[1].clone())),
                other => (other.as_str().unwrap_or_default(), None),
            };
            edges.push(Edge { kind, position: i as i16, target_event_id: target.to_owned(), ref_hashes: hashes });
        }
    }
    Ok(StoredForm { pdu, content_hash_ok, room_id_implied, rest: Value::Object(rest), edges })
}

/// The columns of a stored event (what [`split`] took out of its PDU) and the two parts of its
/// JSON remainder that state computations read: enough to stand for the PDU in auth checks and
/// state resolution without rebuilding or re-validating it (it was validated when stored).
pub struct StoredColumns {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub prev_events: Vec<String>,
    pub auth_events: Vec<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub content: Map<String, Value>,
    /// The remainder's top-level `redacts`, as a string if it is one.
    pub top_level_redacts: Option<String>,
}

impl StoredColumns {
    pub fn into_pdu(self, rv: &RoomVersion) -> Pdu {
        let top_level = self.top_level_redacts.map(Value::String);
        let redacts = crate::event::redacts_target(rv, &self.event_type, &self.content, top_level.as_ref())
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned);
        Pdu {
            event_id: self.event_id,
            room_id: self.room_id,
            sender: self.sender,
            event_type: self.event_type,
            state_key: self.state_key,
            content: self.content,
            prev_events: self.prev_events,
            auth_events: self.auth_events,
            depth: self.depth,
            origin_server_ts: self.origin_server_ts,
            redacts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical_json::to_canonical_string;
    use crate::hashes::with_content_hash;
    use serde_json::json;

    /// Puts a split event back together, as `roomserver_internal.stored_pdus` does from the tables
    /// (the one owner of that rule): here only to show that `split` loses nothing.
    fn rebuild(form: &StoredForm, rv: &RoomVersion) -> Value {
        let Value::Object(rest) = &form.rest else { return form.rest.clone() };
        let p = &form.pdu;
        let mut obj = rest.clone();
        if !form.room_id_implied {
            obj.insert("room_id".into(), Value::String(p.room_id.clone()));
        }
        obj.insert("type".into(), Value::String(p.event_type.clone()));
        if let Some(k) = &p.state_key {
            obj.insert("state_key".into(), Value::String(k.clone()));
        }
        obj.insert("sender".into(), Value::String(p.sender.clone()));
        obj.insert("depth".into(), Value::from(p.depth));
        obj.insert("origin_server_ts".into(), Value::from(p.origin_server_ts));
        if rv.event_format == EventFormat::V1 {
            obj.insert("event_id".into(), Value::String(p.event_id.clone()));
        }
        for (kind, key) in [(EdgeKind::Prev, "prev_events"), (EdgeKind::Auth, "auth_events")] {
            let refs = form
                .edges
                .iter()
                .filter(|e| e.kind == kind)
                .map(|e| match &e.ref_hashes {
                    Some(h) => Value::Array(vec![Value::String(e.target_event_id.clone()), h.clone()]),
                    None => Value::String(e.target_event_id.clone()),
                })
                .collect();
            obj.insert(key.into(), Value::Array(refs));
        }
        Value::Object(obj)
    }

    fn rv(id: &str) -> RoomVersion {
        RoomVersion::from_id(id).unwrap()
    }

    #[test]
    fn split_then_rebuild_is_the_identity() {
        let v11 = with_content_hash(json!({"type": "m.room.member", "state_key": "@b:y", "room_id": "!r:x",
            "sender": "@b:y", "content": {"membership": "join"}, "depth": 7, "origin_server_ts": 5,
            "prev_events": ["$a", "$b"], "auth_events": ["$c"], "signatures": {"y": {"ed25519:1": "sig"}},
            "unsigned": {"age": 3}})).unwrap();
        let v1 = with_content_hash(json!({"type": "m.room.message", "room_id": "!r:x", "event_id": "$e:x",
            "sender": "@b:y", "content": {"body": "x"}, "depth": 7, "origin_server_ts": 5, "origin": "x",
            "prev_events": [["$a:x", {"sha256": "aa"}]], "auth_events": [["$c:x", {"sha256": "cc"}]]})).unwrap();
        for (ev, v) in [(v11, "11"), (v1, "1")] {
            let form = split(&ev, &rv(v)).unwrap();
            assert!(form.content_hash_ok);
            for k in COLUMN_KEYS {
                assert!(form.rest.get(*k).is_none(), "{k} left in rest");
            }
            assert_eq!(to_canonical_string(&rebuild(&form, &rv(v))).unwrap(), to_canonical_string(&ev).unwrap());
        }
    }

    #[test]
    fn a_wrong_content_hash_stores_the_redacted_event() {
        let mut ev = with_content_hash(json!({"type": "m.room.message", "room_id": "!r:x", "sender": "@b:y",
            "content": {"body": "x"}, "depth": 2, "origin_server_ts": 5, "prev_events": [], "auth_events": []})).unwrap();
        let id_before = Pdu::from_json(&ev, &rv("10")).unwrap().event_id;
        ev["content"]["body"] = json!("tampered");
        let form = split(&ev, &rv("10")).unwrap();
        assert!(!form.content_hash_ok);
        assert_eq!(form.rest["content"], json!({}));
        // Redaction does not change the reference hash, so the ID is the same.
        assert_eq!(form.pdu.event_id, id_before);
    }

    #[test]
    fn v12_create_has_an_implied_room_id() {
        let c = with_content_hash(json!({"type": "m.room.create", "state_key": "", "sender": "@a:x",
            "content": {"room_version": "12"}, "depth": 1, "origin_server_ts": 1, "prev_events": [], "auth_events": []})).unwrap();
        let form = split(&c, &rv("12")).unwrap();
        assert!(form.room_id_implied);
        assert_eq!(to_canonical_string(&rebuild(&form, &rv("12"))).unwrap(), to_canonical_string(&c).unwrap());
    }

    #[test]
    fn room_version_selection() {
        let create = json!({"type": "m.room.create", "state_key": "", "content": {"room_version": "9"}});
        let old_create = json!({"type": "m.room.create", "state_key": "", "content": {}});
        let msg = json!({"type": "m.room.message", "room_id": "!r:x", "content": {}});
        assert_eq!(room_version_for(&create, None, None).unwrap().id, "9");
        assert_eq!(room_version_for(&old_create, None, None).unwrap().id, "1");
        assert_eq!(room_version_for(&msg, Some("10"), None).unwrap().id, "10");
        assert_eq!(room_version_for(&msg, None, Some("11")).unwrap().id, "11");
        assert_eq!(room_version_for(&msg, None, None).unwrap_err().kind, crate::ErrorKind::NotFound);
        assert_eq!(room_version_for(&msg, Some("10"), Some("11")).unwrap_err().kind, crate::ErrorKind::InvalidParameter);
        assert_eq!(room_version_for(&create, None, Some("10")).unwrap_err().kind, crate::ErrorKind::InvalidParameter);
        assert_eq!(room_version_for(&msg, None, Some("99")).unwrap_err().kind, crate::ErrorKind::UnsupportedRoomVersion);
        let bad = json!({"type": "m.room.create", "state_key": "", "content": {"room_version": 9}});
        assert_eq!(room_version_for(&bad, None, None).unwrap_err().field.as_deref(), Some("content.room_version"));
        let long = json!({"type": "m.room.message", "room_id": format!("!{}", "r".repeat(255))});
        assert_eq!(room_version_for(&long, None, None).unwrap_err().kind, crate::ErrorKind::StringTooLong);
        let unsigiled = json!({"type": "m.room.message", "room_id": "r:x"});
        assert_eq!(room_version_for(&unsigiled, None, Some("10")).unwrap_err().field.as_deref(), Some("room_id"));
    }
}
