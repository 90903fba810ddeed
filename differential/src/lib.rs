//! Helpers for the differential tests: replaying generated rooms to get the state sets at every
//! merge, and talking to the Synapse resolver (`synapse_state_res.py`).

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

/// Synapse's resolutions of every case of every room, in order. `python` must have
/// matrix-synapse installed.
pub fn synapse_resolutions(python: &str, rooms: &[RoomCases]) -> Vec<Vec<Result<StateMap<String>, String>>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/synapse_state_res.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {script}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let lines: Vec<String> = rooms
        .iter()
        .map(|r| {
            let cases: Vec<Vec<Vec<&String>>> = r.cases.iter().map(|sets| sets.iter().map(|s| s.values().collect()).collect()).collect();
            json!({"room_id": r.room_id, "room_version": r.room_version, "events": r.pdus, "cases": cases}).to_string()
        })
        .collect();
    // Write from another thread so a full stdout pipe cannot block us both.
    let writer = std::thread::spawn(move || {
        for line in lines {
            writeln!(stdin, "{line}").expect("write to the Synapse resolver");
        }
    });
    let reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line.expect("read from the Synapse resolver");
        let results: Vec<Value> = serde_json::from_str(&line).expect("JSON from the Synapse resolver");
        out.push(
            results
                .into_iter()
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
                .collect(),
        );
    }
    writer.join().expect("writer thread");
    assert!(child.wait().expect("Synapse resolver exit").success(), "the Synapse resolver failed");
    out
}
