//! Admitting an event with its prev events known: the state before it, the checks on receipt,
//! the state after it.

use super::{resolve_snapshots, apply_change, StateStore, StoredEvent};
use crate::auth::{auth_events_state, auth_types_for_event, check_on_receipt, ReceiptOutcome, StateMap};
use crate::error::{Error, Result};
use crate::event::Pdu;
use crate::room_version::RoomVersion;
use crate::state_blocks::{Entry, StateHash};

/// What admitting an event decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    pub state_before: i64,
    /// Equal to `state_before` for non-state events and rejected events.
    pub state_after: i64,
    /// Why the event was rejected (against its auth events or the state before it).
    pub rejection: Option<String>,
    /// Why the event was soft-failed (it fails against the current state of the room).
    pub soft_failure: Option<String>,
}

/// Admits `event` (already stored under `event.nid`, or about to be) whose prev events have the
/// after-states `prev_states`, whose auth events are `auth_nids`, into a room whose current
/// state is the resolution of `current` (the states of its forward extremities; empty before the
/// room has any).
pub fn admit(
    rv: &RoomVersion,
    store: &mut dyn StateStore,
    event: &StoredEvent,
    prev_states: &[i64],
    auth_nids: &[i64],
    current: &[i64],
) -> Result<Admission> {
    let state_before = state_before(rv, store, prev_states)?;
    admit_after(rv, store, event, state_before, auth_nids, current)
}

/// [`admit`] with the state before the event already known: resolved from its prev events, or
/// supplied by the caller ([`supplied_state`]) where they are not stored.
pub fn admit_after(
    rv: &RoomVersion,
    store: &mut dyn StateStore,
    event: &StoredEvent,
    state_before: i64,
    auth_nids: &[i64],
    current: &[i64],
) -> Result<Admission> {
    let outcome = check(rv, store, event, auth_nids, state_before, current)?;
    let (rejection, soft_failure) = match outcome {
        ReceiptOutcome::Accepted => (None, None),
        ReceiptOutcome::Rejected(r) => (Some(r.reason), None),
        ReceiptOutcome::SoftFailed(r) => (None, Some(r.reason)),
    };
    let state_after = match event.key() {
        Some((t, k)) if rejection.is_none() => {
            apply_change(store, state_before, vec![Entry { type_nid: t, state_key_nid: k, event_nid: event.nid }])?
        }
        _ => state_before,
    };
    Ok(Admission { state_before, state_after, rejection, soft_failure })
}

/// The state before an event whose prev events have the after-states `prev_states`: the empty
/// state for none, else their resolution.
pub fn state_before(rv: &RoomVersion, store: &mut dyn StateStore, prev_states: &[i64]) -> Result<i64> {
    if prev_states.is_empty() {
        store.save_snapshot(&[], Vec::new(), StateHash::default(), 0)
    } else {
        resolve_snapshots(rv, store, prev_states)
    }
}

/// The snapshot of a state given as its events (a `send_join` response's `state`, Dendrite's
/// `StateEventIDs`): each must be a state event, and no two may have the same `(type, state_key)`.
pub fn supplied_state(rv: &RoomVersion, store: &mut dyn StateStore, event_nids: &[i64]) -> Result<i64> {
    let events = store.events(event_nids)?;
    let mut seen: std::collections::HashMap<(i64, i64), &str> = std::collections::HashMap::with_capacity(events.len());
    let mut entries = Vec::with_capacity(events.len());
    for ev in &events {
        let Some(key) = ev.key() else {
            return Err(Error::invalid(Some("state_event_ids"), format!("{} is not a state event", ev.pdu.event_id)));
        };
        if let Some(other) = seen.insert(key, &ev.pdu.event_id) {
            if other != ev.pdu.event_id {
                return Err(Error::invalid(
                    Some("state_event_ids"),
                    format!(
                        "{other} and {} are both the state for ({}, {:?}): a state holds one event per type and state key",
                        ev.pdu.event_id,
                        ev.pdu.event_type,
                        ev.pdu.state_key.as_deref().unwrap_or("")
                    ),
                ));
            }
            continue;
        }
        entries.push(Entry { type_nid: key.0, state_key_nid: key.1, event_nid: ev.nid });
    }
    let empty = state_before(rv, store, &[])?;
    apply_change(store, empty, entries)
}

/// The three checks on receipt.
fn check(
    rv: &RoomVersion,
    store: &mut dyn StateStore,
    event: &StoredEvent,
    auth_nids: &[i64],
    state_before: i64,
    current: &[i64],
) -> Result<ReceiptOutcome> {
    let auth_state = match auth_state(rv, store, event, auth_nids)? {
        Ok(s) => s,
        Err(reason) => return Ok(ReceiptOutcome::Rejected(crate::auth::Rejection::new(reason))),
    };
    // The rules read the create event from the state even where (v12) it is not an auth event.
    let mut wanted = auth_types_for_event(rv, &event.pdu);
    wanted.push(("m.room.create".to_owned(), String::new()));
    wanted.sort();
    wanted.dedup();
    let before = state_map(store, state_before, &wanted)?;
    let now = current_auth_state(rv, store, current, state_before, &wanted, &before)?;
    let auth_refs: StateMap<&Pdu> = auth_state.iter().map(|(k, v)| (k.clone(), v)).collect();
    Ok(check_on_receipt(rv, &event.pdu, &auth_refs, &before, &now))
}

/// The keys the soft-fail check reads, in the current state (the resolution of the forward
/// extremities' states). Resolution keeps every entry the states agree on, so when they agree on
/// all these keys (almost always) no resolution is needed; only a conflict on one of them
/// resolves the whole current state.
fn current_auth_state(
    rv: &RoomVersion,
    store: &mut dyn StateStore,
    current: &[i64],
    state_before: i64,
    keys: &[(String, String)],
    before: &StateMap<Pdu>,
) -> Result<StateMap<Pdu>> {
    let mut states = current.to_vec();
    states.sort_unstable();
    states.dedup();
    match states.as_slice() {
        [] => return Ok(before.clone()),
        [only] if *only == state_before => return Ok(before.clone()),
        [only] => return state_map(store, *only, keys),
        _ => {}
    }
    let nids = store.key_nids(keys)?;
    let known: Vec<(i64, i64)> = nids.iter().flatten().copied().collect();
    let mut agreed: Option<Vec<Option<i64>>> = None;
    for &s in &states {
        let found = store.lookup(s, &known)?;
        match &agreed {
            None => agreed = Some(found),
            Some(a) if *a == found => {}
            Some(_) => {
                let resolved = resolve_snapshots(rv, store, &states)?;
                return state_map(store, resolved, keys);
            }
        }
    }
    let found = agreed.unwrap_or_default();
    let ev_nids: Vec<i64> = found.iter().flatten().copied().collect();
    let events = store.events(&ev_nids)?;
    let mut out = StateMap::with_capacity(events.len());
    let mut it = events.iter();
    for (key, f) in keys.iter().zip(nids.iter()).filter_map(|(k, n)| n.map(|_| k)).zip(found) {
        if f.is_some() {
            let ev = it.next().expect("one event per found entry");
            out.insert(key.clone(), ev.pdu.clone());
        }
    }
    Ok(out)
}

/// The check of an outlier: against its auth events alone. `Some(reason)` rejects it.
pub fn check_outlier(rv: &RoomVersion, store: &mut dyn StateStore, event: &StoredEvent, auth_nids: &[i64]) -> Result<Option<String>> {
    let auth_state = match auth_state(rv, store, event, auth_nids)? {
        Ok(s) => s,
        Err(reason) => return Ok(Some(reason)),
    };
    let refs: StateMap<&Pdu> = auth_state.iter().map(|(k, v)| (k.clone(), v)).collect();
    Ok(crate::auth::check_event_auth(rv, &event.pdu, &refs).err().map(|r| format!("against its auth events: {}", r.reason)))
}

/// The event's auth events as a state map, or why they cannot serve as its auth events.
fn auth_state(
    rv: &RoomVersion,
    store: &mut dyn StateStore,
    event: &StoredEvent,
    auth_nids: &[i64],
) -> Result<std::result::Result<StateMap<Pdu>, String>> {
    let auth = store.events(auth_nids)?;
    if let Some(bad) = auth.iter().find(|a| a.rejected) {
        return Ok(Err(format!("auth event {} was rejected", bad.pdu.event_id)));
    }
    // Room version 12 names the create event by the room ID instead of listing it.
    let is_create = event.pdu.event_type == "m.room.create" && event.pdu.state_key.as_deref() == Some("");
    let create = if rv.room_id_from_create_event && !is_create {
        let create_id = format!("${}", event.pdu.room_id.trim_start_matches('!'));
        match store.event_nid(&create_id)? {
            Some(n) => store.events(&[n])?.pop(),
            None => None,
        }
    } else {
        None
    };
    let pdus: Vec<&Pdu> = auth.iter().map(|a| &a.pdu).collect();
    let create_pdu = if is_create { Some(&event.pdu) } else { create.as_ref().map(|c| &c.pdu) };
    Ok(match auth_events_state(rv, &event.pdu, &pdus, create_pdu) {
        Ok(map) => Ok(map.into_iter().map(|(k, v)| (k, v.clone())).collect()),
        Err(r) => Err(format!("against its auth events: {}", r.reason)),
    })
}

/// The events of `keys` in a snapshot, as a state map the auth rules can read.
fn state_map(store: &mut dyn StateStore, snapshot: i64, keys: &[(String, String)]) -> Result<StateMap<Pdu>> {
    let nids = store.key_nids(keys)?;
    let known: Vec<((String, String), (i64, i64))> =
        keys.iter().cloned().zip(nids).filter_map(|(k, n)| n.map(|n| (k, n))).collect();
    let key_nids: Vec<(i64, i64)> = known.iter().map(|(_, n)| *n).collect();
    let found = store.lookup(snapshot, &key_nids)?;
    let ev_nids: Vec<i64> = found.iter().flatten().copied().collect();
    let events = store.events(&ev_nids)?;
    let mut out = StateMap::with_capacity(events.len());
    let mut it = events.iter();
    for ((key, _), f) in known.into_iter().zip(found) {
        if f.is_some() {
            let ev = it.next().expect("one event per found entry");
            out.insert(key, ev.pdu.clone());
        }
    }
    Ok(out)
}
