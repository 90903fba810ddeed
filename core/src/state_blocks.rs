//! State snapshots as layers of blocks (seed 004: "state blocks" and "state snapshots").
//!
//! A room state is a map `(type NID, state key NID) -> event NID`. A snapshot stores it as a list
//! of at most [`MAX_BLOCKS`] blocks, oldest first; each block is a sorted list of entries and a
//! later block overrides an earlier one for the same key (an entry with event NID 0 removes a key,
//! which state resolution can do). A new snapshot made from a parent by a small change appends one
//! block holding just the change, then folds tail blocks together while the newest is at least
//! half the size of the one before it — a binary counter over block sizes. So:
//!
//! - a change costs storage in proportion to what changed (amortised O(changed x log(state)):
//!   each entry is copied into a merged block about log2(n) times over its life);
//! - a snapshot has about log2(state size) blocks (17 for 100,000 members), never more than 64,
//!   so reading a full state reads at most 64 blocks;
//! - blocks are shared by every snapshot that descends from the one that created them, and are
//!   deduplicated by [`block_hash`];
//! - the same state always has the same [`StateHash`], however its blocks are laid out, so a
//!   snapshot can be deduplicated by the state it holds, not by its layout.

use crate::error::{Error, Result};
use crate::varint;
use sha2::{Digest, Sha256};

/// The most blocks a snapshot may have.
pub const MAX_BLOCKS: usize = 64;

/// One `(type, state_key) -> event` entry; `event_nid == 0` removes the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub type_nid: i64,
    pub state_key_nid: i64,
    pub event_nid: i64,
}

impl Entry {
    pub fn key(&self) -> (i64, i64) {
        (self.type_nid, self.state_key_nid)
    }
    pub fn is_removal(&self) -> bool {
        self.event_nid == 0
    }
    fn bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.type_nid.to_be_bytes());
        b[8..16].copy_from_slice(&self.state_key_nid.to_be_bytes());
        b[16..].copy_from_slice(&self.event_nid.to_be_bytes());
        b
    }
}

/// sha256 of a block's entries (which must be sorted by key): equal contents, equal hash.
pub fn block_hash(entries: &[Entry]) -> [u8; 32] {
    let mut h = Sha256::new();
    for e in entries {
        h.update(e.bytes());
    }
    h.finalize().into()
}

/// A hash of a whole state that does not depend on its layout: the sum modulo 2^256 of the
/// sha256 of each live entry. Adding and removing entries updates it in O(1), so a new snapshot
/// knows its state's hash from its parent's and the change alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct StateHash(pub [u8; 32]);

impl StateHash {
    fn entry_digest(e: &Entry) -> [u8; 32] {
        Sha256::digest(e.bytes()).into()
    }

    pub fn add(&mut self, e: &Entry) {
        let d = Self::entry_digest(e);
        let mut carry = 0u16;
        for i in (0..32).rev() {
            let s = self.0[i] as u16 + d[i] as u16 + carry;
            self.0[i] = s as u8;
            carry = s >> 8;
        }
    }

    pub fn remove(&mut self, e: &Entry) {
        let d = Self::entry_digest(e);
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let s = self.0[i] as i16 - d[i] as i16 - borrow;
            self.0[i] = s.rem_euclid(256) as u8;
            borrow = if s < 0 { 1 } else { 0 };
        }
    }

    /// The hash of a full state given as live entries.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> StateHash {
        let mut h = StateHash::default();
        for e in entries.into_iter().filter(|e| !e.is_removal()) {
            h.add(e);
        }
        h
    }
}

/// Sorts entries by key and keeps the last entry given for each key.
pub fn normalise(mut entries: Vec<Entry>) -> Vec<Entry> {
    // Stable sort keeps input order among equal keys; the last one wins.
    entries.sort_by_key(|e| e.key());
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.last_mut() {
            Some(last) if last.key() == e.key() => *last = e,
            _ => out.push(e),
        }
    }
    out
}

/// Merges layers (oldest first, each sorted) into one sorted block where later layers win.
/// `drop_removals` is true when the result becomes the bottom layer: nothing older is left for a
/// removal to hide.
///
/// Two-way merges from the newest layer down: under the binary-counter layout layer sizes grow
/// towards the bottom, so the running result stays small until the last merges and the whole
/// costs about two comparisons per entry (a 100,000-entry state in well under a millisecond).
pub fn merge_layers(layers: &[&[Entry]], drop_removals: bool) -> Vec<Entry> {
    let mut acc: Vec<Entry> = match layers.last() {
        Some(top) => top.to_vec(),
        None => return Vec::new(),
    };
    for older in layers[..layers.len() - 1].iter().rev() {
        let mut out = Vec::with_capacity(acc.len() + older.len());
        let (mut i, mut j) = (0, 0);
        while i < older.len() && j < acc.len() {
            match older[i].key().cmp(&acc[j].key()) {
                std::cmp::Ordering::Less => {
                    out.push(older[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(acc[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(acc[j]);
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&older[i..]);
        out.extend_from_slice(&acc[j..]);
        acc = out;
    }
    if drop_removals {
        acc.retain(|e| e.event_nid != 0);
    }
    acc
}

/// The storage form of a block (`state_blocks.entries`): a format byte, then per entry (sorted
/// by key) three LEB128 [`varint`]s: the type NID minus the previous one, the state key NID (minus
/// the previous one when the type is the same), the event NID. About 6-8 bytes an entry instead
/// of 24, decoded at memory speed; one row per block instead of one per entry.
pub fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * 8);
    out.push(ENTRIES_FORMAT);
    let (mut t, mut k) = (0i64, 0i64);
    for e in entries {
        let dt = e.type_nid - t;
        varint::write_u64(&mut out, dt as u64);
        varint::write_u64(&mut out, if dt == 0 { e.state_key_nid - k } else { e.state_key_nid } as u64);
        varint::write_u64(&mut out, e.event_nid as u64);
        t = e.type_nid;
        k = e.state_key_nid;
    }
    out
}

const ENTRIES_FORMAT: u8 = 1;

/// Decodes what [`encode_entries`] wrote; a corrupt value is an error, never a wrong state.
pub fn decode_entries(bytes: &[u8]) -> Result<Vec<Entry>> {
    let corrupt = |what: &str| Error::invalid(None, format!("corrupt state block: {what}"));
    let (&format, body) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    if format != ENTRIES_FORMAT {
        return Err(corrupt(&format!("unknown format {format}")));
    }
    let mut pos = 0usize;
    let next = |pos: &mut usize| -> Result<i64> {
        let v = varint::read_u64(body, pos).map_err(|e| corrupt(&e.to_string()))?;
        i64::try_from(v).map_err(|_| corrupt("NID out of range"))
    };
    let mut out: Vec<Entry> = Vec::with_capacity(body.len() / 6);
    let (mut t, mut k) = (0i64, 0i64);
    while pos < body.len() {
        let dt = next(&mut pos)?;
        let sk = next(&mut pos)?;
        let ev = next(&mut pos)?;
        let type_nid = t.checked_add(dt).ok_or_else(|| corrupt("NID overflow"))?;
        let state_key_nid = if dt == 0 { k.checked_add(sk).ok_or_else(|| corrupt("NID overflow"))? } else { sk };
        let e = Entry { type_nid, state_key_nid, event_nid: ev };
        if out.last().is_some_and(|p| p.key() >= e.key()) {
            return Err(corrupt("entries out of order"));
        }
        out.push(e);
        t = type_nid;
        k = state_key_nid;
    }
    Ok(out)
}

/// The full state held by layers (oldest first): live entries, sorted by key.
pub fn full_state(layers: &[&[Entry]]) -> Vec<Entry> {
    merge_layers(layers, true)
}

/// The entry for `key` in layers (oldest first): the newest layer that has it decides.
pub fn lookup(layers: &[&[Entry]], key: (i64, i64)) -> Option<i64> {
    layers.iter().rev().find_map(|layer| {
        layer.binary_search_by_key(&key, |e| e.key()).ok().map(|i| layer[i].event_nid)
    })
    .filter(|ev| *ev != 0)
}

/// How many of the parent's tail blocks (sizes oldest first) fold into the new block of
/// `delta_len` entries: the binary-counter rule, capped so a snapshot never exceeds MAX_BLOCKS.
/// Sizes are upper bounds (a merge can only shrink), which keeps the rule cheap and safe.
pub fn blocks_to_fold(parent_sizes: &[usize], delta_len: usize) -> usize {
    let mut folded = 0;
    let mut size = delta_len;
    let mut remaining = parent_sizes.len();
    while remaining > 0 {
        let prev = parent_sizes[remaining - 1];
        let over_cap = remaining + 1 > MAX_BLOCKS;
        if size * 2 >= prev || over_cap {
            size += prev;
            folded += 1;
            remaining -= 1;
        } else {
            break;
        }
    }
    folded
}

/// A block of a snapshot as the storage layer knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRef<Id> {
    pub id: Id,
    pub len: usize,
}

/// The layout of a child snapshot: the parent's blocks it keeps, then one new block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildLayout<Id> {
    pub kept: Vec<BlockRef<Id>>,
    /// The new newest block (sorted, may be empty when the change is empty and nothing folds).
    pub new_block: Vec<Entry>,
    /// The hash of the child's full state.
    pub state_hash: StateHash,
}

/// Lays out the snapshot that is `parent` plus `change`. `parent_hash` is the parent's
/// [`StateHash`]; `fetch` returns a parent block's entries (only tail blocks that fold are fetched);
/// `old_value` returns the parent's event for a key (to update the state hash).
pub fn child_layout<Id: Clone>(
    parent: &[BlockRef<Id>],
    parent_hash: StateHash,
    change: Vec<Entry>,
    mut fetch: impl FnMut(&Id) -> Vec<Entry>,
    mut old_value: impl FnMut((i64, i64)) -> Option<i64>,
) -> ChildLayout<Id> {
    let change = normalise(change);
    let mut state_hash = parent_hash;
    let mut effective = Vec::with_capacity(change.len());
    for e in &change {
        let old = old_value(e.key());
        if old == Some(e.event_nid) || (old.is_none() && e.is_removal()) {
            continue; // no-op for this key
        }
        if let Some(old_ev) = old {
            state_hash.remove(&Entry { event_nid: old_ev, ..*e });
        }
        if !e.is_removal() {
            state_hash.add(e);
        }
        effective.push(*e);
    }
    let sizes: Vec<usize> = parent.iter().map(|b| b.len).collect();
    let fold = blocks_to_fold(&sizes, effective.len());
    let keep = parent.len() - fold;
    let new_block = if fold == 0 {
        effective
    } else {
        let fetched: Vec<Vec<Entry>> = parent[keep..].iter().map(|b| fetch(&b.id)).collect();
        let mut layers: Vec<&[Entry]> = fetched.iter().map(Vec::as_slice).collect();
        layers.push(&effective);
        merge_layers(&layers, keep == 0)
    };
    ChildLayout { kept: parent[..keep].to_vec(), new_block, state_hash }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::Rng;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn packed_entries_round_trip_and_reject_corruption() {
        let entries = vec![e(1, 1, 7), e(1, 65_536, 0), e(1, 70_000, 1 << 40), e(14, 1, 3), e(65_540, 65_537, 99)];
        let bytes = encode_entries(&entries);
        assert!(bytes.len() < entries.len() * 10, "{} bytes", bytes.len());
        assert_eq!(decode_entries(&bytes).unwrap(), entries);
        assert_eq!(decode_entries(&encode_entries(&[])).unwrap(), vec![]);
        assert!(decode_entries(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        assert!(decode_entries(&[]).is_err(), "no format byte");
        assert!(decode_entries(&[9]).is_err(), "unknown format");
        // (1, 1) twice: a state key delta of 0 within the same type.
        assert!(decode_entries(&[1, 1, 1, 1, 0, 0, 1]).is_err(), "repeated key");
    }

    #[test]
    fn merge_layers_agrees_with_a_map() {
        let mut rng = Rng::new(7);
        let mut rnd = |n: usize| rng.below(n);
        for _ in 0..200 {
            let layers: Vec<Vec<Entry>> = (0..1 + rnd(6))
                .map(|_| normalise((0..rnd(40)).map(|_| e(1 + rnd(3) as i64, 1 + rnd(20) as i64, rnd(5) as i64)).collect()))
                .collect();
            let refs: Vec<&[Entry]> = layers.iter().map(Vec::as_slice).collect();
            for drop in [false, true] {
                let mut map: BTreeMap<(i64, i64), i64> = BTreeMap::new();
                for l in &layers {
                    for x in l {
                        map.insert(x.key(), x.event_nid);
                    }
                }
                let want: Vec<Entry> =
                    map.into_iter().filter(|(_, v)| !(drop && *v == 0)).map(|((t, k), v)| e(t, k, v)).collect();
                assert_eq!(merge_layers(&refs, drop), want);
            }
        }
    }

    fn e(t: i64, k: i64, ev: i64) -> Entry {
        Entry { type_nid: t, state_key_nid: k, event_nid: ev }
    }

    /// An in-memory block store standing in for the SQL tables.
    #[derive(Default)]
    struct Store {
        blocks: Vec<Vec<Entry>>,
        by_hash: HashMap<[u8; 32], usize>,
        entries_written: usize,
    }

    impl Store {
        fn put(&mut self, block: Vec<Entry>) -> BlockRef<usize> {
            let h = block_hash(&block);
            let len = block.len();
            if let Some(&id) = self.by_hash.get(&h) {
                return BlockRef { id, len };
            }
            self.entries_written += len;
            self.blocks.push(block);
            self.by_hash.insert(h, self.blocks.len() - 1);
            BlockRef { id: self.blocks.len() - 1, len }
        }
        fn layers<'a>(&'a self, layout: &[BlockRef<usize>]) -> Vec<&'a [Entry]> {
            layout.iter().map(|b| self.blocks[b.id].as_slice()).collect()
        }
    }

    fn apply(store: &mut Store, parent: &[BlockRef<usize>], hash: StateHash, change: Vec<Entry>) -> (Vec<BlockRef<usize>>, StateHash) {
        let parent_layers: Vec<Vec<Entry>> = store.layers(parent).into_iter().map(|l| l.to_vec()).collect();
        let old = |key| {
            let layers: Vec<&[Entry]> = parent_layers.iter().map(Vec::as_slice).collect();
            lookup(&layers, key)
        };
        let blocks = &store.blocks;
        let layout = child_layout(parent, hash, change, |id| blocks[*id].clone(), old);
        let mut out = layout.kept.clone();
        if !layout.new_block.is_empty() {
            out.push(store.put(layout.new_block));
        }
        (out, layout.state_hash)
    }

    #[test]
    fn later_layers_override_and_removals_hide() {
        let a = [e(1, 1, 10), e(5, 2, 20), e(5, 3, 30)];
        let b = [e(5, 2, 21), e(5, 3, 0)];
        assert_eq!(full_state(&[&a, &b]), vec![e(1, 1, 10), e(5, 2, 21)]);
        assert_eq!(lookup(&[&a, &b], (5, 2)), Some(21));
        assert_eq!(lookup(&[&a, &b], (5, 3)), None);
        assert_eq!(lookup(&[&a, &b], (1, 1)), Some(10));
        assert_eq!(merge_layers(&[&a, &b], false), vec![e(1, 1, 10), e(5, 2, 21), e(5, 3, 0)]);
    }

    #[test]
    fn normalise_sorts_and_keeps_the_last_value() {
        assert_eq!(normalise(vec![e(5, 2, 1), e(1, 1, 1), e(5, 2, 3)]), vec![e(1, 1, 1), e(5, 2, 3)]);
    }

    #[test]
    fn state_hash_ignores_layout_and_order() {
        let s = vec![e(1, 1, 10), e(5, 2, 20), e(5, 3, 30)];
        let mut h = StateHash::default();
        for x in s.iter().rev() {
            h.add(x);
        }
        assert_eq!(h, StateHash::of(&s));
        h.remove(&e(5, 3, 30));
        assert_eq!(h, StateHash::of(&s[..2]));
        assert_ne!(StateHash::of(&s[..2]), StateHash::of(&s));
    }

    #[test]
    fn binary_counter_folding() {
        assert_eq!(blocks_to_fold(&[], 1), 0);
        assert_eq!(blocks_to_fold(&[1], 1), 1);
        assert_eq!(blocks_to_fold(&[2], 1), 1); // 1*2 >= 2
        assert_eq!(blocks_to_fold(&[4], 1), 0);
        assert_eq!(blocks_to_fold(&[8, 4, 2, 1], 1), 4);
        assert_eq!(blocks_to_fold(&[100_000], 1), 0);
        let many = vec![1usize << 40; MAX_BLOCKS];
        assert!(MAX_BLOCKS - blocks_to_fold(&many, 1) + 1 <= MAX_BLOCKS);
    }

    /// A long chain of single changes in a room growing to thousands of members, then churn: the
    /// layout always reads back the naive state, the block count stays logarithmic, the hash
    /// matches the naive state's, and storage grows with the changes, not with the state size.
    #[test]
    fn chains_of_changes_stay_small_and_exact() {
        let mut rng = Rng::new(7);
        let mut store = Store::default();
        let mut naive: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        let mut layout: Vec<BlockRef<usize>> = Vec::new();
        let mut hash = StateHash::default();
        let mut next_event = 1;
        let steps = 6000;
        for step in 0..steps {
            let key = if step < 3000 { (5, step as i64 + 100) } else { (5, rng.below(3000) as i64 + 100) };
            let change = if step % 97 == 0 && step > 3000 {
                vec![Entry { type_nid: key.0, state_key_nid: key.1, event_nid: 0 }]
            } else {
                next_event += 1;
                vec![Entry { type_nid: key.0, state_key_nid: key.1, event_nid: next_event }]
            };
            for c in &change {
                if c.is_removal() {
                    naive.remove(&c.key());
                } else {
                    naive.insert(c.key(), c.event_nid);
                }
            }
            (layout, hash) = apply(&mut store, &layout, hash, change);
            assert!(layout.len() <= 2 * 13 + 2, "step {step}: {} blocks", layout.len());
            if step % 500 == 0 || step == steps - 1 {
                let expect: Vec<Entry> = naive.iter().map(|(&(t, k), &ev)| e(t, k, ev)).collect();
                assert_eq!(full_state(&store.layers(&layout)), expect);
                assert_eq!(hash, StateHash::of(&expect));
            }
        }
        // Amortised copying: about log2(n) copies per change, far below one full state per change.
        let per_change = store.entries_written as f64 / steps as f64;
        assert!(per_change < 24.0, "{per_change} entries written per change");
    }

    /// Forks share their parent's blocks; identical states get identical hashes.
    #[test]
    fn forks_share_blocks_and_equal_states_hash_equal() {
        let mut store = Store::default();
        let base: Vec<Entry> = (0..1000).map(|i| e(5, i + 100, i + 1)).collect();
        let (root, h0) = apply(&mut store, &[], StateHash::default(), base);
        let (a, ha) = apply(&mut store, &root, h0, vec![e(5, 100, 5000)]);
        let (b, hb) = apply(&mut store, &root, h0, vec![e(5, 101, 6000)]);
        assert_eq!(a[0], root[0]);
        assert_eq!(b[0], root[0]);
        assert_ne!(ha, hb);
        // Reverting the change gives the root's state and the root's hash.
        let (back, hback) = apply(&mut store, &a, ha, vec![e(5, 100, 1)]);
        assert_eq!(hback, h0);
        assert_eq!(full_state(&store.layers(&back)), full_state(&store.layers(&root)));
        // An empty change keeps the layout.
        let (same, hsame) = apply(&mut store, &a, ha, vec![]);
        assert_eq!((same, hsame), (a, ha));
    }

    #[test]
    fn block_hashes_identify_contents() {
        assert_eq!(block_hash(&[e(1, 1, 1)]), block_hash(&[e(1, 1, 1)]));
        assert_ne!(block_hash(&[e(1, 1, 1)]), block_hash(&[e(1, 1, 2)]));
        assert_ne!(block_hash(&[]), block_hash(&[e(0, 0, 0)]));
    }
}
