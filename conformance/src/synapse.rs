//! Synapse as the oracle of state resolution (the differential test and `statres-bench`):
//! replaying generated rooms to get the state sets at every merge, and talking to the Synapse
//! resolver (`synapse_state_res.py`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use roomserver_core::auth::StateMap;
use roomserver_core::state_res::resolve;
use roomserver_core::{Pdu, RoomVersion};
use serde_json::{json, Value};

/// A generated room with, for every event that merges branches, the state sets of its prev
/// events and our resolution of them.
pub struct RoomCases {
    pub room_id: String,
    pub room_version: String,
    pub pdus: Vec<Value>,
    pub cases: Vec<Vec<StateMap<String>>>,
    pub ours: Vec<StateMap<String>>,
}

/// Replays `pdus` (in topological order): the state after each event, resolving at merges.
pub fn replay(rv: &RoomVersion, pdus: &[Value]) -> RoomCases {
    let events: Vec<Pdu> = pdus.iter().map(|p| Pdu::from_json(p, rv).expect("generated PDUs are valid")).collect();
    let store: HashMap<String, Pdu> = events.iter().map(|e| (e.event_id.clone(), e.clone())).collect();
    let mut after: HashMap<&str, StateMap<String>> = HashMap::new();
    let (mut cases, mut ours) = (Vec::new(), Vec::new());
    for ev in &events {
        let sets: Vec<StateMap<String>> = ev.prev_events.iter().map(|p| after[p.as_str()].clone()).collect();
        let mut state = if sets.len() > 1 {
            let resolved = resolve(rv, &sets, &store).expect("our resolution");
            cases.push(sets);
            ours.push(resolved.clone());
            resolved
        } else {
            sets.into_iter().next().unwrap_or_default()
        };
        if let Some((t, k)) = ev.state_pair() {
            state.insert((t.to_owned(), k.to_owned()), ev.event_id.clone());
        }
        after.insert(ev.event_id.as_str(), state);
    }
    RoomCases { room_id: events[0].room_id.clone(), room_version: rv.id.to_owned(), pdus: pdus.to_vec(), cases, ours }
}

/// Synapse's answer for one room: per case, the resolved state or Synapse's error, and the time
/// of each run in milliseconds.
pub struct SynapseAnswer {
    pub results: Vec<Result<StateMap<String>, String>>,
    pub timings_ms: Vec<Vec<f64>>,
}

/// The JSON line the Synapse resolver takes for `room`.
pub fn synapse_request(room: &RoomCases, repeat: usize, persisted: bool) -> Value {
    let cases: Vec<Vec<Vec<&String>>> = room.cases.iter().map(|sets| sets.iter().map(|s| s.values().collect()).collect()).collect();
    json!({"room_id": room.room_id, "room_version": room.room_version, "events": room.pdus, "cases": cases,
           "repeat": repeat, "persisted": persisted})
}

/// Runs `synapse_state_res.py` under `python` (which must have matrix-synapse) on `requests`.
pub fn run_synapse(python: &str, requests: Vec<Value>) -> Vec<SynapseAnswer> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/synapse_state_res.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {script}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    // Write from another thread so a full stdout pipe cannot block us both.
    let writer = std::thread::spawn(move || {
        for request in requests {
            writeln!(stdin, "{request}").expect("write to the Synapse resolver");
        }
    });
    let reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line.expect("read from the Synapse resolver");
        let answer: Value = serde_json::from_str(&line).expect("JSON from the Synapse resolver");
        let results = answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| match r.get("error").and_then(Value::as_str) {
                Some(e) => Err(e.to_owned()),
                None => Ok(r
                    .as_object()
                    .expect("a state map")
                    .iter()
                    .map(|(k, v)| {
                        let (t, sk) = k.split_once('\u{0}').expect("type\\0state_key");
                        ((t.to_owned(), sk.to_owned()), v.as_str().unwrap_or_default().to_owned())
                    })
                    .collect()),
            })
            .collect();
        let timings_ms = answer["timings_ms"]
            .as_array()
            .expect("timings")
            .iter()
            .map(|runs| runs.as_array().expect("runs").iter().filter_map(Value::as_f64).collect())
            .collect();
        out.push(SynapseAnswer { results, timings_ms });
    }
    writer.join().expect("writer thread");
    assert!(child.wait().expect("Synapse resolver exit").success(), "the Synapse resolver failed");
    out
}

/// For big rooms: the state sets at the first event that merges branches, computed in one pass
/// that moves each state map to its single successor instead of copying it (a copy per event
/// would be quadratic in a 100,000-member room). Also returns every event, for the resolver.
pub fn states_at_first_merge(rv: &RoomVersion, pdus: &[Value]) -> (Vec<StateMap<String>>, HashMap<String, Pdu>) {
    let events: Vec<Pdu> = pdus.iter().map(|p| Pdu::from_json(p, rv).expect("generated PDUs are valid")).collect();
    let mut successors: HashMap<&str, usize> = HashMap::new();
    for ev in &events {
        for p in &ev.prev_events {
            *successors.entry(p.as_str()).or_default() += 1;
        }
    }
    let store: HashMap<String, Pdu> = events.iter().map(|e| (e.event_id.clone(), e.clone())).collect();
    let mut after: HashMap<&str, StateMap<String>> = HashMap::new();
    for ev in &events {
        if ev.prev_events.len() > 1 {
            let sets = ev.prev_events.iter().map(|p| after[p.as_str()].clone()).collect();
            return (sets, store);
        }
        let mut state = match ev.prev_events.first() {
            None => StateMap::new(),
            Some(p) => {
                let left = successors.get_mut(p.as_str()).expect("counted");
                *left -= 1;
                if *left == 0 { after.remove(p.as_str()).expect("state of the prev event") } else { after[p.as_str()].clone() }
            }
        };
        if let Some((t, k)) = ev.state_pair() {
            state.insert((t.to_owned(), k.to_owned()), ev.event_id.clone());
        }
        after.insert(ev.event_id.as_str(), state);
    }
    panic!("the room has no merge");
}
