//! Differential test: our state resolution against Synapse's (matrix-synapse from PyPI), at
//! every merge point of 1,000 seeded, generated, forked rooms across room versions 1-12.
//! Run by scripts/test.sh, which installs Synapse and sets SYNAPSE_PYTHON; by hand:
//! `SYNAPSE_PYTHON=/path/to/venv/bin/python cargo test -p roomserver-conformance -- --ignored`.

use roomserver_conformance::synapse::{replay, run_synapse, synapse_request};
use roomgen::{generate_vec, RoomConfig};
use roomserver_core::RoomVersion;

#[test]
#[ignore = "needs Synapse: run scripts/test.sh, or set SYNAPSE_PYTHON and pass --ignored"]
fn state_resolution_agrees_with_synapse_on_1000_generated_rooms() {
    let python = std::env::var("SYNAPSE_PYTHON").expect("SYNAPSE_PYTHON: a Python with matrix-synapse installed");
    let mut rooms = Vec::new();
    for i in 0..1000u64 {
        let version = roomserver_core::room_version::ALL[(i % 12) as usize];
        let config = RoomConfig {
            seed: 10_000 + i,
            room_version: version.id.to_owned(),
            members: 8 + (i % 23) as usize,
            servers: 2 + (i % 3) as usize,
            events: 60 + (i % 90) as usize,
            fork_every: 6 + (i % 11) as usize,
            fork_width: 2 + (i % 3) as usize,
            fork_depth: 2 + (i % 5) as usize,
            state_churn: 0.2 + (i % 5) as f64 * 0.1,
            power_share: 1.0,
        };
        let (pdus, _) = generate_vec(&config).expect("generated room");
        rooms.push(replay(&RoomVersion::from_id(version.id).unwrap(), &pdus));
    }
    let merges: usize = rooms.iter().map(|r| r.cases.len()).sum();
    assert!(merges >= 1000, "only {merges} merge points");
    let theirs: Vec<_> = run_synapse(&python, rooms.iter().map(|r| synapse_request(r, 1, false)).collect())
        .into_iter()
        .map(|answer| answer.results)
        .collect();
    assert_eq!(theirs.len(), rooms.len());
    let mut disagreements = Vec::new();
    for (room, their_cases) in rooms.iter().zip(&theirs) {
        for (i, (ours, theirs)) in room.ours.iter().zip(their_cases).enumerate() {
            match theirs {
                Ok(t) if t == ours => {}
                Ok(t) => {
                    let mut keys: Vec<_> = ours.keys().chain(t.keys()).filter(|k| ours.get(*k) != t.get(*k)).collect();
                    keys.sort();
                    keys.dedup();
                    let diff: Vec<String> = keys.iter().map(|k| format!("{k:?}: ours {:?} synapse {:?}", ours.get(*k), t.get(*k))).collect();
                    disagreements.push(format!("v{} {} merge {i}: {}", room.room_version, room.room_id, diff.join("; ")));
                }
                Err(e) => disagreements.push(format!("v{} {} merge {i}: synapse error {e}", room.room_version, room.room_id)),
            }
        }
    }
    eprintln!("compared {merges} merge points in {} rooms; {} disagreements", rooms.len(), disagreements.len());
    assert!(disagreements.is_empty(), "{} disagreements, first: {:#?}", disagreements.len(), &disagreements[..disagreements.len().min(5)]);
}
