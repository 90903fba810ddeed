//! The state before a merge event: the resolution of the branches' states.
//!
//! This is the one place that decides it: the room version's state resolution algorithm
//! (`roomserver_core::state_res`), so that the generator's idea of the state after a merge is
//! the one a homeserver computes, and the events it goes on to emit pass the authorization rules
//! against that state.

use roomserver_core::{state_res, Result, RoomVersion};

use crate::state::{StateMap, Store};

/// Resolves the states of the merged branches. The maps hold only the keys that matter for the
/// merge (every key changed on some branch, plus the keys the auth rules read: create, power
/// levels, join rules and the members who sent the changes); keys outside them are equal on all
/// branches, so they are unconflicted and their auth chains are common to all branches. (The
/// auth chain difference of such excerpts can hold a few events more than that of the whole
/// states; the generator only has to be right about the keys the next events depend on, and the
/// tests compare stored state with a full replay, not with this.)
pub fn resolve_branch_states(rv: &RoomVersion, states: &[StateMap<String>], store: &Store) -> Result<StateMap<String>> {
    state_res::resolve(rv, states, &store.events)
}
