//! An in-memory [`StateStore`] and room, doing what the extension's ingest does with the same
//! functions: the stand-in for the database in tests, and a model of the SQL tables.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use super::{admit_batch, Admission, BatchStore, Candidate, KnownEvent, KnownEvents, Mode, Outcome, RoomTips, Snapshot, StateStore, StoredEvent};
use crate::error::{Error, Result};
use crate::event::Pdu;
use crate::room_version::RoomVersion;
use crate::state_blocks::{block_hash, full_state, lookup, BlockRef, Entry, StateHash};

#[derive(Default)]
pub struct MemoryStore {
    events: HashMap<i64, Rc<StoredEvent>>,
    ids: HashMap<String, i64>,
    chains: HashMap<i64, Rc<Vec<i64>>>,
    snapshots: Vec<Rc<Snapshot>>,
    snapshot_by_hash: HashMap<StateHash, i64>,
    blocks: Vec<Rc<Vec<Entry>>>,
    block_by_hash: HashMap<[u8; 32], i64>,
    types: HashMap<String, i64>,
    state_keys: HashMap<String, i64>,
    /// Entries written to blocks, for storage measurements.
    pub entries_written: usize,
}

impl MemoryStore {
    fn layers(&self, snapshot: i64) -> Result<Vec<Rc<Vec<Entry>>>> {
        let snap = self.snapshot_ref(snapshot)?;
        Ok(snap.blocks.iter().map(|b| self.blocks[(b.id - 1) as usize].clone()).collect())
    }

    fn snapshot_ref(&self, nid: i64) -> Result<&Rc<Snapshot>> {
        self.snapshots.get((nid - 1) as usize).ok_or_else(|| Error::not_found(format!("snapshot {nid}")))
    }

    /// The full state of a snapshot: live entries sorted by key.
    pub fn full_state(&self, snapshot: i64) -> Result<Vec<Entry>> {
        let layers = self.layers(snapshot)?;
        let refs: Vec<&[Entry]> = layers.iter().map(|l| l.as_slice()).collect();
        Ok(full_state(&refs))
    }

    pub fn snapshot_count(&self) -> usize {
        self.snapshots.len()
    }

    pub fn event_by_nid(&self, nid: i64) -> Option<&Rc<StoredEvent>> {
        self.events.get(&nid)
    }

    /// The type and state key NIDs of a PDU, assigned if new (and its sender's, as ingest does).
    pub fn assign_nids(&mut self, pdu: &Pdu) -> (i64, Option<i64>) {
        let type_nid = Self::nid_for(&mut self.types, &pdu.event_type);
        let state_key_nid = pdu.state_key.as_deref().map(|k| Self::nid_for(&mut self.state_keys, k));
        Self::nid_for(&mut self.state_keys, &pdu.sender);
        (type_nid, state_key_nid)
    }

    /// Whether a stored accepted event with state names `event_id` as a prev event (what the
    /// shell asks the edges for: the candidate is then no forward extremity).
    pub fn is_followed(&self, event_id: &str) -> bool {
        self.events.values().any(|e| e.state_after.is_some() && !e.rejected && !e.soft_failed && e.pdu.prev_events.iter().any(|p| p == event_id))
    }

    /// The next free event NID.
    pub fn next_event_nid(&self) -> i64 {
        self.ids.len() as i64 + 1
    }

    fn nid_for(map: &mut HashMap<String, i64>, s: &str) -> i64 {
        let next = map.len() as i64 + 1;
        *map.entry(s.to_owned()).or_insert(next)
    }
}

impl StateStore for MemoryStore {
    fn snapshot(&mut self, nid: i64) -> Result<Rc<Snapshot>> {
        self.snapshot_ref(nid).cloned()
    }

    fn block(&mut self, block_nid: i64) -> Result<Rc<Vec<Entry>>> {
        self.blocks.get((block_nid - 1) as usize).cloned().ok_or_else(|| Error::not_found(format!("block {block_nid}")))
    }

    fn lookup(&mut self, snapshot: i64, keys: &[(i64, i64)]) -> Result<Vec<Option<i64>>> {
        let layers = self.layers(snapshot)?;
        let refs: Vec<&[Entry]> = layers.iter().map(|l| l.as_slice()).collect();
        Ok(keys.iter().map(|k| lookup(&refs, *k)).collect())
    }

    fn entries_since(&mut self, snapshot: i64, min_event_nid: i64) -> Result<Vec<Entry>> {
        Ok(self.full_state(snapshot)?.into_iter().filter(|e| e.event_nid >= min_event_nid).collect())
    }

    fn save_snapshot(&mut self, kept: &[BlockRef<i64>], new_block: Vec<Entry>, hash: StateHash, size: i64) -> Result<i64> {
        if let Some(&nid) = self.snapshot_by_hash.get(&hash) {
            return Ok(nid);
        }
        let mut blocks = kept.to_vec();
        if !new_block.is_empty() {
            let h = block_hash(&new_block);
            let len = new_block.len();
            let id = match self.block_by_hash.get(&h) {
                Some(&id) => id,
                None => {
                    self.entries_written += len;
                    self.blocks.push(Rc::new(new_block));
                    let id = self.blocks.len() as i64;
                    self.block_by_hash.insert(h, id);
                    id
                }
            };
            blocks.push(BlockRef { id, len });
        }
        let nid = self.snapshots.len() as i64 + 1;
        self.snapshots.push(Rc::new(Snapshot { nid, hash, blocks, size }));
        self.snapshot_by_hash.insert(hash, nid);
        Ok(nid)
    }

    fn events(&mut self, nids: &[i64]) -> Result<Vec<Rc<StoredEvent>>> {
        nids.iter().map(|n| self.events.get(n).cloned().ok_or_else(|| Error::not_found(format!("event NID {n}")))).collect()
    }

    fn event_nid(&mut self, event_id: &str) -> Result<Option<i64>> {
        Ok(self.ids.get(event_id).copied())
    }

    fn auth_chain(&mut self, nid: i64) -> Result<Rc<Vec<i64>>> {
        self.chains.get(&nid).cloned().ok_or_else(|| Error::not_found(format!("auth chain of event NID {nid}")))
    }

    fn key_nids(&mut self, keys: &[(String, String)]) -> Result<Vec<Option<(i64, i64)>>> {
        Ok(keys.iter().map(|(t, k)| Some((*self.types.get(t)?, *self.state_keys.get(k)?))).collect())
    }
}

// One room (or several with distinct NIDs): nothing to switch.
impl BatchStore for MemoryStore {
    fn enter_room(&mut self, _room_nid: i64, _room_id: &str, _rv: &RoomVersion) {}

    fn remember(&mut self, event: StoredEvent, auth_chain: Vec<i64>) {
        self.ids.insert(event.pdu.event_id.clone(), event.nid);
        self.chains.insert(event.nid, Rc::new(auth_chain));
        self.events.insert(event.nid, Rc::new(event));
    }

    fn excluded_prevs(&mut self, event_nid: i64) -> Result<Option<Vec<i64>>> {
        let ev = self.events.get(&event_nid).ok_or_else(|| Error::not_found(format!("event NID {event_nid}")))?;
        Ok((ev.rejected || ev.soft_failed).then(|| ev.prev_nids.clone()))
    }

    fn outliers_after(&mut self, events: &[(i64, &str)]) -> Result<Vec<(i64, bool)>> {
        // What the SQL walk does, by scanning: successors through prev_events that are outliers.
        let mut reached: BTreeSet<i64> = BTreeSet::new();
        let mut frontier: Vec<String> = events.iter().map(|(_, id)| (*id).to_owned()).collect();
        while !frontier.is_empty() {
            let next: Vec<&Rc<StoredEvent>> = self
                .events
                .values()
                .filter(|e| e.state_after.is_none() && !reached.contains(&e.nid) && e.pdu.prev_events.iter().any(|p| frontier.contains(p)))
                .collect();
            frontier = next.iter().map(|e| e.pdu.event_id.clone()).collect();
            reached.extend(next.iter().map(|e| e.nid));
        }
        Ok(reached
            .into_iter()
            .map(|n| (n, self.is_followed(&self.events[&n].pdu.event_id)))
            .collect())
    }

    fn known_events(&mut self, ids: &[String]) -> Result<Vec<(String, KnownEvent)>> {
        Ok(ids
            .iter()
            .filter_map(|id| {
                let e = self.events.get(self.ids.get(id)?)?;
                let k = KnownEvent { nid: e.nid, outlier: e.state_after.is_none(), excluded: e.rejected || e.soft_failed, state_after: e.state_after };
                Some((id.clone(), k))
            })
            .collect())
    }
}

/// A room held in memory: events admitted in order, with forward extremities and current state.
pub struct MemoryRoom {
    pub rv: RoomVersion,
    pub store: MemoryStore,
    pub extremities: BTreeSet<i64>,
    pub current: Option<i64>,
    pub admissions: HashMap<String, Admission>,
    known: KnownEvents,
    tips: RoomTips,
}

impl MemoryRoom {
    pub fn new(rv: RoomVersion) -> Self {
        MemoryRoom {
            rv,
            store: MemoryStore::default(),
            extremities: BTreeSet::new(),
            current: None,
            admissions: HashMap::new(),
            known: KnownEvents::new(),
            tips: RoomTips::default(),
        }
    }

    /// Admits a PDU whose prev and auth events are all admitted already, as the extension's
    /// ingest does ([`admit_batch`] with a batch of one).
    pub fn ingest(&mut self, pdu: Pdu) -> Result<Admission> {
        let id = pdu.event_id.clone();
        self.ingest_batch(std::slice::from_ref(&pdu), Mode::Live, None)?
            .pop()
            .flatten()
            .ok_or_else(|| Error::invalid(None, format!("event {id} is admitted already")))?;
        Ok(self.admissions[&id].clone())
    }

    /// Admits a batch in any order in `mode`, the first event with `supplied_state` (event IDs
    /// of the state before it) when given, as `roomserver.ingest_events` / `ingest_event` do.
    /// Returns one outcome per PDU; every event that has (or gained) state is in `admissions`.
    pub fn ingest_batch(&mut self, pdus: &[Pdu], mode: Mode, supplied_state: Option<&[String]>) -> Result<Vec<Option<Outcome>>> {
        const ROOM: i64 = 1;
        let supplied: Option<Vec<i64>> = match supplied_state {
            None => None,
            Some(ids) => Some(
                ids.iter()
                    .map(|id| self.store.ids.get(id).copied().ok_or_else(|| Error::missing_references(format!("state event {id} is not stored"))))
                    .collect::<Result<_>>()?,
            ),
        };
        let s = &mut self.store;
        let mut next = s.next_event_nid();
        let mut candidates = Vec::with_capacity(pdus.len());
        // NIDs ascend in DAG order, as the shell assigns them: an event's auth events always
        // have smaller NIDs (state resolution relies on it).
        let refs: Vec<(&str, i64, Vec<&str>)> = pdus
            .iter()
            .map(|p| (p.event_id.as_str(), ROOM, p.prev_events.iter().chain(&p.auth_events).map(String::as_str).collect()))
            .collect();
        let order = super::dag_order(&refs);
        for &i in &order {
            let pdu = &pdus[i];
            let (type_nid, state_key_nid) = s.assign_nids(pdu);
            let new = !self.known.contains_key(&(pdu.event_id.clone(), ROOM));
            let new_nid = new.then(|| {
                next += 1;
                next - 1
            });
            let supplied_state = if i == 0 { supplied.as_deref() } else { None };
            let followed = s.is_followed(&pdu.event_id);
            candidates.push(Candidate { position: i, room_nid: ROOM, rv: &self.rv, pdu, type_nid, state_key_nid, new_nid, supplied_state, followed });
        }
        let mut tips: std::collections::HashMap<i64, RoomTips> = std::collections::HashMap::new();
        tips.insert(ROOM, self.tips.clone());
        let batch = admit_batch(s, &candidates, &mut self.known, &mut tips, mode, &|_| false).map_err(|e| e.error)?;
        self.tips = tips.remove(&ROOM).unwrap_or_default();
        self.extremities = self.tips.extremities.keys().copied().collect();
        self.current = self.tips.current;
        for o in batch.outcomes.iter().flatten().chain(batch.upgraded.iter().map(|(_, o)| o)) {
            if let (Some(state_before), Some(state_after)) = (o.state_before, o.state_after) {
                let id = self.store.events[&o.nid].pdu.event_id.clone();
                let admission = Admission { state_before, state_after, rejection: o.rejection.clone(), soft_failure: o.soft_failure.clone() };
                self.admissions.insert(id, admission);
            }
        }
        // Back in the order given.
        let mut outcomes = vec![None; pdus.len()];
        for (o, &i) in batch.outcomes.into_iter().zip(&order) {
            outcomes[i] = o;
        }
        Ok(outcomes)
    }

    /// A snapshot's state as `(type, state_key) -> event ID`.
    pub fn state_strings(&self, snapshot: i64) -> Result<HashMap<(String, String), String>> {
        Ok(self
            .store
            .full_state(snapshot)?
            .into_iter()
            .map(|e| {
                let ev = &self.store.events[&e.event_nid].pdu;
                ((ev.event_type.clone(), ev.state_key.clone().unwrap_or_default()), ev.event_id.clone())
            })
            .collect())
    }
}
