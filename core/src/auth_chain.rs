//! Auth chains: the events reachable from an event by following `auth_events`.
//!
//! These functions walk an in-memory event map, each event once per call, so a chain is never
//! re-walked within one computation; the storage layer keeps an index of chains so that a
//! database never needs this walk over the whole room (see the state storage design).

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::state_res::EventStore;

/// The auth chain of `event_ids`: every event reachable through `auth_events`, excluding the
/// starting events unless another of them reaches them.
pub fn auth_chain(event_ids: &[&str], store: &dyn EventStore) -> Result<HashSet<String>> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut todo: Vec<&str> = Vec::new();
    for id in event_ids {
        let ev = store.event(id).ok_or_else(|| Error::not_found(format!("event {id} is not known")))?;
        todo.extend(ev.auth_events.iter().map(String::as_str));
    }
    while let Some(id) = todo.pop() {
        if seen.contains(id) {
            continue;
        }
        let ev = store.event(id).ok_or_else(|| Error::not_found(format!("auth event {id} is not known")))?;
        seen.insert(id.to_owned());
        todo.extend(ev.auth_events.iter().map(String::as_str));
    }
    Ok(seen)
}

/// The auth chain difference of state sets: the events in some but not all of the sets' full
/// auth chains. A set's full auth chain here includes the set's own events (as Synapse computes
/// it); the events that differ between the sets are in the conflicted set either way.
pub fn auth_chain_difference(state_sets: &[Vec<&str>], store: &dyn EventStore) -> Result<HashSet<String>> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for set in state_sets {
        let mut chain = auth_chain(set, store)?;
        chain.extend(set.iter().map(|s| (*s).to_owned()));
        for id in chain {
            *count.entry(id).or_default() += 1;
        }
    }
    Ok(count.into_iter().filter(|(_, n)| *n < state_sets.len()).map(|(id, _)| id).collect())
}
