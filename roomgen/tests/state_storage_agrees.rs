//! State storage (`roomserver_core::room_state`: snapshots of shared blocks, resolution that reads
//! only the keys that differ) against a naive recomputation: full states as maps of event IDs,
//! state resolution over whole states at every merge, the checks on receipt against full maps.
//! Every event of forked generated rooms of every room version, plus injected events the rules
//! reject, must get the same outcome and the same state before and after.

use std::collections::{BTreeSet, HashMap};

mod common;

use roomserver_core::auth::{auth_events_state, auth_types_for_event, check_on_receipt, ReceiptOutcome, StateMap};
use roomserver_core::room_state::memory::MemoryRoom;
use roomserver_core::state_res::resolve;
use roomserver_core::{Pdu, RoomVersion};

struct Naive {
    rv: RoomVersion,
    events: HashMap<String, Pdu>,
    after: HashMap<String, StateMap<String>>,
    before: HashMap<String, StateMap<String>>,
    outcome: HashMap<String, (bool, bool)>,
    extremities: BTreeSet<String>,
    current: StateMap<String>,
}

impl Naive {
    fn new(rv: RoomVersion) -> Self {
        Naive { rv, events: HashMap::new(), after: HashMap::new(), before: HashMap::new(), outcome: HashMap::new(), extremities: BTreeSet::new(), current: StateMap::new() }
    }

    fn pdus(&self, state: &StateMap<String>, keys: &[(String, String)]) -> StateMap<Pdu> {
        keys.iter().filter_map(|k| state.get(k).map(|id| (k.clone(), self.events[id].clone()))).collect()
    }

    fn ingest(&mut self, p: Pdu) {
        let sets: Vec<StateMap<String>> = p.prev_events.iter().map(|id| self.after[id].clone()).collect();
        let before = resolve(&self.rv, &sets, &self.events).unwrap();
        let auth: Vec<&Pdu> = p.auth_events.iter().map(|id| &self.events[id]).collect();
        let create = if p.event_type == "m.room.create" { Some(&p) } else { self.events.values().find(|e| e.event_type == "m.room.create") };
        let keys = auth_types_for_event(&self.rv, &p);
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
            for prev in &p.prev_events {
                self.extremities.remove(prev);
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

/// A topic change by a member without the power to change it, after `p`: rejected.
fn rogue_topic(p: &Pdu, all: &[Pdu], n: usize) -> Option<Pdu> {
    let member = all.iter().rev().find(|e| e.event_type == "m.room.member" && e.membership() == Some("join") && e.state_key.as_deref() != Some(all[0].sender.as_str()))?;
    let user = member.state_key.clone()?;
    let power = all.iter().rev().find(|e| e.event_type == "m.room.power_levels")?;
    let mut auth = vec![power.event_id.clone(), member.event_id.clone()];
    if !all[0].room_id.is_empty() && !p.room_id.is_empty() && p.auth_events.contains(&all[0].event_id) {
        auth.push(all[0].event_id.clone());
    }
    let mut ev = p.clone();
    ev.event_id = format!("$rogue{n}");
    ev.sender = user;
    ev.event_type = "m.room.topic".into();
    ev.state_key = Some(String::new());
    ev.content = serde_json::json!({"topic": format!("rogue {n}")}).as_object().unwrap().clone();
    ev.prev_events = vec![p.event_id.clone()];
    ev.auth_events = auth;
    ev.depth = p.depth + 1;
    Some(ev)
}

#[test]
fn stored_state_equals_naive_recomputation() {
    let only = std::env::var("ROOM_VERSION").ok();
    for (rv, seed, pdus) in common::forked_rooms(&[5]) {
        if only.as_deref().is_some_and(|v| v != rv.id) {
            continue;
        }
        let mut naive = Naive::new(rv);
        let mut room = MemoryRoom::new(rv);
        let mut snapshot_of_state: HashMap<Vec<((String, String), String)>, i64> = HashMap::new();
        let mut stream: Vec<Pdu> = Vec::new();
        for (i, p) in pdus.iter().enumerate() {
            stream.push(p.clone());
            if i > 20 && i % 37 == 0 {
                if let Some(r) = rogue_topic(p, &pdus[..=i], i) {
                    stream.push(r);
                }
            }
        }
        let mut rejected = 0;
        for p in stream {
            let id = p.event_id.clone();
            naive.ingest(p.clone());
            let adm = room.ingest(p).unwrap_or_else(|e| panic!("v{} seed {seed} {id}: {e}", rv.id));
            let (rej, soft) = naive.outcome[&id];
            assert_eq!((adm.rejection.is_some(), adm.soft_failure.is_some()), (rej, soft), "v{} seed {seed} {id}: {adm:?}", rv.id);
            rejected += rej as usize;
            for (snap, want) in [(adm.state_before, &naive.before[&id]), (adm.state_after, &naive.after[&id])] {
                let got = room.state_strings(snap).unwrap();
                assert_eq!(&got, want, "v{} seed {seed} {id}: snapshot {snap}", rv.id);
                let mut key: Vec<_> = got.into_iter().collect();
                key.sort();
                assert_eq!(*snapshot_of_state.entry(key).or_insert(snap), snap, "v{} seed {seed}: one state, two snapshots", rv.id);
            }
            assert_eq!(room.state_strings(room.current.unwrap_or_else(|| panic!("v{} seed {seed} {id}: no current state: {adm:?}", rv.id))).unwrap(), naive.current, "v{} seed {seed} {id}: current state", rv.id);
        }
        assert!(rejected > 5, "v{} seed {seed}: only {rejected} rejections", rv.id);
    }
}
