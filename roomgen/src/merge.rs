//! The state before a merge event: the resolution of the branches' states.
//!
//! This is the one place that decides it, so the full state resolution algorithm from
//! `roomserver_core::state_res` is swapped in here.

use roomserver_core::{Result, RoomVersion};

use crate::state::{StateMap, Store};

/// Resolves the states of the merged branches. The maps hold only the keys that matter for the
/// merge (every key changed on some branch, plus the keys the auth rules read: create, power
/// levels, join rules and the members who sent the changes); keys outside them are equal on all
/// branches, so they are unconflicted and their auth chains are common to all branches.
pub fn resolve_branch_states(rv: &RoomVersion, states: &[StateMap<String>], store: &Store) -> Result<StateMap<String>> {
    interim_resolution(rv, states, store)
}

/// Until `state_res` lands: unconflicted entries are kept; of a conflicted key's candidates the
/// deepest event wins, ties broken by the smaller event ID (state resolution v2's final ordering
/// key). Deterministic, and always one of the branches' own values.
fn interim_resolution(_rv: &RoomVersion, states: &[StateMap<String>], store: &Store) -> Result<StateMap<String>> {
    let mut out: StateMap<String> = StateMap::new();
    for state in states {
        for (key, id) in state {
            match out.get(key) {
                None => {
                    out.insert(key.clone(), id.clone());
                }
                Some(current) if current != id => {
                    let depth = |e: &str| store.event(e).map(|p| p.depth).unwrap_or(0);
                    let better = (depth(id), std::cmp::Reverse(id.as_str())) > (depth(current), std::cmp::Reverse(current.as_str()));
                    if better {
                        out.insert(key.clone(), id.clone());
                    }
                }
                Some(_) => {}
            }
        }
    }
    Ok(out)
}
