//! State resolution v2 (room versions 2-11) and v2.1 (room version 12, MSC4297): the
//! "Algorithm" of the room version 2 and 12 specifications, step by step.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::graph::AuthGraph;
use super::{key_of, EventStore};
use crate::auth::power_levels::{creators, PowerLevels};
use crate::auth::{auth_types_for_event, check_event_auth, StateMap};
use crate::error::Result;
use crate::event::Pdu;
use crate::room_version::RoomVersion;

/// Power events may take power away: power levels, join rules, and kicks and bans (a member
/// event setting leave or ban for someone else). The create event counts too, as in Synapse.
fn is_power_event(ev: &Pdu) -> bool {
    match (ev.event_type.as_str(), ev.state_key.as_deref()) {
        ("m.room.power_levels" | "m.room.join_rules" | "m.room.create", Some("")) => true,
        ("m.room.member", Some(target)) => matches!(ev.membership(), Some("leave" | "ban")) && target != ev.sender,
        _ => false,
    }
}

pub(super) fn resolve(
    rv: &RoomVersion,
    sets: &[StateMap<String>],
    store: &dyn EventStore,
    v2_1: bool,
    auth_difference: Option<&[String]>,
) -> Result<StateMap<String>> {
    // Unconflicted state map and conflicted state set: a key is unconflicted when every set
    // has it with the same event. Keys of the first set, then keys only later sets have.
    let mut unconflicted: StateMap<String> = StateMap::with_capacity(sets[0].len());
    let mut conflicted_ids: Vec<&str> = Vec::new();
    for (key, first) in &sets[0] {
        if sets[1..].iter().all(|s| s.get(key) == Some(first)) {
            unconflicted.insert(key.clone(), first.clone());
        } else {
            conflicted_ids.push(first);
            conflicted_ids.extend(sets[1..].iter().filter_map(|s| s.get(key)).map(String::as_str));
        }
    }
    for (i, set) in sets.iter().enumerate().skip(1) {
        for key in set.keys() {
            if !sets[0].contains_key(key) {
                // Absent from the first set, so conflicted: collect it once, from the first
                // later set that has the key.
                if sets[1..i].iter().all(|s| !s.contains_key(key)) {
                    conflicted_ids.extend(sets[i..].iter().filter_map(|s| s.get(key)).map(String::as_str));
                }
            }
        }
    }
    conflicted_ids.sort_unstable();
    conflicted_ids.dedup();
    if conflicted_ids.is_empty() {
        return Ok(unconflicted);
    }

    let roots: Vec<&str> = sets.iter().flat_map(|s| s.values().map(String::as_str)).collect();
    let g = AuthGraph::build(store, roots)?;
    let n = g.events.len();
    let node = |id: &str| g.index[id];

    // Full conflicted set: conflicted ∪ auth difference (∪ conflicted state subgraph in v2.1).
    let mut full = vec![false; n];
    let conflicted: Vec<usize> = conflicted_ids.iter().map(|id| node(id)).collect();
    for &c in &conflicted {
        full[c] = true;
    }
    if let Some(given) = auth_difference {
        // Computed by the caller over the full states (which these sets only excerpt).
        for id in given {
            let m = *g.index.get(id.as_str()).ok_or_else(|| crate::error::Error::not_found(format!("auth difference event {id} is not in the auth graph")))?;
            full[m] = true;
        }
    } else {
        let mut in_chains = vec![0usize; n];
        for set in sets {
            let starts: Vec<usize> = set.values().map(|id| node(id)).collect();
            for (m, seen) in g.reach(&starts, true).into_iter().enumerate() {
                in_chains[m] += seen as usize;
            }
        }
        for m in 0..n {
            if in_chains[m] > 0 && in_chains[m] < sets.len() {
                full[m] = true;
            }
        }
    }
    if v2_1 {
        // Events on auth paths between conflicted events: reachable from one, reaching one.
        let forward = g.reach(&conflicted, true);
        let mut reverse: Vec<Vec<usize>> = vec![Vec::new(); n];
        for m in (0..n).filter(|&m| forward[m]) {
            for &a in &g.auth[m] {
                reverse[a].push(m);
            }
        }
        let mut backward = vec![false; n];
        let mut todo = conflicted.clone();
        for &c in &conflicted {
            backward[c] = true;
        }
        while let Some(m) = todo.pop() {
            for &up in &reverse[m] {
                if !backward[up] {
                    backward[up] = true;
                    todo.push(up);
                }
            }
        }
        for m in 0..n {
            if forward[m] && backward[m] {
                full[m] = true;
            }
        }
    }

    // Step 1: power events of the full conflicted set, with their auth chains within the set,
    // in reverse topological power ordering.
    let power: Vec<usize> = (0..n).filter(|&m| full[m] && is_power_event(g.events[m])).collect();
    let power_closure = g.reach(&power, true);
    let in_x: Vec<bool> = (0..n).map(|m| power_closure[m] && full[m]).collect();
    let x_order = reverse_topological_power_order(rv, &g, &in_x);

    // Step 2: iterative auth checks from the empty state (v2.1) or the unconflicted state (v2).
    let mut partial: StateMap<String> = if v2_1 { StateMap::new() } else { unconflicted.clone() };
    iterative_auth_checks(rv, &g, store, &x_order, &mut partial);

    // Step 3: the rest, in mainline order of the resolved power levels.
    let rest: Vec<usize> = (0..n).filter(|&m| full[m] && !in_x[m]).collect();
    let rest_order = mainline_order(&g, &partial, rest);

    // Step 4: iterative auth checks on those.
    iterative_auth_checks(rv, &g, store, &rest_order, &mut partial);

    // Step 5: the unconflicted state wins.
    partial.extend(unconflicted);
    Ok(partial)
}

/// The power level of an event's sender, from the event's own auth events (from room version 12
/// the create event is not among them: it is found by the room ID, and is in the graph because
/// every state set holds it).
fn sender_power(rv: &RoomVersion, g: &AuthGraph, m: usize) -> i64 {
    let ev = g.events[m];
    let create: Option<&Pdu> = match g.create_auth(m) {
        Some(c) => Some(g.events[c]),
        None if rv.room_id_from_create_event => {
            g.index.get(format!("${}", ev.room_id.get(1..).unwrap_or("")).as_str()).map(|&c| g.events[c])
        }
        None => None,
    };
    let pl = g.power_levels_auth(m).map(|p| &g.events[p].content);
    let creators = create.map(|c| creators(c, rv)).unwrap_or_default();
    PowerLevels::from_content(rv, pl, creators).user(&ev.sender)
}

/// Kahn's algorithm over the auth edges inside `members`, taking at each step the smallest
/// ready event by (higher sender power, earlier origin_server_ts, smaller event ID).
fn reverse_topological_power_order(rv: &RoomVersion, g: &AuthGraph, members: &[bool]) -> Vec<usize> {
    let n = g.events.len();
    let mut pending = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for m in (0..n).filter(|&m| members[m]) {
        for &a in &g.auth[m] {
            if members[a] {
                pending[m] += 1;
                dependents[a].push(m);
            }
        }
    }
    let key = |m: usize| {
        let ev = g.events[m];
        (Reverse(sender_power(rv, g, m)), ev.origin_server_ts, ev.event_id.as_str())
    };
    let mut ready: BinaryHeap<Reverse<((Reverse<i64>, i64, &str), usize)>> =
        (0..n).filter(|&m| members[m] && pending[m] == 0).map(|m| Reverse((key(m), m))).collect();
    let mut out = Vec::new();
    while let Some(Reverse((_, m))) = ready.pop() {
        out.push(m);
        for &d in &dependents[m] {
            pending[d] -= 1;
            if pending[d] == 0 {
                ready.push(Reverse((key(d), d)));
            }
        }
    }
    out
}

/// Applies `order` to `state`, keeping each event that passes the auth rules against its auth
/// events overlaid with the state so far (the state wins, the auth events fill the gaps).
fn iterative_auth_checks(rv: &RoomVersion, g: &AuthGraph, store: &dyn EventStore, order: &[usize], state: &mut StateMap<String>) {
    for &m in order {
        let ev = g.events[m];
        let mut auth: StateMap<&Pdu> = StateMap::new();
        for &a in &g.auth[m] {
            let ae = g.events[a];
            auth.insert(key_of(ae), ae);
        }
        if rv.room_id_from_create_event {
            if let Some(create) = store.event(&format!("${}", ev.room_id.get(1..).unwrap_or(""))) {
                auth.insert(("m.room.create".into(), String::new()), create);
            }
        }
        for key in auth_types_for_event(rv, ev) {
            if let Some(id) = state.get(&key) {
                if let Some(current) = store.event(id) {
                    auth.insert(key, current);
                }
            }
        }
        if check_event_auth(rv, ev, &auth).is_ok() {
            state.insert(key_of(ev), ev.event_id.clone());
        }
    }
}

/// Sorts `events` by mainline position relative to the power levels event in `state` (older
/// bases first), then origin_server_ts, then event ID.
fn mainline_order(g: &AuthGraph, state: &StateMap<String>, mut events: Vec<usize>) -> Vec<usize> {
    let mut mainline: HashMap<usize, usize> = HashMap::new();
    let pl_key = ("m.room.power_levels".to_owned(), String::new());
    let mut cursor = state.get(&pl_key).and_then(|id| g.index.get(id.as_str()).copied());
    let mut i = 0;
    while let Some(p) = cursor {
        mainline.insert(p, i);
        i += 1;
        cursor = g.power_levels_auth(p);
    }
    let mut position_cache: HashMap<usize, usize> = HashMap::new();
    let mut position = |m: usize| -> usize {
        let mut walked = Vec::new();
        let mut cursor = g.power_levels_auth(m);
        let found = loop {
            match cursor {
                None => break usize::MAX,
                Some(p) => {
                    if let Some(&pos) = mainline.get(&p) {
                        break pos;
                    }
                    if let Some(&pos) = position_cache.get(&p) {
                        break pos;
                    }
                    walked.push(p);
                    cursor = g.power_levels_auth(p);
                }
            }
        };
        for w in walked {
            position_cache.insert(w, found);
        }
        found
    };
    let mut keyed: Vec<(Reverse<usize>, i64, &str, usize)> = events
        .drain(..)
        .map(|m| (Reverse(position(m)), g.events[m].origin_server_ts, g.events[m].event_id.as_str(), m))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, _, _, m)| m).collect()
}
