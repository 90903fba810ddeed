//! Walks over the room DAG (`prev_events` edges) for federation history requests: `/backfill`,
//! MSC4000 forwards fill and `/get_missing_events`.
//!
//! These in-memory walks are the reference for the SQL functions: the database implementation
//! must return exactly what these return for the same events.
//!
//! # Ordering rule
//!
//! Every walk is a priority queue over the events discovered so far. The spec leaves the order
//! across divergent branches open ("DFS? BFS?"); like Synapse we go by depth, so that the branches
//! are walked side by side. Ties on depth are broken by event ID, compared byte-wise (Rust's
//! `str` order, i.e. PostgreSQL `COLLATE "C"`), in the same direction as depth:
//!
//! * backwards (backfill, get_missing_events): highest `(depth, event_id)` first;
//! * forwards (forwards fill): lowest `(depth, event_id)` first.
//!
//! Synapse breaks depth ties by its local `stream_ordering`, which is not part of the event; the
//! event ID is the deterministic key every server and the database share.
//!
//! When depths are consistent (every event deeper than each of its `prev_events`), a walk's
//! output is simply the reachable set sorted by that key and cut at `limit`. With inconsistent
//! depths (they are only claims by the sending server) the queue order defines the result: an
//! event is only a candidate once one of its neighbours on the walk has been taken.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

mod batched;
pub use batched::{BatchedWalk, DagSource, Direction, NeighbourSource, WalkNode};

/// What the walks need of an event. Events missing from the map are unknown and never walked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagEvent {
    pub event_id: String,
    pub depth: i64,
    pub prev_events: Vec<String>,
}

impl DagEvent {
    pub fn new(event_id: &str, depth: i64, prev_events: &[&str]) -> DagEvent {
        DagEvent {
            event_id: event_id.to_owned(),
            depth,
            prev_events: prev_events.iter().map(|p| (*p).to_owned()).collect(),
        }
    }
}

/// The queue key: derived `Ord` compares depth first, then event ID byte-wise.
type Key<'a> = (i64, &'a str);

fn key(ev: &DagEvent) -> Key<'_> {
    (ev.depth, ev.event_id.as_str())
}

/// `/backfill`: the events in `v` and the events preceding them via `prev_events`, at most
/// `limit` in total, newest first.
///
/// The known events of `v` (unknown ones are skipped, duplicates count once) seed a max-queue
/// on `(depth, event_id)`. Repeatedly the highest event is popped and emitted, and its known
/// `prev_events` not yet queued are pushed, until `limit` events are emitted or the queue is
/// empty. The `v` events are emitted by the same rule, so one that is shallower than another's
/// ancestors comes after them (and may be cut by `limit`).
pub fn backfill(dag: &HashMap<String, DagEvent>, v: &[&str], limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut queued: HashSet<&str> = HashSet::new();
    let mut heap: BinaryHeap<Key> = BinaryHeap::new();
    for ev in v.iter().filter_map(|id| dag.get(*id)) {
        if queued.insert(&ev.event_id) {
            heap.push(key(ev));
        }
    }
    while out.len() < limit {
        let Some((_, id)) = heap.pop() else { break };
        out.push(id.to_owned());
        for prev in dag[id].prev_events.iter().filter_map(|p| dag.get(p)) {
            if queued.insert(&prev.event_id) {
                heap.push(key(prev));
            }
        }
    }
    out
}

/// MSC4000 forwards fill: the events in `from` and their successors (events naming them in
/// `prev_events`, transitively), at most `limit` in total, oldest first.
///
/// The mirror image of [`backfill`]: the known `from` events seed a min-queue on
/// `(depth, event_id)`; the lowest is popped and emitted, and the known events that list it in
/// `prev_events` and are not yet queued are pushed. Successors are found by reversing the
/// `prev_events` edges of the events in `dag`.
pub fn forwards_fill(dag: &HashMap<String, DagEvent>, from: &[&str], limit: usize) -> Vec<String> {
    let mut children: HashMap<&str, Vec<&DagEvent>> = HashMap::new();
    for ev in dag.values() {
        for prev in &ev.prev_events {
            children.entry(prev.as_str()).or_default().push(ev);
        }
    }
    let mut out = Vec::new();
    let mut queued: HashSet<&str> = HashSet::new();
    let mut heap: BinaryHeap<Reverse<Key>> = BinaryHeap::new();
    for ev in from.iter().filter_map(|id| dag.get(*id)) {
        if queued.insert(&ev.event_id) {
            heap.push(Reverse(key(ev)));
        }
    }
    while out.len() < limit {
        let Some(Reverse((_, id))) = heap.pop() else { break };
        out.push(id.to_owned());
        for child in children.get(id).into_iter().flatten() {
            if queued.insert(&child.event_id) {
                heap.push(Reverse(key(child)));
            }
        }
    }
    out
}

/// `/get_missing_events`: events preceding `latest` that the requester lacks, at most `limit`,
/// returned oldest first.
///
/// * The walk starts from the known `latest` events that are not also in `earliest` (whatever
///   their depth) and follows `prev_events` backwards; `latest` events are never returned.
/// * An event whose ID is in `earliest` is neither returned nor walked through: the requester
///   has it, and so has what precedes it on that path. A `latest` event met on the walk is not
///   returned either (its own `prev_events` are walked from it as a start).
/// * An event with `depth < min_depth` is neither returned nor walked through.
/// * Which events are taken follows [`backfill`]'s rule: a max-queue on `(depth, event_id)`,
///   popping until `limit` events are taken.
/// * The taken events are returned sorted by `(depth, event_id)` ascending, so that the
///   requester can process each after its `prev_events`.
pub fn get_missing_events(
    dag: &HashMap<String, DagEvent>,
    earliest: &[&str],
    latest: &[&str],
    limit: usize,
    min_depth: i64,
) -> Vec<String> {
    let mut w = MissingWalk {
        dag,
        min_depth,
        // Marking the excluded IDs as already queued keeps them out of the walk.
        queued: earliest.iter().chain(latest).copied().collect(),
        heap: BinaryHeap::new(),
    };
    for ev in latest.iter().filter(|id| !earliest.contains(id)).filter_map(|id| dag.get(*id)) {
        w.push_prevs(ev);
    }
    let mut taken: Vec<Key> = Vec::new();
    while taken.len() < limit {
        let Some(k) = w.heap.pop() else { break };
        taken.push(k);
        w.push_prevs(&dag[k.1]);
    }
    taken.sort_unstable();
    taken.into_iter().map(|(_, id)| id.to_owned()).collect()
}

struct MissingWalk<'a> {
    dag: &'a HashMap<String, DagEvent>,
    min_depth: i64,
    queued: HashSet<&'a str>,
    heap: BinaryHeap<Key<'a>>,
}

impl<'a> MissingWalk<'a> {
    fn push_prevs(&mut self, ev: &'a DagEvent) {
        for prev in ev.prev_events.iter().filter_map(|p| self.dag.get(p)) {
            if prev.depth >= self.min_depth && self.queued.insert(&prev.event_id) {
                self.heap.push(key(prev));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag(events: &[(&str, i64, &[&str])]) -> HashMap<String, DagEvent> {
        events.iter().map(|(id, d, prev)| ((*id).to_owned(), DagEvent::new(id, *d, prev))).collect()
    }

    /// A1 <- A2 <- A3 <- A4 <- A5
    fn linear() -> HashMap<String, DagEvent> {
        dag(&[("A1", 1, &[]), ("A2", 2, &["A1"]), ("A3", 3, &["A2"]), ("A4", 4, &["A3"]), ("A5", 5, &["A4"])])
    }

    /// C1 forks into a branch B2..B4 and a branch D2..D3; M5 merges B4 and D3; N6 follows M5.
    fn fork_merge() -> HashMap<String, DagEvent> {
        dag(&[
            ("C1", 1, &[]),
            ("B2", 2, &["C1"]),
            ("B3", 3, &["B2"]),
            ("B4", 4, &["B3"]),
            ("D2", 2, &["C1"]),
            ("D3", 3, &["D2"]),
            ("M5", 5, &["B4", "D3"]),
            ("N6", 6, &["M5"]),
        ])
    }

    #[test]
    fn backfill_linear() {
        let g = linear();
        assert_eq!(backfill(&g, &["A5"], 3), ["A5", "A4", "A3"]);
        assert_eq!(backfill(&g, &["A3"], 10), ["A3", "A2", "A1"]);
        assert_eq!(backfill(&g, &["A5"], 1), ["A5"]);
        assert!(backfill(&g, &["A5"], 0).is_empty());
    }

    #[test]
    fn backfill_fork_walks_branches_side_by_side() {
        let g = fork_merge();
        // At depths 3 and 2 both branches are present; D > B breaks the ties.
        assert_eq!(backfill(&g, &["N6"], 6), ["N6", "M5", "B4", "D3", "B3", "D2"]);
        assert_eq!(backfill(&g, &["N6"], 100), ["N6", "M5", "B4", "D3", "B3", "D2", "B2", "C1"]);
    }

    #[test]
    fn backfill_tie_break_is_event_id_descending() {
        let g = dag(&[("R", 1, &[]), ("a", 2, &["R"]), ("b", 2, &["R"]), ("c", 2, &["R"]), ("T", 3, &["a", "b", "c"])]);
        assert_eq!(backfill(&g, &["T"], 5), ["T", "c", "b", "a", "R"]);
        // Seeds are ordered by the same rule, not by their order in `v`.
        assert_eq!(backfill(&g, &["a", "c", "b"], 2), ["c", "b"]);
    }

    #[test]
    fn backfill_unknown_and_duplicate_seeds() {
        let g = dag(&[("A1", 1, &[]), ("A2", 2, &["A1", "X0"]), ("A3", 3, &["A2"])]);
        assert_eq!(backfill(&g, &["nope", "A3", "A3"], 10), ["A3", "A2", "A1"]);
        assert!(backfill(&g, &["nope"], 10).is_empty());
        assert!(backfill(&g, &[], 10).is_empty());
    }

    #[test]
    fn backfill_several_seeds() {
        let g = fork_merge();
        // B4's ancestors and D2 interleave by depth; shared ancestor C1 appears once.
        assert_eq!(backfill(&g, &["B4", "D2"], 10), ["B4", "B3", "D2", "B2", "C1"]);
        // A shallow seed comes after deeper ancestors of another seed.
        assert_eq!(backfill(&g, &["C1", "N6"], 3), ["N6", "M5", "B4"]);
    }

    #[test]
    fn backfill_inconsistent_depth_follows_the_queue() {
        // P claims depth 9 but is only reachable through E (depth 5).
        let g = dag(&[("P", 9, &[]), ("E", 5, &["P"]), ("F", 6, &["E"])]);
        assert_eq!(backfill(&g, &["F"], 3), ["F", "E", "P"]);
    }

    #[test]
    fn forwards_fill_linear() {
        let g = linear();
        assert_eq!(forwards_fill(&g, &["A1"], 3), ["A1", "A2", "A3"]);
        assert_eq!(forwards_fill(&g, &["A3"], 10), ["A3", "A4", "A5"]);
        assert_eq!(forwards_fill(&g, &["A5"], 10), ["A5"]);
        assert_eq!(forwards_fill(&g, &["A2"], 1), ["A2"]);
        assert!(forwards_fill(&g, &["A2"], 0).is_empty());
    }

    #[test]
    fn forwards_fill_fork_merge() {
        let g = fork_merge();
        assert_eq!(forwards_fill(&g, &["C1"], 100), ["C1", "B2", "D2", "B3", "D3", "B4", "M5", "N6"]);
        assert_eq!(forwards_fill(&g, &["C1"], 4), ["C1", "B2", "D2", "B3"]);
        // M5 is reached from either branch but listed once.
        assert_eq!(forwards_fill(&g, &["B4", "D3"], 10), ["D3", "B4", "M5", "N6"]);
    }

    #[test]
    fn forwards_fill_unknown_seeds_and_unknown_successors() {
        let g = dag(&[("A1", 1, &[]), ("A2", 2, &["A1"]), ("Z9", 9, &["gone"])]);
        assert_eq!(forwards_fill(&g, &["gone", "A1"], 10), ["A1", "A2"]);
        assert!(forwards_fill(&g, &["gone"], 10).is_empty());
    }

    #[test]
    fn get_missing_events_linear() {
        let g = linear();
        assert_eq!(get_missing_events(&g, &["A1"], &["A5"], 10, 0), ["A2", "A3", "A4"]);
        // The limit keeps the newest; the result is still oldest first.
        assert_eq!(get_missing_events(&g, &["A1"], &["A5"], 2, 0), ["A3", "A4"]);
        assert_eq!(get_missing_events(&g, &["A1"], &["A5"], 1, 0), ["A4"]);
        assert!(get_missing_events(&g, &["A1"], &["A5"], 0, 0).is_empty());
        // Nothing in earliest: walk to the root.
        assert_eq!(get_missing_events(&g, &[], &["A3"], 10, 0), ["A1", "A2"]);
    }

    #[test]
    fn get_missing_events_stops_at_earliest() {
        let g = fork_merge();
        // D2 is known to the requester: neither it nor C1 behind it (via D) is returned, but C1
        // is still reached through the B branch.
        assert_eq!(get_missing_events(&g, &["D2"], &["N6"], 10, 0), ["C1", "B2", "B3", "D3", "B4", "M5"]);
        assert_eq!(get_missing_events(&g, &["B3", "D3"], &["N6"], 10, 0), ["B4", "M5"]);
        // Unknown earliest IDs are harmless.
        assert_eq!(get_missing_events(&g, &["$unknown"], &["M5"], 3, 0), ["B3", "D3", "B4"]);
    }

    #[test]
    fn get_missing_events_excludes_latest_events() {
        let g = linear();
        // A4 is a prev event of A5 but also a latest event: the walk goes on from it, unreturned.
        assert_eq!(get_missing_events(&g, &[], &["A5", "A4"], 10, 0), ["A1", "A2", "A3"]);
        let g = fork_merge();
        assert_eq!(get_missing_events(&g, &["C1"], &["N6", "B3"], 10, 0), ["B2", "D2", "D3", "B4", "M5"]);
        // A latest event the requester also lists in earliest is not walked from (as Synapse).
        assert_eq!(get_missing_events(&g, &["B3"], &["N6", "B3"], 10, 0), ["C1", "D2", "D3", "B4", "M5"]);
        // Unknown latest events contribute nothing.
        assert!(get_missing_events(&g, &[], &["$unknown"], 10, 0).is_empty());
    }

    #[test]
    fn get_missing_events_min_depth() {
        let g = linear();
        assert_eq!(get_missing_events(&g, &[], &["A5"], 10, 3), ["A3", "A4"]);
        assert!(get_missing_events(&g, &[], &["A5"], 10, 5).is_empty());
        // An event below min_depth is not walked past, even if its prevs claim more depth.
        let g = dag(&[("P", 9, &[]), ("E", 1, &["P"]), ("F", 6, &["E"])]);
        assert!(get_missing_events(&g, &[], &["F"], 10, 2).is_empty());
        assert_eq!(get_missing_events(&g, &[], &["F"], 10, 0), ["E", "P"]);
    }

    #[test]
    fn get_missing_events_fork_selection_is_newest_first() {
        let g = fork_merge();
        // Taken by the queue: M5, B4, D3, B3; returned by depth then ID.
        assert_eq!(get_missing_events(&g, &[], &["N6"], 4, 0), ["B3", "D3", "B4", "M5"]);
    }

    /// A random DAG with consistent depths: each event is one deeper than its deepest prev.
    fn random_dag(n: usize, seed: u64) -> HashMap<String, DagEvent> {
        let mut rng = crate::prng::Rng::new(seed);
        let mut next = |m| rng.below(m);
        let mut events: Vec<DagEvent> = Vec::new();
        for i in 0..n {
            let mut prevs: Vec<usize> = if i == 0 { vec![] } else { (0..1 + next(3)).map(|_| i - 1 - next(i.min(4))).collect() };
            prevs.sort_unstable();
            prevs.dedup();
            let depth = prevs.iter().map(|p| events[*p].depth + 1).max().unwrap_or(1);
            // IDs in an order unrelated to depth, so that ties are broken by ID for real.
            let prev_events = prevs.iter().map(|p| events[*p].event_id.clone()).collect();
            events.push(DagEvent { event_id: format!("${:04}", next(10_000) * 100 + i), depth, prev_events });
        }
        events.into_iter().map(|e| (e.event_id.clone(), e)).collect()
    }

    fn closure<'a>(g: &'a HashMap<String, DagEvent>, from: &str, backwards: bool) -> Vec<Key<'a>> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut todo = vec![g.get_key_value(from).unwrap().0.as_str()];
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                if backwards {
                    todo.extend(g[id].prev_events.iter().map(String::as_str));
                } else {
                    todo.extend(g.values().filter(|e| e.prev_events.iter().any(|p| p == id)).map(|e| e.event_id.as_str()));
                }
            }
        }
        seen.into_iter().map(|id| key(&g[id])).collect()
    }

    #[test]
    fn consistent_depths_mean_sorted_reachable_set() {
        for seed in 1..20 {
            let g = random_dag(60, seed);
            let mut ids: Vec<&str> = g.keys().map(String::as_str).collect();
            ids.sort_unstable();
            for (i, id) in ids.iter().enumerate().step_by(7) {
                let limit = 1 + i % 25;
                let mut back = closure(&g, id, true);
                back.sort_unstable_by(|a, b| b.cmp(a));
                let expect: Vec<&str> = back.iter().take(limit).map(|k| k.1).collect();
                assert_eq!(backfill(&g, &[id], limit), expect, "backfill seed {seed} from {id}");

                // get_missing_events with nothing known: the same minus the start, oldest first.
                let mut missing: Vec<Key> = back.iter().filter(|k| k.1 != *id).take(limit).copied().collect();
                missing.sort_unstable();
                let expect: Vec<&str> = missing.iter().map(|k| k.1).collect();
                assert_eq!(get_missing_events(&g, &[], &[id], limit, 0), expect, "gme seed {seed} from {id}");

                let mut fwd = closure(&g, id, false);
                fwd.sort_unstable();
                let expect: Vec<&str> = fwd.iter().take(limit).map(|k| k.1).collect();
                assert_eq!(forwards_fill(&g, &[id], limit), expect, "forwards seed {seed} from {id}");
            }
        }
    }
}
