//! State resolution tests: the classic cases of Synapse's state resolution v2 test suite
//! (tests/state/test_v2.py), rebuilt here in room version 2 so that event IDs can be named, and
//! the v2.1 and v1 differences.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::auth::auth_types_for_event;
use crate::hashes::with_content_hash;

const ALICE: &str = "@alice:example.com";
const BOB: &str = "@bob:example.com";
const CHARLIE: &str = "@charlie:example.com";
const EVELYN: &str = "@evelyn:example.com";
const ZARA: &str = "@zara:example.com";

fn id(name: &str) -> String {
    format!("${name}:example.com")
}

/// (name, sender, type, state_key, content)
type Spec = (&'static str, &'static str, &'static str, Option<&'static str>, Value);

fn initial_events() -> Vec<Spec> {
    vec![
        ("CREATE", ALICE, "m.room.create", Some(""), json!({"creator": ALICE})),
        ("IMA", ALICE, "m.room.member", Some(ALICE), json!({"membership": "join"})),
        ("IPOWER", ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100}})),
        ("IJR", ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "public"})),
        ("IMB", BOB, "m.room.member", Some(BOB), json!({"membership": "join"})),
        ("IMC", CHARLIE, "m.room.member", Some(CHARLIE), json!({"membership": "join"})),
        ("IMZ", ZARA, "m.room.member", Some(ZARA), json!({"membership": "join"})),
        ("START", ZARA, "m.room.message", None, json!({})),
        ("END", ZARA, "m.room.message", None, json!({})),
    ]
}

/// Builds the DAG (edges are chains written latest first, as in Synapse's tests), computes the
/// state before every event (resolving at merges) with `rv`, and returns the state at END.
fn run(version: &str, events: Vec<Spec>, edges: Vec<Vec<&str>>) -> StateMap<String> {
    let rv = RoomVersion::from_id(version).unwrap();
    let mut all = initial_events();
    all.extend(events);
    let specs: HashMap<&str, Spec> = all.iter().map(|s| (s.0, s.clone())).collect();
    let order_ts: HashMap<&str, i64> = all.iter().enumerate().map(|(i, s)| (s.0, i as i64)).collect();

    let mut prevs: HashMap<&str, Vec<&str>> = HashMap::new();
    let initial_chain = ["START", "IMZ", "IMC", "IMB", "IJR", "IPOWER", "IMA", "CREATE"];
    for chain in std::iter::once(initial_chain.to_vec()).chain(edges) {
        for w in chain.windows(2) {
            let entry = prevs.entry(w[0]).or_default();
            if !entry.contains(&w[1]) {
                entry.push(w[1]);
            }
        }
    }
    // Topological order: repeatedly take events whose prevs are done, by creation order.
    let mut done: Vec<&str> = Vec::new();
    let mut names: Vec<&str> = all.iter().map(|s| s.0).collect();
    names.sort_by_key(|n| order_ts[n]);
    while done.len() < names.len() {
        let next = names
            .iter()
            .find(|n| !done.contains(n) && prevs.get(*n).map_or(true, |ps| ps.iter().all(|p| done.contains(p))))
            .copied()
            .expect("edges form a DAG");
        done.push(next);
    }

    let mut store: HashMap<String, Pdu> = HashMap::new();
    let mut after: HashMap<&str, StateMap<String>> = HashMap::new();
    let mut depth: HashMap<&str, i64> = HashMap::new();
    for name in done {
        let (_, sender, event_type, state_key, content) = specs[name].clone();
        let prev_names = prevs.get(name).cloned().unwrap_or_default();
        let sets: Vec<StateMap<String>> = prev_names.iter().map(|p| after[p].clone()).collect();
        let d = prev_names.iter().map(|p| depth[p]).max().unwrap_or(0) + 1;
        depth.insert(name, d);
        let before = resolve(&rv, &sets, &store).unwrap();
        let mut ev = json!({"event_id": id(name), "room_id": "!room:example.com", "sender": sender,
            "type": event_type, "content": content, "depth": d, "origin_server_ts": order_ts[name],
            "prev_events": prev_names.iter().map(|p| json!([id(p), {"sha256": "x"}])).collect::<Vec<_>>(),
            "auth_events": [], "hashes": {}});
        if let Some(k) = state_key {
            ev["state_key"] = json!(k);
        }
        let draft = Pdu::from_json(&with_content_hash(ev.clone()).unwrap(), &rv).unwrap();
        let auth: Vec<Value> = auth_types_for_event(&rv, &draft)
            .into_iter()
            .filter_map(|k| before.get(&k))
            .map(|a| json!([a, {"sha256": "x"}]))
            .collect();
        ev["auth_events"] = json!(auth);
        let pdu = Pdu::from_json(&with_content_hash(ev).unwrap(), &rv).unwrap();
        let mut state = before;
        if let Some(k) = &pdu.state_key {
            state.insert((pdu.event_type.clone(), k.clone()), pdu.event_id.clone());
        }
        after.insert(name, state);
        store.insert(pdu.event_id.clone(), pdu);
    }
    // END is a message: the state after it is the state before it.
    after["END"].clone()
}

fn assert_state_has(state: &StateMap<String>, expected: &[&str], absent: &[&str]) {
    let ids: Vec<&String> = state.values().collect();
    for e in expected {
        assert!(ids.contains(&&id(e)), "{e} should be in the resolved state: {state:?}");
    }
    for a in absent {
        assert!(!ids.contains(&&id(a)), "{a} should not be in the resolved state: {state:?}");
    }
}

#[test]
fn ban_vs_power_levels() {
    let state = run("2", vec![
        ("PA", ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
        ("MA", ALICE, "m.room.member", Some(ALICE), json!({"membership": "join"})),
        ("MB", ALICE, "m.room.member", Some(BOB), json!({"membership": "ban"})),
        ("PB", BOB, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
    ], vec![vec!["END", "MB", "MA", "PA", "START"], vec!["END", "PB", "PA"]]);
    assert_state_has(&state, &["PA", "MA", "MB"], &["PB"]);
}

#[test]
fn join_rule_evasion() {
    let state = run("2", vec![
        ("JR", ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "private"})),
        ("ME", EVELYN, "m.room.member", Some(EVELYN), json!({"membership": "join"})),
    ], vec![vec!["END", "JR", "START"], vec!["END", "ME", "START"]]);
    assert_state_has(&state, &["JR"], &["ME"]);
}

#[test]
fn offtopic_power_levels() {
    let state = run("2", vec![
        ("PA", ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
        ("PB", BOB, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50, CHARLIE: 50}})),
        ("PC", CHARLIE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50, CHARLIE: 0}})),
    ], vec![vec!["END", "PC", "PB", "PA", "START"], vec!["END", "PA"]]);
    assert_state_has(&state, &["PC"], &["PA", "PB"]);
}

/// Alice sets topics and power levels (demoting Bob in PA2) while Bob, on another branch,
/// re-asserts his level (PB) and sets a topic (T3).
fn topic_war() -> Vec<Spec> {
    vec![
        ("T1", ALICE, "m.room.topic", Some(""), json!({})),
        ("PA1", ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
        ("T2", ALICE, "m.room.topic", Some(""), json!({})),
        ("PA2", ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 0}})),
        ("PB", BOB, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
        ("T3", BOB, "m.room.topic", Some(""), json!({})),
    ]
}

#[test]
fn topic_basic() {
    let state = run("2", topic_war(), vec![vec!["END", "PA2", "T2", "PA1", "T1", "START"], vec!["END", "T3", "PB", "PA1"]]);
    assert_state_has(&state, &["PA2", "T2"], &["PB", "T3"]);
}

#[test]
fn topic_reset_after_a_ban() {
    let state = run("2", vec![
        ("T1", ALICE, "m.room.topic", Some(""), json!({})),
        ("PA", ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
        ("T2", BOB, "m.room.topic", Some(""), json!({})),
        ("MB", ALICE, "m.room.member", Some(BOB), json!({"membership": "ban"})),
    ], vec![vec!["END", "MB", "T2", "PA", "T1", "START"], vec!["END", "T1"]]);
    assert_state_has(&state, &["T1", "MB", "PA"], &["T2"]);
}

#[test]
fn topic_through_a_message_merge() {
    let mut events = topic_war();
    events.push(("MZ1", ZARA, "m.room.message", None, json!({})));
    events.push(("T4", ALICE, "m.room.topic", Some(""), json!({})));
    let state = run("2", events, vec![vec!["END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"], vec!["END", "MZ1", "T3", "PB", "PA1"]]);
    assert_state_has(&state, &["T4", "PA2"], &["T3", "PB"]);
}

#[test]
fn mainline_sort() {
    let state = run("2", vec![
        ("T1", ALICE, "m.room.topic", Some(""), json!({})),
        ("PA1", ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
        ("T2", ALICE, "m.room.topic", Some(""), json!({})),
        ("PA2", ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}, "events": {"m.room.power_levels": 100}})),
        ("PB", BOB, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
        ("T3", BOB, "m.room.topic", Some(""), json!({})),
        ("T4", ALICE, "m.room.topic", Some(""), json!({})),
    ], vec![vec!["END", "T3", "PA2", "T2", "PA1", "T1", "START"], vec!["END", "T4", "PB", "PA1"]]);
    assert_state_has(&state, &["T3", "PA2"], &["T4"]);
}

#[test]
fn unconflicted_state_needs_no_events() {
    let mut a: StateMap<String> = StateMap::new();
    a.insert(("m.room.topic".into(), String::new()), "$t".into());
    let store: HashMap<String, Pdu> = HashMap::new();
    let rv = RoomVersion::from_id("10").unwrap();
    assert!(resolve(&rv, &[], &store).unwrap().is_empty());
    assert_eq!(resolve(&rv, &[a.clone()], &store).unwrap(), a);
    // Two identical sets resolve without touching the (empty) store only if nothing conflicts;
    // the sets' events themselves must still be known.
    assert_eq!(resolve(&rv, &[a.clone(), a.clone()], &store).unwrap_err().kind, crate::ErrorKind::NotFound);
}

#[test]
fn missing_events_and_cycles_are_errors() {
    let rv = RoomVersion::from_id("2").unwrap();
    let mk = |name: &str, auth: &[&str], key: &str| {
        Pdu::from_json(&with_content_hash(json!({"event_id": id(name), "room_id": "!r:example.com", "sender": ALICE,
            "type": "m.room.topic", "state_key": key, "content": {}, "depth": 1, "origin_server_ts": 1, "prev_events": [],
            "auth_events": auth.iter().map(|a| json!([id(a), {"sha256": "x"}])).collect::<Vec<_>>(), "hashes": {}})).unwrap(), &rv).unwrap()
    };
    let mut store: HashMap<String, Pdu> = HashMap::new();
    store.insert(id("A"), mk("A", &["B"], ""));
    store.insert(id("B"), mk("B", &["A"], "x"));
    store.insert(id("C"), mk("C", &["GONE"], ""));
    let set = |name: &str| -> StateMap<String> { [(("m.room.topic".to_owned(), String::new()), id(name))].into_iter().collect() };
    let e = resolve(&rv, &[set("A"), set("C")], &store).unwrap_err();
    assert!(matches!(e.kind, crate::ErrorKind::NotFound | crate::ErrorKind::InvalidParameter), "{e}");
    store.insert(id("D"), mk("D", &[], ""));
    let cycle = resolve(&rv, &[set("A"), set("D")], &store).unwrap_err();
    assert_eq!(cycle.kind, crate::ErrorKind::InvalidParameter, "{cycle}");
    assert!(cycle.message.contains("cycle"));
    let missing = resolve(&rv, &[set("C"), set("D")], &store).unwrap_err();
    assert_eq!(missing.kind, crate::ErrorKind::NotFound);
    assert!(missing.message.contains("GONE"));
    let mislabelled: StateMap<String> = [(("m.room.name".to_owned(), String::new()), id("D"))].into_iter().collect();
    assert_eq!(resolve(&rv, &[mislabelled, set("D")], &store).unwrap_err().kind, crate::ErrorKind::InvalidParameter);
}

/// Room version 1's algorithm on the ban race. It checks conflicted events only against the
/// unconflicted state (plus what it has resolved in earlier phases), and here both Bob's and
/// Alice's memberships are conflicted (IMB vs MB, IMA vs MA), so both are absent: Bob's PB fails
/// (Bob not joined) and PA keeps the power levels; in the member phase Alice's ban of Bob fails
/// too (Alice not joined as far as it can see), so Bob stays joined, and Alice's MA passes.
/// Losing the ban is the weakness that state resolution v2 fixes (compare `ban_vs_power_levels`).
#[test]
fn v1_resolves_the_ban_race_by_its_own_rules() {
    let state = run("1", vec![
        ("PA", ALICE, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
        ("MA", ALICE, "m.room.member", Some(ALICE), json!({"membership": "join"})),
        ("MB", ALICE, "m.room.member", Some(BOB), json!({"membership": "ban"})),
        ("PB", BOB, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}})),
    ], vec![vec!["END", "MB", "MA", "PA", "START"], vec!["END", "PB", "PA"]]);
    assert_state_has(&state, &["PA", "IMB", "MA"], &["MB", "PB"]);
}
