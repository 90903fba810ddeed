//! Admitting a batch of events in order: for each, its auth events and prev events looked up
//! among the events already known (stored before the call, or admitted earlier in it), the
//! checks and state of [`admit`] (or [`check_outlier`] for outliers), and the forward
//! extremities it replaces; at the end, the current state of every room whose extremities
//! changed, resolved once. This is the Matrix half of ingest: the extension's shell
//! (`src/store/ingest/`) assigns NIDs before it and writes the outcomes after it, and
//! [`super::memory::MemoryRoom`] drives it in tests.

use std::collections::{BTreeMap, HashMap};

use super::admit::state_before;
use super::{admit, chain_from_auth_events, check_outlier, resolve_snapshots, superseded_extremities, Admission, StateStore, StoredEvent};
use crate::error::{Error, Result};
use crate::event::Pdu;
use crate::room_version::RoomVersion;

/// What a batch needs of the store beyond state: the rooms it switches between, the events it
/// admits (visible to the rest of the batch before anything is written), and the prev events of
/// stored events that were rejected or soft-failed.
pub trait BatchStore: StateStore {
    /// Points the store at a room (the events of a batch may belong to several).
    fn enter_room(&mut self, room_nid: i64, room_id: &str, rv: &RoomVersion);
    /// Makes an event admitted by this batch visible to the rest of it.
    fn remember(&mut self, event: StoredEvent, auth_chain: Vec<i64>);
    /// `Some(prev event NIDs)` of a stored event of the current room that was rejected or
    /// soft-failed; `None` when it was accepted.
    fn excluded_prevs(&mut self, event_nid: i64) -> Result<Option<Vec<i64>>>;
}

/// An event known to the batch: stored before it, or admitted by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownEvent {
    pub nid: i64,
    pub outlier: bool,
    /// Rejected or soft-failed: never a forward extremity.
    pub excluded: bool,
    pub state_after: Option<i64>,
}

/// Known events by `(event ID, room NID)`.
pub type KnownEvents = HashMap<(String, i64), KnownEvent>;

/// A room's forward extremities (event NID -> state after) and current state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomTips {
    pub extremities: BTreeMap<i64, i64>,
    pub current: Option<i64>,
}

/// An event of the batch to admit, with the NIDs the shell assigned it.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    /// Where the event stands in the caller's input (errors name it).
    pub position: usize,
    pub room_nid: i64,
    pub rv: &'a RoomVersion,
    pub pdu: &'a Pdu,
    pub type_nid: i64,
    pub state_key_nid: Option<i64>,
    /// Its NID if it is new; an event already stored keeps its own.
    pub new_nid: Option<i64>,
}

/// What admission decided for an event of the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub nid: i64,
    pub outlier: bool,
    pub rejection: Option<String>,
    pub soft_failure: Option<String>,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
    /// A stored outlier that now gets its state (its row is updated, not inserted).
    pub upgrade: bool,
    /// The auth chain to store with a new state event (`None` for the others, which never need it).
    pub stored_auth_chain: Option<Vec<i64>>,
}

/// An error with the position of the event it is about (`None`: about the batch as a whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchError {
    pub position: Option<usize>,
    pub error: Error,
}

impl BatchError {
    fn at(position: usize) -> impl FnOnce(Error) -> BatchError {
        move |error| BatchError { position: Some(position), error }
    }
}

/// Admits `candidates` in order, with state unless `as_outliers`. Returns one entry per
/// candidate: `None` for an event stored already (a duplicate). `known` and `tips` come in as
/// stored and go out with the batch applied. `elsewhere` tells whether an event ID not known in
/// a candidate's room is stored in another room.
pub fn admit_batch(
    store: &mut dyn BatchStore,
    candidates: &[Candidate<'_>],
    known: &mut KnownEvents,
    tips: &mut HashMap<i64, RoomTips>,
    as_outliers: bool,
    elsewhere: &dyn Fn(&str) -> bool,
) -> std::result::Result<Vec<Option<Outcome>>, BatchError> {
    let mut known_by_nid: HashMap<(i64, i64), KnownEvent> = known.iter().map(|((_, r), k)| ((*r, k.nid), k.clone())).collect();
    // Prev events of the rejected and soft-failed events of this batch (not stored yet).
    let mut batch_prevs: HashMap<(i64, i64), Vec<i64>> = HashMap::new();
    // Rooms whose extremities changed, with what resolving their current state needs.
    let mut changed: BTreeMap<i64, (&str, &RoomVersion)> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(candidates.len());
    for c in candidates {
        let (r, pdu) = (c.room_nid, c.pdu);
        store.enter_room(r, &pdu.room_id, c.rv);
        let key = (pdu.event_id.clone(), r);
        let (nid, upgrade) = match (known.get(&key), c.new_nid) {
            (Some(k), _) if k.outlier && !as_outliers => (k.nid, true),
            (Some(_), _) => {
                outcomes.push(None); // stored already: a duplicate
                continue;
            }
            (None, Some(n)) => (n, false),
            (None, None) => unreachable!("the shell assigns a NID to every new event"),
        };
        // Auth events stored in another room do not make the event unstorable: it is rejected
        // (Synapse's behaviour), as an event with a wrong auth event is.
        let (mut auth_nids, mut unknown, mut foreign) = (Vec::new(), Vec::new(), Vec::new());
        for id in &pdu.auth_events {
            match known.get(&(id.clone(), r)) {
                Some(k) => auth_nids.push(k.nid),
                None if elsewhere(id) => foreign.push(id.as_str()),
                None => unknown.push(id.as_str()),
            }
        }
        if !unknown.is_empty() {
            let e = Error::missing_references(format!(
                "event {} cannot be stored: its auth events are not known: {}",
                pdu.event_id,
                unknown.join(", ")
            ));
            return Err(BatchError::at(c.position)(e));
        }
        let foreign_rejection =
            (!foreign.is_empty()).then(|| format!("its auth events {} belong to another room", foreign.join(", ")));
        let chain = chain_from_auth_events(store, &auth_nids).map_err(BatchError::at(c.position))?;
        let mut event = StoredEvent {
            nid,
            type_nid: c.type_nid,
            state_key_nid: c.state_key_nid,
            rejected: false,
            soft_failed: false,
            prev_nids: Vec::new(),
            state_after: None,
            pdu: pdu.clone(),
        };
        let outcome = if as_outliers {
            let rejection = match foreign_rejection {
                Some(why) => Some(why),
                None => check_outlier(c.rv, store, &event, &auth_nids).map_err(BatchError::at(c.position))?,
            };
            Outcome { nid, outlier: true, rejection, soft_failure: None, state_before: None, state_after: None, upgrade, stored_auth_chain: None }
        } else {
            let mut prev_states = Vec::with_capacity(pdu.prev_events.len());
            let prev_nids = resolve_refs(&pdu.prev_events, |id| match known.get(&(id.to_owned(), r)) {
                Some(KnownEvent { state_after: Some(s), nid, .. }) => {
                    prev_states.push(*s);
                    Some(*nid)
                }
                _ => None,
            })
            .map_err(|_| {
                let missing: Vec<String> = pdu
                    .prev_events
                    .iter()
                    .filter_map(|p| match known.get(&(p.clone(), r)) {
                        Some(KnownEvent { state_after: Some(_), .. }) => None,
                        Some(_) => Some(format!("{p} (an outlier: its state is not known)")),
                        None => Some(p.clone()),
                    })
                    .collect();
                Error::missing_references(format!(
                    "event {} cannot be stored with state: its prev events are not known: {}; store it with outlier => true, or its prev events first",
                    pdu.event_id,
                    missing.join(", ")
                ))
            })
            .map_err(BatchError::at(c.position))?;
            event.prev_nids = prev_nids.clone();
            let room = tips.entry(r).or_default();
            let current: Vec<i64> = room.extremities.values().copied().collect();
            let adm = match foreign_rejection {
                Some(why) => {
                    let before = state_before(c.rv, store, &prev_states).map_err(BatchError::at(c.position))?;
                    Admission { state_before: before, state_after: before, rejection: Some(why), soft_failure: None }
                }
                None => admit(c.rv, store, &event, &prev_states, &auth_nids, &current).map_err(BatchError::at(c.position))?,
            };
            // Resolving the current state may need the event itself.
            store.remember(StoredEvent { rejected: adm.rejection.is_some(), state_after: Some(adm.state_after), ..event.clone() }, chain.clone());
            batch_prevs.insert((r, nid), prev_nids.clone());
            if adm.rejection.is_none() && adm.soft_failure.is_none() {
                let gone = superseded_extremities(&prev_nids, |e| match known_by_nid.get(&(r, e)) {
                    Some(k) if !k.excluded => Ok(None),
                    Some(_) if batch_prevs.contains_key(&(r, e)) => Ok(batch_prevs.get(&(r, e)).cloned()),
                    _ => store.excluded_prevs(e),
                })
                .map_err(BatchError::at(c.position))?;
                let room = tips.entry(r).or_default();
                for p in &gone {
                    room.extremities.remove(p);
                }
                room.extremities.insert(nid, adm.state_after);
                changed.insert(r, (&pdu.room_id, c.rv));
            }
            Outcome {
                nid,
                outlier: false,
                rejection: adm.rejection,
                soft_failure: adm.soft_failure,
                state_before: Some(adm.state_before),
                state_after: Some(adm.state_after),
                upgrade,
                stored_auth_chain: None,
            }
        };
        event.rejected = outcome.rejection.is_some();
        event.soft_failed = outcome.soft_failure.is_some();
        event.state_after = outcome.state_after;
        let k = KnownEvent {
            nid,
            outlier: outcome.outlier,
            excluded: outcome.rejection.is_some() || outcome.soft_failure.is_some(),
            state_after: outcome.state_after,
        };
        known.insert(key, k.clone());
        known_by_nid.insert((r, nid), k);
        let stored_auth_chain = (pdu.is_state() && !upgrade).then(|| chain.clone());
        store.remember(event, chain);
        outcomes.push(Some(Outcome { stored_auth_chain, ..outcome }));
    }
    // The current state of each room whose extremities changed: resolved once per batch (the
    // checks above read only the keys they need from the extremities' states).
    for (r, (room_id, rv)) in changed {
        let room = tips.entry(r).or_default();
        let states: Vec<i64> = room.extremities.values().copied().collect();
        if states.is_empty() {
            continue;
        }
        store.enter_room(r, room_id, rv);
        room.current = Some(resolve_snapshots(rv, store, &states).map_err(|error| BatchError { position: None, error })?);
    }
    Ok(outcomes)
}

/// The NIDs of `ids` by `find`, or the IDs it does not find, comma-separated.
fn resolve_refs(ids: &[String], mut find: impl FnMut(&str) -> Option<i64>) -> std::result::Result<Vec<i64>, String> {
    let mut nids = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        match find(id) {
            Some(n) => nids.push(n),
            None => missing.push(id.as_str()),
        }
    }
    if missing.is_empty() {
        Ok(nids)
    } else {
        Err(missing.join(", "))
    }
}
