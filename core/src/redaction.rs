//! The redaction algorithm of each room version (spec: "Redactions" in the client-server API and
//! the room version specifications). Redaction is also the first step of the reference hash, so
//! it decides event IDs from room version 3 on: a key kept or dropped wrongly changes every ID.

use serde_json::{Map, Value};

use crate::room_version::RoomVersion;

const TOP_LEVEL_KEYS_V1: &[&str] = &[
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts",
    "membership",
];

/// Room version 11 dropped `origin`, `membership` and `prev_state` (MSC2176, MSC3989).
const TOP_LEVEL_KEYS_V11: &[&str] = &[
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
    "depth", "prev_events", "auth_events", "origin_server_ts",
];

/// The top-level keys that survive redaction in `rv`.
pub fn kept_top_level_keys(rv: &RoomVersion) -> &'static [&'static str] {
    if rv.updated_redaction_rules {
        TOP_LEVEL_KEYS_V11
    } else {
        TOP_LEVEL_KEYS_V1
    }
}

/// Returns the redacted copy of `event` (a PDU or client event object). Anything that is not a
/// JSON object is returned unchanged: the caller validates shape.
pub fn redact(event: &Value, rv: &RoomVersion) -> Value {
    let Value::Object(obj) = event else { return event.clone() };
    let keep = kept_top_level_keys(rv);
    let mut out = Map::new();
    for (k, v) in obj {
        if keep.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    let event_type = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let content = match obj.get("content") {
        Some(Value::Object(c)) => redact_content(event_type, c, rv),
        // A non-object content has no keys to keep.
        Some(_) | None => Map::new(),
    };
    out.insert("content".to_owned(), Value::Object(content));
    Value::Object(out)
}

/// The content keys that survive redaction for an event of `event_type`.
pub fn redact_content(event_type: &str, content: &Map<String, Value>, rv: &RoomVersion) -> Map<String, Value> {
    let keep = |keys: &[&str]| -> Map<String, Value> {
        keys.iter()
            .filter_map(|k| content.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect()
    };
    match event_type {
        "m.room.member" => {
            let mut keys = vec!["membership"];
            if rv.restricted_join_redaction_fix {
                keys.push("join_authorised_via_users_server");
            }
            let mut out = keep(&keys);
            if rv.updated_redaction_rules {
                // MSC3821: keep third_party_invite.signed so the membership stays verifiable.
                if let Some(Value::Object(tpi)) = content.get("third_party_invite") {
                    if let Some(signed) = tpi.get("signed") {
                        let mut kept = Map::new();
                        kept.insert("signed".to_owned(), signed.clone());
                        out.insert("third_party_invite".to_owned(), Value::Object(kept));
                    }
                }
            }
            out
        }
        "m.room.create" => {
            if rv.updated_redaction_rules {
                content.clone()
            } else {
                keep(&["creator"])
            }
        }
        "m.room.join_rules" => {
            if rv.restricted_join_rule {
                keep(&["join_rule", "allow"])
            } else {
                keep(&["join_rule"])
            }
        }
        "m.room.power_levels" => {
            let mut keys = vec![
                "ban", "events", "events_default", "kick", "redact", "state_default", "users",
                "users_default",
            ];
            if rv.updated_redaction_rules {
                keys.push("invite");
            }
            keep(&keys)
        }
        "m.room.aliases" if rv.special_case_aliases_auth => keep(&["aliases"]),
        "m.room.history_visibility" => keep(&["history_visibility"]),
        "m.room.redaction" if rv.updated_redaction_rules => keep(&["redacts"]),
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room_version::RoomVersion;
    use serde_json::json;

    fn rv(id: &str) -> RoomVersion {
        RoomVersion::from_id(id).unwrap()
    }

    // The worked example of the spec appendix "Signing events" (redacted form of a message).
    #[test]
    fn message_content_and_unsigned_are_stripped() {
        let ev = json!({"type": "m.room.message", "content": {"body": "hi"}, "room_id": "!r:x",
            "sender": "@a:x", "unsigned": {"age": 5}, "origin": "x", "depth": 3,
            "prev_events": [], "auth_events": [], "origin_server_ts": 1, "hashes": {"sha256": "h"},
            "signatures": {}, "extra": true});
        let r = redact(&ev, &rv("10"));
        assert_eq!(r, json!({"type": "m.room.message", "content": {}, "room_id": "!r:x",
            "sender": "@a:x", "origin": "x", "depth": 3, "prev_events": [], "auth_events": [],
            "origin_server_ts": 1, "hashes": {"sha256": "h"}, "signatures": {}}));
        let r11 = redact(&ev, &rv("11"));
        assert!(r11.get("origin").is_none());
    }

    #[test]
    fn member_keys_by_version() {
        let ev = json!({"type": "m.room.member", "state_key": "@a:x", "content": {
            "membership": "join", "displayname": "A", "join_authorised_via_users_server": "@b:x",
            "third_party_invite": {"display_name": "x", "signed": {"mxid": "@a:x"}}}});
        assert_eq!(redact(&ev, &rv("8"))["content"], json!({"membership": "join"}));
        assert_eq!(redact(&ev, &rv("9"))["content"],
            json!({"membership": "join", "join_authorised_via_users_server": "@b:x"}));
        assert_eq!(redact(&ev, &rv("11"))["content"],
            json!({"membership": "join", "join_authorised_via_users_server": "@b:x",
                   "third_party_invite": {"signed": {"mxid": "@a:x"}}}));
    }

    #[test]
    fn create_power_levels_join_rules_aliases_redaction() {
        let create = json!({"type": "m.room.create", "content": {"creator": "@a:x", "room_version": "11", "m.federate": false}});
        assert_eq!(redact(&create, &rv("10"))["content"], json!({"creator": "@a:x"}));
        assert_eq!(redact(&create, &rv("11"))["content"], create["content"]);

        let pl = json!({"type": "m.room.power_levels", "content": {"ban": 50, "invite": 0, "notifications": {"room": 50}, "users": {}}});
        assert_eq!(redact(&pl, &rv("10"))["content"], json!({"ban": 50, "users": {}}));
        assert_eq!(redact(&pl, &rv("11"))["content"], json!({"ban": 50, "invite": 0, "users": {}}));

        let jr = json!({"type": "m.room.join_rules", "content": {"join_rule": "restricted", "allow": [], "x": 1}});
        assert_eq!(redact(&jr, &rv("7"))["content"], json!({"join_rule": "restricted"}));
        assert_eq!(redact(&jr, &rv("8"))["content"], json!({"join_rule": "restricted", "allow": []}));

        let al = json!({"type": "m.room.aliases", "content": {"aliases": ["#a:x"]}});
        assert_eq!(redact(&al, &rv("5"))["content"], json!({"aliases": ["#a:x"]}));
        assert_eq!(redact(&al, &rv("6"))["content"], json!({}));

        let red = json!({"type": "m.room.redaction", "redacts": "$x", "content": {"redacts": "$x", "reason": "spam"}});
        assert_eq!(redact(&red, &rv("10"))["content"], json!({}));
        assert_eq!(redact(&red, &rv("11"))["content"], json!({"redacts": "$x"}));

        let hv = json!({"type": "m.room.history_visibility", "content": {"history_visibility": "shared", "x": 1}});
        assert_eq!(redact(&hv, &rv("1"))["content"], json!({"history_visibility": "shared"}));
    }
}
