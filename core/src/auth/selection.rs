//! "Auth events selection" (server-server API) and the auth-events checks of the rules
//! ("Considering the event's auth_events"): which `(type, state_key)` an event's `auth_events`
//! may reference, and turning the referenced events into the state the rules run against.

use serde_json::Value;

use super::{Rejection, StateMap};
use crate::event::Pdu;
use crate::room_version::RoomVersion;

/// The `(type, state_key)` pairs an event's `auth_events` may reference.
pub fn auth_types_for_event(rv: &RoomVersion, event: &Pdu) -> Vec<(String, String)> {
    if event.event_type == "m.room.create" {
        return Vec::new();
    }
    let pair = |t: &str, k: &str| (t.to_owned(), k.to_owned());
    let mut out = Vec::with_capacity(6);
    // From room version 12 the room ID stands for the create event.
    if !rv.room_id_from_create_event {
        out.push(pair("m.room.create", ""));
    }
    out.push(pair("m.room.power_levels", ""));
    out.push(pair("m.room.member", &event.sender));
    if event.event_type == "m.room.member" {
        if let Some(target) = &event.state_key {
            if target != &event.sender {
                out.push(pair("m.room.member", target));
            }
        }
        let membership = event.membership().unwrap_or("");
        if matches!(membership, "join" | "invite" | "knock") {
            out.push(pair("m.room.join_rules", ""));
        }
        if membership == "invite" {
            let token = event
                .content
                .get("third_party_invite")
                .and_then(|t| t.get("signed"))
                .and_then(|s| s.get("token"))
                .and_then(Value::as_str);
            if let Some(token) = token {
                out.push(pair("m.room.third_party_invite", token));
            }
        }
        if membership == "join" && rv.restricted_join_rule {
            if let Some(via) = event.content.get("join_authorised_via_users_server").and_then(Value::as_str) {
                if via != event.sender {
                    out.push(pair("m.room.member", via));
                }
            }
        }
    }
    out
}

/// Checks an event's auth events (given in order, already fetched) and returns them as the state
/// the rules run against: each must be a state event of the same room, of a pair the selection
/// allows, with no pair twice; before room version 12 the create event must be among them; from
/// room version 12 it must not be, and is passed as `create_event` instead. The caller has
/// already refused auth events that were themselves rejected.
pub fn auth_events_state<'a>(
    rv: &RoomVersion,
    event: &Pdu,
    auth_events: &[&'a Pdu],
    create_event: Option<&'a Pdu>,
) -> Result<StateMap<&'a Pdu>, Rejection> {
    let allowed = auth_types_for_event(rv, event);
    let mut state: StateMap<&'a Pdu> = StateMap::with_capacity(auth_events.len() + 1);
    for ae in auth_events {
        if ae.room_id != event.room_id {
            return Err(Rejection::new(format!("auth event {} is in room {}, not {}", ae.event_id, ae.room_id, event.room_id)));
        }
        let Some(key) = ae.state_key.clone() else {
            return Err(Rejection::new(format!("auth event {} is not a state event", ae.event_id)));
        };
        let pair = (ae.event_type.clone(), key);
        if !allowed.contains(&pair) {
            return Err(Rejection::new(format!(
                "auth event {} ({}, {:?}) is not one the auth events selection allows",
                ae.event_id, pair.0, pair.1
            )));
        }
        if let Some(prev) = state.insert(pair.clone(), ae) {
            return Err(Rejection::new(format!(
                "auth events {} and {} are both ({}, {:?})",
                prev.event_id, ae.event_id, pair.0, pair.1
            )));
        }
    }
    let create_key = ("m.room.create".to_owned(), String::new());
    if rv.room_id_from_create_event {
        match create_event {
            Some(c) => {
                state.insert(create_key, c);
            }
            None => return Err(Rejection::new("the room's create event is unknown")),
        }
    } else if event.event_type != "m.room.create" && !state.contains_key(&create_key) {
        return Err(Rejection::new("there is no m.room.create event among the auth events"));
    }
    Ok(state)
}
