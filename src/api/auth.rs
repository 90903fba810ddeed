//! The SQL face of the authorization rules and state resolution: for tests, for DBAs asking
//! "why is the state this", and for front ends checking an event before they send it.
//! Both read no tables: they are IMMUTABLE, STRICT and PARALLEL SAFE.

use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::api::json_input::JsonInput;
use roomserver_core::auth::{check_event_auth, StateMap};
use roomserver_core::state_res::resolve;
use roomserver_core::{Error, Pdu, RoomVersion};
use serde_json::{json, Map, Value};

use crate::errors::{raise, OrRaise};

/// Resolves `state_sets` (a JSON array of arrays of event IDs) with the algorithm of
/// `room_version`; `events` maps every event ID the algorithm may need (the state sets' events
/// and their auth chains) to its PDU. Returns `{"<type>": {"<state_key>": "<event_id>"}}`.
#[pg_extern(immutable, strict, parallel_safe)]
fn resolve_state(room_version: &str, state_sets: JsonInput, events: JsonInput) -> JsonB {
    const CTX: &str = "resolve_state";
    let rv = RoomVersion::from_id(room_version).or_raise(CTX);
    let store = parse_events(&events.0, &rv).or_raise(CTX);
    let sets = parse_state_sets(&state_sets.0, &store).or_raise(CTX);
    let resolved = resolve(&rv, &sets, &store).or_raise(CTX);
    let mut out: Map<String, Value> = Map::new();
    for ((event_type, state_key), event_id) in resolved {
        let by_key = out.entry(event_type).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = by_key {
            m.insert(state_key, Value::String(event_id));
        }
    }
    JsonB(Value::Object(out))
}

/// Checks `pdu` against the authorization rules of `room_version` with `state` (a JSON array of
/// the state events to check against). Returns `{"allowed": bool, "reason": text|null}`.
#[pg_extern(immutable, strict, parallel_safe)]
fn check_auth(pdu: JsonInput, room_version: &str, state: JsonInput) -> JsonB {
    const CTX: &str = "check_auth";
    let rv = RoomVersion::from_id(room_version).or_raise(CTX);
    let event = Pdu::from_json(&pdu.0, &rv).or_raise(CTX);
    let Value::Array(items) = &state.0 else {
        raise(Error::bad_json("state", "state must be a JSON array of PDUs"), CTX)
    };
    let mut map: StateMap<Pdu> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("state[{i}]");
        let ev = Pdu::from_json(item, &rv).map_err(|e| prefix(e, &field)).or_raise(CTX);
        let Some(key) = ev.state_key.clone() else {
            raise(Error::invalid(Some(&field), format!("{field} ({}) is not a state event", ev.event_id)), CTX)
        };
        if let Some(prev) = map.insert((ev.event_type.clone(), key.clone()), ev) {
            raise(
                Error::invalid(Some(&field), format!("{field} repeats ({}, {key:?}), already given by {}", prev.event_type, prev.event_id)),
                CTX,
            )
        }
    }
    let result = match check_event_auth(&rv, &event, &map) {
        Ok(()) => json!({"allowed": true, "reason": null}),
        Err(rejection) => json!({"allowed": false, "reason": rejection.reason}),
    };
    JsonB(result)
}

fn prefix(mut e: Error, field: &str) -> Error {
    e.message = format!("{field}: {}", e.message);
    e.field = Some(match e.field {
        Some(f) => format!("{field}.{f}"),
        None => field.to_owned(),
    });
    e
}

/// `events`: event ID -> PDU; each key must be the PDU's own event ID in this room version.
fn parse_events(events: &Value, rv: &RoomVersion) -> Result<HashMap<String, Pdu>, Error> {
    let Value::Object(map) = events else {
        return Err(Error::bad_json("events", "events must be a JSON object mapping event IDs to PDUs"));
    };
    let mut store = HashMap::with_capacity(map.len());
    for (id, pdu) in map {
        let field = format!("events[{id}]");
        let ev = Pdu::from_json(pdu, rv).map_err(|e| prefix(e, &field))?;
        if &ev.event_id != id {
            return Err(Error::invalid(Some(&field), format!("{field}: the PDU's event ID is {}, not {id}", ev.event_id)));
        }
        store.insert(id.clone(), ev);
    }
    Ok(store)
}

/// `state_sets`: an array of arrays of event IDs, each naming state events in `store`.
fn parse_state_sets(sets: &Value, store: &HashMap<String, Pdu>) -> Result<Vec<StateMap<String>>, Error> {
    let Value::Array(sets) = sets else {
        return Err(Error::bad_json("state_sets", "state_sets must be a JSON array of arrays of event IDs"));
    };
    let mut out = Vec::with_capacity(sets.len());
    for (i, set) in sets.iter().enumerate() {
        let Value::Array(ids) = set else {
            return Err(Error::wrong_type(&format!("state_sets[{i}]"), "an array of event IDs"));
        };
        let mut map: StateMap<String> = HashMap::with_capacity(ids.len());
        for (j, id) in ids.iter().enumerate() {
            let field = format!("state_sets[{i}][{j}]");
            let id = id.as_str().ok_or_else(|| Error::wrong_type(&field, "an event ID string"))?;
            let ev = store.get(id).ok_or_else(|| Error::not_found(format!("{field}: event {id} is not in events")))?;
            let key = ev.state_key.clone().ok_or_else(|| Error::invalid(Some(&field), format!("{field}: {id} is not a state event")))?;
            if let Some(prev) = map.insert((ev.event_type.clone(), key.clone()), id.to_owned()) {
                return Err(Error::invalid(
                    Some(&field),
                    format!("{field}: state set {i} has two events for ({}, {key:?}): {prev} and {id}", ev.event_type),
                ));
            }
        }
        out.push(map);
    }
    Ok(out)
}
