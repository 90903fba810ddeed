//! The core's authorization rules (`roomserver_core::auth`) against the generator's rooms: every
//! generated event passes them against its own auth events, in every room version, with forks;
//! and mutated events the spec forbids are refused.

use std::collections::HashMap;

mod common;

use roomgen::{generate_vec, RoomConfig};
use roomserver_core::auth::{auth_events_state, check_event_auth};
use roomserver_core::{Pdu, RoomVersion};

fn check(p: &Pdu, all: &HashMap<&str, &Pdu>, create: &Pdu, rv: &RoomVersion) -> Result<(), String> {
    let auth: Vec<&Pdu> = p
        .auth_events
        .iter()
        .map(|id| all.get(id.as_str()).copied().ok_or_else(|| format!("unknown auth event {id}")))
        .collect::<Result<_, _>>()?;
    let state = auth_events_state(rv, p, &auth, Some(create)).map_err(|r| r.reason)?;
    check_event_auth(rv, p, &state).map_err(|r| r.reason)
}

#[test]
fn every_generated_event_passes_the_core_auth_rules() {
    for (rv, seed, pdus) in common::forked_rooms(&[3, 4]) {
        let all: HashMap<&str, &Pdu> = pdus.iter().map(|p| (p.event_id.as_str(), p)).collect();
        for (i, p) in pdus.iter().enumerate() {
            if let Err(why) = check(p, &all, &pdus[0], &rv) {
                panic!("v{} seed {seed} event {i} ({} {:?} by {}): {why}", rv.id, p.event_type, p.state_key, p.sender);
            }
        }
    }
}

#[test]
fn mutated_events_are_refused() {
    for rv in roomserver_core::room_version::ALL {
        let cfg = RoomConfig { room_version: rv.id.into(), events: 150, fork_every: 0, ..RoomConfig::default() };
        let (events, _) = generate_vec(&cfg).unwrap();
        let pdus: Vec<Pdu> = events.iter().map(|e| Pdu::from_json(e, &rv).unwrap()).collect();
        let all: HashMap<&str, &Pdu> = pdus.iter().map(|p| (p.event_id.as_str(), p)).collect();
        let message = pdus.iter().find(|p| p.event_type == "m.room.message" && !p.sender.starts_with("@user0:")).unwrap();
        assert!(check(message, &all, &pdus[0], &rv).is_ok());
        let mut stranger = message.clone();
        stranger.sender = "@stranger:elsewhere.example".into();
        assert!(check(&stranger, &all, &pdus[0], &rv).is_err(), "v{}", rv.id);
        let mut topic = message.clone();
        topic.event_type = "m.room.topic".into();
        topic.state_key = Some(String::new());
        // Plain members lack the state level once power levels exist.
        assert!(check(&topic, &all, &pdus[0], &rv).is_err(), "v{}", rv.id);
        if !rv.room_id_from_create_event {
            let mut orphan = message.clone();
            orphan.auth_events.retain(|a| a != &pdus[0].event_id);
            assert!(check(&orphan, &all, &pdus[0], &rv).is_err(), "v{}", rv.id);
        }
    }
}
