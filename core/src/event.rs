//! A validated PDU: the fields every algorithm needs, checked against the spec's shape and size
//! rules for the room version, with its event ID computed. Parsing is where bad input is caught,
//! so every error names the offending field.

use serde_json::{Map, Value};

use crate::canonical_json::{check_numbers, CanonicalMembers};
use crate::error::{Error, ErrorKind, Result};
use crate::hashes;
use crate::room_version::{EventFormat, RoomVersion};

/// Spec limit on `room_id`, `sender`, `event_id`, `type` and `state_key`: 255 bytes.
pub const MAX_ID_BYTES: usize = 255;
/// Spec limit on a whole PDU as canonical JSON: 65536 bytes.
pub const MAX_PDU_BYTES: usize = 65_536;
/// At most this many `prev_events` (Synapse refuses more, as the spec's server
/// implementations do): each one can cost a state resolution, so one PDU must not name hundreds.
pub const MAX_PREV_EVENTS: usize = 20;
/// At most this many `auth_events`: the auth events selection never picks more than a handful.
pub const MAX_AUTH_EVENTS: usize = 10;

#[derive(Clone, Debug, PartialEq)]
pub struct Pdu {
    pub event_id: String,
    /// For a v12 create event (which has no `room_id` key) this is the room ID it defines.
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: Map<String, Value>,
    pub prev_events: Vec<String>,
    pub auth_events: Vec<String>,
    pub depth: i64,
    pub origin_server_ts: i64,
    /// The event a redaction redacts (top-level `redacts` before v11, `content.redacts` after).
    pub redacts: Option<String>,
}

/// Where a redaction names the event it redacts, with the field's name: `content.redacts` from
/// room version 11 on, the top-level `redacts` before; `None` for other events or when absent.
pub fn redacts_target<'a>(
    rv: &RoomVersion,
    event_type: &str,
    content: &'a Map<String, Value>,
    top_level: Option<&'a Value>,
) -> Option<(&'static str, &'a Value)> {
    if event_type != "m.room.redaction" {
        return None;
    }
    if rv.updated_redaction_rules {
        content.get("redacts").map(|v| ("content.redacts", v))
    } else {
        top_level.map(|v| ("redacts", v))
    }
}

impl Pdu {
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// `(type, state_key)` for state events.
    pub fn state_pair(&self) -> Option<(&str, &str)> {
        self.state_key.as_deref().map(|k| (self.event_type.as_str(), k))
    }

    /// The membership of an `m.room.member` event.
    pub fn membership(&self) -> Option<&str> {
        self.content.get("membership").and_then(Value::as_str)
    }

    /// Parses and validates `json` as a PDU of room version `rv` and computes its event ID.
    pub fn from_json(json: &Value, rv: &RoomVersion) -> Result<Pdu> {
        Self::parse(json, rv).map(|(pdu, _)| pdu)
    }

    /// As [`Pdu::from_json`], also returning the PDU's members serialised once as canonical JSON
    /// (its size, event ID and room ID came from them; its content hash can too).
    pub fn parse<'a>(json: &'a Value, rv: &RoomVersion) -> Result<(Pdu, CanonicalMembers<'a>)> {
        let obj = json
            .as_object()
            .ok_or_else(|| Error::bad_json("(root)", "a PDU must be a JSON object"))?;
        check_numbers(json, "", rv.strict_canonical_json)?;
        let members = CanonicalMembers::of(obj);
        let size = members.canonical_len();
        if size > MAX_PDU_BYTES {
            return Err(Error::new(
                ErrorKind::StringTooLong,
                Some("(root)"),
                format!("the PDU is {size} bytes as canonical JSON; the limit is {MAX_PDU_BYTES}"),
            ));
        }

        let event_type = id_string(obj, "type", None)?;
        let sender = id_string(obj, "sender", Some('@'))?;
        if !sender.contains(':') {
            return Err(Error::bad_json("sender", "\"sender\" must be a user ID (@localpart:server)"));
        }
        let state_key = match obj.get("state_key") {
            None => None,
            Some(Value::String(_)) => Some(id_string(obj, "state_key", None)?),
            Some(_) => return Err(Error::wrong_type("state_key", "a string")),
        };
        let content = match obj.get("content") {
            Some(Value::Object(c)) => c.clone(),
            Some(_) => return Err(Error::wrong_type("content", "an object")),
            None => return Err(Error::missing("content")),
        };
        let depth = integer(obj, "depth")?;
        if depth < 0 {
            return Err(Error::bad_json("depth", "\"depth\" must not be negative"));
        }
        let origin_server_ts = integer(obj, "origin_server_ts")?;
        let prev_events = references(obj, "prev_events", rv)?;
        let auth_events = references(obj, "auth_events", rv)?;
        match obj.get("hashes") {
            Some(Value::Object(h)) => match h.get("sha256") {
                Some(Value::String(_)) => {}
                Some(_) => return Err(Error::wrong_type("hashes.sha256", "a string")),
                None => return Err(Error::missing("hashes.sha256")),
            },
            Some(_) => return Err(Error::wrong_type("hashes", "an object")),
            None => return Err(Error::missing("hashes")),
        }

        let is_v12_create = rv.room_id_from_create_event && event_type == "m.room.create" && state_key.as_deref() == Some("");
        // One reference hash serves as the event ID and, for a v12 create event, the room ID.
        let reference_hash = (rv.event_format != EventFormat::V1).then(|| hashes::reference_hash_of(obj, &members, rv));
        let event_id = match &reference_hash {
            Some(h) => hashes::event_id_from_reference_hash(h, rv),
            None => {
                let id = hashes::event_id(json, rv)?;
                check_id(&id, "event_id", '$')?;
                id
            }
        };
        let room_id = if is_v12_create {
            if obj.contains_key("room_id") {
                return Err(Error::bad_json(
                    "room_id",
                    "a room version 12 create event must not have \"room_id\": the room ID is derived from its hash",
                ));
            }
            match &reference_hash {
                Some(h) => hashes::room_id_from_reference_hash(h),
                None => hashes::room_id_from_create_event(json, rv)?,
            }
        } else {
            id_string(obj, "room_id", Some('!'))?
        };

        let redacts = match redacts_target(rv, &event_type, &content, obj.get("redacts")) {
            Some((field, Value::String(s))) => {
                check_id(s, field, '$')?;
                Some(s.clone())
            }
            Some((field, _)) => return Err(Error::wrong_type(field, "a string")),
            None => None,
        };

        Ok((Pdu {
            event_id,
            room_id,
            sender,
            event_type,
            state_key,
            content,
            prev_events,
            auth_events,
            depth,
            origin_server_ts,
            redacts,
        }, members))
    }
}

fn check_id(s: &str, field: &str, sigil: char) -> Result<()> {
    if s.len() > MAX_ID_BYTES {
        return Err(Error::new(
            ErrorKind::StringTooLong,
            Some(field),
            format!("\"{field}\" is {} bytes; the limit is {MAX_ID_BYTES}", s.len()),
        ));
    }
    if !s.starts_with(sigil) {
        return Err(Error::bad_json(field, format!("\"{field}\" must start with '{sigil}'")));
    }
    Ok(())
}

/// A required string of at most 255 bytes, optionally with a sigil.
fn id_string(obj: &Map<String, Value>, field: &str, sigil: Option<char>) -> Result<String> {
    match obj.get(field) {
        Some(Value::String(s)) => {
            if s.len() > MAX_ID_BYTES {
                return Err(Error::new(
                    ErrorKind::StringTooLong,
                    Some(field),
                    format!("\"{field}\" is {} bytes; the limit is {MAX_ID_BYTES}", s.len()),
                ));
            }
            if let Some(c) = sigil {
                check_id(s, field, c)?;
            }
            Ok(s.clone())
        }
        Some(_) => Err(Error::wrong_type(field, "a string")),
        None => Err(Error::missing(field)),
    }
}

fn integer(obj: &Map<String, Value>, field: &str) -> Result<i64> {
    match obj.get(field) {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            Error::new(ErrorKind::IntegerOutOfRange, Some(field), format!("\"{field}\" must be an integer in the 64-bit range, got {n}"))
        }),
        Some(_) => Err(Error::wrong_type(field, "an integer")),
        None => Err(Error::missing(field)),
    }
}

/// `prev_events` / `auth_events`: `[[id, {"sha256": ..}], ..]` in format V1, `[id, ..]` later.
fn references(obj: &Map<String, Value>, field: &str, rv: &RoomVersion) -> Result<Vec<String>> {
    let items = match obj.get(field) {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(Error::wrong_type(field, "an array")),
        None => return Err(Error::missing(field)),
    };
    let limit = if field == "prev_events" { MAX_PREV_EVENTS } else { MAX_AUTH_EVENTS };
    if items.len() > limit {
        return Err(Error::bad_json(field, format!("{} {field}; at most {limit} are allowed", items.len())));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let id = match (rv.event_format, item) {
            (EventFormat::V1, Value::Array(pair)) if pair.len() == 2 && pair[1].is_object() => {
                match &pair[0] {
                    Value::String(s) => s,
                    _ => return Err(Error::wrong_type(&path, "an [event_id, hashes] pair")),
                }
            }
            (EventFormat::V1, _) => return Err(Error::wrong_type(&path, "an [event_id, hashes] pair")),
            (_, Value::String(s)) => s,
            (_, _) => return Err(Error::wrong_type(&path, "an event ID string")),
        };
        check_id(id, &path, '$')?;
        out.push(id.clone());
    }
    Ok(out)
}

/// The event IDs of a PDU's `prev_events` or `auth_events` (`field`) under the rules of
/// [`Pdu::from_json`] for room version `rv`, without validating the rest of the PDU: for a
/// caller that only needs what the PDU references (`roomserver.missing_events`).
pub fn reference_ids(pdu: &Map<String, Value>, field: &str, rv: &RoomVersion) -> Result<Vec<String>> {
    references(pdu, field, rv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rv(id: &str) -> RoomVersion {
        RoomVersion::from_id(id).unwrap()
    }

    fn message() -> Value {
        json!({"type": "m.room.message", "room_id": "!r:x", "sender": "@a:x",
            "content": {"body": "hi"}, "depth": 5, "prev_events": ["$p"], "auth_events": ["$c", "$m"],
            "origin_server_ts": 1700000000000i64, "hashes": {"sha256": "h"}, "signatures": {}})
    }

    #[test]
    fn parses_a_v10_message() {
        let p = Pdu::from_json(&message(), &rv("10")).unwrap();
        assert_eq!(p.event_type, "m.room.message");
        assert_eq!(p.prev_events, vec!["$p"]);
        assert_eq!(p.auth_events, vec!["$c", "$m"]);
        assert_eq!(p.depth, 5);
        assert!(p.event_id.starts_with('$') && p.event_id.len() == 44);
        assert!(!p.is_state());
    }

    #[test]
    fn v1_references_are_pairs() {
        let mut m = message();
        m["event_id"] = json!("$e:x");
        m["prev_events"] = json!([["$p:x", {"sha256": "abc"}]]);
        m["auth_events"] = json!([]);
        let p = Pdu::from_json(&m, &rv("1")).unwrap();
        assert_eq!(p.event_id, "$e:x");
        assert_eq!(p.prev_events, vec!["$p:x"]);
        let e = Pdu::from_json(&message(), &rv("1")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("prev_events[0]"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(Value, &str, ErrorKind)> = vec![
            ({let mut m = message(); m.as_object_mut().unwrap().remove("sender"); m}, "sender", ErrorKind::BadJson),
            ({let mut m = message(); m["depth"] = json!("5"); m}, "depth", ErrorKind::BadJson),
            ({let mut m = message(); m["depth"] = json!(-1); m}, "depth", ErrorKind::BadJson),
            ({let mut m = message(); m["content"] = json!([]); m}, "content", ErrorKind::BadJson),
            ({let mut m = message(); m["prev_events"] = json!([1]); m}, "prev_events[0]", ErrorKind::BadJson),
            ({let mut m = message(); m["auth_events"] = json!(["nope"]); m}, "auth_events[0]", ErrorKind::BadJson),
            ({let mut m = message(); m["room_id"] = json!(format!("!{}:x", "r".repeat(300))); m}, "room_id", ErrorKind::StringTooLong),
            ({let mut m = message(); m["state_key"] = json!("k".repeat(256)); m}, "state_key", ErrorKind::StringTooLong),
            ({let mut m = message(); m["content"]["n"] = json!(1i64 << 53); m}, "content.n", ErrorKind::IntegerOutOfRange),
            ({let mut m = message(); m["sender"] = json!("a:x"); m}, "sender", ErrorKind::BadJson),
            ({let mut m = message(); m.as_object_mut().unwrap().remove("hashes"); m}, "hashes", ErrorKind::BadJson),
            ({let mut m = message(); m["prev_events"] = json!((0..21).map(|i| format!("$p{i}")).collect::<Vec<_>>()); m}, "prev_events", ErrorKind::BadJson),
            ({let mut m = message(); m["auth_events"] = json!((0..11).map(|i| format!("$a{i}")).collect::<Vec<_>>()); m}, "auth_events", ErrorKind::BadJson),
        ];
        for (json, field, kind) in cases {
            let e = Pdu::from_json(&json, &rv("10")).unwrap_err();
            assert_eq!((e.field.as_deref(), e.kind), (Some(field), kind), "{e}");
        }
        // Big integers are fine before v6.
        let mut m = message();
        m["content"]["n"] = json!(1i64 << 53);
        assert!(Pdu::from_json(&m, &rv("5")).is_ok());
    }

    #[test]
    fn v12_create_event_defines_the_room_id() {
        let create = json!({"type": "m.room.create", "state_key": "", "sender": "@a:x",
            "content": {"room_version": "12"}, "depth": 1, "prev_events": [], "auth_events": [],
            "origin_server_ts": 1, "hashes": {"sha256": "h"}});
        let p = Pdu::from_json(&create, &rv("12")).unwrap();
        assert_eq!(p.room_id, format!("!{}", &p.event_id[1..]));
        let mut with_room = create.clone();
        with_room["room_id"] = json!("!r:x");
        assert_eq!(Pdu::from_json(&with_room, &rv("12")).unwrap_err().field.as_deref(), Some("room_id"));
    }

    #[test]
    fn redacts_location_depends_on_version() {
        let mut r = message();
        r["type"] = json!("m.room.redaction");
        r["redacts"] = json!("$old");
        r["content"] = json!({"redacts": "$new"});
        assert_eq!(Pdu::from_json(&r, &rv("10")).unwrap().redacts.as_deref(), Some("$old"));
        assert_eq!(Pdu::from_json(&r, &rv("11")).unwrap().redacts.as_deref(), Some("$new"));
    }
}
