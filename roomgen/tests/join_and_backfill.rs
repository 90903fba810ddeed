//! Joining a room part-way through its history and backfilling it, against a full load from the
//! create event. For forked generated rooms of every room version: the state before a join
//! point and its auth chain are stored as outliers (a `send_join` response); the join point is
//! admitted with that state supplied; later events follow live, with their state supplied
//! where their prev events are not stored (a homeserver asks `/state_ids` then); then the
//! history before the join point arrives newest first, in `/backfill`-sized batches (with the
//! auth events they name and that are not stored yet fetched first, as outliers). At the end
//! every event has its state, and it is the state the full load gives, as are the rejections,
//! the forward extremities and the current state.

mod common;

use std::collections::{BTreeSet, HashMap};

use roomserver_core::room_state::memory::MemoryRoom;
use roomserver_core::room_state::Mode;
use roomserver_core::Pdu;

type States = HashMap<String, (Vec<String>, Vec<String>, bool)>;

/// Each event's state before and after (sorted event IDs) and whether it was rejected.
fn states_of(room: &MemoryRoom, pdus: &[Pdu]) -> States {
    let ids = |snap: i64| {
        let mut v: Vec<String> = room.state_strings(snap).unwrap().into_values().collect();
        v.sort();
        v
    };
    pdus.iter()
        .filter_map(|p| {
            let a = room.admissions.get(&p.event_id)?;
            Some((p.event_id.clone(), (ids(a.state_before), ids(a.state_after), a.rejection.is_some())))
        })
        .collect()
}

/// The auth chain of `ids` (the events and everything reachable through auth_events).
fn with_auth_chain(ids: &[String], by_id: &HashMap<&str, &Pdu>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<String> = ids.to_vec();
    while let Some(id) = todo.pop() {
        if out.insert(id.clone()) {
            todo.extend(by_id[id.as_str()].auth_events.iter().cloned());
        }
    }
    out
}

#[test]
fn a_room_joined_mid_history_and_backfilled_equals_a_full_load() {
    let only = std::env::var("ROOM_VERSION").ok();
    for (rv, seed, pdus) in common::forked_rooms(&[7]) {
        if only.as_deref().is_some_and(|v| v != rv.id) {
            continue;
        }
        let ctx = |what: &str| format!("v{} seed {seed}: {what}", rv.id);
        let mut full = MemoryRoom::new(rv);
        for p in &pdus {
            full.ingest(p.clone()).unwrap_or_else(|e| panic!("{}: {e}", ctx("full load")));
        }
        let want = states_of(&full, &pdus);
        let by_id: HashMap<&str, &Pdu> = pdus.iter().map(|p| (p.event_id.as_str(), p)).collect();
        let position: HashMap<&str, usize> = pdus.iter().enumerate().map(|(i, p)| (p.event_id.as_str(), i)).collect();
        // The join point: an accepted event about three fifths in.
        let j = (pdus.len() * 3 / 5..pdus.len()).find(|&i| !want[&pdus[i].event_id].2).expect("an accepted event");
        let state_before = |id: &str| -> Vec<String> { want[id].0.clone() };

        let mut room = MemoryRoom::new(rv);
        // The send_join response: the state before the join point and the auth chains, as
        // outliers, in no particular order (reverse NID order here).
        let mut outliers: Vec<String> = with_auth_chain(&[state_before(&pdus[j].event_id), pdus[j].auth_events.clone()].concat(), &by_id).into_iter().collect();
        outliers.sort_by_key(|id| std::cmp::Reverse(position[id.as_str()]));
        let outlier_pdus: Vec<Pdu> = outliers.iter().map(|id| by_id[id.as_str()].clone()).collect();
        room.ingest_batch(&outlier_pdus, Mode::Outliers, None).unwrap_or_else(|e| panic!("{}: {e}", ctx("outliers")));
        room.ingest_batch(&pdus[j..=j], Mode::Live, Some(&state_before(&pdus[j].event_id))).unwrap_or_else(|e| panic!("{}: {e}", ctx("join point")));
        // Later events, live; with their state supplied where a prev event is not stored.
        let mut supplied = 0;
        for p in &pdus[j + 1..] {
            let prevs_stored = p.prev_events.iter().all(|prev| room.admissions.contains_key(prev));
            let state = if prevs_stored {
                None
            } else {
                supplied += 1;
                Some(state_before(&p.event_id))
            };
            // Its auth events may be before the join point and not among the outliers yet.
            let missing: Vec<Pdu> = with_auth_chain(&p.auth_events, &by_id)
                .into_iter()
                .filter(|a| position[a.as_str()] < j && !outliers.contains(a))
                .map(|a| by_id[a.as_str()].clone())
                .collect();
            if !missing.is_empty() {
                outliers.extend(missing.iter().map(|m| m.event_id.clone()));
                room.ingest_batch(&missing, Mode::Outliers, None).unwrap_or_else(|e| panic!("{}: {e}", ctx("auth events")));
            }
            if let Some(s) = &state {
                let missing: Vec<Pdu> = with_auth_chain(s, &by_id).into_iter().filter(|a| !outliers.contains(a) && position[a.as_str()] < j).map(|a| by_id[a.as_str()].clone()).collect();
                outliers.extend(missing.iter().map(|m| m.event_id.clone()));
                room.ingest_batch(&missing, Mode::Outliers, None).unwrap_or_else(|e| panic!("{}: {e}", ctx("state events")));
            }
            room.ingest_batch(std::slice::from_ref(p), Mode::Live, state.as_deref()).unwrap_or_else(|e| panic!("{} {}: {e}", ctx("live"), p.event_id));
        }
        let extremities = room.extremities.clone();
        let current = room.current;
        // The history, newest first, 50 events per /backfill response.
        let history: Vec<Pdu> = pdus[..j].iter().rev().cloned().collect();
        for batch in history.chunks(50) {
            // Auth events must be stored first: a homeserver fetches what missing_events names
            // (/event_auth) and stores it as outliers.
            let in_batch: BTreeSet<&str> = batch.iter().map(|p| p.event_id.as_str()).collect();
            let ids: Vec<String> = batch.iter().flat_map(|p| p.auth_events.clone()).collect();
            let missing: Vec<Pdu> = with_auth_chain(&ids, &by_id)
                .into_iter()
                .filter(|a| !in_batch.contains(a.as_str()) && !outliers.contains(a) && position[a.as_str()] < j)
                .map(|a| by_id[a.as_str()].clone())
                .collect();
            outliers.extend(missing.iter().map(|m| m.event_id.clone()));
            room.ingest_batch(&missing, Mode::Outliers, None).unwrap_or_else(|e| panic!("{}: {e}", ctx("auth events of a backfill")));
            room.ingest_batch(batch, Mode::Backfilled, None).unwrap_or_else(|e| panic!("{}: {e}", ctx("backfill")));
        }
        assert_eq!(room.extremities, extremities, "{}", ctx("backfill moved the extremities"));
        assert_eq!(room.current, current, "{}", ctx("backfill changed the current state"));
        let got = states_of(&room, &pdus);
        for p in &pdus {
            let id = p.event_id.as_str();
            let g = got.get(id).unwrap_or_else(|| panic!("{}: {id} has no state after the backfill", ctx("complete history")));
            assert_eq!(g, &want[id], "{}: {id} (position {}, join point {j})", ctx("state"), position[id]);
        }
        // The tips: the full load's forward extremities and current state.
        let ids_of = |r: &MemoryRoom| -> BTreeSet<String> { r.extremities.iter().map(|n| r.store.event_by_nid(*n).unwrap().pdu.event_id.clone()).collect() };
        assert_eq!(ids_of(&room), ids_of(&full), "{}", ctx("forward extremities"));
        assert_eq!(room.state_strings(room.current.unwrap()).unwrap(), full.state_strings(full.current.unwrap()).unwrap(), "{}", ctx("current state"));
        assert!(supplied > 0 || pdus.len() - j < 10, "{}: no later event needed its state supplied", ctx("coverage"));
        eprintln!("v{} seed {seed}: joined at {j} of {}, {} outliers, {supplied} later events with supplied state", rv.id, pdus.len(), outliers.len());
    }
}
