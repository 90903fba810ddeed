//! A naive model of a room's state, the oracle the state storage is tested against: full states
//! as maps of event IDs for every event, state resolution over whole states at every merge, the
//! checks on receipt against full maps. Slow on purpose, and simple enough to read at a glance.

use std::collections::{BTreeSet, HashMap};

use roomserver_core::auth::{auth_events_state, auth_types_for_event, check_on_receipt, ReceiptOutcome, StateMap};
use roomserver_core::state_res::resolve;
use roomserver_core::{Pdu, RoomVersion};

/// Per event: state before and after, and (rejected, soft-failed).
pub struct NaiveRoom {
    pub rv: RoomVersion,
    pub events: HashMap<String, Pdu>,
    pub after: HashMap<String, StateMap<String>>,
    pub before: HashMap<String, StateMap<String>>,
    pub outcome: HashMap<String, (bool, bool)>,
    pub extremities: BTreeSet<String>,
    pub current: StateMap<String>,
}

impl NaiveRoom {
    pub fn new(rv: RoomVersion) -> Self {
        NaiveRoom { rv, events: HashMap::new(), after: HashMap::new(), before: HashMap::new(), outcome: HashMap::new(), extremities: BTreeSet::new(), current: StateMap::new() }
    }

    fn pdus(&self, state: &StateMap<String>, keys: &[(String, String)]) -> StateMap<Pdu> {
        keys.iter().filter_map(|k| state.get(k).map(|id| (k.clone(), self.events[id].clone()))).collect()
    }

    /// Admits `p`, whose prev and auth events are admitted already.
    pub fn ingest(&mut self, p: Pdu) {
        let sets: Vec<StateMap<String>> = p.prev_events.iter().map(|id| self.after[id].clone()).collect();
        let before = resolve(&self.rv, &sets, &self.events).unwrap();
        let auth: Vec<&Pdu> = p.auth_events.iter().map(|id| &self.events[id]).collect();
        let create = if p.event_type == "m.room.create" { Some(&p) } else { self.events.values().find(|e| e.event_type == "m.room.create") };
        let mut keys = auth_types_for_event(&self.rv, &p);
        keys.push(("m.room.create".to_owned(), String::new()));
        let outcome = if let Some(bad) = p.auth_events.iter().find(|id| self.outcome[*id].0) {
            ReceiptOutcome::Rejected(roomserver_core::auth::Rejection::new(format!("auth event {bad} was rejected")))
        } else {
            match auth_events_state(&self.rv, &p, &auth, create) {
                Err(r) => ReceiptOutcome::Rejected(r),
                Ok(auth_state) => check_on_receipt(&self.rv, &p, &auth_state, &self.pdus(&before, &keys), &self.pdus(&self.current, &keys)),
            }
        };
        let (rejected, soft) = match outcome {
            ReceiptOutcome::Accepted => (false, false),
            ReceiptOutcome::Rejected(_) => (true, false),
            ReceiptOutcome::SoftFailed(_) => (false, true),
        };
        let mut after = before.clone();
        if let (Some(k), false) = (&p.state_key, rejected) {
            after.insert((p.event_type.clone(), k.clone()), p.event_id.clone());
        }
        let id = p.event_id.clone();
        if !rejected && !soft {
            // Through rejected and soft-failed prev events to the accepted ones before them.
            let mut todo: Vec<String> = p.prev_events.clone();
            while let Some(prev) = todo.pop() {
                self.extremities.remove(&prev);
                if self.outcome.get(&prev).is_some_and(|(r, s)| *r || *s) {
                    todo.extend(self.events[&prev].prev_events.iter().cloned());
                }
            }
            self.extremities.insert(id.clone());
        }
        self.before.insert(id.clone(), before);
        self.after.insert(id.clone(), after);
        self.outcome.insert(id.clone(), (rejected, soft));
        self.events.insert(id, p);
        let sets: Vec<StateMap<String>> = self.extremities.iter().map(|e| self.after[e].clone()).collect();
        self.current = resolve(&self.rv, &sets, &self.events).unwrap();
    }
}

