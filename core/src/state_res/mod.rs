//! State resolution: v1 for room version 1, v2 for room versions 2-11, v2.1 for room version 12
//! (the room version specifications, "State resolution").

use std::collections::HashMap;

use crate::auth::StateMap;
use crate::error::{Error, Result};
use crate::event::Pdu;
use crate::room_version::{RoomVersion, StateResAlgorithm};

mod graph;
mod v1;
mod v2;

/// Where state resolution fetches events: the state sets' events and their auth chains.
pub trait EventStore {
    fn event(&self, event_id: &str) -> Option<&Pdu>;
}

impl EventStore for HashMap<String, Pdu> {
    fn event(&self, event_id: &str) -> Option<&Pdu> {
        self.get(event_id)
    }
}

impl<'a> EventStore for HashMap<String, &'a Pdu> {
    fn event(&self, event_id: &str) -> Option<&Pdu> {
        self.get(event_id).copied()
    }
}

/// Resolves `state_sets` (each `(type, state_key) -> event ID`) with the algorithm of `rv`.
/// Every event the state sets name, and every event in their auth chains, must be in `store`.
pub fn resolve(rv: &RoomVersion, state_sets: &[StateMap<String>], store: &dyn EventStore) -> Result<StateMap<String>> {
    resolve_with_auth_difference(rv, state_sets, store, None)
}

/// [`resolve`] for callers that pass excerpts of the states (the conflicted entries and the
/// unconflicted ones the authorization rules read) and compute the auth chain difference of the
/// full states themselves, e.g. from stored auth chains: it cannot be derived from excerpts.
/// Room version 1's algorithm has no auth difference and ignores it.
pub fn resolve_with_auth_difference(
    rv: &RoomVersion,
    state_sets: &[StateMap<String>],
    store: &dyn EventStore,
    auth_difference: Option<&[String]>,
) -> Result<StateMap<String>> {
    match state_sets {
        [] => return Ok(StateMap::new()),
        [only] => return Ok(only.clone()),
        _ => {}
    }
    for (i, set) in state_sets.iter().enumerate() {
        for ((t, k), id) in set {
            let ev = store.event(id).ok_or_else(|| Error::not_found(format!("event {id} of state set {i} is not known")))?;
            if ev.event_type != *t || ev.state_key.as_deref() != Some(k.as_str()) {
                return Err(Error::invalid(
                    Some("state_sets"),
                    format!("state set {i} maps ({t}, {k:?}) to {id}, which is ({}, {:?})", ev.event_type, ev.state_key),
                ));
            }
        }
    }
    match rv.state_res {
        StateResAlgorithm::V1 => v1::resolve(rv, state_sets, store),
        StateResAlgorithm::V2 => v2::resolve(rv, state_sets, store, false, auth_difference),
        StateResAlgorithm::V2_1 => v2::resolve(rv, state_sets, store, true, auth_difference),
    }
}

/// The key of a state event.
pub(crate) fn key_of(ev: &Pdu) -> (String, String) {
    (ev.event_type.clone(), ev.state_key.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests;
