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

/// An incremental index of auth chains (a chain cover, as Synapse's database keeps one): each
/// event gets a position `(chain, sequence)` when it is inserted, computed from its auth events
/// alone, plus links to the positions of auth events on other chains. An auth chain is then a
/// set of chain prefixes, found by following links, never by walking the events one by one.
///
/// The storage layer persists [`ChainPosition`]s and [`ChainLink`]s as rows; this in-memory form
/// is what state resolution and tests use, and what defines the rows.
#[derive(Default, Debug, Clone)]
pub struct AuthChainIndex {
    positions: HashMap<String, ChainPosition>,
    /// Per chain: its events in sequence order (sequence 1 is index 0).
    chains: Vec<Vec<String>>,
    /// Per chain: links from it, sorted by origin sequence.
    links: Vec<Vec<ChainLink>>,
}

/// Where an event sits: chain number and 1-based sequence along it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainPosition {
    pub chain: usize,
    pub sequence: usize,
}

/// "The event at (origin chain, origin sequence) has in its auth chain the event at (target
/// chain, target sequence)", and so every event before each of them on their chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainLink {
    pub origin_chain: usize,
    pub origin_sequence: usize,
    pub target_chain: usize,
    pub target_sequence: usize,
}

impl AuthChainIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event whose auth events are already in the index (insert in topological order).
    /// An event already present is left as it is.
    pub fn insert(&mut self, event_id: &str, auth_event_ids: &[&str]) -> Result<ChainPosition> {
        if let Some(p) = self.positions.get(event_id) {
            return Ok(*p);
        }
        let mut auth = Vec::with_capacity(auth_event_ids.len());
        for a in auth_event_ids {
            let p = self.positions.get(*a).copied().ok_or_else(|| {
                Error::not_found(format!("auth event {a} of {event_id} is not in the auth chain index"))
            })?;
            auth.push(p);
        }
        // Extend the chain of an auth event that is the newest on its chain, else start a chain.
        let extend = auth.iter().copied().find(|p| self.chains[p.chain].len() == p.sequence);
        let position = match extend {
            Some(p) => {
                self.chains[p.chain].push(event_id.to_owned());
                ChainPosition { chain: p.chain, sequence: p.sequence + 1 }
            }
            None => {
                self.chains.push(vec![event_id.to_owned()]);
                self.links.push(Vec::new());
                ChainPosition { chain: self.chains.len() - 1, sequence: 1 }
            }
        };
        // Links to the auth events on other chains that the new position does not reach yet.
        let already = self.reach(&[position_before(position)]);
        let mut new_links: Vec<ChainLink> = Vec::new();
        for p in auth {
            if p.chain == position.chain {
                continue;
            }
            if already.get(&p.chain).is_some_and(|&s| s >= p.sequence) {
                continue;
            }
            new_links.push(ChainLink { origin_chain: position.chain, origin_sequence: position.sequence, target_chain: p.chain, target_sequence: p.sequence });
        }
        self.links[position.chain].extend(new_links);
        self.positions.insert(event_id.to_owned(), position);
        Ok(position)
    }

    pub fn position(&self, event_id: &str) -> Option<ChainPosition> {
        self.positions.get(event_id).copied()
    }

    /// For each chain, the highest sequence reachable from `starts` (a start reaches itself).
    fn reach(&self, starts: &[Option<ChainPosition>]) -> HashMap<usize, usize> {
        let mut best: HashMap<usize, usize> = HashMap::new();
        // Per chain, the sequence up to which its links have been followed.
        let mut followed: HashMap<usize, usize> = HashMap::new();
        let mut todo: Vec<ChainPosition> = Vec::new();
        for p in starts.iter().flatten() {
            if best.get(&p.chain).map_or(true, |&s| s < p.sequence) {
                best.insert(p.chain, p.sequence);
                todo.push(*p);
            }
        }
        while let Some(p) = todo.pop() {
            let done = followed.get(&p.chain).copied().unwrap_or(0);
            if p.sequence <= done {
                continue;
            }
            followed.insert(p.chain, p.sequence);
            for link in &self.links[p.chain] {
                if link.origin_sequence <= done || link.origin_sequence > p.sequence {
                    continue;
                }
                if best.get(&link.target_chain).map_or(true, |&s| s < link.target_sequence) {
                    best.insert(link.target_chain, link.target_sequence);
                    todo.push(ChainPosition { chain: link.target_chain, sequence: link.target_sequence });
                }
            }
        }
        best
    }

    fn positions_of(&self, ids: &[&str]) -> Result<Vec<Option<ChainPosition>>> {
        ids.iter()
            .map(|id| self.position(id).map(Some).ok_or_else(|| Error::not_found(format!("event {id} is not in the auth chain index"))))
            .collect()
    }

    /// The auth chain of `event_ids` (the events reachable through auth events, not the events
    /// themselves unless reachable from another of them), as [`auth_chain`] computes it.
    pub fn auth_chain(&self, event_ids: &[&str]) -> Result<HashSet<String>> {
        // Start from what each event points at: its predecessor on its chain and its own links.
        let mut seeds: Vec<Option<ChainPosition>> = Vec::new();
        for p in self.positions_of(event_ids)?.into_iter().flatten() {
            seeds.push(position_before(p));
            seeds.extend(
                self.links[p.chain]
                    .iter()
                    .filter(|l| l.origin_sequence == p.sequence)
                    .map(|l| Some(ChainPosition { chain: l.target_chain, sequence: l.target_sequence })),
            );
        }
        let mut out = HashSet::new();
        for (chain, upto) in self.reach(&seeds) {
            out.extend(self.chains[chain][..upto].iter().cloned());
        }
        Ok(out)
    }

    /// The auth chain difference of state sets with each set's events included, as
    /// [`auth_chain_difference`] computes it: per chain, the sequences between the lowest and
    /// the highest reach of the sets.
    pub fn auth_chain_difference(&self, state_sets: &[Vec<&str>]) -> Result<HashSet<String>> {
        let reaches: Vec<HashMap<usize, usize>> =
            state_sets.iter().map(|set| self.positions_of(set).map(|p| self.reach(&p))).collect::<Result<_>>()?;
        let mut chains: Vec<usize> = reaches.iter().flat_map(|r| r.keys().copied()).collect();
        chains.sort_unstable();
        chains.dedup();
        let mut out = HashSet::new();
        for chain in chains {
            let levels: Vec<usize> = reaches.iter().map(|r| r.get(&chain).copied().unwrap_or(0)).collect();
            let (low, high) = (levels.iter().copied().min().unwrap_or(0), levels.iter().copied().max().unwrap_or(0));
            out.extend(self.chains[chain][low..high].iter().cloned());
        }
        Ok(out)
    }

    /// The rows a database keeps: each event's position, and the links.
    pub fn rows(&self) -> (Vec<(&str, ChainPosition)>, Vec<ChainLink>) {
        let positions = self.positions.iter().map(|(id, p)| (id.as_str(), *p)).collect();
        let links = self.links.iter().flatten().copied().collect();
        (positions, links)
    }
}

/// The position just before `p` on its chain (what an event reaches through its own chain).
fn position_before(p: ChainPosition) -> Option<ChainPosition> {
    (p.sequence > 1).then(|| ChainPosition { chain: p.chain, sequence: p.sequence - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Pdu;
    use crate::room_version::RoomVersion;
    use serde_json::json;

    /// A random DAG of `n` events, each with up to 4 auth events among the earlier ones.
    fn random_dag(n: usize, seed: u64) -> Vec<(String, Vec<String>)> {
        let mut next = crate::test_rng::below(seed);
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

    #[test]
    fn the_index_agrees_with_the_walk_on_random_dags() {
        for seed in 1..40u64 {
            let dag = random_dag(300, seed);
            let store = store_of(&dag);
            let mut index = AuthChainIndex::new();
            for (id, auth) in &dag {
                let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
                index.insert(id, &auth).unwrap();
            }
            for probe in [0usize, 1, 17, 150, 299] {
                let id = dag[probe].0.as_str();
                assert_eq!(index.auth_chain(&[id]).unwrap(), auth_chain(&[id], &store).unwrap(), "seed {seed} event {probe}");
            }
            let set = |ix: &[usize]| ix.iter().map(|&i| dag[i].0.as_str()).collect::<Vec<&str>>();
            let sets = vec![set(&[10, 120, 250, 299]), set(&[10, 130, 260]), set(&[5, 299])];
            assert_eq!(index.auth_chain_difference(&sets).unwrap(), auth_chain_difference(&sets, &store).unwrap(), "seed {seed}");
            assert_eq!(index.auth_chain(&set(&[40, 41])).unwrap(), auth_chain(&set(&[40, 41]), &store).unwrap());
        }
    }

    #[test]
    fn chains_stay_few_and_links_sparse_on_a_long_line() {
        let mut index = AuthChainIndex::new();
        index.insert("$0", &[]).unwrap();
        for i in 1..1000 {
            let (prev, create) = (format!("${}", i - 1), "$0".to_owned());
            index.insert(&format!("${i}"), &[&prev, &create]).unwrap();
        }
        let (positions, links) = index.rows();
        assert_eq!(positions.len(), 1000);
        assert_eq!(index.position("$999").unwrap(), ChainPosition { chain: 0, sequence: 1000 });
        assert!(links.is_empty(), "a single chain needs no links: {}", links.len());
        assert_eq!(index.auth_chain(&["$999"]).unwrap().len(), 999);
    }

    #[test]
    fn unknown_events_are_errors() {
        let mut index = AuthChainIndex::new();
        assert_eq!(index.insert("$a", &["$missing"]).unwrap_err().kind, crate::ErrorKind::NotFound);
        assert_eq!(index.auth_chain(&["$nope"]).unwrap_err().kind, crate::ErrorKind::NotFound);
    }
}
