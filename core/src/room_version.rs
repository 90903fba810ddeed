//! The room versions 1-12 and the rule differences between them, as named flags, so that the
//! algorithms read `if rv.knock_join_rule` instead of comparing version numbers.
//!
//! Sources: the room version specifications (spec.matrix.org/latest/rooms/v1..v12).

use crate::error::{Error, ErrorKind, Result};

/// How event IDs are formed and how `prev_events` / `auth_events` are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventFormat {
    /// v1, v2: the sender's server assigns `event_id` (`$opaque:server`), and references are
    /// `[event_id, {"sha256": hash}]` pairs.
    V1,
    /// v3: event ID is `$` + reference hash in standard unpadded base64; references are IDs.
    V2,
    /// v4+: as V2 with URL-safe unpadded base64.
    V3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateResAlgorithm {
    V1,
    V2,
    /// State resolution v2.1 (room version 12, MSC4297).
    V2_1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomVersion {
    pub id: &'static str,
    pub event_format: EventFormat,
    pub state_res: StateResAlgorithm,
    /// v5+: an event's signing keys must be valid (`valid_until_ts`) at its `origin_server_ts`;
    /// before, any key the server published is accepted.
    pub enforce_key_validity: bool,
    /// v1-v5: `m.room.aliases` has its own auth rule (state_key must be the sender's domain).
    pub special_case_aliases_auth: bool,
    /// v6+: numbers must be integers in the canonical range; floats and big numbers are rejected.
    pub strict_canonical_json: bool,
    /// v6+: `notifications` in power levels is checked when power levels change.
    pub limit_notifications_power_levels: bool,
    /// v1-v2: redaction events are authorised by the `redact` level or same-domain rule in the
    /// auth rules; from v3 that check moved to the point where a redaction is applied.
    pub redaction_auth_rule: bool,
    /// v7+: the `knock` membership and join rule.
    pub knock_join_rule: bool,
    /// v8+: the `restricted` join rule with `allow` and `join_authorised_via_users_server`.
    pub restricted_join_rule: bool,
    /// v9+: redaction keeps `join_authorised_via_users_server` in member content.
    pub restricted_join_redaction_fix: bool,
    /// v10+: the `knock_restricted` join rule.
    pub knock_restricted_join_rule: bool,
    /// v10+: power level values must be integers, not strings.
    pub integer_power_levels: bool,
    /// v11+: the updated redaction algorithm (MSC2176, MSC3821, MSC3989) and `redacts` in content.
    pub updated_redaction_rules: bool,
    /// v11+: `m.room.create` has no `creator`; the creator is the sender (MSC2175).
    pub implicit_room_creator: bool,
    /// v12: the room ID is `!` + the create event's reference hash (MSC4291); the create event has
    /// no `room_id` and is not listed in other events' `auth_events`.
    pub room_id_from_create_event: bool,
    /// v12: creators (sender + `additional_creators`) have infinite power (MSC4289).
    pub privileged_creators: bool,
}

const V1: RoomVersion = RoomVersion {
    id: "1",
    event_format: EventFormat::V1,
    state_res: StateResAlgorithm::V1,
    enforce_key_validity: false,
    special_case_aliases_auth: true,
    strict_canonical_json: false,
    limit_notifications_power_levels: false,
    redaction_auth_rule: true,
    knock_join_rule: false,
    restricted_join_rule: false,
    restricted_join_redaction_fix: false,
    knock_restricted_join_rule: false,
    integer_power_levels: false,
    updated_redaction_rules: false,
    implicit_room_creator: false,
    room_id_from_create_event: false,
    privileged_creators: false,
};
const V2: RoomVersion = RoomVersion { id: "2", state_res: StateResAlgorithm::V2, ..V1 };
const V3: RoomVersion =
    RoomVersion { id: "3", event_format: EventFormat::V2, redaction_auth_rule: false, ..V2 };
const V4: RoomVersion = RoomVersion { id: "4", event_format: EventFormat::V3, ..V3 };
const V5: RoomVersion = RoomVersion { id: "5", enforce_key_validity: true, ..V4 };
const V6: RoomVersion = RoomVersion {
    id: "6",
    special_case_aliases_auth: false,
    strict_canonical_json: true,
    limit_notifications_power_levels: true,
    ..V5
};
const V7: RoomVersion = RoomVersion { id: "7", knock_join_rule: true, ..V6 };
const V8: RoomVersion = RoomVersion { id: "8", restricted_join_rule: true, ..V7 };
const V9: RoomVersion = RoomVersion { id: "9", restricted_join_redaction_fix: true, ..V8 };
const V10: RoomVersion =
    RoomVersion { id: "10", knock_restricted_join_rule: true, integer_power_levels: true, ..V9 };
const V11: RoomVersion =
    RoomVersion { id: "11", updated_redaction_rules: true, implicit_room_creator: true, ..V10 };
const V12: RoomVersion = RoomVersion {
    id: "12",
    state_res: StateResAlgorithm::V2_1,
    room_id_from_create_event: true,
    privileged_creators: true,
    ..V11
};

/// Every supported room version, oldest first.
pub const ALL: [RoomVersion; 12] = [V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12];

impl RoomVersion {
    /// Looks up a room version by its identifier (`"1"` .. `"12"`).
    pub fn from_id(id: &str) -> Result<RoomVersion> {
        ALL.iter().copied().find(|v| v.id == id).ok_or_else(|| {
            Error::new(
                ErrorKind::UnsupportedRoomVersion,
                Some("room_version"),
                format!("unsupported room version \"{}\" (supported: 1 to 12)", truncate(id, 40)),
            )
        })
    }

    /// Room versions whose event IDs are hashes (v3+).
    pub fn event_id_is_hash(&self) -> bool {
        self.event_format != EventFormat::V1
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_is_found_by_its_id() {
        for (i, v) in ALL.iter().enumerate() {
            assert_eq!(v.id, (i + 1).to_string());
            assert_eq!(RoomVersion::from_id(v.id).unwrap(), *v);
        }
    }

    #[test]
    fn unknown_versions_are_an_error() {
        for bad in ["0", "13", "", "org.matrix.msc1234", "1 "] {
            let e = RoomVersion::from_id(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::UnsupportedRoomVersion);
        }
    }

    #[test]
    fn feature_flags_follow_the_spec_table() {
        let v = |n: &str| RoomVersion::from_id(n).unwrap();
        assert_eq!(v("1").state_res, StateResAlgorithm::V1);
        assert_eq!(v("2").state_res, StateResAlgorithm::V2);
        assert_eq!(v("11").state_res, StateResAlgorithm::V2);
        assert_eq!(v("12").state_res, StateResAlgorithm::V2_1);
        assert_eq!(v("2").event_format, EventFormat::V1);
        assert_eq!(v("3").event_format, EventFormat::V2);
        assert_eq!(v("4").event_format, EventFormat::V3);
        assert!(v("5").special_case_aliases_auth && !v("6").special_case_aliases_auth);
        assert!(!v("6").knock_join_rule && v("7").knock_join_rule);
        assert!(!v("7").restricted_join_rule && v("8").restricted_join_rule);
        assert!(!v("9").integer_power_levels && v("10").integer_power_levels);
        assert!(!v("10").updated_redaction_rules && v("11").updated_redaction_rules);
        assert!(!v("11").privileged_creators && v("12").privileged_creators);
        assert!(v("2").redaction_auth_rule && !v("3").redaction_auth_rule);
    }

    #[test]
    fn key_validity_is_enforced_from_v5() {
        for v in ALL {
            let n: u32 = v.id.parse().unwrap();
            assert_eq!(v.enforce_key_validity, n >= 5, "room version {}", v.id);
        }
    }
}
