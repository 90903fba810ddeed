//! The state of a room at every event, kept as snapshots of shared blocks ([`crate::state_blocks`])
//! behind a [`StateStore`]: the database in the extension, a `HashMap` world in tests
//! ([`memory::MemoryStore`]). Everything here works on NIDs and fetches only what it needs, so
//! admitting an event into a 100,000-member room reads a handful of entries, not the state.
//!
//! - [`admit`]: the state before an event (its prev event's state, or state resolution of its
//!   prev events' states), the three checks on receipt, and the state after it.
//! - [`admit_batch`]: a batch of events in DAG order ([`dag_order`]; auth and prev events looked
//!   up, [`admit`] or the outlier check, forward extremities, outliers that can now have their
//!   state, the current state once per room), live, as outliers or as backfilled history.
//! - [`resolve_snapshots`]: state resolution of snapshots, reading only the keys that differ.

use std::rc::Rc;

use crate::error::Result;
use crate::event::Pdu;
use crate::state_blocks::{BlockRef, Entry, StateHash};

mod admit;
mod batch;
pub mod memory;
mod order;
mod resolve;

pub use admit::{admit, admit_after, check_outlier, supplied_state, Admission};
pub use batch::{admit_batch, BatchError, BatchOutcome, BatchStore, Candidate, KnownEvent, KnownEvents, Mode, Outcome, RoomTips};
pub use order::dag_order;
pub use resolve::{apply_change, resolve_snapshots};

/// An event as state computations need it.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub nid: i64,
    pub type_nid: i64,
    /// `None` for non-state events.
    pub state_key_nid: Option<i64>,
    pub rejected: bool,
    pub soft_failed: bool,
    /// Known prev events (only what extremity bookkeeping needs; may be empty when loaded).
    pub prev_nids: Vec<i64>,
    /// The snapshot after the event; `None` for outliers.
    pub state_after: Option<i64>,
    pub pdu: Pdu,
}

impl StoredEvent {
    pub fn key(&self) -> Option<(i64, i64)> {
        self.state_key_nid.map(|k| (self.type_nid, k))
    }
}

/// A stored snapshot: its blocks oldest first, and the hash of the state it holds.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub nid: i64,
    pub hash: StateHash,
    pub blocks: Vec<BlockRef<i64>>,
    /// How many entries the state has (kept so nobody reads a state to count it).
    pub size: i64,
}

/// Where state lives. Implementations cache as they see fit; every method may fail with a
/// storage error, which is passed up unchanged.
pub trait StateStore {
    fn snapshot(&mut self, nid: i64) -> Result<Rc<Snapshot>>;
    /// A block's entries, sorted by key.
    fn block(&mut self, block_nid: i64) -> Result<Rc<Vec<Entry>>>;
    /// The event for each key in a snapshot (`None`: not in the state).
    fn lookup(&mut self, snapshot: i64, keys: &[(i64, i64)]) -> Result<Vec<Option<i64>>>;
    /// The live entries of a snapshot whose event NID is at least `min_event_nid`.
    fn entries_since(&mut self, snapshot: i64, min_event_nid: i64) -> Result<Vec<Entry>>;
    /// Stores a snapshot of `kept` blocks plus `new_block` (when not empty), unless a snapshot
    /// with the same state hash exists: its NID is returned then.
    fn save_snapshot(&mut self, kept: &[BlockRef<i64>], new_block: Vec<Entry>, hash: StateHash, size: i64) -> Result<i64>;
    /// Events by NID (all must exist).
    fn events(&mut self, nids: &[i64]) -> Result<Vec<Rc<StoredEvent>>>;
    /// The NID of an event of this room by its ID.
    fn event_nid(&mut self, event_id: &str) -> Result<Option<i64>>;
    /// The auth chain of each event (not including the event), as sorted NIDs.
    fn auth_chain(&mut self, nid: i64) -> Result<Rc<Vec<i64>>>;
    /// The auth chains of many events at once (stores that can batch override this).
    fn auth_chains(&mut self, nids: &[i64]) -> Result<Vec<Rc<Vec<i64>>>> {
        nids.iter().map(|&n| self.auth_chain(n)).collect()
    }
    /// NIDs of `(type, state_key)` pairs; `None` when the type or the key was never seen in the
    /// room (so no state can hold it).
    fn key_nids(&mut self, keys: &[(String, String)]) -> Result<Vec<Option<(i64, i64)>>>;
    /// The snapshot an earlier resolution of these states (sorted, distinct) gave, if the store
    /// keeps them: states never change, so neither does their resolution. A merge event after
    /// the forward extremities were resolved for the current state asks the same question.
    fn known_resolution(&mut self, _states: &[i64]) -> Option<i64> {
        None
    }
    fn remember_resolution(&mut self, _states: &[i64], _result: i64) {}
}

/// The auth chain of an event given its auth events: each auth event and its auth chain.
pub fn chain_from_auth_events(store: &mut dyn StateStore, auth_nids: &[i64]) -> Result<Vec<i64>> {
    let mut out: Vec<i64> = auth_nids.to_vec();
    for &a in auth_nids {
        out.extend(store.auth_chain(a)?.iter().copied());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests;

/// The forward extremities an accepted event replaces: its prev events and, through prev events
/// that were rejected or soft-failed (which are never extremities themselves), their prev events
/// in turn, up to the accepted ones (Synapse's `_get_prevs_before_rejected`); otherwise the
/// event before a soft-failed one would stay an extremity forever. `excluded_prevs` returns,
/// for an event, `Some(its prev events)` when it was rejected or soft-failed, else `None`.
pub fn superseded_extremities(prevs: &[i64], mut excluded_prevs: impl FnMut(i64) -> Result<Option<Vec<i64>>>) -> Result<Vec<i64>> {
    let mut out: Vec<i64> = prevs.to_vec();
    let mut todo: Vec<i64> = prevs.to_vec();
    let mut seen: std::collections::HashSet<i64> = prevs.iter().copied().collect();
    while let Some(e) = todo.pop() {
        if let Some(before) = excluded_prevs(e)? {
            for p in before {
                if seen.insert(p) {
                    out.push(p);
                    todo.push(p);
                }
            }
        }
    }
    Ok(out)
}
