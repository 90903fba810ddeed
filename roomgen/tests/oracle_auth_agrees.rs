//! The conformance crate's independent reading of the spec's authorization rules
//! (`roomserver_conformance::auth_oracle`) against the generator's rooms: every generated event
//! passes them against its own auth events, in every room version, with forks.

use std::collections::HashMap;

mod common;

use roomserver_conformance::auth_oracle;
use roomserver_core::Pdu;

#[test]
fn every_generated_event_passes_the_auth_rules_against_its_auth_events() {
    for (rv, seed, pdus) in common::forked_rooms(&[1, 2]) {
        let all: HashMap<&str, &Pdu> = pdus.iter().map(|p| (p.event_id.as_str(), p)).collect();
        for (i, p) in pdus.iter().enumerate() {
            if let Err(why) = auth_oracle::check(p, &all, &pdus[0], rv) {
                panic!("v{} seed {seed} event {i} ({} {:?} by {}): {why}", rv.id, p.event_type, p.state_key, p.sender);
            }
        }
    }
}
