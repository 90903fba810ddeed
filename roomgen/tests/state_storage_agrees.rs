//! State storage (`roomserver_core::room_state`: snapshots of shared blocks, resolution that reads
//! only the keys that differ) against a naive recomputation: full states as maps of event IDs,
//! state resolution over whole states at every merge, the checks on receipt against full maps.
//! Every event of forked generated rooms of every room version, plus injected events the rules
//! reject, must get the same outcome and the same state before and after.

use roomserver_core::room_state::StateStore as _;
use std::collections::HashMap;

mod common;

use roomserver_conformance::naive_state::NaiveRoom;
use roomserver_core::room_state::memory::MemoryRoom;
use roomserver_core::Pdu;

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
        let mut naive = NaiveRoom::new(rv);
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
        let (mut rejected, mut accepted, mut total) = (0, 0, 0);
        for p in stream {
            let id = p.event_id.clone();
            naive.ingest(p.clone());
            let adm = room.ingest(p).unwrap_or_else(|e| panic!("v{} seed {seed} {id}: {e}", rv.id));
            let (rej, soft) = naive.outcome[&id];
            assert_eq!((adm.rejection.is_some(), adm.soft_failure.is_some()), (rej, soft), "v{} seed {seed} {id}: {adm:?}", rv.id);
            rejected += rej as usize;
            accepted += !(rej || soft) as usize;
            total += 1;
            for (snap, want) in [(adm.state_before, &naive.before[&id]), (adm.state_after, &naive.after[&id])] {
                let got = room.state_strings(snap).unwrap();
                assert_eq!(&got, want, "v{} seed {seed} {id}: snapshot {snap}", rv.id);
                assert_eq!(room.store.snapshot(snap).unwrap().size, want.len() as i64, "v{} seed {seed} {id}: state size", rv.id);
                let mut key: Vec<_> = got.into_iter().collect();
                key.sort();
                assert_eq!(*snapshot_of_state.entry(key).or_insert(snap), snap, "v{} seed {seed}: one state, two snapshots", rv.id);
            }
            assert_eq!(room.state_strings(room.current.unwrap_or_else(|| panic!("v{} seed {seed} {id}: no current state: {adm:?}", rv.id))).unwrap(), naive.current, "v{} seed {seed} {id}: current state", rv.id);
        }
        assert!(rejected > 5, "v{} seed {seed}: only {rejected} rejections", rv.id);
        // The generator's events pass their own auth events; after merges a few fail against
        // the resolved state, as on real servers. Most must be accepted.
        assert!(accepted * 10 > total * 8, "v{} seed {seed}: only {accepted} of {total} accepted", rv.id);
    }
}
