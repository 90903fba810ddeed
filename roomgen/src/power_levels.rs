//! The generator's model of `m.room.power_levels`: enough to pick senders that the auth rules
//! accept (spec "Authorization rules": the sender's level against the event's required level).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct PowerLevels {
    pub users: BTreeMap<String, i64>,
    pub users_default: i64,
    pub events: BTreeMap<String, i64>,
    pub events_default: i64,
    pub state_default: i64,
    pub ban: i64,
    pub kick: i64,
    pub redact: i64,
    pub invite: i64,
}

impl PowerLevels {
    /// What a room is created with, close to Synapse's defaults for a private chat preset.
    pub fn initial(users: BTreeMap<String, i64>) -> PowerLevels {
        let events = [
            ("m.room.name", 50),
            ("m.room.power_levels", 100),
            ("m.room.history_visibility", 100),
            ("m.room.canonical_alias", 50),
            ("m.room.avatar", 50),
            ("m.room.tombstone", 100),
            ("m.room.server_acl", 100),
            ("m.room.encryption", 100),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        PowerLevels { users, users_default: 0, events, events_default: 0, state_default: 50, ban: 50, kick: 50, redact: 50, invite: 0 }
    }

    pub fn to_content(&self) -> Value {
        json!({
            "users": self.users, "users_default": self.users_default, "events": self.events,
            "events_default": self.events_default, "state_default": self.state_default,
            "ban": self.ban, "kick": self.kick, "redact": self.redact, "invite": self.invite,
            "notifications": {"room": 50},
        })
    }

    /// Reads a power levels content written by `to_content` (or any integer-valued one); the
    /// defaults are the spec's for a room that has a power levels event.
    pub fn from_content(content: &Map<String, Value>) -> PowerLevels {
        let int = |k: &str, d: i64| content.get(k).and_then(Value::as_i64).unwrap_or(d);
        let map = |k: &str| -> BTreeMap<String, i64> {
            content
                .get(k)
                .and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| v.as_i64().map(|v| (k.clone(), v))).collect())
                .unwrap_or_default()
        };
        PowerLevels {
            users: map("users"),
            users_default: int("users_default", 0),
            events: map("events"),
            events_default: int("events_default", 0),
            state_default: int("state_default", 50),
            ban: int("ban", 50),
            kick: int("kick", 50),
            redact: int("redact", 50),
            invite: int("invite", 0),
        }
    }

    /// The user's level; in v12 (MSC4289) a room creator outranks everyone.
    pub fn user_level(&self, user_id: &str, is_privileged_creator: bool) -> i64 {
        if is_privileged_creator {
            return i64::MAX;
        }
        self.users.get(user_id).copied().unwrap_or(self.users_default)
    }

    pub fn event_level(&self, event_type: &str, is_state: bool) -> i64 {
        self.events.get(event_type).copied().unwrap_or(if is_state { self.state_default } else { self.events_default })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips() {
        let mut users = BTreeMap::new();
        users.insert("@a:x".to_owned(), 100);
        let mut pl = PowerLevels::initial(users);
        pl.kick = 30;
        let back = PowerLevels::from_content(pl.to_content().as_object().unwrap());
        assert_eq!(back, pl);
        assert_eq!(back.user_level("@a:x", false), 100);
        assert_eq!(back.user_level("@b:x", false), 0);
        assert_eq!(back.user_level("@b:x", true), i64::MAX);
        assert_eq!(back.event_level("m.room.topic", true), 50);
        assert_eq!(back.event_level("m.room.message", false), 0);
    }
}
