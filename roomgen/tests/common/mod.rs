//! Rooms shared by the auth tests: forked rooms of every room version, parsed.

use roomgen::{generate_vec, RoomConfig};
use roomserver_core::{Pdu, RoomVersion};

/// For every room version and each seed: a 600-event room of 30 members on 3 servers with a
/// fork every 10 events (3 branches, 5 deep) and heavy state churn, as parsed PDUs.
pub fn forked_rooms(seeds: &[u64]) -> Vec<(RoomVersion, u64, Vec<Pdu>)> {
    let mut out = Vec::new();
    for rv in roomserver_core::room_version::ALL {
        for &seed in seeds {
            let cfg = RoomConfig {
                seed,
                room_version: rv.id.to_owned(),
                members: 30,
                servers: 3,
                events: 600,
                fork_every: 10,
                fork_width: 3,
                fork_depth: 5,
                state_churn: 0.5,
                power_share: 1.0,
            };
            let (events, _) = generate_vec(&cfg).unwrap();
            out.push((rv, seed, events.iter().map(|e| Pdu::from_json(e, &rv).unwrap()).collect()));
        }
    }
    out
}
