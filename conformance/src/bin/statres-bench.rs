//! Benchmark (not a test): state resolution of a large fork, ours and Synapse's, same input,
//! same run. A generated room version 10 room of 100,000 members (about 97,000 joined at the
//! fork), forked into two branches of 1,000 events each (hundreds of power-level changes, kicks,
//! bans and other state changes), resolved at the merge.
//!
//! `SYNAPSE_PYTHON=/path/to/venv/bin/python cargo run --release -p roomserver-conformance --bin statres-bench`

use std::time::Instant;

use roomserver_conformance::synapse::{run_synapse, states_at_first_merge, synapse_request, RoomCases};
use roomgen::{generate_vec, RoomConfig};
use roomserver_core::state_res::resolve;
use roomserver_core::RoomVersion;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let version = std::env::args().nth(1).unwrap_or_else(|| "10".to_owned());
    let config = RoomConfig {
        seed: 5,
        room_version: version.clone(),
        members: 100_000,
        servers: 20,
        events: 125_001,
        fork_every: 122_900,
        fork_width: 2,
        fork_depth: 1000,
        state_churn: 0.95,
        power_share: 1.0,
    };
    let rv = RoomVersion::from_id(&version).expect("room version");
    let started = Instant::now();
    let (pdus, summary) = generate_vec(&config).expect("generated room");
    eprintln!("generated {} events in {:.1}s ({} joined at the end)", pdus.len(), started.elapsed().as_secs_f64(), summary.final_joined_members);
    let (sets, store) = states_at_first_merge(&rv, &pdus);
    let conflicted = sets[0].iter().filter(|(k, v)| sets[1].get(*k) != Some(*v)).count() + sets[1].keys().filter(|k| !sets[0].contains_key(*k)).count();
    eprintln!("state sets of {} and {} entries, {conflicted} conflicted keys", sets[0].len(), sets[1].len());

    let mut ours_ms = Vec::new();
    let mut resolved = None;
    for _ in 0..7 {
        let t = Instant::now();
        resolved = Some(resolve(&rv, &sets, &store).expect("our resolution"));
        ours_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let resolved = resolved.expect("ran");
    println!("pg_roomserver (Rust) state resolution: median {:.1} ms over {} runs", median(ours_ms.clone()), ours_ms.len());

    match std::env::var("SYNAPSE_PYTHON") {
        Ok(python) => {
            let room = RoomCases { room_id: summary.room_id.clone(), room_version: version, pdus, cases: vec![sets], ours: vec![resolved.clone()] };
            let answer = run_synapse(&python, vec![synapse_request(&room, 3, true)]).remove(0);
            let theirs = answer.results[0].as_ref().expect("Synapse resolved");
            let same = theirs == &resolved;
            let synapse_ms = median(answer.timings_ms[0].clone());
            println!("Synapse 1.163.2 (Python, in-memory store) state resolution: median {synapse_ms:.1} ms over {} runs", answer.timings_ms[0].len());
            println!("same result: {same}; speed-up {:.1}x", synapse_ms / median(ours_ms));
            if !same {
                std::process::exit(1);
            }
        }
        Err(_) => println!("(set SYNAPSE_PYTHON to compare with Synapse)"),
    }
}
