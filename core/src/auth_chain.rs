//! Auth chains: the events reachable from an event by following `auth_events`.
//!
//! These functions walk an in-memory event map, each event once per call, so a chain is never
//! re-walked within one computation; the storage layer keeps an index of chains so that a
//! database never needs this walk over the whole room (see the state storage design).

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::state_res::EventStore;

/// The auth chain of `event_ids`: every event reachable through `auth_events`, excluding the
/// starting events unless another of them reaches them.
pub fn auth_chain(event_ids: &[&str], store: &dyn EventStore) -> Result<HashSet<String>> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut todo: Vec<&str> = Vec::new();
    for id in event_ids {
        let ev = store.event(id).ok_or_else(|| Error::not_found(format!("event {id} is not known")))?;
        todo.extend(ev.auth_events.iter().map(String::as_str));
    }
    while let Some(id) = todo.pop() {
        if seen.contains(id) {
            continue;
        }
        let ev = store.event(id).ok_or_else(|| Error::not_found(format!("auth event {id} is not known")))?;
        seen.insert(id.to_owned());
        todo.extend(ev.auth_events.iter().map(String::as_str));
    }
    Ok(seen)
}

/// The auth chain difference of state sets: the events in some but not all of the sets' full
/// auth chains. A set's full auth chain here includes the set's own events (as Synapse computes
/// it); the events that differ between the sets are in the conflicted set either way.
pub fn auth_chain_difference(state_sets: &[Vec<&str>], store: &dyn EventStore) -> Result<HashSet<String>> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for set in state_sets {
        let mut chain = auth_chain(set, store)?;
        chain.extend(set.iter().map(|s| (*s).to_owned()));
        for id in chain {
            *count.entry(id).or_default() += 1;
        }
    }
    Ok(count.into_iter().filter(|(_, n)| *n < state_sets.len()).map(|(id, _)| id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Pdu;
    use crate::room_version::RoomVersion;
    use serde_json::json;

    /// A random DAG of `n` events, each with up to 4 auth events among the earlier ones.
    fn random_dag(n: usize, seed: u64) -> Vec<(String, Vec<String>)> {
        let mut rng = crate::prng::Rng::new(seed);
        let mut next = |m| rng.below(m);
        (0..n)
            .map(|i| {
                let mut auth: Vec<String> = if i == 0 { vec![] } else { (0..1 + next(4)).map(|_| format!("$e{}", next(i))).collect() };
                auth.sort();
                auth.dedup();
                (format!("$e{i}"), auth)
            })
            .collect()
    }

    fn store_of(dag: &[(String, Vec<String>)]) -> HashMap<String, Pdu> {
        let rv = RoomVersion::from_id("2").unwrap();
        dag.iter()
            .map(|(id, auth)| {
                let ev = json!({"event_id": id, "room_id": "!r:x", "sender": "@a:x", "type": "m.room.member", "state_key": id,
                    "content": {"membership": "join"}, "depth": 1, "origin_server_ts": 1, "prev_events": [],
                    "auth_events": auth.iter().map(|a| json!([a, {"sha256": "x"}])).collect::<Vec<_>>(), "hashes": {"sha256": "x"}});
                (id.clone(), Pdu::from_json(&ev, &rv).unwrap())
            })
            .collect()
    }

    /// Every event's auth chain computed the other way round: in insertion order, each event's
    /// chain is its auth events and their (already known) chains.
    fn chains_by_insertion(dag: &[(String, Vec<String>)]) -> HashMap<String, HashSet<String>> {
        let mut chains: HashMap<String, HashSet<String>> = HashMap::new();
        for (id, auth) in dag {
            let mut chain: HashSet<String> = auth.iter().cloned().collect();
            for a in auth {
                chain.extend(chains[a].iter().cloned());
            }
            chains.insert(id.clone(), chain);
        }
        chains
    }

    #[test]
    fn the_walk_agrees_with_chains_built_by_insertion_on_random_dags() {
        for seed in 1..40u64 {
            let dag = random_dag(300, seed);
            let store = store_of(&dag);
            let chains = chains_by_insertion(&dag);
            for probe in [0usize, 1, 17, 150, 299] {
                let id = dag[probe].0.as_str();
                assert_eq!(auth_chain(&[id], &store).unwrap(), chains[id], "seed {seed} event {probe}");
            }
            let set = |ix: &[usize]| ix.iter().map(|&i| dag[i].0.as_str()).collect::<Vec<&str>>();
            let union_of = |ids: &[&str]| ids.iter().flat_map(|id| chains[*id].iter().cloned()).collect::<HashSet<String>>();
            assert_eq!(auth_chain(&set(&[40, 41]), &store).unwrap(), union_of(&set(&[40, 41])), "seed {seed}");

            // Full chains include the sets' own events; the difference is their union minus their
            // intersection.
            let sets = vec![set(&[10, 120, 250, 299]), set(&[10, 130, 260]), set(&[5, 299])];
            let full: Vec<HashSet<String>> = sets
                .iter()
                .map(|s| union_of(s).into_iter().chain(s.iter().map(|id| (*id).to_owned())).collect())
                .collect();
            let everywhere: HashSet<String> = full[0].iter().filter(|id| full.iter().all(|f| f.contains(*id))).cloned().collect();
            let somewhere: HashSet<String> = full.iter().flatten().cloned().collect();
            let want: HashSet<String> = somewhere.difference(&everywhere).cloned().collect();
            assert_eq!(auth_chain_difference(&sets, &store).unwrap(), want, "seed {seed}");
        }
    }

    #[test]
    fn a_long_line_has_every_earlier_event_in_its_chain() {
        // Each event cites the one before it and the first, as events cite the create event.
        let dag: Vec<(String, Vec<String>)> = (0..1000)
            .map(|i| {
                let mut auth: Vec<String> = if i == 0 { vec![] } else { vec![format!("${}", i - 1), "$0".to_owned()] };
                auth.dedup();
                (format!("${i}"), auth)
            })
            .collect();
        let store = store_of(&dag);
        assert_eq!(auth_chain(&["$999"], &store).unwrap().len(), 999);
        assert!(auth_chain(&["$0"], &store).unwrap().is_empty());
        assert_eq!(auth_chain_difference(&[vec!["$999"], vec!["$500"]], &store).unwrap().len(), 499);
    }

    #[test]
    fn unknown_events_are_errors() {
        let store = store_of(&[("$a".to_owned(), vec!["$missing".to_owned()])]);
        assert_eq!(auth_chain(&["$nope"], &store).unwrap_err().kind, crate::ErrorKind::NotFound);
        assert_eq!(auth_chain(&["$a"], &store).unwrap_err().kind, crate::ErrorKind::NotFound);
        assert_eq!(auth_chain_difference(&[vec!["$a"]], &store).unwrap_err().kind, crate::ErrorKind::NotFound);
    }
}
