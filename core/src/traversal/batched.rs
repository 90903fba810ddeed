//! The walks of [`backfill`](super::backfill), [`forwards_fill`](super::forwards_fill) and
//! [`get_missing_events`](super::get_missing_events) over a store that hands out neighbours in
//! batches (the database), in exactly their order.

use std::collections::{BinaryHeap, HashMap, HashSet};

use super::DagEvent;

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

/// The priority-queue walk of [`backfill`](super::backfill), [`forwards_fill`](super::forwards_fill)
/// and [`get_missing_events`](super::get_missing_events) over a [`NeighbourSource`], producing
/// exactly their order. Neighbours are fetched lazily, only when
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
mod tests {
    use super::*;
    use crate::traversal::{backfill, forwards_fill, get_missing_events};

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
        let mut rng = crate::prng::Rng::new(seed);
        let mut next = |m| rng.below(m);
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
