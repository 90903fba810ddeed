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

/// The event an `m.room.redaction` event names, read from its JSON object: a whole PDU or its
/// stored remainder (`pdu_rest`, which keeps `content` and a top-level `redacts`). Where the
/// field lives per room version is [`crate::event::redacts_target`]'s rule; `None` when the
/// field is absent or not a string (a redaction stored redacted for a bad content hash has lost
/// its top-level `redacts` before room version 11).
pub fn target_of<'a>(redaction: &'a Map<String, Value>, rv: &RoomVersion) -> Option<&'a str> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let content = match redaction.get("content") {
        Some(Value::Object(c)) => c,
        _ => EMPTY.get_or_init(Map::new),
    };
    crate::event::redacts_target(rv, "m.room.redaction", content, redaction.get("redacts")).and_then(|(_, v)| v.as_str())
}

/// Why a stored redaction does not apply to its target, or `None` when it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotApplied {
    /// The redaction was rejected by the checks on receipt.
    Rejected,
    /// No event of that ID is stored in the redaction's room (yet).
    TargetNotStored,
    /// The target is the room's create event: Synapse ignores redactions of it
    /// (`_maybe_redact_event_row`), so the room stays readable.
    CreateEvent,
    /// Room version 3+: the redaction's sender is of another server than the target's sender
    /// and below the `redact` level in the state before the redaction.
    BelowRedactLevel,
}

impl NotApplied {
    /// The words `roomserver.redactions` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            NotApplied::Rejected => "rejected",
            NotApplied::TargetNotStored => "target not stored",
            NotApplied::CreateEvent => "target is the create event",
            NotApplied::BelowRedactLevel => "different server and below the redact level",
        }
    }
}

/// What is known of the target of a stored redaction (of the same room).
pub struct Target<'a> {
    pub event_type: &'a str,
    pub sender: &'a str,
}

/// Whether a stored redaction applies to its target, i.e. whether the target is served redacted
/// (spec: room versions, "Redactions"; Synapse `event_auth.check_redaction` at receipt and the
/// same-server recheck of `_maybe_redact_event_row` at read time):
///
/// * a rejected redaction never applies (a soft-failed one does, as in Synapse);
/// * room versions 1-2: the auth rules already required the `redact` level or the same event
///   ID server, so an accepted redaction applies;
/// * room versions 3+: the redaction's sender is of the target's sender's server, or reaches the
///   `redact` level in the state before the redaction (`reaches_redact_level`, asked only then:
///   it reads storage).
pub fn not_applied(
    rv: &RoomVersion,
    rejected: bool,
    redaction_sender: &str,
    target: Option<Target>,
    reaches_redact_level: impl FnOnce() -> bool,
) -> Option<NotApplied> {
    if rejected {
        return Some(NotApplied::Rejected);
    }
    let Some(target) = target else { return Some(NotApplied::TargetNotStored) };
    if target.event_type == "m.room.create" {
        return Some(NotApplied::CreateEvent);
    }
    if rv.redaction_auth_rule {
        return None;
    }
    let same_server = matches!(
        (crate::visibility::server_name_of(redaction_sender), crate::visibility::server_name_of(target.sender)),
        (Some(a), Some(b)) if a == b
    );
    if same_server || reaches_redact_level() {
        None
    } else {
        Some(NotApplied::BelowRedactLevel)
    }
}

/// Whether `sender` reaches the `redact` level (default 50) under the power levels content
/// `power_levels` (`None`: no power levels event) of a room whose create event has that sender
/// and content (`None`: not known), with the room version's creator rules (v12: creators rank
/// above every level).
pub fn reaches_redact_level(
    rv: &RoomVersion,
    sender: &str,
    power_levels: Option<&Map<String, Value>>,
    create: Option<(&str, &Map<String, Value>)>,
) -> bool {
    let creators = create.map(|(s, c)| crate::auth::power_levels::creators_of(s, c, rv)).unwrap_or_default();
    let levels = crate::auth::power_levels::PowerLevels::from_content(rv, power_levels, creators);
    levels.user(sender) >= levels.named("redact")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room_version::RoomVersion;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn target_by_version() {
        let red = obj(json!({"redacts": "$old", "content": {"redacts": "$new"}}));
        assert_eq!(target_of(&red, &rv("1")), Some("$old"));
        assert_eq!(target_of(&red, &rv("10")), Some("$old"));
        assert_eq!(target_of(&red, &rv("11")), Some("$new"));
        assert_eq!(target_of(&red, &rv("12")), Some("$new"));
        assert_eq!(target_of(&obj(json!({"content": {}})), &rv("10")), None);
        assert_eq!(target_of(&obj(json!({"redacts": 3, "content": "x"})), &rv("10")), None);
        assert_eq!(target_of(&obj(json!({"redacts": "$x"})), &rv("11")), None);
    }

    #[test]
    fn applied_rule_per_room_version() {
        let msg = |sender| Some(Target { event_type: "m.room.message", sender });
        let never = || panic!("the power check is only for v3+ and different servers");
        for v in ["1", "2"] {
            // The auth rules decided: any accepted redaction applies, whoever sent the target.
            assert_eq!(not_applied(&rv(v), false, "@a:x.org", msg("@b:y.org"), never), None);
            assert_eq!(not_applied(&rv(v), true, "@a:x.org", msg("@b:x.org"), never), Some(NotApplied::Rejected));
        }
        for v in ["3", "10", "11", "12"] {
            let rv = rv(v);
            assert_eq!(not_applied(&rv, false, "@a:x.org", msg("@b:x.org"), never), None, "same server, v{v}");
            assert_eq!(not_applied(&rv, false, "@a:x.org:8448", msg("@b:x.org"), || false), Some(NotApplied::BelowRedactLevel));
            assert_eq!(not_applied(&rv, false, "@a:x.org", msg("@b:y.org"), || true), None, "moderator, v{v}");
            assert_eq!(not_applied(&rv, false, "@a:x.org", msg("@b:y.org"), || false), Some(NotApplied::BelowRedactLevel));
            assert_eq!(not_applied(&rv, true, "@a:x.org", msg("@a:x.org"), never), Some(NotApplied::Rejected));
            assert_eq!(not_applied(&rv, false, "@a:x.org", None, never), Some(NotApplied::TargetNotStored));
            let create = Some(Target { event_type: "m.room.create", sender: "@a:x.org" });
            assert_eq!(not_applied(&rv, false, "@a:x.org", create, never), Some(NotApplied::CreateEvent));
        }
    }

    #[test]
    fn redact_level_per_room_version() {
        let pl = obj(json!({"users": {"@mod:y.org": 50, "@low:y.org": 49, "@str:y.org": "60"}, "users_default": 10, "redact": 50}));
        let create10 = obj(json!({"creator": "@c:x.org"}));
        let create12 = obj(json!({"additional_creators": ["@c2:y.org"]}));
        for v in ["1", "3", "10", "11", "12"] {
            let rv = rv(v);
            assert!(reaches_redact_level(&rv, "@mod:y.org", Some(&pl), None), "v{v}");
            assert!(!reaches_redact_level(&rv, "@low:y.org", Some(&pl), None), "v{v}");
            assert!(!reaches_redact_level(&rv, "@other:y.org", Some(&pl), None), "users_default 10, v{v}");
            // Stringy levels count before room version 10.
            assert_eq!(reaches_redact_level(&rv, "@str:y.org", Some(&pl), None), !rv.integer_power_levels, "v{v}");
        }
        // The default redact level is 50; users_default can reach it.
        let open = obj(json!({"users_default": 50}));
        assert!(reaches_redact_level(&rv("10"), "@any:z.org", Some(&open), None));
        let raised = obj(json!({"users": {"@mod:y.org": 50}, "redact": 51}));
        assert!(!reaches_redact_level(&rv("10"), "@mod:y.org", Some(&raised), None));
        // No power levels event: the creator has 100 (v1-10: content.creator; v11: the sender).
        assert!(reaches_redact_level(&rv("10"), "@c:x.org", None, Some(("@c:x.org", &create10))));
        assert!(!reaches_redact_level(&rv("10"), "@x:x.org", None, Some(("@c:x.org", &create10))));
        assert!(reaches_redact_level(&rv("11"), "@s:x.org", None, Some(("@s:x.org", &obj(json!({}))))));
        // v12: the creators (sender and additional_creators) outrank any level, even one the
        // power levels event names for them, and a 100 redact level.
        let pl12 = obj(json!({"users": {"@c2:y.org": 0}, "redact": 100}));
        assert!(reaches_redact_level(&rv("12"), "@c2:y.org", Some(&pl12), Some(("@s:x.org", &create12))));
        assert!(reaches_redact_level(&rv("12"), "@s:x.org", Some(&pl12), Some(("@s:x.org", &create12))));
        // Before v12 additional_creators mean nothing.
        assert!(!reaches_redact_level(&rv("11"), "@c2:y.org", Some(&pl12), Some(("@s:x.org", &create12))));
    }

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
