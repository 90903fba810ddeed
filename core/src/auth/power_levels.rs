//! Power levels as the auth rules read them: from the current `m.room.power_levels` event, with
//! the spec's defaults, string values in room versions 1-9 ("stringy power levels"), and room
//! creators' levels (100 without a power levels event; infinite from room version 12).

use serde_json::{Map, Value};

use super::StateLookup;
use crate::event::Pdu;
use crate::room_version::RoomVersion;

/// The level of a room version 12 creator: higher than any level a power levels event can hold.
pub const INFINITE: i64 = i64::MAX;

/// A power level value: an integer, or (room versions 1-9) a string holding one, as the spec's
/// "m.room.power_levels events accept values as strings" allows: optional surrounding whitespace,
/// an optional sign, decimal digits with any leading zeros.
pub fn parse_level(value: &Value, rv: &RoomVersion) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !rv.integer_power_levels => {
            let t = s.trim();
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse::<i64>().ok()
        }
        _ => None,
    }
}

/// The creators of a room: the `creator` of the create event (v1-10), its sender (v11+), plus
/// `additional_creators` (v12).
pub fn creators<'a>(create: &'a Pdu, rv: &RoomVersion) -> Vec<&'a str> {
    creators_of(&create.sender, &create.content, rv)
}

/// [`creators`] from the create event's sender and content, for callers that hold only those
/// (the redaction check reads them from storage).
pub fn creators_of<'a>(create_sender: &'a str, create_content: &'a Map<String, Value>, rv: &RoomVersion) -> Vec<&'a str> {
    let mut out = Vec::new();
    if rv.implicit_room_creator {
        out.push(create_sender);
    } else if let Some(c) = create_content.get("creator").and_then(Value::as_str) {
        out.push(c);
    }
    if rv.privileged_creators {
        if let Some(Value::Array(extra)) = create_content.get("additional_creators") {
            out.extend(extra.iter().filter_map(Value::as_str));
        }
    }
    out
}

/// Power levels in force in a state.
pub struct PowerLevels<'a> {
    rv: RoomVersion,
    content: Option<&'a Map<String, Value>>,
    creators: Vec<&'a str>,
}

impl<'a> PowerLevels<'a> {
    pub fn from_state(rv: &RoomVersion, state: &'a dyn StateLookup) -> PowerLevels<'a> {
        let content = state.lookup("m.room.power_levels", "").map(|e| &e.content);
        let creators = state.lookup("m.room.create", "").map(|c| creators(c, rv)).unwrap_or_default();
        PowerLevels { rv: *rv, content, creators }
    }

    /// From a power levels content directly (state resolution's orderings use this).
    pub fn from_content(rv: &RoomVersion, content: Option<&'a Map<String, Value>>, creators: Vec<&'a str>) -> PowerLevels<'a> {
        PowerLevels { rv: *rv, content, creators }
    }

    pub fn exists(&self) -> bool {
        self.content.is_some()
    }

    fn get(&self, key: &str) -> Option<i64> {
        self.content.and_then(|c| c.get(key)).and_then(|v| parse_level(v, &self.rv))
    }

    /// A named level (`ban`, `kick`, `redact`, `invite`, `state_default`, `events_default`,
    /// `users_default`) with the spec's defaults: 50 for ban/kick/redact/state_default, 0 for the
    /// others. state_default is 50 with no power levels event too (matrix-spec#1479; Synapse's
    /// `get_send_level`): the spec once said 0 there, which let any member set the room's state.
    pub fn named(&self, key: &str) -> i64 {
        let default = match key {
            "ban" | "kick" | "redact" | "state_default" => 50,
            _ => 0,
        };
        self.get(key).unwrap_or(default)
    }

    /// The level of `user`.
    pub fn user(&self, user: &str) -> i64 {
        if self.rv.privileged_creators && self.creators.contains(&user) {
            return INFINITE;
        }
        match self.content {
            Some(c) => c
                .get("users")
                .and_then(|u| u.get(user))
                .and_then(|v| parse_level(v, &self.rv))
                .unwrap_or_else(|| self.named("users_default")),
            None if self.creators.contains(&user) => 100,
            None => 0,
        }
    }

    /// The level required to send an event of `event_type` (state or not).
    pub fn for_event(&self, event_type: &str, is_state: bool) -> i64 {
        self.content
            .and_then(|c| c.get("events"))
            .and_then(|e| e.get(event_type))
            .and_then(|v| parse_level(v, &self.rv))
            .unwrap_or_else(|| self.named(if is_state { "state_default" } else { "events_default" }))
    }
}
