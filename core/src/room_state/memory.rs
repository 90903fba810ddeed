//! An in-memory [`StateStore`] and room, doing what the extension's ingest does with the same
//! functions: the stand-in for the database in tests, and a model of the SQL tables.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use super::{admit, chain_from_auth_events, Admission, Snapshot, StateStore, StoredEvent};
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

/// A room held in memory: events admitted in order, with forward extremities and current state.
pub struct MemoryRoom {
    pub rv: RoomVersion,
    pub store: MemoryStore,
    pub extremities: BTreeSet<i64>,
    pub current: Option<i64>,
    pub admissions: HashMap<String, Admission>,
}

impl MemoryRoom {
    pub fn new(rv: RoomVersion) -> Self {
        MemoryRoom { rv, store: MemoryStore::default(), extremities: BTreeSet::new(), current: None, admissions: HashMap::new() }
    }

    /// Admits a PDU whose prev and auth events are all admitted already.
    pub fn ingest(&mut self, pdu: Pdu) -> Result<Admission> {
        let s = &mut self.store;
        let nid = s.ids.len() as i64 + 1;
        let type_nid = MemoryStore::nid_for(&mut s.types, &pdu.event_type);
        let state_key_nid = pdu.state_key.as_deref().map(|k| MemoryStore::nid_for(&mut s.state_keys, k));
        MemoryStore::nid_for(&mut s.state_keys, &pdu.sender);
        let find = |ids: &[String], what: &str| -> Result<Vec<i64>> {
            ids.iter().map(|id| s.ids.get(id).copied().ok_or_else(|| Error::not_found(format!("{what} event {id} is not known")))).collect()
        };
        let auth_nids = find(&pdu.auth_events, "auth")?;
        let prev_nids = find(&pdu.prev_events, "prev")?;
        let prev_states: Vec<i64> =
            prev_nids.iter().map(|n| s.events[n].state_after.ok_or_else(|| Error::invalid(None, "prev event is an outlier"))).collect::<Result<_>>()?;
        let chain = chain_from_auth_events(s, &auth_nids)?;
        let mut ev = StoredEvent { nid, type_nid, state_key_nid, rejected: false, soft_failed: false, prev_nids: prev_nids.clone(), state_after: None, pdu };
        let current: Vec<i64> = self.extremities.iter().map(|e| s.events[e].state_after.expect("extremities have state")).collect();
        let admission = admit(&self.rv, s, &ev, &prev_states, &auth_nids, &current)?;
        ev.rejected = admission.rejection.is_some();
        ev.soft_failed = admission.soft_failure.is_some();
        ev.state_after = Some(admission.state_after);
        let id = ev.pdu.event_id.clone();
        s.ids.insert(id.clone(), nid);
        s.chains.insert(nid, Rc::new(chain));
        s.events.insert(nid, Rc::new(ev));
        if admission.rejection.is_none() && admission.soft_failure.is_none() {
            let events = &s.events;
            let gone = super::superseded_extremities(&prev_nids, |e| {
                let ev = &events[&e];
                Ok((ev.rejected || ev.soft_failed).then(|| ev.prev_nids.clone()))
            })?;
            for p in &gone {
                self.extremities.remove(p);
            }
            self.extremities.insert(nid);
            let states: Vec<i64> = self.extremities.iter().map(|e| s.events[e].state_after.expect("extremities have state")).collect();
            self.current = Some(super::resolve_snapshots(&self.rv, s, &states)?);
        }
        self.admissions.insert(id, admission.clone());
        Ok(admission)
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
