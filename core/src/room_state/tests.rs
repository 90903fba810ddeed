use super::memory::MemoryStore;
use super::*;

fn e(t: i64, k: i64, ev: i64) -> Entry {
    Entry { type_nid: t, state_key_nid: k, event_nid: ev }
}

#[test]
fn equal_states_share_a_snapshot_and_no_op_changes_keep_it() {
    let mut s = MemoryStore::default();
    let empty = s.save_snapshot(&[], Vec::new(), StateHash::default(), 0).unwrap();
    let a = apply_change(&mut s, empty, vec![e(1, 1, 10)]).unwrap();
    let b = apply_change(&mut s, a, vec![e(2, 1, 11)]).unwrap();
    // The same state reached another way: the same snapshot.
    let c = apply_change(&mut s, empty, vec![e(2, 1, 11), e(1, 1, 10)]).unwrap();
    assert_eq!(b, c);
    assert_eq!(apply_change(&mut s, b, vec![e(2, 1, 11)]).unwrap(), b);
    // Removing a key and putting it back returns to the same snapshot.
    let d = apply_change(&mut s, b, vec![e(2, 1, 0)]).unwrap();
    assert_eq!(d, a);
    assert_eq!((s.snapshot(a).unwrap().size, s.snapshot(b).unwrap().size), (1, 2));
    // Removing a key that is not there changes nothing.
    assert_eq!(apply_change(&mut s, a, vec![e(3, 1, 0)]).unwrap(), a);
    assert_eq!(s.lookup(b, &[(1, 1), (2, 1), (3, 1)]).unwrap(), vec![Some(10), Some(11), None]);
}

#[test]
fn many_changes_keep_few_blocks() {
    let mut s = MemoryStore::default();
    let mut snap = s.save_snapshot(&[], Vec::new(), StateHash::default(), 0).unwrap();
    for i in 1..=5000 {
        snap = apply_change(&mut s, snap, vec![e(5, i, i)]).unwrap();
    }
    let blocks = s.snapshot(snap).unwrap().blocks.len();
    assert!(blocks <= 14, "{blocks} blocks for 5000 entries");
    assert_eq!(s.full_state(snap).unwrap().len(), 5000);
    assert_eq!(s.snapshot(snap).unwrap().size, 5000);
    // Each entry is copied about log2(5000) times, not 5000.
    assert!(s.entries_written < 5000 * 16, "{} entries written", s.entries_written);
}
