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
        let mut next = crate::test_rng::below(seed);
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

// ---------------------------------------------------------------------------------------------
// The same walks over a store that hands out neighbours in batches (the database).

/// An event as the batched walk sees it: an opaque handle (the database's event NID) plus the
/// queue key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkNode<K> {
    pub handle: K,
    pub depth: i64,
    pub event_id: String,
}

/// Which edges a walk follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `prev_events`; highest `(depth, event_id)` first (backfill, get_missing_events).
    Backwards,
    /// Reversed `prev_events` (successors); lowest `(depth, event_id)` first (forwards fill).
    Forwards,
}

/// A queue entry ordered by `(depth, event_id)`, reversed for forwards walks, so that one
/// max-heap serves both directions.
struct Entry<K> {
    node: WalkNode<K>,
    forwards: bool,
}

impl<K> Entry<K> {
    fn key(&self) -> (i64, &str) {
        (self.node.depth, self.node.event_id.as_str())
    }
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl<K> Eq for Entry<K> {}
impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Entry<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let o = self.key().cmp(&other.key());
        if self.forwards {
            o.reverse()
        } else {
            o
        }
    }
}

/// What a batched walk needs from its store.
pub trait NeighbourSource<K> {
    /// The neighbours (in the walk's direction) of the events in `frontier`, and of as many
    /// further events beyond them as the store finds worth reading in the same call, up to about
    /// `budget` events in all. Returns `(event, its neighbours)` for every event it expanded; an
    /// event of `frontier` missing from the answer is taken to have no known neighbours.
    fn expand(&mut self, frontier: &[K], budget: usize) -> Vec<(K, Vec<WalkNode<K>>)>;
}

/// The priority-queue walk of [`backfill`], [`forwards_fill`] and [`get_missing_events`] over a
/// [`NeighbourSource`], producing exactly their order. Neighbours are fetched lazily, only when
/// an event whose neighbours are unknown is taken, and then for a whole batch at once: that
/// event, the other queued events likely to be taken next, and whatever the store reads ahead.
pub struct BatchedWalk<K> {
    forwards: bool,
    min_depth: i64,
    queued: HashSet<K>,
    heap: BinaryHeap<Entry<K>>,
    neighbours: HashMap<K, Vec<WalkNode<K>>>,
    /// Events whose neighbours are pushed before the walk starts, without being emitted.
    starts: Vec<K>,
    /// How many calls to the store the walk made (for tests and benchmarks).
    pub fetches: usize,
}

impl<K: Copy + Eq + std::hash::Hash> BatchedWalk<K> {
    pub fn new(direction: Direction) -> Self {
        BatchedWalk {
            forwards: direction == Direction::Forwards,
            min_depth: i64::MIN,
            queued: HashSet::new(),
            heap: BinaryHeap::new(),
            neighbours: HashMap::new(),
            starts: Vec::new(),
            fetches: 0,
        }
    }

    /// Events below `min_depth` are neither emitted nor walked through.
    pub fn min_depth(mut self, min_depth: i64) -> Self {
        self.min_depth = min_depth;
        self
    }

    /// Marks events as already seen: they are never queued, hence never emitted nor walked
    /// through (get_missing_events' `earliest_events` and `latest_events`).
    pub fn exclude(&mut self, handles: impl IntoIterator<Item = K>) {
        self.queued.extend(handles);
    }

    /// Queues an event to be emitted (backfill's `v`, forwards fill's `from_event_id`);
    /// duplicates count once.
    pub fn seed(&mut self, node: WalkNode<K>) {
        if self.queued.insert(node.handle) {
            self.heap.push(Entry { node, forwards: self.forwards });
        }
    }

    /// An event whose neighbours start the walk but which is not itself emitted
    /// (get_missing_events' `latest_events`).
    pub fn start_from(&mut self, handle: K) {
        self.starts.push(handle);
    }

    fn push_neighbours_of(&mut self, handle: K) {
        let Some(ns) = self.neighbours.get(&handle) else { return };
        for n in ns {
            if n.depth >= self.min_depth && self.queued.insert(n.handle) {
                self.heap.push(Entry { node: n.clone(), forwards: self.forwards });
            }
        }
    }

    fn fetch(&mut self, source: &mut impl NeighbourSource<K>, frontier: Vec<K>, budget: usize) {
        self.fetches += 1;
        for (h, ns) in source.expand(&frontier, budget) {
            self.neighbours.entry(h).or_insert(ns);
        }
        for h in frontier {
            self.neighbours.entry(h).or_default();
        }
    }

    /// Runs the walk: the emitted events, at most `limit`, in the order they were taken.
    pub fn run(mut self, limit: usize, source: &mut impl NeighbourSource<K>) -> (Vec<WalkNode<K>>, usize) {
        let mut out: Vec<WalkNode<K>> = Vec::new();
        if limit == 0 {
            return (out, self.fetches);
        }
        let starts = std::mem::take(&mut self.starts);
        if !starts.is_empty() {
            self.fetch(source, starts.clone(), starts.len() + limit);
            for h in starts {
                self.push_neighbours_of(h);
            }
        }
        while out.len() < limit {
            let Some(Entry { node, .. }) = self.heap.pop() else { break };
            let handle = node.handle;
            out.push(node);
            let remaining = limit - out.len();
            if remaining == 0 {
                break;
            }
            if !self.neighbours.contains_key(&handle) {
                // The taken event, then the queued events that would be taken next (at most as
                // many as can still be emitted) that have not been expanded yet.
                let mut next: Vec<&Entry<K>> = self.heap.iter().filter(|e| !self.neighbours.contains_key(&e.node.handle)).collect();
                next.sort_unstable_by(|a, b| b.cmp(a));
                let mut frontier = vec![handle];
                frontier.extend(next.into_iter().take(remaining).map(|e| e.node.handle));
                let budget = frontier.len() + remaining;
                self.fetch(source, frontier, budget);
            }
            self.push_neighbours_of(handle);
        }
        (out, self.fetches)
    }
}

/// A [`NeighbourSource`] over an in-memory DAG that reads ahead breadth-first up to the budget,
/// as the database does: for tests of [`BatchedWalk`] against the reference walks.
pub struct DagSource<'a> {
    dag: &'a HashMap<String, DagEvent>,
    children: HashMap<&'a str, Vec<&'a DagEvent>>,
    forwards: bool,
    /// false: expand exactly the frontier; true: read ahead breadth-first up to the budget.
    pub read_ahead: bool,
}

impl<'a> DagSource<'a> {
    pub fn new(dag: &'a HashMap<String, DagEvent>, direction: Direction, read_ahead: bool) -> Self {
        let mut children: HashMap<&str, Vec<&DagEvent>> = HashMap::new();
        for ev in dag.values() {
            for prev in &ev.prev_events {
                children.entry(prev.as_str()).or_default().push(ev);
            }
        }
        DagSource { dag, children, forwards: direction == Direction::Forwards, read_ahead }
    }

    pub fn node(&self, id: &'a str) -> Option<WalkNode<&'a str>> {
        self.dag.get_key_value(id).map(|(k, ev)| WalkNode { handle: k.as_str(), depth: ev.depth, event_id: k.clone() })
    }

    fn neighbours(&self, id: &'a str) -> Vec<&'a DagEvent> {
        if self.forwards {
            self.children.get(id).cloned().unwrap_or_default()
        } else {
            self.dag[id].prev_events.iter().filter_map(|p| self.dag.get(p)).collect()
        }
    }
}

impl<'a> NeighbourSource<&'a str> for DagSource<'a> {
    fn expand(&mut self, frontier: &[&'a str], budget: usize) -> Vec<(&'a str, Vec<WalkNode<&'a str>>)> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut todo: std::collections::VecDeque<&'a str> = frontier.iter().copied().collect();
        let mut out = Vec::new();
        while let Some(id) = todo.pop_front() {
            if !seen.insert(id) || (!self.read_ahead && !frontier.contains(&id)) || out.len() >= budget.max(frontier.len()) {
                continue;
            }
            let ns: Vec<&DagEvent> = self.neighbours(id);
            todo.extend(ns.iter().map(|e| e.event_id.as_str()));
            out.push((id, ns.iter().map(|e| WalkNode { handle: e.event_id.as_str(), depth: e.depth, event_id: e.event_id.clone() }).collect()));
        }
        out
    }
}

#[cfg(test)]
mod batched_tests {
    use super::*;

    fn ids<K>(nodes: &[WalkNode<K>]) -> Vec<&str> {
        nodes.iter().map(|n| n.event_id.as_str()).collect()
    }

    fn batched_backfill(g: &HashMap<String, DagEvent>, v: &[&str], limit: usize, read_ahead: bool) -> (Vec<String>, usize) {
        let mut src = DagSource::new(g, Direction::Backwards, read_ahead);
        let mut w = BatchedWalk::new(Direction::Backwards);
        for id in v {
            if let Some(n) = src.node(id) {
                w.seed(n);
            }
        }
        let (out, fetches) = w.run(limit, &mut src);
        (ids(&out).into_iter().map(str::to_owned).collect(), fetches)
    }

    fn batched_forwards(g: &HashMap<String, DagEvent>, from: &[&str], limit: usize, read_ahead: bool) -> Vec<String> {
        let mut src = DagSource::new(g, Direction::Forwards, read_ahead);
        let mut w = BatchedWalk::new(Direction::Forwards);
        for id in from {
            if let Some(n) = src.node(id) {
                w.seed(n);
            }
        }
        ids(&w.run(limit, &mut src).0).into_iter().map(str::to_owned).collect()
    }

    fn batched_missing(g: &HashMap<String, DagEvent>, earliest: &[&str], latest: &[&str], limit: usize, min_depth: i64, read_ahead: bool) -> Vec<String> {
        let mut src = DagSource::new(g, Direction::Backwards, read_ahead);
        let mut w = BatchedWalk::new(Direction::Backwards).min_depth(min_depth);
        let known = |ids: &[&str]| -> Vec<&str> {
            ids.iter().filter_map(|id| g.get_key_value(*id)).map(|(k, _)| k.as_str()).collect()
        };
        w.exclude(known(earliest));
        w.exclude(known(latest));
        for h in known(latest) {
            if !earliest.contains(&h) {
                w.start_from(h);
            }
        }
        let mut out = w.run(limit, &mut src).0;
        out.sort_unstable_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
        ids(&out).into_iter().map(str::to_owned).collect()
    }

    /// A DAG with forks, merges, inconsistent depths and references to unknown events.
    fn messy_dag(n: usize, seed: u64) -> HashMap<String, DagEvent> {
        let mut next = crate::test_rng::below(seed);
        let mut events: Vec<DagEvent> = Vec::new();
        for i in 0..n {
            let mut prev_events: Vec<String> =
                if i == 0 { vec![] } else { (0..1 + next(3)).map(|_| events[i - 1 - next(i.min(6))].event_id.clone()).collect() };
            if next(10) == 0 {
                prev_events.push(format!("$missing{i}"));
            }
            prev_events.dedup();
            // Mostly consistent depths, sometimes a lie (depths are only claims).
            let depth = if next(12) == 0 { next(40) as i64 } else { i as i64 / 2 + 1 };
            events.push(DagEvent { event_id: format!("${:03}", next(1000)) + &i.to_string(), depth, prev_events });
        }
        events.into_iter().map(|e| (e.event_id.clone(), e)).collect()
    }

    #[test]
    fn batched_walks_equal_the_reference_walks() {
        for seed in 1..25 {
            let g = messy_dag(80, seed);
            let mut all: Vec<&str> = g.keys().map(String::as_str).collect();
            all.sort_unstable();
            for (i, id) in all.iter().enumerate().step_by(5) {
                let other = all[(i * 7 + 3) % all.len()];
                let limit = 1 + (i * 3) % 40;
                for read_ahead in [false, true] {
                    let v = [*id, other, "$nope"];
                    assert_eq!(batched_backfill(&g, &v, limit, read_ahead).0, backfill(&g, &v, limit), "backfill {seed} {id}");
                    assert_eq!(batched_forwards(&g, &v, limit, read_ahead), forwards_fill(&g, &v, limit), "forwards {seed} {id}");
                    for min_depth in [0, 5] {
                        let earliest = [other, "$nope"];
                        let latest = [*id, all[(i + 11) % all.len()]];
                        assert_eq!(
                            batched_missing(&g, &earliest, &latest, limit, min_depth, read_ahead),
                            get_missing_events(&g, &earliest, &latest, limit, min_depth),
                            "gme {seed} {id} {min_depth}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn read_ahead_makes_few_fetches_on_a_chain() {
        let g: HashMap<String, DagEvent> = (1..=500)
            .map(|i: i64| {
                let prev = if i == 1 { vec![] } else { vec![format!("$e{:04}", i - 1)] };
                let id = format!("$e{i:04}");
                (id.clone(), DagEvent { event_id: id, depth: i, prev_events: prev })
            })
            .collect();
        let (out, fetches) = batched_backfill(&g, &["$e0400"], 100, true);
        assert_eq!(out.len(), 100);
        assert_eq!(out[99], "$e0301");
        assert_eq!(fetches, 1);
        // Without read-ahead, a chain costs one fetch per event: what the database must avoid.
        assert_eq!(batched_backfill(&g, &["$e0400"], 100, false).1, 99);
    }
}
