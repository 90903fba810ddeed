//! The order a batch is admitted in. A `/backfill` response lists events newest first, and a
//! caller may pass any batch in any order: every event must come after the events of the batch
//! it references (its prev and auth events), since admitting it needs their outcomes.

use std::collections::HashMap;

/// An order of `events` — each `(event ID, room NID, the event IDs it references)` — in which
/// every event comes after the events among them that it references, and which otherwise keeps
/// the order given (a batch already in order is returned as it is). References to events not
/// in the batch are ignored; on a cycle (which no valid DAG has) the events of the cycle keep
/// the order given and admission reports what is missing.
pub fn dag_order(events: &[(&str, i64, Vec<&str>)]) -> Vec<usize> {
    let index: HashMap<(&str, i64), usize> = events.iter().enumerate().map(|(i, (id, room, _))| ((*id, *room), i)).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; events.len()];
    let mut order = Vec::with_capacity(events.len());
    // Depth-first, post-order, with an explicit stack: a chain of 100,000 events in reverse must
    // not exhaust the backend's stack. Each stack entry is (event, next reference to look at).
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for start in 0..events.len() {
        if mark[start] != Mark::New {
            continue;
        }
        mark[start] = Mark::Open;
        stack.push((start, 0));
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            let (_, room, refs) = &events[node];
            if next < refs.len() {
                top.1 += 1;
                if let Some(&dep) = index.get(&(refs[next], *room)) {
                    if mark[dep] == Mark::New {
                        mark[dep] = Mark::Open;
                        stack.push((dep, 0));
                    }
                }
            } else {
                mark[node] = Mark::Done;
                order.push(node);
                stack.pop();
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::dag_order;

    fn ev<'a>(id: &'a str, refs: &[&'a str]) -> (&'a str, i64, Vec<&'a str>) {
        (id, 1, refs.to_vec())
    }

    #[test]
    fn an_ordered_batch_keeps_its_order() {
        let b = [ev("a", &[]), ev("b", &["a"]), ev("c", &["b", "x"]), ev("d", &["a"])];
        assert_eq!(dag_order(&b), vec![0, 1, 2, 3]);
    }

    #[test]
    fn newest_first_is_reversed_and_forks_follow_their_parents() {
        // d merges b and c, which both follow a; given newest first.
        let b = [ev("d", &["b", "c"]), ev("c", &["a"]), ev("b", &["a"]), ev("a", &[])];
        let order = dag_order(&b);
        let pos = |i: usize| order.iter().position(|&o| o == i).unwrap();
        assert!(pos(3) < pos(1) && pos(3) < pos(2) && pos(1) < pos(0) && pos(2) < pos(0), "{order:?}");
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn auth_references_count_and_other_rooms_do_not() {
        let b = [("m", 1, vec!["p"]), ("p", 1, vec![]), ("q", 2, vec!["m"]), ("m", 2, vec![])];
        // m (room 1) after p; q (room 2) after room 2's m, not room 1's.
        assert_eq!(dag_order(&b), vec![1, 0, 3, 2]);
    }

    #[test]
    fn a_long_reversed_chain_and_a_cycle_terminate() {
        let ids: Vec<String> = (0..100_000).map(|i| format!("e{i}")).collect();
        let chain: Vec<(&str, i64, Vec<&str>)> =
            (0..ids.len()).rev().map(|i| (ids[i].as_str(), 1, if i == 0 { vec![] } else { vec![ids[i - 1].as_str()] })).collect();
        let order = dag_order(&chain);
        assert_eq!(order.first(), Some(&(ids.len() - 1)));
        assert_eq!(order.last(), Some(&0));
        let cycle = [ev("a", &["b"]), ev("b", &["a"])];
        assert_eq!(dag_order(&cycle).len(), 2);
    }
}
