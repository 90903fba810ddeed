//! Admitting a batch of events in DAG order: for each, its auth events and prev events looked up
//! among the events already known (stored before the call, or admitted earlier in it), the
//! checks and state of [`super::admit`] (or [`check_outlier`] for outliers), and the forward
//! extremities it replaces; then the stored outliers that can now have their state; at the end,
//! the current state of every room whose extremities changed, resolved once. This is the Matrix half of ingest: the extension's shell
//! (`src/store/ingest/`) assigns NIDs before it and writes the outcomes after it, and
//! [`super::memory::MemoryRoom`] drives it in tests.

use std::collections::{BTreeMap, HashMap};

use super::admit::{admit_after, state_before, supplied_state};
use super::order::dag_order;
use super::{chain_from_auth_events, check_outlier, resolve_snapshots, superseded_extremities, Admission, StateStore, StoredEvent};
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
    /// The stored outliers of the current room that follow `events` (NID and ID) through
    /// prev_events, directly or through other stored outliers: those that may gain their state
    /// now. With each NID: whether a stored event with state names it as a prev event (then it
    /// is history, never a forward extremity).
    fn outliers_after(&mut self, events: &[(i64, &str)]) -> Result<Vec<(i64, bool)>>;
    /// Stored events of the current room by ID (those not stored are left out).
    fn known_events(&mut self, ids: &[String]) -> Result<Vec<(String, KnownEvent)>>;
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
    /// The event NIDs of the state before it, when the caller gives it (joining a room part-way
    /// through its history): its prev events then need not be stored.
    pub supplied_state: Option<&'a [i64]>,
    /// A stored accepted event with state names it as a prev event already (it fills a gap
    /// before an event stored with supplied state): never a forward extremity, as Synapse's
    /// `_calculate_new_extremities` leaves out events that are prev events of existing ones.
    pub followed: bool,
}

impl Candidate<'_> {
    /// The event as admission sees it before deciding anything about it.
    fn unadmitted(&self, nid: i64) -> StoredEvent {
        StoredEvent {
            nid,
            type_nid: self.type_nid,
            state_key_nid: self.state_key_nid,
            rejected: false,
            soft_failed: false,
            prev_nids: Vec::new(),
            state_after: None,
            pdu: self.pdu.clone(),
        }
    }
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

impl Outcome {
    /// An event admitted with state (the stored auth chain, if any, is set by the caller).
    fn with_state(nid: i64, adm: Admission, upgrade: bool) -> Outcome {
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
    }
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

/// How a batch is admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// New events: with state (their prev events must have it, or the state is supplied),
    /// checked against the current state too, moving the forward extremities.
    Live,
    /// Outliers: without state, checked against their auth events alone.
    Outliers,
    /// History (a `/backfill` response; Dendrite's `KindOld`): with state where the prev events
    /// have it, as outliers where they do not yet; never a forward extremity, never a change of
    /// the current state, never soft-failed (Synapse checks soft failure of new events only).
    Backfilled,
}

/// What admitting a batch decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One entry per candidate: `None` for an event stored already (a duplicate), or a stored
    /// outlier that still cannot have its state.
    pub outcomes: Vec<Option<Outcome>>,
    /// Stored outliers (not in the batch) that gained their state because the events before
    /// them now have it, with their room NID: rows to update.
    pub upgraded: Vec<(i64, Outcome)>,
}

/// Admits `candidates` (in any order: each after the events of the batch it references) as
/// `mode` says. `known` and `tips` come in as stored and go out with the batch applied.
/// `elsewhere` tells whether an event ID not known in a candidate's room is stored in another
/// room. Stored outliers after the events given state are then given theirs where they can be.
pub fn admit_batch(
    store: &mut dyn BatchStore,
    candidates: &[Candidate<'_>],
    known: &mut KnownEvents,
    tips: &mut HashMap<i64, RoomTips>,
    mode: Mode,
    elsewhere: &dyn Fn(&str) -> bool,
) -> std::result::Result<BatchOutcome, BatchError> {
    let mut ext = Extremities {
        known_by_nid: known.iter().map(|((_, r), k)| ((*r, k.nid), k.clone())).collect(),
        batch_prevs: HashMap::new(),
        changed: BTreeMap::new(),
    };
    // Per room, the events this call gave state to, and its candidates stored as outliers
    // because their prev events had none (backfilled): both may let outliers have state.
    let mut stated: BTreeMap<i64, Stated<'_>> = BTreeMap::new();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; candidates.len()];
    let refs: Vec<(&str, i64, Vec<&str>)> = candidates
        .iter()
        .map(|c| (c.pdu.event_id.as_str(), c.room_nid, c.pdu.prev_events.iter().chain(&c.pdu.auth_events).map(String::as_str).collect()))
        .collect();
    for i in dag_order(&refs) {
        let c = &candidates[i];
        let (r, pdu) = (c.room_nid, c.pdu);
        store.enter_room(r, &pdu.room_id, c.rv);
        let key = (pdu.event_id.clone(), r);
        let prevs_have_state = pdu.prev_events.iter().all(|p| matches!(known.get(&(p.clone(), r)), Some(KnownEvent { state_after: Some(_), .. })));
        let as_outlier = match mode {
            Mode::Outliers => true,
            Mode::Live => false,
            Mode::Backfilled => c.supplied_state.is_none() && !prevs_have_state,
        };
        let (nid, upgrade) = match (known.get(&key), c.new_nid) {
            (Some(k), _) if k.outlier && !as_outlier => (k.nid, true),
            // Stored already: a duplicate, or an outlier that still cannot have its state.
            (Some(_), _) => continue,
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
        debug_assert!(upgrade || auth_nids.iter().all(|&a| a < nid), "new NIDs ascend in DAG order: {} has a later auth event", pdu.event_id);
        let foreign_rejection =
            (!foreign.is_empty()).then(|| format!("its auth events {} belong to another room", foreign.join(", ")));
        let chain = chain_from_auth_events(store, &auth_nids).map_err(BatchError::at(c.position))?;
        let mut event = c.unadmitted(nid);
        let outcome = if as_outlier {
            let rejection = match foreign_rejection {
                Some(why) => Some(why),
                None => check_outlier(c.rv, store, &event, &auth_nids).map_err(BatchError::at(c.position))?,
            };
            if mode == Mode::Backfilled {
                stated.entry(r).or_insert_with(|| Stated::new(&pdu.room_id, c.rv)).waiting.push(i);
            }
            Outcome { nid, outlier: true, rejection, soft_failure: None, state_before: None, state_after: None, upgrade, stored_auth_chain: None }
        } else {
            let (before, prev_nids) = match c.supplied_state {
                // The state is given: the prev events need not be stored (those that are count
                // for the extremities).
                Some(state) => {
                    let prev_nids = pdu.prev_events.iter().filter_map(|p| known.get(&(p.clone(), r)).map(|k| k.nid)).collect();
                    (supplied_state(c.rv, store, state).map_err(BatchError::at(c.position))?, prev_nids)
                }
                None => {
                    let (prev_nids, prev_states) = prevs_with_state(pdu, r, known).map_err(BatchError::at(c.position))?;
                    (state_before(c.rv, store, &prev_states).map_err(BatchError::at(c.position))?, prev_nids)
                }
            };
            event.prev_nids = prev_nids.clone();
            let current: Vec<i64> = match mode {
                Mode::Live => tips.entry(r).or_default().extremities.values().copied().collect(),
                _ => Vec::new(),
            };
            let adm = match foreign_rejection {
                Some(why) => Admission { state_before: before, state_after: before, rejection: Some(why), soft_failure: None },
                None => admit_after(c.rv, store, &event, before, &auth_nids, &current).map_err(BatchError::at(c.position))?,
            };
            // Resolving the current state may need the event itself.
            store.remember(StoredEvent { rejected: adm.rejection.is_some(), state_after: Some(adm.state_after), ..event.clone() }, chain.clone());
            if mode == Mode::Live {
                ext.advance(store, tips, (r, &pdu.room_id, c.rv), nid, &prev_nids, &adm, !c.followed).map_err(BatchError::at(c.position))?;
            }
            stated.entry(r).or_insert_with(|| Stated::new(&pdu.room_id, c.rv)).frontier.push((nid, pdu.event_id.clone()));
            Outcome::with_state(nid, adm, upgrade)
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
        ext.known_by_nid.insert((r, nid), k);
        let stored_auth_chain = (pdu.is_state() && !upgrade).then(|| chain.clone());
        store.remember(event, chain);
        outcomes[i] = Some(Outcome { stored_auth_chain, ..outcome });
    }
    let mut upgraded = Vec::new();
    for (r, s) in stated {
        store.enter_room(r, s.room_id, s.rv);
        let live = (mode == Mode::Live).then_some((&mut ext, &mut *tips));
        give_outliers_state(store, r, s, candidates, known, live, &mut outcomes, &mut upgraded).map_err(|error| BatchError { position: None, error })?;
    }
    // The current state of each room whose extremities changed: resolved once per batch (the
    // checks above read only the keys they need from the extremities' states).
    for (r, (room_id, rv)) in ext.changed {
        let room = tips.entry(r).or_default();
        let states: Vec<i64> = room.extremities.values().copied().collect();
        if states.is_empty() {
            continue;
        }
        store.enter_room(r, room_id, rv);
        room.current = Some(resolve_snapshots(rv, store, &states).map_err(|error| BatchError { position: None, error })?);
    }
    Ok(BatchOutcome { outcomes, upgraded })
}

/// The bookkeeping of forward extremities over a live batch.
struct Extremities<'a> {
    known_by_nid: HashMap<(i64, i64), KnownEvent>,
    /// Prev events of the events of this batch (not stored yet), for those rejected or soft-failed.
    batch_prevs: HashMap<(i64, i64), Vec<i64>>,
    /// Rooms whose extremities changed, with what resolving their current state needs.
    changed: BTreeMap<i64, (&'a str, &'a RoomVersion)>,
}

impl<'a> Extremities<'a> {
    /// An event admitted live: if accepted, it replaces the extremities it supersedes, and is
    /// one itself unless it is no `tip` (an event with state follows it already).
    #[allow(clippy::too_many_arguments)]
    fn advance(
        &mut self,
        store: &mut dyn BatchStore,
        tips: &mut HashMap<i64, RoomTips>,
        (r, room_id, rv): (i64, &'a str, &'a RoomVersion),
        nid: i64,
        prev_nids: &[i64],
        adm: &Admission,
        tip: bool,
    ) -> Result<()> {
        self.batch_prevs.insert((r, nid), prev_nids.to_vec());
        if adm.rejection.is_some() || adm.soft_failure.is_some() {
            return Ok(());
        }
        let (known_by_nid, batch_prevs) = (&self.known_by_nid, &self.batch_prevs);
        let gone = superseded_extremities(prev_nids, |e| match known_by_nid.get(&(r, e)) {
            Some(k) if !k.excluded => Ok(None),
            Some(_) if batch_prevs.contains_key(&(r, e)) => Ok(batch_prevs.get(&(r, e)).cloned()),
            _ => store.excluded_prevs(e),
        })?;
        let room = tips.entry(r).or_default();
        for p in &gone {
            room.extremities.remove(p);
        }
        if tip {
            room.extremities.insert(nid, adm.state_after);
        }
        self.changed.insert(r, (room_id, rv));
        Ok(())
    }
}

/// A room's events given state by this call, and its candidates stored as outliers for want of
/// their prev events' state.
struct Stated<'a> {
    room_id: &'a str,
    rv: &'a RoomVersion,
    frontier: Vec<(i64, String)>,
    waiting: Vec<usize>,
}

impl<'a> Stated<'a> {
    fn new(room_id: &'a str, rv: &'a RoomVersion) -> Self {
        Stated { room_id, rv, frontier: Vec::new(), waiting: Vec::new() }
    }
}

/// The prev events of `pdu` and their after-states, or the error naming those without state.
fn prevs_with_state(pdu: &Pdu, r: i64, known: &KnownEvents) -> Result<(Vec<i64>, Vec<i64>)> {
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
            "event {} cannot be stored with state: its prev events are not known: {}; store it with outlier => true, its prev events first, or give its state (state_event_ids)",
            pdu.event_id,
            missing.join(", ")
        ))
    })?;
    Ok((prev_nids, prev_states))
}

/// Outliers get their state once the events before them have it: the batch's own (backfilled
/// events whose prev events came later in the history than the batch reached) and stored ones
/// after the events this call gave state to, transitively, in DAG order. In a backfilled call
/// they are history: no extremities, no check against the current state. In a live call (`live`:
/// the extremities and tips) they are what the live events were missing (an event stored as an
/// outlier until `get_missing_events` filled the gap before it), so they are checked and become
/// extremities as live events do.
#[allow(clippy::too_many_arguments)]
fn give_outliers_state<'a>(
    store: &mut dyn BatchStore,
    r: i64,
    mut s: Stated<'a>,
    candidates: &'a [Candidate<'a>],
    known: &mut KnownEvents,
    mut live: Option<(&mut Extremities<'a>, &mut HashMap<i64, RoomTips>)>,
    outcomes: &mut [Option<Outcome>],
    upgraded: &mut Vec<(i64, Outcome)>,
) -> Result<()> {
    let mut done: std::collections::HashSet<i64> = std::collections::HashSet::new();
    while !s.frontier.is_empty() {
        let frontier = std::mem::take(&mut s.frontier);
        // The batch's outliers, in the batch's DAG order (kept by `waiting`).
        let mut still = Vec::new();
        for i in std::mem::take(&mut s.waiting) {
            let c = &candidates[i];
            let Some(prev_states) = prev_states_if_known(&c.pdu.prev_events, r, known) else {
                still.push(i);
                continue;
            };
            let Some(o) = outcomes[i].clone() else { continue };
            let event = c.unadmitted(o.nid);
            let given = give_state(c.rv, store, r, s.room_id, event, &prev_states, known, live.as_mut().map(|(e, t)| (&mut **e, &mut **t)))?;
            s.frontier.push((o.nid, c.pdu.event_id.clone()));
            // A new row still: only its state changes.
            outcomes[i] = Some(Outcome { upgrade: o.upgrade, stored_auth_chain: o.stored_auth_chain, ..given });
        }
        s.waiting = still;
        // Stored outliers after the frontier (and after the events just given state above).
        let mut from: Vec<(i64, &str)> = frontier.iter().map(|(n, id)| (*n, id.as_str())).collect();
        from.extend(s.frontier.iter().map(|(n, id)| (*n, id.as_str())));
        let found: Vec<(i64, bool)> = store.outliers_after(&from)?.into_iter().filter(|(n, _)| !done.contains(n)).collect();
        if found.is_empty() {
            continue;
        }
        let nids: Vec<i64> = found.iter().map(|(n, _)| *n).collect();
        let followed: std::collections::HashSet<i64> = found.iter().filter(|(_, f)| *f).map(|(n, _)| *n).collect();
        let waiting = store.events(&nids)?;
        let mut ids: Vec<String> = waiting
            .iter()
            .flat_map(|w| w.pdu.prev_events.iter().chain(&w.pdu.auth_events))
            .filter(|id| !known.contains_key(&((*id).clone(), r)))
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        for (id, k) in store.known_events(&ids)? {
            known.insert((id, r), k);
        }
        let refs: Vec<(&str, i64, Vec<&str>)> = waiting
            .iter()
            .map(|w| (w.pdu.event_id.as_str(), r, w.pdu.prev_events.iter().chain(&w.pdu.auth_events).map(String::as_str).collect()))
            .collect();
        let rv = s.rv;
        for i in dag_order(&refs) {
            let w = &waiting[i];
            // Given its state by this call already (a stored outlier the batch sent again).
            if known.get(&(w.pdu.event_id.clone(), r)).is_some_and(|k| !k.outlier) {
                continue;
            }
            let Some(prev_states) = prev_states_if_known(&w.pdu.prev_events, r, known) else { continue };
            let event = StoredEvent { rejected: false, soft_failed: false, state_after: None, prev_nids: Vec::new(), ..(**w).clone() };
            // An event with state after it is no tip: history, even in a live call.
            let as_live = if followed.contains(&w.nid) { None } else { live.as_mut().map(|(e, t)| (&mut **e, &mut **t)) };
            let given = give_state(rv, store, r, s.room_id, event, &prev_states, known, as_live)?;
            done.insert(w.nid);
            s.frontier.push((w.nid, w.pdu.event_id.clone()));
            upgraded.push((r, Outcome { upgrade: true, ..given }));
        }
    }
    Ok(())
}

/// The after-states of `prevs` if all of them have one.
fn prev_states_if_known(prevs: &[String], r: i64, known: &KnownEvents) -> Option<Vec<i64>> {
    prevs.iter().map(|p| known.get(&(p.clone(), r)).and_then(|k| k.state_after)).collect()
}

/// Admits an outlier with state, as history (`live` None) or as a live event, and records it.
#[allow(clippy::too_many_arguments)]
fn give_state<'a>(
    rv: &'a RoomVersion,
    store: &mut dyn BatchStore,
    r: i64,
    room_id: &'a str,
    mut event: StoredEvent,
    prev_states: &[i64],
    known: &mut KnownEvents,
    live: Option<(&mut Extremities<'a>, &mut HashMap<i64, RoomTips>)>,
) -> Result<Outcome> {
    // Its auth events were known when it was stored as an outlier; one stored in another room
    // made it a rejected outlier, and it stays one.
    let auth_nids: Option<Vec<i64>> = event.pdu.auth_events.iter().map(|a| known.get(&(a.clone(), r)).map(|k| k.nid)).collect();
    let Some(auth_nids) = auth_nids else {
        return Err(Error::missing_references(format!("outlier {} cannot have state: its auth events are not known", event.pdu.event_id)));
    };
    event.prev_nids = event.pdu.prev_events.iter().filter_map(|p| known.get(&(p.clone(), r)).map(|k| k.nid)).collect();
    let before = state_before(rv, store, prev_states)?;
    let current: Vec<i64> = match &live {
        Some((_, tips)) => tips.get(&r).map(|t| t.extremities.values().copied().collect()).unwrap_or_default(),
        None => Vec::new(),
    };
    let adm = admit_after(rv, store, &event, before, &auth_nids, &current)?;
    let chain = chain_from_auth_events(store, &auth_nids)?;
    let k = KnownEvent {
        nid: event.nid,
        outlier: false,
        excluded: adm.rejection.is_some() || adm.soft_failure.is_some(),
        state_after: Some(adm.state_after),
    };
    known.insert((event.pdu.event_id.clone(), r), k.clone());
    if let Some((ext, tips)) = live {
        ext.known_by_nid.insert((r, event.nid), k);
        store.remember(StoredEvent { rejected: adm.rejection.is_some(), state_after: Some(adm.state_after), ..event.clone() }, chain.clone());
        ext.advance(store, tips, (r, room_id, rv), event.nid, &event.prev_nids.clone(), &adm, true)?;
    }
    let nid = event.nid;
    let soft_failed = adm.soft_failure.is_some();
    store.remember(StoredEvent { rejected: adm.rejection.is_some(), soft_failed, state_after: Some(adm.state_after), ..event }, chain);
    Ok(Outcome::with_state(nid, adm, true))
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
