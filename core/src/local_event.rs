//! Building a local event: the unsigned PDU a server hashes, signs and sends (what `make_join`,
//! `make_leave`, `make_knock` and a client's send need), in the room version's format.
//!
//! As Synapse's `EventBuilder.build` and `create_local_event_from_event_dict` do, and Dendrite's
//! `gomatrixserverlib.ProtoEvent` with `BuildEvent`:
//! - `prev_events`: the room's forward extremities, at most [`MAX_PREV_EVENTS`], the deepest
//!   (Synapse: `ORDER BY depth DESC LIMIT 10`; ties here by event ID, byte-wise, so the choice is
//!   deterministic); `depth`: the deepest of those + 1, capped at [`MAX_DEPTH`];
//! - `auth_events`: the auth events selection ([`auth_types_for_event`], in its order) looked up
//!   in the current state; from room version 12 the create event is not listed (the room ID
//!   stands for it) but the auth check still uses it;
//! - v1-v2 references are `[event_id, {"sha256": reference hash}]` pairs and the PDU carries an
//!   `event_id`: `$` + the URL-safe unpadded base64 content hash of the event without it + `:` +
//!   the sender's server. Derived, not random (Synapse: time + counter + random), so that the
//!   same request gives the same event, as it does from room version 3 on where the ID is a hash;
//! - no `origin` (Synapse stopped sending it, #18418, in every room version; the spec marks it
//!   deprecated), no `unsigned`, no `signatures`; `hashes.sha256` is set, so the caller only
//!   signs;
//! - an `m.room.redaction` before room version 11 names its target at the top level: a
//!   `content.redacts` is moved there (the client API's v11 shape works in every room).
//!
//! The event is then parsed as ingest parses a PDU ([`Pdu::from_json`]) and checked against its
//! auth events ([`auth_events_state`], [`check_event_auth`]): what a receiving server checks
//! first. A local event that would be rejected is refused with the rule that failed.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::auth::{auth_events_state, auth_types_for_event, check_event_auth, Rejection, StateMap};
use crate::error::{Error, Result};
use crate::event::Pdu;
use crate::hashes::{content_hash_bytes, reference_hash_bytes, with_content_hash};
use crate::room_version::RoomVersion;
use crate::visibility::server_name_of;

/// At most this many `prev_events` in a local event (Synapse's `_get_prev_events_for_room_txn`).
pub const MAX_PREV_EVENTS: usize = 10;
/// The largest depth a local event gets (Synapse's `MAX_DEPTH`, 2^63 - 1).
pub const MAX_DEPTH: i64 = i64::MAX;

/// What the caller asks for.
#[derive(Clone, Debug)]
pub struct LocalEvent {
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: Value,
    pub origin_server_ts: i64,
}

/// Why no event was built.
#[derive(Clone, Debug, PartialEq)]
pub enum PrepareError {
    /// The request (or, as `CorruptStorage`, a stored event it needed) is not valid.
    Invalid(Error),
    /// The authorization rules do not let the sender send this event now.
    Forbidden(Rejection),
}

impl From<Error> for PrepareError {
    fn from(e: Error) -> Self {
        PrepareError::Invalid(e)
    }
}

/// A provisional PDU of the request: what the auth events selection reads (type, sender,
/// state key, content).
fn provisional(req: &LocalEvent) -> Result<Pdu> {
    let Value::Object(content) = &req.content else {
        return Err(Error::wrong_type("content", "an object"));
    };
    Ok(Pdu {
        event_id: String::new(),
        room_id: req.room_id.clone(),
        sender: req.sender.clone(),
        event_type: req.event_type.clone(),
        state_key: req.state_key.clone(),
        content: content.clone(),
        prev_events: Vec::new(),
        auth_events: Vec::new(),
        depth: 0,
        origin_server_ts: req.origin_server_ts,
        redacts: None,
    })
}

/// The `(type, state_key)` pairs of the current state [`prepare`] needs: the auth events
/// selection, and from room version 12 the create event too (not listed, but the rules read it).
pub fn state_keys_needed(rv: &RoomVersion, req: &LocalEvent) -> Result<Vec<(String, String)>> {
    let mut keys = auth_types_for_event(rv, &provisional(req)?);
    if rv.room_id_from_create_event && req.event_type != "m.room.create" {
        keys.push(("m.room.create".to_owned(), String::new()));
    }
    Ok(keys)
}

/// The events [`prepare`] uses as prev events, from the room's forward extremities: the
/// [`MAX_PREV_EVENTS`] deepest, deepest first, ties by event ID (byte-wise).
pub fn choose_prev_events(mut extremities: Vec<Pdu>) -> Vec<Pdu> {
    extremities.sort_by(|a, b| b.depth.cmp(&a.depth).then_with(|| a.event_id.cmp(&b.event_id)));
    extremities.truncate(MAX_PREV_EVENTS);
    extremities
}

/// A stored event as [`prepare`] reads it: parsed, with its reference hash in room versions
/// 1-2. What the store gives back was validated when it was stored, so a failure here is storage.
fn stored(json: &Value, rv: &RoomVersion, what: &str) -> Result<(Pdu, Option<String>)> {
    let pdu = Pdu::from_json(json, rv).map_err(|e| Error::corrupt(what, e))?;
    let hash = if rv.event_id_is_hash() { None } else { Some(STANDARD_NO_PAD.encode(reference_hash_bytes(json, rv)?)) };
    Ok((pdu, hash))
}

fn reference(event_id: &str, hash: &Option<String>) -> Value {
    match hash {
        Some(h) => json!([event_id, {"sha256": h}]),
        None => json!(event_id),
    }
}

/// Builds the unsigned PDU of `req` in room version `rv`. `extremities`: the stored PDUs of the
/// room's forward extremities (any number; [`choose_prev_events`] picks); `state`: the stored
/// PDUs of the current state's events under [`state_keys_needed`] (the ones the state has).
/// Returns the PDU with `hashes.sha256`, ready to be signed.
pub fn prepare(rv: &RoomVersion, req: &LocalEvent, extremities: &[Value], state: &[Value]) -> std::result::Result<Value, PrepareError> {
    let draft = provisional(req)?;
    let mut prevs = Vec::with_capacity(extremities.len());
    let mut hash_of: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
    for json in extremities {
        let (pdu, hash) = stored(json, rv, "a forward extremity's stored PDU")?;
        hash_of.insert(pdu.event_id.clone(), hash);
        prevs.push(pdu);
    }
    let prevs = choose_prev_events(prevs);
    let Some(deepest) = prevs.first() else {
        return Err(Error::invalid(None, format!("room {} has no forward extremities", req.room_id)).into());
    };
    let depth = deepest.depth.saturating_add(1).min(MAX_DEPTH);

    let mut by_key: StateMap<(Pdu, Option<String>)> = StateMap::with_capacity(state.len());
    for json in state {
        let (pdu, hash) = stored(json, rv, "a current state event's stored PDU")?;
        let Some(key) = pdu.state_key.clone() else {
            return Err(Error::corrupt("current state", format!("{} is not a state event", pdu.event_id)).into());
        };
        by_key.insert((pdu.event_type.clone(), key), (pdu, hash));
    }
    // Listed in the selection's order; the create event of room version 12 is looked up apart.
    let auth: Vec<&(Pdu, Option<String>)> = auth_types_for_event(rv, &draft).iter().filter_map(|k| by_key.get(k)).collect();

    let mut content = draft.content.clone();
    let mut obj = Map::new();
    if req.event_type == "m.room.redaction" && !rv.updated_redaction_rules {
        if let Some(target) = content.remove("redacts") {
            obj.insert("redacts".into(), target);
        }
    }
    obj.insert("room_id".into(), json!(req.room_id));
    obj.insert("sender".into(), json!(req.sender));
    obj.insert("type".into(), json!(req.event_type));
    if let Some(k) = &req.state_key {
        obj.insert("state_key".into(), json!(k));
    }
    obj.insert("content".into(), Value::Object(content));
    obj.insert("depth".into(), json!(depth));
    obj.insert("origin_server_ts".into(), json!(req.origin_server_ts));
    obj.insert("prev_events".into(), prevs.iter().map(|p| reference(&p.event_id, &hash_of[&p.event_id])).collect());
    obj.insert("auth_events".into(), auth.iter().map(|(p, h)| reference(&p.event_id, h)).collect());
    let mut event = Value::Object(obj);
    if !rv.event_id_is_hash() {
        let server = server_name_of(&req.sender)
            .ok_or_else(|| Error::bad_json("sender", "\"sender\" must be a user ID (@localpart:server)"))?;
        let local = URL_SAFE_NO_PAD.encode(content_hash_bytes(&event)?);
        event["event_id"] = json!(format!("${local}:{server}"));
    }
    let event = with_content_hash(event)?;

    // Parsed as ingest parses a PDU: shape, sizes, integer range, the event ID.
    let pdu = Pdu::from_json(&event, rv)?;
    let auth_pdus: Vec<&Pdu> = auth.iter().map(|(p, _)| p).collect();
    let create = by_key.get(&("m.room.create".to_owned(), String::new())).map(|(p, _)| p);
    let outcome = auth_events_state(rv, &pdu, &auth_pdus, create.filter(|_| rv.room_id_from_create_event))
        .and_then(|state| check_event_auth(rv, &pdu, &state));
    match outcome {
        Ok(()) => Ok(event),
        Err(rejection) => Err(PrepareError::Forbidden(rejection)),
    }
}

/// The unsigned create event of a new room made by `creator` in room version `rv` (Synapse's
/// `_create_room` / the spec's "Creation"): `content.room_version`, and `content.creator` before
/// room version 11 (from v11 the sender is the creator). Before room version 12 the caller names
/// the room (`!opaque:our.server`, the opaque part random: a room ID is never reused); from v12
/// the room ID is the create event's hash and `room_id` must be `None`. v1-v2 event IDs are
/// derived as [`prepare`] derives them. `hashes.sha256` is set: the caller only signs.
pub fn create_event(rv: &RoomVersion, creator: &str, room_id: Option<&str>, origin_server_ts: i64) -> Result<Value> {
    let server = server_name_of(creator).ok_or_else(|| Error::bad_json("sender", "\"sender\" must be a user ID (@localpart:server)"))?;
    let mut content = json!({"room_version": rv.id});
    if !rv.implicit_room_creator {
        content["creator"] = json!(creator);
    }
    let mut event = json!({"type": "m.room.create", "state_key": "", "sender": creator, "content": content,
        "depth": 1, "origin_server_ts": origin_server_ts, "prev_events": [], "auth_events": []});
    match (rv.room_id_from_create_event, room_id) {
        (false, Some(id)) => {
            // The room ID's server is the creator's: rule 1.2 of the auth rules before v12.
            if server_name_of(id) != Some(server) || !id.starts_with('!') {
                return Err(Error::bad_json("room_id", format!("the room ID must be !opaque:{server}, not {id:?}")));
            }
            event["room_id"] = json!(id);
        }
        (false, None) => return Err(Error::missing("room_id")),
        (true, Some(_)) => return Err(Error::invalid(Some("room_id"), "from room version 12 the room ID is the create event's hash")),
        (true, None) => {}
    }
    if !rv.event_id_is_hash() {
        let local = URL_SAFE_NO_PAD.encode(content_hash_bytes(&event)?);
        event["event_id"] = json!(format!("${local}:{server}"));
    }
    let event = with_content_hash(event)?;
    let pdu = Pdu::from_json(&event, rv)?;
    let no_state: StateMap<Pdu> = StateMap::new();
    check_event_auth(rv, &pdu, &no_state).map_err(|r| Error::invalid(None, format!("the create event fails the auth rules: {}", r.reason)))?;
    Ok(event)
}

/// Our join event from a resident server's `make_join` template (room version `rv`), unsigned:
/// what Synapse's `create_local_event_from_event_dict` does with it. The template must be the
/// join of local user `user_id` to `room_id` (a resident server could otherwise have us sign
/// anything); `origin_server_ts` is ours, the resident's `origin`, `unsigned`, `signatures`
/// and `hashes` are dropped, v1-v2 event IDs are derived as [`prepare`] derives them, and
/// `hashes.sha256` is set: the caller only signs. The rest (prev and auth events, depth) is
/// the resident's: we have no state of the room to check it against.
pub fn join_from_template(rv: &RoomVersion, template: &Value, room_id: &str, user_id: &str, origin_server_ts: i64) -> Result<Value> {
    let mut event = template.as_object().cloned().ok_or_else(|| Error::wrong_type("event", "an object"))?;
    let field = |name: &str| event.get(name).and_then(Value::as_str);
    if field("room_id") != Some(room_id) {
        return Err(Error::bad_json("room_id", format!("the template is not of room {room_id}")));
    }
    if field("type") != Some("m.room.member") || field("sender") != Some(user_id) || field("state_key") != Some(user_id) {
        return Err(Error::bad_json("type", format!("the template is not a membership event of {user_id}")));
    }
    match event.get("content").and_then(Value::as_object) {
        Some(c) if c.get("membership").and_then(Value::as_str) == Some("join") => {}
        _ => return Err(Error::bad_json("content", "the template is not a join")),
    }
    let server = server_name_of(user_id).ok_or_else(|| Error::bad_json("sender", "\"sender\" must be a user ID (@localpart:server)"))?;
    for dropped in ["origin", "unsigned", "signatures", "hashes", "event_id"] {
        event.remove(dropped);
    }
    event.insert("origin_server_ts".into(), json!(origin_server_ts));
    let mut event = Value::Object(event);
    if !rv.event_id_is_hash() {
        let local = URL_SAFE_NO_PAD.encode(content_hash_bytes(&event)?);
        event["event_id"] = json!(format!("${local}:{server}"));
    }
    let event = with_content_hash(event)?;
    // Parsed as ingest (ours and the resident's) will parse it: shape, sizes, the event ID.
    Pdu::from_json(&event, rv)?;
    Ok(event)
}

/// The state events after the create event of a public room (Synapse's `public_chat` preset,
/// in its order): the creator's join, power levels, join rules `public`, history visibility
/// `shared`. As `(type, state_key, content)`, to be built one by one with [`prepare`].
pub fn public_room_initial_state(rv: &RoomVersion, creator: &str) -> Vec<(String, String, Value)> {
    // From room version 12 creators have infinite power and must not be listed (MSC4289).
    let users = if rv.privileged_creators { json!({}) } else { json!({creator: 100}) };
    let power_levels = json!({
        "users": users, "users_default": 0, "events_default": 0, "state_default": 50,
        "ban": 50, "kick": 50, "redact": 50, "invite": 0,
        "events": {"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                   "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                   "m.room.server_acl": 100, "m.room.encryption": 100},
    });
    vec![
        ("m.room.member".into(), creator.into(), json!({"membership": "join"})),
        ("m.room.power_levels".into(), String::new(), power_levels),
        ("m.room.join_rules".into(), String::new(), json!({"join_rule": "public"})),
        ("m.room.history_visibility".into(), String::new(), json!({"history_visibility": "shared"})),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{check_on_receipt, ReceiptOutcome};
    use crate::error::ErrorKind;
    use crate::hashes::{content_hash_matches, event_id};

    const ALICE: &str = "@alice:a.example";
    const BOB: &str = "@bob:b.example";

    /// A room in memory: stored PDUs, current state, forward extremities. Events after the
    /// create event are made by `prepare` and admitted with the spec's checks on receipt.
    struct Room {
        rv: RoomVersion,
        room_id: String,
        events: std::collections::HashMap<String, (Value, Pdu)>,
        state: StateMap<String>,
        extremities: Vec<String>,
        ts: i64,
    }

    impl Room {
        fn new(version: &str) -> Room {
            let rv = RoomVersion::from_id(version).unwrap();
            let room_id = (!rv.room_id_from_create_event).then_some("!room:a.example");
            let create = create_event(&rv, ALICE, room_id, 1000).unwrap();
            let pdu = Pdu::from_json(&create, &rv).unwrap();
            let mut room = Room {
                rv,
                room_id: pdu.room_id.clone(),
                events: Default::default(),
                state: StateMap::new(),
                extremities: Vec::new(),
                ts: 1000,
            };
            room.admit(create);
            room.send(ALICE, "m.room.member", Some(ALICE), json!({"membership": "join"})).unwrap();
            room
        }

        fn request(&mut self, sender: &str, event_type: &str, state_key: Option<&str>, content: Value) -> LocalEvent {
            self.ts += 1;
            LocalEvent {
                room_id: self.room_id.clone(),
                sender: sender.into(),
                event_type: event_type.into(),
                state_key: state_key.map(str::to_owned),
                content,
                origin_server_ts: self.ts,
            }
        }

        /// What the shell passes: the extremities' PDUs and the needed current state's.
        fn prepare(&self, req: &LocalEvent) -> std::result::Result<Value, PrepareError> {
            let ext: Vec<Value> = self.extremities.iter().map(|id| self.events[id].0.clone()).collect();
            let keys = state_keys_needed(&self.rv, req)?;
            let state: Vec<Value> = keys.iter().filter_map(|k| self.state.get(k)).map(|id| self.events[id].0.clone()).collect();
            prepare(&self.rv, req, &ext, &state)
        }

        /// Admits a PDU whose prev events are the extremities: checks on receipt against its auth
        /// events and the current state (the state before it, with one line of history).
        fn admit(&mut self, json: Value) -> Pdu {
            let pdu = Pdu::from_json(&json, &self.rv).unwrap();
            if pdu.event_type != "m.room.create" {
                let current: StateMap<Pdu> = self.state.iter().map(|(k, id)| (k.clone(), self.events[id].1.clone())).collect();
                let auth: Vec<&Pdu> = pdu.auth_events.iter().map(|id| &self.events[id].1).collect();
                let create = current.get(&("m.room.create".to_owned(), String::new()));
                let auth_state = auth_events_state(&self.rv, &pdu, &auth, create.filter(|_| self.rv.room_id_from_create_event)).unwrap();
                assert_eq!(check_on_receipt(&self.rv, &pdu, &auth_state, &current, &current), ReceiptOutcome::Accepted, "{json}");
            }
            self.extremities.retain(|e| !pdu.prev_events.contains(e));
            self.extremities.push(pdu.event_id.clone());
            if let Some(k) = &pdu.state_key {
                self.state.insert((pdu.event_type.clone(), k.clone()), pdu.event_id.clone());
            }
            self.events.insert(pdu.event_id.clone(), (json, pdu.clone()));
            pdu
        }

        fn send(&mut self, sender: &str, event_type: &str, state_key: Option<&str>, content: Value) -> std::result::Result<Pdu, PrepareError> {
            let req = self.request(sender, event_type, state_key, content);
            let json = self.prepare(&req)?;
            Ok(self.admit(json))
        }

        fn id(&self, event_type: &str, state_key: &str) -> String {
            self.state[&(event_type.to_owned(), state_key.to_owned())].clone()
        }
    }

    fn forbidden(r: std::result::Result<Pdu, PrepareError>) -> String {
        match r {
            Err(PrepareError::Forbidden(rej)) => rej.reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn every_room_version_builds_events_the_checks_on_receipt_accept() {
        for rv in crate::room_version::ALL {
            let mut room = Room::new(rv.id);
            // From room version 12 the creator's power is infinite and not listed.
            let users = if rv.privileged_creators { json!({}) } else { json!({ALICE: 100}) };
            room.send(ALICE, "m.room.power_levels", Some(""), json!({"users": users, "state_default": 50})).unwrap();
            room.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "public"})).unwrap();
            let join = room.send(BOB, "m.room.member", Some(BOB), json!({"membership": "join"})).unwrap();
            let msg = room.send(BOB, "m.room.message", None, json!({"msgtype": "m.text", "body": "hi"})).unwrap();
            let topic = room.send(ALICE, "m.room.topic", Some(""), json!({"topic": "t"})).unwrap();
            // The selection, in its order, from the current state.
            let create = room.id("m.room.create", "");
            let pl = room.id("m.room.power_levels", "");
            let jr = room.id("m.room.join_rules", "");
            let with_create = |mut ids: Vec<String>| {
                if !rv.room_id_from_create_event {
                    ids.insert(0, create.clone());
                }
                ids
            };
            assert_eq!(join.auth_events, with_create(vec![pl.clone(), jr.clone()]), "v{}", rv.id);
            assert_eq!(msg.auth_events, with_create(vec![pl.clone(), join.event_id.clone()]), "v{}", rv.id);
            assert_eq!(topic.auth_events, with_create(vec![pl, room.id("m.room.member", ALICE)]), "v{}", rv.id);
            assert_eq!(msg.prev_events, vec![join.event_id.clone()]);
            assert_eq!(msg.depth, join.depth + 1);
            let json = &room.events[&topic.event_id].0;
            assert!(content_hash_matches(json).unwrap());
            assert!(json.get("signatures").is_none() && json.get("origin").is_none() && json.get("unsigned").is_none());
            assert_eq!(json["origin_server_ts"], json!(room.ts));
            assert_eq!(json.get("event_id").is_some(), !rv.event_id_is_hash(), "v{}", rv.id);
            assert!(room.events[&msg.event_id].0.get("state_key").is_none());
        }
    }

    #[test]
    fn v1_v2_reference_pairs_and_event_ids() {
        for version in ["1", "2"] {
            let rv = RoomVersion::from_id(version).unwrap();
            let mut room = Room::new(version);
            let msg = room.send(ALICE, "m.room.message", None, json!({"body": "one"})).unwrap();
            let json = &room.events[&msg.event_id].0;
            let join = room.id("m.room.member", ALICE);
            let hash = |id: &str| STANDARD_NO_PAD.encode(reference_hash_bytes(&room.events[id].0, &rv).unwrap());
            assert_eq!(json["prev_events"], json!([[join, {"sha256": hash(&join)}]]));
            let create = room.id("m.room.create", "");
            assert_eq!(json["auth_events"], json!([[create, {"sha256": hash(&create)}], [join, {"sha256": hash(&join)}]]));
            // $ + the content hash of the event without its ID, on the sender's server.
            let mut without = json.clone();
            without.as_object_mut().unwrap().remove("event_id");
            let expected = format!("${}:a.example", URL_SAFE_NO_PAD.encode(content_hash_bytes(&without).unwrap()));
            assert_eq!(msg.event_id, expected);
            assert_eq!(event_id(json, &rv).unwrap(), expected);
            // Another message, another ID.
            let other = room.send(ALICE, "m.room.message", None, json!({"body": "two"})).unwrap();
            assert_ne!(other.event_id, msg.event_id);
        }
    }

    #[test]
    fn v12_lists_no_create_event_but_checks_against_it() {
        let mut room = Room::new("12");
        let msg = room.send(ALICE, "m.room.message", None, json!({"body": "hi"})).unwrap();
        assert_eq!(msg.auth_events, vec![room.id("m.room.member", ALICE)]);
        let req = room.request(ALICE, "m.room.message", None, json!({}));
        assert_eq!(state_keys_needed(&room.rv, &req).unwrap().last().unwrap(), &("m.room.create".to_owned(), String::new()));
        // Without the create event the rules cannot pass.
        let ext: Vec<Value> = room.extremities.iter().map(|id| room.events[id].0.clone()).collect();
        let member = room.events[&room.id("m.room.member", ALICE)].0.clone();
        let r = prepare(&room.rv, &req, &ext, &[member]);
        assert!(matches!(r, Err(PrepareError::Forbidden(ref rej)) if rej.reason.contains("create event")), "{r:?}");
    }

    #[test]
    fn prev_events_are_the_ten_deepest_extremities() {
        let rv = RoomVersion::from_id("10").unwrap();
        let mut room = Room::new("10");
        // Twelve concurrent messages on the join, given depths 5..16 by their senders.
        let parent = room.extremities.clone();
        let mut forks = Vec::new();
        for i in 0..12i64 {
            let req = room.clone_request(i);
            let mut ev = room.prepare(&req).unwrap();
            ev["depth"] = json!(5 + i);
            let ev = with_content_hash(ev).unwrap();
            let pdu = Pdu::from_json(&ev, &rv).unwrap();
            assert_eq!(pdu.prev_events, parent);
            room.events.insert(pdu.event_id.clone(), (ev, pdu.clone()));
            forks.push(pdu);
        }
        room.extremities = forks.iter().map(|p| p.event_id.clone()).collect();
        let msg = room.send(ALICE, "m.room.message", None, json!({"body": "merge"})).unwrap();
        let expected: Vec<String> = forks.iter().rev().take(10).map(|p| p.event_id.clone()).collect();
        assert_eq!(msg.prev_events, expected);
        assert_eq!(msg.depth, 17);
        // Ties go by event ID.
        let mut same: Vec<Pdu> = forks.iter().map(|p| Pdu { depth: 3, ..p.clone() }).collect();
        same.reverse();
        let chosen: Vec<String> = choose_prev_events(same).into_iter().map(|p| p.event_id).collect();
        let mut ids: Vec<String> = forks.iter().map(|p| p.event_id.clone()).collect();
        ids.sort();
        assert_eq!(chosen, ids[..10].to_vec());
    }

    impl Room {
        fn clone_request(&mut self, i: i64) -> LocalEvent {
            self.request(ALICE, "m.room.message", None, json!({"body": format!("fork {i}")}))
        }
    }

    #[test]
    fn depth_is_capped() {
        // Room version 5 allows integers beyond 2^53, so a depth of 2^63 - 1 can be stored.
        let mut room = Room::new("5");
        let last = room.extremities[0].clone();
        let (json, pdu) = room.events.get_mut(&last).unwrap();
        json["depth"] = json!(i64::MAX);
        pdu.depth = i64::MAX;
        let req = room.request(ALICE, "m.room.message", None, json!({}));
        let ev = room.prepare(&req).unwrap();
        assert_eq!(ev["depth"], json!(MAX_DEPTH));
    }

    #[test]
    fn refusals_name_the_rule() {
        let mut room = Room::new("10");
        room.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "invite"})).unwrap();
        let carol = "@carol:c.example";
        let r = forbidden(room.send(carol, "m.room.message", None, json!({"body": "hi"})));
        assert!(r.contains("is not joined"), "{r}");
        let r = forbidden(room.send(carol, "m.room.member", Some(carol), json!({"membership": "join"})));
        assert!(r.contains("join rule is invite"), "{r}");
        room.send(ALICE, "m.room.member", Some(carol), json!({"membership": "invite"})).unwrap();
        room.send(carol, "m.room.member", Some(carol), json!({"membership": "join"})).unwrap();
        // No power levels: a state event needs 50, carol has 0.
        let r = forbidden(room.send(carol, "m.room.topic", Some(""), json!({"topic": "mine"})));
        assert!(r.contains("below the 50 needed for m.room.topic"), "{r}");
    }

    #[test]
    fn bad_requests_are_errors() {
        let mut room = Room::new("10");
        let mut req = room.request(ALICE, "m.room.message", None, json!([1]));
        match room.prepare(&req) {
            Err(PrepareError::Invalid(e)) => assert_eq!((e.kind, e.field.as_deref()), (ErrorKind::BadJson, Some("content"))),
            other => panic!("{other:?}"),
        }
        req.content = json!({});
        req.sender = "alice".into();
        assert!(matches!(room.prepare(&req), Err(PrepareError::Invalid(ref e)) if e.field.as_deref() == Some("sender")));
        req.sender = ALICE.into();
        req.state_key = Some("k".repeat(300));
        assert!(matches!(room.prepare(&req), Err(PrepareError::Invalid(ref e)) if e.kind == ErrorKind::StringTooLong));
        req.state_key = None;
        assert!(matches!(prepare(&room.rv, &req, &[], &[]), Err(PrepareError::Invalid(ref e)) if e.message.contains("no forward extremities")));
    }

    #[test]
    fn redactions_before_v11_name_their_target_at_the_top_level() {
        for (version, top_level) in [("10", true), ("11", false)] {
            let mut room = Room::new(version);
            let msg = room.send(ALICE, "m.room.message", None, json!({"body": "oops"})).unwrap();
            let red = room.send(ALICE, "m.room.redaction", None, json!({"redacts": msg.event_id, "reason": "r"})).unwrap();
            assert_eq!(red.redacts.as_deref(), Some(msg.event_id.as_str()));
            let json = &room.events[&red.event_id].0;
            assert_eq!(json.get("redacts").is_some(), top_level);
            assert_eq!(json["content"].get("redacts").is_some(), !top_level);
            assert_eq!(json["content"]["reason"], json!("r"));
        }
    }

    #[test]
    fn new_public_rooms_of_every_version_pass_the_checks_on_receipt() {
        for rv in crate::room_version::ALL {
            // Room::new builds the create event with create_event and admits it and the join.
            let mut room = Room::new(rv.id);
            let create = &room.events[&room.id("m.room.create", "")].0;
            assert_eq!(create["content"]["room_version"], json!(rv.id));
            assert_eq!(create["content"].get("creator").is_some(), !rv.implicit_room_creator, "v{}", rv.id);
            assert_eq!(create.get("room_id").is_some(), !rv.room_id_from_create_event, "v{}", rv.id);
            if rv.room_id_from_create_event {
                assert_eq!(room.room_id, crate::hashes::room_id_from_create_event(create, &rv).unwrap());
            }
            assert!(content_hash_matches(create).unwrap());
            // The rest of the preset after the join (which Room::new sent).
            let initial = public_room_initial_state(&rv, ALICE);
            assert_eq!(initial[0], ("m.room.member".to_owned(), ALICE.to_owned(), json!({"membership": "join"})));
            for (event_type, state_key, content) in &initial[1..] {
                room.send(ALICE, event_type, Some(state_key), content.clone()).unwrap_or_else(|e| panic!("v{} {event_type}: {e:?}", rv.id));
            }
            assert_eq!(room.events[&room.id("m.room.power_levels", "")].0["content"]["users"].get(ALICE).is_some(), !rv.privileged_creators);
            // Public: a user of another server joins and speaks; shared history needs no more.
            room.send(BOB, "m.room.member", Some(BOB), json!({"membership": "join"})).unwrap();
            room.send(BOB, "m.room.message", None, json!({"body": "hi"})).unwrap();
            // The creator may change the power levels; Bob may not.
            let r = forbidden(room.send(BOB, "m.room.power_levels", Some(""), json!({"users": {BOB: 100}})));
            assert!(!r.is_empty());
            room.send(ALICE, "m.room.history_visibility", Some(""), json!({"history_visibility": "joined"})).unwrap();
        }
    }

    #[test]
    fn create_events_are_named_as_the_room_version_wants() {
        let v10 = RoomVersion::from_id("10").unwrap();
        let v12 = RoomVersion::from_id("12").unwrap();
        assert!(create_event(&v10, ALICE, None, 1).unwrap_err().message.contains("room_id"));
        let e = create_event(&v10, ALICE, Some("!r:b.example"), 1).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("room_id"), "another server's room ID");
        assert!(create_event(&v10, ALICE, Some("r:a.example"), 1).is_err());
        assert_eq!(create_event(&v12, ALICE, Some("!r:a.example"), 1).unwrap_err().field.as_deref(), Some("room_id"));
        assert!(create_event(&v12, "alice", None, 1).is_err());
        // Different times, different rooms: v12 room IDs are hashes.
        let a = crate::hashes::room_id_from_create_event(&create_event(&v12, ALICE, None, 1).unwrap(), &v12).unwrap();
        let b = crate::hashes::room_id_from_create_event(&create_event(&v12, ALICE, None, 2).unwrap(), &v12).unwrap();
        assert_ne!(a, b);
        // v1: the event ID is derived, on the creator's server.
        let v1 = RoomVersion::from_id("1").unwrap();
        let c = create_event(&v1, ALICE, Some("!r:a.example"), 1).unwrap();
        assert!(c["event_id"].as_str().unwrap().ends_with(":a.example"));
    }

    #[test]
    fn a_make_join_template_becomes_our_join_in_every_room_version() {
        for rv in crate::room_version::ALL {
            let mut room = Room::new(rv.id);
            room.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "public"})).unwrap();
            // The resident server's template: its origin and unsigned data, its v1 event ID.
            let req = room.request(BOB, "m.room.member", Some(BOB), json!({"membership": "join"}));
            let mut template = room.prepare(&req).unwrap();
            template["origin"] = json!("a.example");
            template["unsigned"] = json!({"age_ts": 5});
            let join = join_from_template(&rv, &template, &room.room_id, BOB, 77).unwrap();
            assert_eq!(join["origin_server_ts"], json!(77), "{}", rv.id);
            assert!(join.get("origin").is_none() && join.get("unsigned").is_none());
            assert!(content_hash_matches(&join).unwrap());
            if !rv.event_id_is_hash() {
                assert!(join["event_id"].as_str().unwrap().ends_with(":b.example"), "the joining server names a v1 event");
            }
            assert_eq!(join["prev_events"], template["prev_events"]);
            assert_eq!(join["auth_events"], template["auth_events"]);
            let admitted = room.admit(join.clone());
            assert_eq!(admitted.event_id, event_id(&join, &rv).unwrap());

            // Not the join of our user to this room: refused.
            let room_id = room.room_id.clone();
            assert!(join_from_template(&rv, &template, "!other:a.example", BOB, 1).is_err());
            assert!(join_from_template(&rv, &template, &room_id, "@carol:b.example", 1).is_err());
            let mut leave = template.clone();
            leave["content"]["membership"] = json!("leave");
            assert!(join_from_template(&rv, &leave, &room_id, BOB, 1).is_err());
            let mut other_sender = template.clone();
            other_sender["sender"] = json!(ALICE);
            assert!(join_from_template(&rv, &other_sender, &room_id, BOB, 1).is_err());
            assert!(join_from_template(&rv, &json!([]), &room_id, BOB, 1).is_err());
        }
    }
}
