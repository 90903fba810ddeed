//! Tests of the authorization rules, one or more per rule and per room-version difference.

use serde_json::{json, Value};

use super::*;
use crate::hashes::with_content_hash;

/// Builds events of one room in order and keeps its current state.
struct Room {
    rv: RoomVersion,
    room_id: String,
    state: StateMap<Pdu>,
    last: Option<String>,
    depth: i64,
    n: usize,
}

impl Room {
    /// A room created by @alice:a.example, who joined; public join rules and default power
    /// levels unless the test changes them.
    fn new(version: &str) -> Room {
        let rv = RoomVersion::from_id(version).unwrap();
        let mut room = Room { rv, room_id: "!room:a.example".into(), state: StateMap::new(), last: None, depth: 0, n: 0 };
        let mut create = json!({"room_version": version});
        if !rv.implicit_room_creator {
            create["creator"] = json!("@alice:a.example");
        }
        let c = room.build("@alice:a.example", "m.room.create", Some(""), create);
        room.room_id = c.room_id.clone();
        room.accept(c);
        room.send("@alice:a.example", "m.room.member", Some("@alice:a.example"), json!({"membership": "join"}));
        room
    }

    fn build(&mut self, sender: &str, event_type: &str, state_key: Option<&str>, content: Value) -> Pdu {
        self.n += 1;
        self.depth += 1;
        let mut ev = json!({"type": event_type, "sender": sender, "content": content, "depth": self.depth,
            "origin_server_ts": 1000 + self.n as i64, "auth_events": [], "hashes": {"sha256": ""}});
        if let Some(k) = state_key {
            ev["state_key"] = json!(k);
        }
        let is_v12_create = self.rv.room_id_from_create_event && event_type == "m.room.create";
        if !is_v12_create {
            ev["room_id"] = json!(self.room_id);
        }
        let prev: Vec<String> = self.last.iter().cloned().collect();
        if self.rv.event_id_is_hash() {
            ev["prev_events"] = json!(prev);
        } else {
            ev["event_id"] = json!(format!("$e{}:{}", self.n, server_of(sender)));
            ev["prev_events"] = json!(prev.iter().map(|p| json!([p, {"sha256": "x"}])).collect::<Vec<_>>());
            ev["auth_events"] = json!([]);
        }
        let ev = with_content_hash(ev).unwrap();
        Pdu::from_json(&ev, &self.rv).unwrap()
    }

    fn accept(&mut self, ev: Pdu) {
        self.last = Some(ev.event_id.clone());
        if let Some((t, k)) = ev.state_pair() {
            self.state.insert((t.to_owned(), k.to_owned()), ev.clone());
        }
    }

    /// Checks an event against the current state, and applies it when allowed.
    fn check(&mut self, sender: &str, event_type: &str, state_key: Option<&str>, content: Value) -> Result<(), Rejection> {
        let ev = self.build(sender, event_type, state_key, content);
        let outcome = check_event_auth(&self.rv, &ev, &self.state);
        if outcome.is_ok() {
            self.accept(ev);
        }
        outcome
    }

    /// Like `check`, but the event must be allowed.
    fn send(&mut self, sender: &str, event_type: &str, state_key: Option<&str>, content: Value) {
        if let Err(r) = self.check(sender, event_type, state_key, content) {
            panic!("room version {}: {sender} {event_type} {state_key:?} rejected: {}", self.rv.id, r.reason);
        }
    }

    fn join(&mut self, user: &str) {
        self.send(user, "m.room.member", Some(user), json!({"membership": "join"}));
    }
}

const ALICE: &str = "@alice:a.example";
const BOB: &str = "@bob:b.example";
const CAROL: &str = "@carol:c.example";

fn versions() -> impl Iterator<Item = &'static str> {
    ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"].into_iter()
}

fn public_room(version: &str) -> Room {
    let mut r = Room::new(version);
    r.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "public"}));
    r
}

fn with_levels(r: &mut Room, users: Value) {
    let mut content = json!({"ban": 50, "kick": 50, "redact": 50, "invite": 0, "state_default": 50,
        "events_default": 0, "users_default": 0, "events": {"m.room.topic": 50, "m.room.power_levels": 100}, "users": users});
    if r.rv.privileged_creators {
        content["users"].as_object_mut().unwrap().remove(ALICE);
    }
    r.send(ALICE, "m.room.power_levels", Some(""), content);
}

#[test]
fn create_event_rules() {
    for v in versions() {
        let mut r = Room::new(v);
        // A second create with prev_events is rejected.
        let mut again = r.build(ALICE, "m.room.create", Some(""), json!({"creator": ALICE, "room_version": v}));
        assert!(check_event_auth(&r.rv, &again, &r.state).is_err(), "v{v}: create with prev_events");
        again.prev_events.clear();
        again.room_id = "!room:elsewhere.example".into();
        let res = check_event_auth(&r.rv, &again, &r.state);
        assert_eq!(res.is_err(), !r.rv.room_id_from_create_event, "v{v}: room on another server");
    }
    let rv10 = RoomVersion::from_id("10").unwrap();
    let no_creator = Pdu::from_json(
        &with_content_hash(json!({"type": "m.room.create", "state_key": "", "room_id": "!r:a.example", "sender": ALICE,
            "content": {"room_version": "10"}, "depth": 1, "origin_server_ts": 1, "prev_events": [], "auth_events": [],
            "hashes": {}})).unwrap(),
        &rv10,
    )
    .unwrap();
    assert!(check_event_auth(&rv10, &no_creator, &StateMap::<Pdu>::new()).unwrap_err().reason.contains("creator"));
    let rv11 = RoomVersion::from_id("11").unwrap();
    assert!(check_event_auth(&rv11, &no_creator, &StateMap::<Pdu>::new()).is_ok());
    let mut bad_version = no_creator.clone();
    bad_version.content.insert("room_version".into(), json!("99"));
    assert!(check_event_auth(&rv11, &bad_version, &StateMap::<Pdu>::new()).is_err());
    let rv12 = RoomVersion::from_id("12").unwrap();
    let v12 = |extra: Value| {
        Pdu::from_json(
            &with_content_hash(json!({"type": "m.room.create", "state_key": "", "sender": ALICE,
                "content": {"room_version": "12", "additional_creators": extra}, "depth": 1, "origin_server_ts": 1,
                "prev_events": [], "auth_events": [], "hashes": {}})).unwrap(),
            &rv12,
        )
        .unwrap()
    };
    assert!(check_event_auth(&rv12, &v12(json!([BOB])), &StateMap::<Pdu>::new()).is_ok());
    assert!(check_event_auth(&rv12, &v12(json!(["not-a-user"])), &StateMap::<Pdu>::new()).is_err());
    assert!(check_event_auth(&rv12, &v12(json!(BOB)), &StateMap::<Pdu>::new()).is_err());
}

#[test]
fn joins_follow_the_join_rule() {
    for v in versions() {
        let mut r = Room::new(v);
        // Default (no join rules event): invite only.
        assert!(r.check(BOB, "m.room.member", Some(BOB), json!({"membership": "join"})).is_err(), "v{v}");
        r.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "public"}));
        // Nobody joins for someone else.
        assert!(r.check(ALICE, "m.room.member", Some(BOB), json!({"membership": "join"})).is_err(), "v{v}");
        r.join(BOB);
        r.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "invite"}));
        assert!(r.check(CAROL, "m.room.member", Some(CAROL), json!({"membership": "join"})).is_err(), "v{v}");
        r.send(ALICE, "m.room.member", Some(CAROL), json!({"membership": "invite"}));
        r.join(CAROL);
    }
}

#[test]
fn banned_users_cannot_join_or_be_invited() {
    for v in versions() {
        let mut r = public_room(v);
        r.join(BOB);
        r.send(ALICE, "m.room.member", Some(BOB), json!({"membership": "ban"}));
        assert!(r.check(BOB, "m.room.member", Some(BOB), json!({"membership": "join"})).unwrap_err().reason.contains("banned"));
        assert!(r.check(ALICE, "m.room.member", Some(BOB), json!({"membership": "invite"})).is_err());
        // A banned user's messages fail too (ban vs power-level race: the ban wins once in state).
        assert!(r.check(BOB, "m.room.message", None, json!({"body": "hi"})).is_err());
        // Unban, then join again.
        r.send(ALICE, "m.room.member", Some(BOB), json!({"membership": "leave"}));
        r.join(BOB);
    }
}

#[test]
fn kicks_and_bans_need_power_above_the_target() {
    for v in versions() {
        let mut r = public_room(v);
        r.join(BOB);
        r.join(CAROL);
        with_levels(&mut r, json!({ALICE: 100, BOB: 50}));
        // Bob (50) may kick Carol (0) but not Alice.
        assert!(r.check(BOB, "m.room.member", Some(ALICE), json!({"membership": "leave"})).is_err(), "v{v}");
        r.send(BOB, "m.room.member", Some(CAROL), json!({"membership": "leave"}));
        r.join(CAROL);
        // Carol (0) may neither kick nor ban.
        assert!(r.check(CAROL, "m.room.member", Some(BOB), json!({"membership": "leave"})).is_err(), "v{v}");
        assert!(r.check(CAROL, "m.room.member", Some(BOB), json!({"membership": "ban"})).is_err(), "v{v}");
        r.send(BOB, "m.room.member", Some(CAROL), json!({"membership": "ban"}));
        // Leaving a ban needs the ban level.
        with_levels(&mut r, json!({ALICE: 100, BOB: 50, "@dave:d.example": 0}));
        r.send(ALICE, "m.room.power_levels", Some(""), {
            let mut c = r.state[&("m.room.power_levels".to_owned(), String::new())].content.clone();
            c.insert("ban".into(), json!(75));
            Value::Object(c)
        });
        assert!(r.check(BOB, "m.room.member", Some(CAROL), json!({"membership": "leave"})).unwrap_err().reason.contains("unban"), "v{v}");
    }
}

#[test]
fn leaving_yourself_needs_a_membership_to_leave() {
    for v in versions() {
        let mut r = public_room(v);
        assert!(r.check(BOB, "m.room.member", Some(BOB), json!({"membership": "leave"})).is_err(), "v{v}");
        r.join(BOB);
        r.send(BOB, "m.room.member", Some(BOB), json!({"membership": "leave"}));
    }
}

#[test]
fn invites_need_a_joined_sender_with_the_invite_level() {
    for v in versions() {
        let mut r = Room::new(v);
        assert!(r.check(BOB, "m.room.member", Some(CAROL), json!({"membership": "invite"})).is_err(), "v{v}");
        r.send(ALICE, "m.room.member", Some(BOB), json!({"membership": "invite"}));
        r.join(BOB);
        with_levels(&mut r, json!({ALICE: 100}));
        r.send(ALICE, "m.room.power_levels", Some(""), {
            let mut c = r.state[&("m.room.power_levels".to_owned(), String::new())].content.clone();
            c.insert("invite".into(), json!(50));
            Value::Object(c)
        });
        assert!(r.check(BOB, "m.room.member", Some(CAROL), json!({"membership": "invite"})).unwrap_err().reason.contains("invite level"));
        assert!(r.check(ALICE, "m.room.member", Some(BOB), json!({"membership": "invite"})).is_err(), "v{v}: already joined");
    }
}

#[test]
fn knocking_arrived_in_version_7_and_knock_restricted_in_10() {
    for v in versions() {
        let mut r = Room::new(v);
        r.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "knock"}));
        let knock = r.check(BOB, "m.room.member", Some(BOB), json!({"membership": "knock"}));
        assert_eq!(knock.is_ok(), r.rv.knock_join_rule, "v{v}");
        if r.rv.knock_join_rule {
            // A knock can be withdrawn, and the knocker can be invited in.
            r.send(BOB, "m.room.member", Some(BOB), json!({"membership": "leave"}));
            assert!(r.check(ALICE, "m.room.member", Some(BOB), json!({"membership": "knock"})).is_err());
            r.send(ALICE, "m.room.member", Some(BOB), json!({"membership": "invite"}));
            assert!(r.check(BOB, "m.room.member", Some(BOB), json!({"membership": "knock"})).is_err(), "v{v}: invited users do not knock");
            r.join(BOB);
        }
        let mut r = Room::new(v);
        r.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "knock_restricted", "allow": []}));
        let knock = r.check(CAROL, "m.room.member", Some(CAROL), json!({"membership": "knock"}));
        assert_eq!(knock.is_ok(), r.rv.knock_restricted_join_rule, "v{v}");
    }
}

#[test]
fn restricted_joins_need_an_authorising_member_who_can_invite() {
    for v in versions() {
        let mut r = public_room(v);
        r.join(BOB);
        with_levels(&mut r, json!({ALICE: 100}));
        r.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!space:a.example"}]}));
        let via_alice = r.check(CAROL, "m.room.member", Some(CAROL), json!({"membership": "join", "join_authorised_via_users_server": ALICE}));
        assert_eq!(via_alice.is_ok(), r.rv.restricted_join_rule, "v{v}");
        if !r.rv.restricted_join_rule {
            continue;
        }
        let dave = "@dave:d.example";
        assert!(r.check(dave, "m.room.member", Some(dave), json!({"membership": "join"})).is_err(), "v{v}: no authoriser");
        assert!(r.check(dave, "m.room.member", Some(dave), json!({"membership": "join", "join_authorised_via_users_server": "@nobody:x.example"})).is_err());
        // Bob is joined but invite needs 0 here; raise it so Bob cannot authorise.
        r.send(ALICE, "m.room.power_levels", Some(""), {
            let mut c = r.state[&("m.room.power_levels".to_owned(), String::new())].content.clone();
            c.insert("invite".into(), json!(50));
            Value::Object(c)
        });
        assert!(r.check(dave, "m.room.member", Some(dave), json!({"membership": "join", "join_authorised_via_users_server": BOB})).is_err());
    }
}

#[test]
fn power_level_changes() {
    for v in versions() {
        let mut r = public_room(v);
        r.join(BOB);
        r.join(CAROL);
        with_levels(&mut r, json!({ALICE: 100, BOB: 50}));
        let pl = |r: &Room| r.state[&("m.room.power_levels".to_owned(), String::new())].content.clone();
        // Bob (50) may not raise himself above 50, nor lower Alice, nor touch a 100-level event.
        let mut c = pl(&r);
        c["users"][BOB] = json!(60);
        assert!(r.check(BOB, "m.room.power_levels", Some(""), Value::Object(c)).is_err(), "v{v}");
        if !r.rv.privileged_creators {
            let mut c = pl(&r);
            c["users"][ALICE] = json!(10);
            assert!(r.check(BOB, "m.room.power_levels", Some(""), Value::Object(c)).is_err(), "v{v}");
        }
        let mut c = pl(&r);
        c["events"]["m.room.power_levels"] = json!(50);
        assert!(r.check(BOB, "m.room.power_levels", Some(""), Value::Object(c)).is_err(), "v{v}");
        // But he may promote Carol up to his own level, and lower himself.
        let mut c = pl(&r);
        c["users"][CAROL] = json!(50);
        c["events"]["m.room.power_levels"] = json!(100);
        // Bob needs the PL event level (100) to send power levels at all: lower it first.
        let mut open = pl(&r);
        open["events"]["m.room.power_levels"] = json!(50);
        r.send(ALICE, "m.room.power_levels", Some(""), Value::Object(open));
        c["events"]["m.room.power_levels"] = json!(50);
        r.send(BOB, "m.room.power_levels", Some(""), Value::Object(c));
        // Carol (50) may not demote Bob (50): equal level.
        let mut c = pl(&r);
        c["users"][BOB] = json!(0);
        assert!(r.check(CAROL, "m.room.power_levels", Some(""), Value::Object(c)).is_err(), "v{v}");
        // Notifications are checked from v6.
        let mut c = pl(&r);
        c.insert("notifications".into(), json!({"room": 90}));
        assert_eq!(r.check(CAROL, "m.room.power_levels", Some(""), Value::Object(c)).is_err(), r.rv.limit_notifications_power_levels, "v{v}");
    }
}

#[test]
fn string_power_levels_until_version_10() {
    for v in versions() {
        let mut r = public_room(v);
        r.join(BOB);
        let mut users = json!({BOB: " +50 "});
        if !r.rv.privileged_creators {
            users[ALICE] = json!("100");
        }
        let res = r.check(ALICE, "m.room.power_levels", Some(""), json!({"users": users, "kick": "50", "ban": 50}));
        assert_eq!(res.is_ok(), !r.rv.integer_power_levels, "v{v}: {res:?}");
        if res.is_ok() {
            // The string level counts: Bob (50) may kick a 0-level user.
            r.join(CAROL);
            r.send(BOB, "m.room.member", Some(CAROL), json!({"membership": "leave"}));
        }
        let bad = r.check(ALICE, "m.room.power_levels", Some(""), json!({"users": {BOB: "fifty"}}));
        assert!(bad.is_err(), "v{v}");
        let bad_user = r.check(ALICE, "m.room.power_levels", Some(""), json!({"users": {"not a user": 10}}));
        assert!(bad_user.is_err(), "v{v}");
    }
}

#[test]
fn topic_and_state_need_their_level() {
    for v in versions() {
        let mut r = public_room(v);
        r.join(BOB);
        with_levels(&mut r, json!({ALICE: 100}));
        assert!(r.check(BOB, "m.room.topic", Some(""), json!({"topic": "x"})).unwrap_err().reason.contains("below"), "v{v}");
        r.send(BOB, "m.room.message", None, json!({"body": "messages need 0"}));
        assert!(r.check(BOB, "org.example.state", Some(""), json!({})).is_err(), "v{v}: state_default 50");
        // Off-topic power levels: a level for an unknown type applies to it.
        let mut c = r.state[&("m.room.power_levels".to_owned(), String::new())].content.clone();
        c["events"]["org.example.shout"] = json!(60);
        r.send(ALICE, "m.room.power_levels", Some(""), Value::Object(c));
        assert!(r.check(BOB, "org.example.shout", None, json!({})).is_err(), "v{v}");
        // A state key that is another user's ID is theirs alone.
        let mut c = r.state[&("m.room.power_levels".to_owned(), String::new())].content.clone();
        c["state_default"] = json!(0);
        r.send(ALICE, "m.room.power_levels", Some(""), Value::Object(c));
        r.send(BOB, "org.example.state", Some(BOB), json!({}));
        assert!(r.check(BOB, "org.example.state", Some(ALICE), json!({})).is_err(), "v{v}");
    }
}

#[test]
fn without_power_levels_the_creator_has_100() {
    for v in versions() {
        let mut r = public_room(v);
        r.join(BOB);
        // state_default is 50 without power levels too (matrix-spec#1479, Synapse): Bob (0) may
        // not set the topic, the creator (100) may.
        assert!(r.check(BOB, "m.room.topic", Some(""), json!({"topic": "x"})).is_err(), "v{v}: state_default is 50 without power levels");
        assert!(r.check(ALICE, "m.room.topic", Some(""), json!({"topic": "x"})).is_ok(), "v{v}");
        assert!(r.check(BOB, "m.room.member", Some(ALICE), json!({"membership": "ban"})).is_err(), "v{v}");
        r.send(ALICE, "m.room.member", Some(BOB), json!({"membership": "ban"}));
    }
}

#[test]
fn non_members_cannot_send() {
    for v in versions() {
        let mut r = public_room(v);
        assert!(r.check(BOB, "m.room.message", None, json!({"body": "x"})).unwrap_err().reason.contains("not joined"), "v{v}");
    }
}

#[test]
fn redaction_rule_only_in_versions_1_and_2() {
    for v in versions() {
        let mut r = public_room(v);
        r.join(BOB);
        with_levels(&mut r, json!({ALICE: 100}));
        let target = if r.rv.event_id_is_hash() { "$abc" } else { "$abc:a.example" };
        let mut content = json!({});
        let field = if r.rv.updated_redaction_rules { content["redacts"] = json!(target); None } else { Some(target) };
        let mut ev = r.build(BOB, "m.room.redaction", None, content);
        ev.redacts = field.map(str::to_owned).or(Some(target.to_owned()));
        let res = check_event_auth(&r.rv, &ev, &r.state);
        assert_eq!(res.is_err(), r.rv.redaction_auth_rule, "v{v}: {res:?}");
    }
}

#[test]
fn aliases_rule_until_version_6() {
    for v in versions() {
        let mut r = public_room(v);
        r.join(BOB);
        with_levels(&mut r, json!({ALICE: 100}));
        // Bob has no power for state, but may set his own server's aliases in v1-v5.
        let own = r.check(BOB, "m.room.aliases", Some("b.example"), json!({"aliases": ["#x:b.example"]}));
        assert_eq!(own.is_ok(), r.rv.special_case_aliases_auth, "v{v}");
        let other = r.check(BOB, "m.room.aliases", Some("a.example"), json!({"aliases": []}));
        assert!(other.is_err(), "v{v}");
    }
}

#[test]
fn unfederated_rooms_keep_other_servers_out() {
    let mut r = Room::new("10");
    let mut create = r.state[&("m.room.create".to_owned(), String::new())].clone();
    create.content.insert("m.federate".into(), json!(false));
    r.state.insert(("m.room.create".into(), String::new()), create);
    r.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "public"}));
    assert!(r.check(BOB, "m.room.member", Some(BOB), json!({"membership": "join"})).unwrap_err().reason.contains("not federated"));
    r.join("@alice2:a.example");
}

#[test]
fn v12_creators_are_infinitely_powerful_and_unlisted() {
    let mut r = Room::new("12");
    r.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "public"}));
    r.join(BOB);
    assert!(r.check(ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100}})).unwrap_err().reason.contains("creator"));
    r.send(ALICE, "m.room.power_levels", Some(""), json!({"users": {BOB: 100}, "ban": 50, "kick": 50}));
    // Bob at 100 cannot kick or ban the creator, whose power is infinite.
    assert!(r.check(BOB, "m.room.member", Some(ALICE), json!({"membership": "ban"})).is_err());
    assert!(r.check(BOB, "m.room.power_levels", Some(""), json!({"users": {BOB: 100}, "users_default": 200})).is_err());
    r.send(ALICE, "m.room.member", Some(BOB), json!({"membership": "ban"}));
    // Events of another room (a room ID that is not the create event's) are refused.
    let mut stray = r.build(ALICE, "m.room.message", None, json!({"body": "x"}));
    stray.room_id = "!other".into();
    assert!(check_event_auth(&r.rv, &stray, &r.state).is_err());
}

#[test]
fn v12_additional_creators_count_as_creators() {
    let rv = RoomVersion::from_id("12").unwrap();
    let create = Pdu::from_json(
        &with_content_hash(json!({"type": "m.room.create", "state_key": "", "sender": ALICE,
            "content": {"room_version": "12", "additional_creators": [BOB]}, "depth": 1, "origin_server_ts": 1,
            "prev_events": [], "auth_events": [], "hashes": {}})).unwrap(),
        &rv,
    )
    .unwrap();
    let mut state = StateMap::new();
    state.insert(("m.room.create".into(), String::new()), create.clone());
    let levels = power_levels::PowerLevels::from_state(&rv, &state);
    assert_eq!(levels.user(BOB), power_levels::INFINITE);
    assert_eq!(levels.user(CAROL), 0);
    let mut pl = Pdu::from_json(
        &with_content_hash(json!({"type": "m.room.power_levels", "state_key": "", "sender": ALICE, "room_id": create.room_id,
            "content": {"users": {BOB: 50}}, "depth": 2, "origin_server_ts": 2, "prev_events": [], "auth_events": [], "hashes": {}})).unwrap(),
        &rv,
    )
    .unwrap();
    let mut joined = state.clone();
    let join = Pdu { event_type: "m.room.member".into(), state_key: Some(ALICE.into()), content: json!({"membership": "join"}).as_object().unwrap().clone(), ..pl.clone() };
    joined.insert(("m.room.member".into(), ALICE.into()), join);
    assert!(check_event_auth(&rv, &pl, &joined).unwrap_err().reason.contains(BOB));
    pl.content = json!({"users": {CAROL: 50}}).as_object().unwrap().clone();
    assert!(check_event_auth(&rv, &pl, &joined).is_ok());
}

#[test]
fn third_party_invites_verify_the_signature() {
    use ed25519_dalek::{Signer, SigningKey};
    use base64::Engine;
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(key.verifying_key().to_bytes());
    for v in versions() {
        let mut r = public_room(v);
        r.send(ALICE, "m.room.third_party_invite", Some("tok"), json!({"display_name": "c…", "key_validity_url": "https://id.example", "public_key": public}));
        let signed_body = json!({"mxid": CAROL, "token": "tok"});
        let sig = key.sign(&crate::canonical_json::to_canonical_bytes(&signed_body).unwrap());
        let sig = base64::engine::general_purpose::STANDARD_NO_PAD.encode(sig.to_bytes());
        let mut signed = signed_body.clone();
        signed["signatures"] = json!({"id.example": {"ed25519:0": sig}});
        let good = json!({"membership": "invite", "third_party_invite": {"display_name": "c", "signed": signed}});
        let mut forged = good.clone();
        forged["third_party_invite"]["signed"]["mxid"] = json!("@mallory:m.example");
        assert!(r.check(ALICE, "m.room.member", Some("@mallory:m.example"), forged).unwrap_err().reason.contains("signature"), "v{v}");
        let mut wrong_token = good.clone();
        wrong_token["third_party_invite"]["signed"]["token"] = json!("nope");
        assert!(r.check(ALICE, "m.room.member", Some(CAROL), wrong_token).is_err(), "v{v}");
        r.join(BOB);
        assert!(r.check(BOB, "m.room.member", Some(CAROL), good.clone()).unwrap_err().reason.contains("did not send"), "v{v}");
        r.send(ALICE, "m.room.member", Some(CAROL), good);
    }
}

#[test]
fn auth_events_selection_and_checks() {
    let mut r = public_room("10");
    r.join(BOB);
    let ev = r.build(BOB, "m.room.member", Some(CAROL), json!({"membership": "invite"}));
    let types = auth_types_for_event(&r.rv, &ev);
    assert_eq!(types, vec![
        ("m.room.create".to_owned(), String::new()),
        ("m.room.power_levels".into(), String::new()),
        ("m.room.member".into(), BOB.into()),
        ("m.room.member".into(), CAROL.into()),
        ("m.room.join_rules".into(), String::new()),
    ]);
    let create = r.state[&("m.room.create".to_owned(), String::new())].clone();
    let bob = r.state[&("m.room.member".to_owned(), BOB.to_owned())].clone();
    let alice = r.state[&("m.room.member".to_owned(), ALICE.to_owned())].clone();
    assert!(auth_events_state(&r.rv, &ev, &[&create, &bob], None).is_ok());
    assert!(auth_events_state(&r.rv, &ev, &[&bob], None).unwrap_err().reason.contains("m.room.create"));
    assert!(auth_events_state(&r.rv, &ev, &[&create, &bob, &bob], None).unwrap_err().reason.contains("both"));
    assert!(auth_events_state(&r.rv, &ev, &[&create, &alice], None).unwrap_err().reason.contains("selection"));
    let mut foreign = bob.clone();
    foreign.room_id = "!elsewhere:x".into();
    assert!(auth_events_state(&r.rv, &ev, &[&create, &foreign], None).is_err());

    // Room version 12: the create event is implied by the room ID and must not be listed.
    let mut r = public_room("12");
    r.join(BOB);
    let ev = r.build(BOB, "m.room.message", None, json!({}));
    assert!(!auth_types_for_event(&r.rv, &ev).iter().any(|(t, _)| t == "m.room.create"));
    let create = r.state[&("m.room.create".to_owned(), String::new())].clone();
    let bob = r.state[&("m.room.member".to_owned(), BOB.to_owned())].clone();
    let state = auth_events_state(&r.rv, &ev, &[&bob], Some(&create)).unwrap();
    assert!(check_event_auth(&r.rv, &ev, &state).is_ok());
    assert!(auth_events_state(&r.rv, &ev, &[&create, &bob], Some(&create)).is_err());
}

#[test]
fn checks_on_receipt_distinguish_reject_and_soft_fail() {
    let mut r = public_room("10");
    r.join(BOB);
    let before = r.state.clone();
    let msg = r.build(BOB, "m.room.message", None, json!({"body": "sent before the ban arrived"}));
    r.send(ALICE, "m.room.member", Some(BOB), json!({"membership": "ban"}));
    assert_eq!(check_on_receipt(&r.rv, &msg, &before, &before, &before), ReceiptOutcome::Accepted);
    assert!(matches!(check_on_receipt(&r.rv, &msg, &before, &before, &r.state), ReceiptOutcome::SoftFailed(_)));
    assert!(matches!(check_on_receipt(&r.rv, &msg, &before, &r.state, &r.state), ReceiptOutcome::Rejected(_)));
}
