//! Properties every generated room must have, checked on the PDUs themselves.

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use roomgen::{format_line, generate_vec, OutputFormat, RoomConfig};
use roomserver_core::room_version::EventFormat;
use roomserver_core::{hashes, Pdu, RoomVersion};
use serde_json::Value;

fn config(version: &str, seed: u64, events: usize) -> RoomConfig {
    RoomConfig {
        seed,
        room_version: version.to_owned(),
        members: 40,
        servers: 3,
        events,
        fork_every: 15,
        fork_width: 3,
        fork_depth: 4,
        state_churn: 0.35,
        power_share: 1.0,
    }
}

fn lines(events: &[Value]) -> String {
    events.iter().map(|e| format_line(e, OutputFormat::Jsonl)).collect()
}

/// A reference as written in prev_events/auth_events: the ID, and for v1/v2 the claimed hash.
fn reference(v: &Value) -> (String, Option<String>) {
    match v {
        Value::String(s) => (s.clone(), None),
        Value::Array(a) => (
            a[0].as_str().expect("reference id").to_owned(),
            Some(a[1]["sha256"].as_str().expect("reference hash").to_owned()),
        ),
        other => panic!("bad reference {other}"),
    }
}

/// Checks hashes, IDs, reference order and depths; returns the parsed PDUs.
fn check_room(events: &[Value], rv: &RoomVersion) -> Vec<Pdu> {
    let mut seen: HashMap<String, (i64, Option<String>)> = HashMap::new();
    let mut pdus = Vec::new();
    let mut room_id: Option<String> = None;
    for (i, ev) in events.iter().enumerate() {
        assert!(hashes::content_hash_matches(ev).unwrap(), "event {i}: content hash");
        let pdu = Pdu::from_json(ev, rv).unwrap_or_else(|e| panic!("event {i} invalid: {e:?}"));
        assert_eq!(pdu.event_id, hashes::event_id(ev, rv).unwrap());
        match room_id {
            None => {
                assert_eq!(pdu.event_type, "m.room.create", "the first event is the create event");
                if rv.room_id_from_create_event {
                    assert!(ev.get("room_id").is_none());
                    assert_eq!(pdu.room_id, hashes::room_id_from_create_event(ev, rv).unwrap());
                }
                room_id = Some(pdu.room_id.clone());
            }
            Some(ref r) => assert_eq!(&pdu.room_id, r, "event {i}: room ID"),
        }
        assert!(!seen.contains_key(&pdu.event_id), "event {i}: duplicate ID");
        let mut max_prev = 0;
        for field in ["prev_events", "auth_events"] {
            for r in ev[field].as_array().unwrap() {
                let (id, claimed_hash) = reference(r);
                let (depth, hash) = seen.get(&id).unwrap_or_else(|| panic!("event {i}: {field} {id} is not earlier"));
                assert_eq!(&claimed_hash, hash, "event {i}: reference hash of {id}");
                if field == "prev_events" {
                    max_prev = max_prev.max(*depth);
                }
            }
        }
        assert_eq!(pdu.depth, max_prev + 1, "event {i}: depth");
        if rv.room_id_from_create_event {
            let create_id = &pdus.first().map(|p: &Pdu| p.event_id.clone()).unwrap_or_default();
            assert!(!pdu.auth_events.contains(create_id), "event {i}: v12 lists the create event");
        } else if i > 0 {
            assert!(pdu.auth_events.contains(&pdus[0].event_id), "event {i}: create event not in auth_events");
        }
        let ref_hash = (rv.event_format == EventFormat::V1)
            .then(|| STANDARD_NO_PAD.encode(hashes::reference_hash_bytes(ev, rv).unwrap()));
        seen.insert(pdu.event_id.clone(), (pdu.depth, ref_hash));
        pdus.push(pdu);
    }
    pdus
}

/// What kind of event this is, from the PDU alone.
fn kind(p: &Pdu, by_id: &HashMap<&str, &Pdu>, state: &HashMap<(String, String), String>) -> String {
    match p.event_type.as_str() {
        "m.room.member" => {
            let m = p.membership().unwrap_or("");
            let target = p.state_key.as_deref().unwrap_or("");
            let before = state
                .get(&("m.room.member".to_owned(), target.to_owned()))
                .and_then(|id| by_id.get(id.as_str()))
                .and_then(|e| e.membership());
            match m {
                "leave" if p.sender != target && before == Some("ban") => "unban".into(),
                "leave" if p.sender != target => "kick".into(),
                "join" if before == Some("join") => "displayname".into(),
                other => other.to_owned(),
            }
        }
        t => t.trim_start_matches("m.room.").to_owned(),
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_room() {
    let (a, _) = generate_vec(&config("11", 5, 300)).unwrap();
    let (b, _) = generate_vec(&config("11", 5, 300)).unwrap();
    let (c, _) = generate_vec(&config("11", 6, 300)).unwrap();
    assert_eq!(lines(&a), lines(&b));
    assert_ne!(lines(&a), lines(&c));
    // Different versions of the same seed are different rooms too.
    let (d, _) = generate_vec(&config("10", 5, 300)).unwrap();
    assert_ne!(lines(&a), lines(&d));
}

#[test]
fn every_room_version_generates_valid_events() {
    for rv in roomserver_core::room_version::ALL {
        let (events, summary) = generate_vec(&config(rv.id, 11, 250)).unwrap();
        assert_eq!(events.len(), 250, "v{}", rv.id);
        assert_eq!(summary.events, 250);
        let pdus = check_room(&events, &rv);
        assert_eq!(summary.room_id, pdus[0].room_id);
        assert!(summary.forks > 0 && summary.merges == summary.forks, "v{}: {summary:?}", rv.id);
    }
}

#[test]
fn v1_and_v2_ids_are_server_assigned() {
    for v in ["1", "2"] {
        let rv = RoomVersion::from_id(v).unwrap();
        let (events, _) = generate_vec(&config(v, 3, 100)).unwrap();
        for ev in &events {
            let id = ev["event_id"].as_str().unwrap();
            let sender_server = ev["sender"].as_str().unwrap().split(':').nth(1).unwrap();
            assert!(id.starts_with('$') && id.ends_with(&format!(":{sender_server}")), "{id}");
        }
        check_room(&events, &rv);
    }
}

#[test]
fn forks_happen_and_merge() {
    let rv = RoomVersion::from_id("10").unwrap();
    let (events, summary) = generate_vec(&config("10", 2, 400)).unwrap();
    let pdus = check_room(&events, &rv);
    let merges = pdus.iter().filter(|p| p.prev_events.len() >= 3).count();
    let mut children: HashMap<&str, usize> = HashMap::new();
    for p in &pdus {
        for prev in &p.prev_events {
            *children.entry(prev.as_str()).or_default() += 1;
        }
    }
    let forks = children.values().filter(|c| **c >= 3).count();
    assert!(merges >= 5, "merge events with 3 tips: {merges}");
    assert!(forks >= 5, "fork points with 3 children: {forks}");
    assert_eq!(summary.forks, summary.merges);
    // Branch events come from several servers.
    let servers: HashSet<&str> = pdus.iter().map(|p| p.sender.split(':').nth(1).unwrap()).collect();
    assert_eq!(servers.len(), 3);
}

/// Replays the room linearly only where there is no fork: in a fork the state differs per
/// branch, so this test checks the conflicting changes exist rather than the state itself.
#[test]
fn conflicting_power_and_membership_changes_on_concurrent_branches() {
    let rv = RoomVersion::from_id("11").unwrap();
    let (events, _) = generate_vec(&config("11", 4, 600)).unwrap();
    let pdus = check_room(&events, &rv);
    let by_id: HashMap<&str, &Pdu> = pdus.iter().map(|p| (p.event_id.as_str(), p)).collect();
    // Ancestors of each event, to tell concurrent events apart.
    let mut ancestors: HashMap<&str, HashSet<&str>> = HashMap::new();
    for p in &pdus {
        let mut set = HashSet::new();
        for prev in &p.prev_events {
            set.insert(prev.as_str());
            set.extend(ancestors[prev.as_str()].iter().copied());
        }
        ancestors.insert(p.event_id.as_str(), set);
    }
    let concurrent = |a: &Pdu, b: &Pdu| {
        a.event_id != b.event_id && !ancestors[a.event_id.as_str()].contains(b.event_id.as_str()) && !ancestors[b.event_id.as_str()].contains(a.event_id.as_str())
    };
    let pls: Vec<&Pdu> = pdus.iter().filter(|p| p.event_type == "m.room.power_levels").collect();
    let conflicting_pl = pls.iter().any(|a| pls.iter().any(|b| concurrent(a, b)));
    assert!(conflicting_pl, "no concurrent power level changes");
    let members: Vec<&Pdu> = pdus.iter().filter(|p| p.event_type == "m.room.member").collect();
    let conflicting_member = members.iter().any(|a| members.iter().any(|b| a.state_key == b.state_key && concurrent(a, b)));
    assert!(conflicting_member, "no concurrent changes of one membership");
    let _ = by_id;
}

#[test]
fn every_event_kind_occurs() {
    let rv = RoomVersion::from_id("11").unwrap();
    let cfg = RoomConfig { members: 60, events: 1500, state_churn: 0.4, ..config("11", 9, 1500) };
    let (events, summary) = generate_vec(&cfg).unwrap();
    let pdus = check_room(&events, &rv);
    let by_id: HashMap<&str, &Pdu> = pdus.iter().map(|p| (p.event_id.as_str(), p)).collect();
    // Kinds are derived from the PDUs, with a state map replayed in order (good enough to tell a
    // displayname change from a join: forks only make it coarser).
    let mut state: HashMap<(String, String), String> = HashMap::new();
    let mut kinds: HashSet<String> = HashSet::new();
    for p in &pdus {
        kinds.insert(kind(p, &by_id, &state));
        if let Some((t, k)) = p.state_pair() {
            state.insert((t.to_owned(), k.to_owned()), p.event_id.clone());
        }
    }
    for expected in [
        "create", "join", "leave", "kick", "ban", "invite", "knock", "topic", "name", "history_visibility",
        "power_levels", "join_rules", "message", "redaction", "displayname",
    ] {
        assert!(kinds.contains(expected), "no {expected} event; kinds {kinds:?}; summary {:?}", summary.kinds);
    }
    // Redactions point at messages of the room, in content for v11.
    for p in pdus.iter().filter(|p| p.event_type == "m.room.redaction") {
        let target = p.redacts.as_deref().expect("redacts");
        assert_eq!(by_id[target].event_type, "m.room.message");
    }
}

#[test]
fn auth_events_follow_the_selection_rules() {
    for v in ["1", "6", "12"] {
        let rv = RoomVersion::from_id(v).unwrap();
        let (events, _) = generate_vec(&config(v, 21, 400)).unwrap();
        let pdus = check_room(&events, &rv);
        let by_id: HashMap<&str, &Pdu> = pdus.iter().map(|p| (p.event_id.as_str(), p)).collect();
        for p in pdus.iter().skip(1) {
            let mut pairs = HashSet::new();
            for a in &p.auth_events {
                let e = by_id[a.as_str()];
                let (t, k) = e.state_pair().expect("auth events are state events");
                assert!(pairs.insert((t, k)), "two auth events for {t}/{k}");
                let allowed = match t {
                    "m.room.create" | "m.room.power_levels" => true,
                    "m.room.member" => k == p.sender || (p.event_type == "m.room.member" && Some(k) == p.state_key.as_deref()),
                    "m.room.join_rules" => p.event_type == "m.room.member" && matches!(p.membership(), Some("join" | "invite" | "knock")),
                    _ => false,
                };
                assert!(allowed, "v{v}: {t}/{k} may not authorise {} {:?}", p.event_type, p.state_key);
            }
            // Everyone but the creator's first join has their own membership as an auth event.
            let own = p.auth_events.iter().any(|a| by_id[a.as_str()].state_pair() == Some(("m.room.member", p.sender.as_str())));
            let first_event_of_sender = !pdus.iter().take_while(|q| q.event_id != p.event_id).any(|q| q.state_pair() == Some(("m.room.member", p.sender.as_str())));
            assert!(own || first_event_of_sender, "v{v}: {} by {} lacks the sender's membership", p.event_type, p.sender);
        }
    }
}

#[test]
fn sample_room_is_small_and_complete() {
    let cfg = RoomConfig::sample();
    let rv = RoomVersion::from_id(&cfg.room_version).unwrap();
    let (events, summary) = generate_vec(&cfg).unwrap();
    assert!((35..=45).contains(&events.len()));
    let pdus = check_room(&events, &rv);
    assert!(pdus.iter().any(|p| p.prev_events.len() >= 2), "a merge");
    assert!(pdus.iter().any(|p| p.membership() == Some("ban")), "a ban");
    assert!(pdus.iter().filter(|p| p.event_type == "m.room.topic").count() >= 2, "a topic change");
    assert!(pdus.iter().filter(|p| p.event_type == "m.room.message").count() >= 5, "messages");
    let servers: HashSet<&str> = pdus.iter().map(|p| p.sender.split(':').nth(1).unwrap()).collect();
    assert!(servers.len() >= 2);
    assert!(summary.merges >= 1);
    let (again, _) = generate_vec(&cfg).unwrap();
    assert_eq!(lines(&events), lines(&again));
}

#[test]
fn copy_format_doubles_backslashes() {
    let ev = serde_json::json!({"body": "a\\b \"q\" \n"});
    assert_eq!(format_line(&ev, OutputFormat::Jsonl), "{\"body\":\"a\\\\b \\\"q\\\" \\n\"}\n");
    assert_eq!(format_line(&ev, OutputFormat::Copy), "{\"body\":\"a\\\\\\\\b \\\\\"q\\\\\" \\\\n\"}\n");
    assert!(!format_line(&ev, OutputFormat::Copy).trim_end_matches('\n').contains(['\n', '\t']));
}

#[test]
fn bad_configs_are_typed_errors() {
    assert!(generate_vec(&RoomConfig { room_version: "13".into(), ..RoomConfig::default() }).is_err());
    assert!(generate_vec(&RoomConfig { members: 1, ..RoomConfig::default() }).is_err());
    assert!(generate_vec(&RoomConfig { servers: 0, ..RoomConfig::default() }).is_err());
    assert!(generate_vec(&RoomConfig { events: 0, ..RoomConfig::default() }).is_err());
    // A room smaller than the creation sequence is cut short, not padded.
    assert_eq!(generate_vec(&RoomConfig { events: 3, ..RoomConfig::default() }).unwrap().0.len(), 3);
    assert!(generate_vec(&RoomConfig { state_churn: 1.5, ..RoomConfig::default() }).is_err());
}

/// Without forks the state before each event is the replay of the events before it, so the
/// auth events can be recomputed independently with the spec's selection rules and compared.
#[test]
fn linear_room_auth_events_are_those_of_the_current_state() {
    for v in ["1", "3", "8", "11", "12"] {
        let rv = RoomVersion::from_id(v).unwrap();
        let cfg = RoomConfig { fork_every: 0, state_churn: 0.5, ..config(v, 31, 500) };
        let (events, summary) = generate_vec(&cfg).unwrap();
        assert_eq!(summary.forks, 0);
        let pdus = check_room(&events, &rv);
        let mut state: HashMap<(String, String), String> = HashMap::new();
        for (i, p) in pdus.iter().enumerate() {
            assert!(p.prev_events.len() <= 1, "no fork, so one prev event");
            let get = |t: &str, k: &str| state.get(&(t.to_owned(), k.to_owned())).cloned();
            let mut expected: Vec<String> = Vec::new();
            if i > 0 {
                let mut wanted = Vec::new();
                if !rv.room_id_from_create_event {
                    wanted.push(get("m.room.create", ""));
                }
                wanted.push(get("m.room.power_levels", ""));
                wanted.push(get("m.room.member", &p.sender));
                if p.event_type == "m.room.member" {
                    wanted.push(get("m.room.member", p.state_key.as_deref().unwrap()));
                    if matches!(p.membership(), Some("join" | "invite" | "knock")) {
                        wanted.push(get("m.room.join_rules", ""));
                    }
                }
                for id in wanted.into_iter().flatten() {
                    if !expected.contains(&id) {
                        expected.push(id);
                    }
                }
            }
            let mut got = p.auth_events.clone();
            got.sort();
            expected.sort();
            assert_eq!(got, expected, "v{v} event {i} ({} {:?})", p.event_type, p.state_key);
            if let Some((t, k)) = p.state_pair() {
                state.insert((t.to_owned(), k.to_owned()), p.event_id.clone());
            }
        }
    }
}

/// The sample room bundled for the demo is exactly what `roomgen --sample` writes.
#[test]
fn bundled_sample_file_is_current() {
    let (events, _) = generate_vec(&RoomConfig::sample()).unwrap();
    let bundled = include_str!("../sample/room-v12.jsonl");
    assert_eq!(lines(&events), bundled, "regenerate with: roomgen --sample --out roomgen/sample/room-v12.jsonl");
}

/// The generator resolves its branches' states with the room version's algorithm, so what it
/// emits after a merge passes the rules against the state a homeserver computes: a full replay
/// (state resolution at every merge, over whole states) rejects nothing.
#[test]
fn a_full_replay_of_a_forked_room_rejects_nothing() {
    for (v, seed, share) in [("11", 5, 1.0), ("11", 6, 0.05), ("12", 7, 0.05), ("5", 8, 1.0), ("1", 9, 0.5)] {
        let rv = RoomVersion::from_id(v).unwrap();
        let (events, summary) = generate_vec(&RoomConfig { power_share: share, ..config(v, seed, 700) }).unwrap();
        assert!(summary.merges >= 5);
        let pdus = check_room(&events, &rv);
        let mut room = roomserver_conformance::naive_state::NaiveRoom::new(rv);
        for p in pdus {
            room.ingest(p);
        }
        let rejected: Vec<&String> = room.outcome.iter().filter(|(_, o)| o.0).map(|(id, _)| id).collect();
        assert!(rejected.is_empty(), "v{v} seed {seed} share {share}: rejected {rejected:?}");
    }
}

/// `power_share` thins out power-level changes (drawn ones and the fork conflicts' alike) and
/// keeps the forks' conflicts on other keys.
#[test]
fn power_share_thins_out_power_level_changes() {
    let count = |share: f64| {
        let (events, summary) = generate_vec(&RoomConfig { power_share: share, ..config("11", 3, 1500) }).unwrap();
        let pls = events.iter().filter(|e| e["type"] == "m.room.power_levels").count();
        (pls, summary.merges)
    };
    let (all, merges) = count(1.0);
    let (none, merges_none) = count(0.0);
    let (some, _) = count(0.2);
    assert_eq!(none, 1, "only the creation sequence's power levels");
    assert!(all > 100 && some > 1 && some < all / 2, "{all} / {some} / {none}");
    assert_eq!(merges, merges_none);
    assert!(generate_vec(&RoomConfig { power_share: -0.1, ..RoomConfig::default() }).is_err());
    assert!(generate_vec(&RoomConfig { power_share: 1.5, ..RoomConfig::default() }).is_err());
}
