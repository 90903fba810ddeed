//! SQL functions over stored state that need Rust: reading snapshots and blocks (through the
//! backend's cache, src/block_cache.rs) and decoding the compact auth chain sets.

use pgrx::prelude::*;
use roomserver_core::{nid_set, Error};

use crate::store::block_cache;
use crate::errors::{raise, OrRaise};

/// The NIDs of a compact NID set (stored_events.auth_chain), ascending.
#[pg_extern(immutable, strict, parallel_safe)]
fn nid_set_decode(bytes: &[u8]) -> Vec<i64> {
    nid_set::decode(bytes).or_raise("nid_set_decode")
}

/// The union of compact NID sets (NULL elements skipped), ascending: the auth chain of a whole
/// state from its events' stored chains, without unnesting every chain into rows.
#[pg_extern(immutable, strict, parallel_safe)]
fn nid_set_union(sets: Array<'_, &[u8]>) -> Vec<i64> {
    let sets: Vec<&[u8]> = sets.iter().flatten().collect();
    nid_set::union(&sets).or_raise("nid_set_union")
}

fn non_null(values: Vec<Option<i64>>, name: &str) -> Vec<i64> {
    values
        .into_iter()
        .map(|v| v.unwrap_or_else(|| raise(Error::invalid(Some(name), format!("{name} must not contain NULL")), "snapshot_lookup")))
        .collect()
}

/// The event NID for each (type NID, state key NID) pair in a snapshot, in the order given
/// (`event_nid` NULL: not in the state). The newest block holding the key decides. ERROR P0002
/// when the snapshot is not one of the room's.
#[pg_extern(stable, strict, parallel_safe)]
fn snapshot_lookup(
    room_nid: i64,
    snapshot_nid: i64,
    type_nids: Vec<Option<i64>>,
    state_key_nids: Vec<Option<i64>>,
) -> TableIterator<'static, (name!(ord, i64), name!(event_nid, Option<i64>))> {
    if type_nids.len() != state_key_nids.len() {
        raise(
            Error::invalid(Some("state_key_nids"), format!("{} type NIDs but {} state key NIDs", type_nids.len(), state_key_nids.len())),
            "snapshot_lookup",
        )
    }
    let keys: Vec<(i64, i64)> = non_null(type_nids, "type_nids").into_iter().zip(non_null(state_key_nids, "state_key_nids")).collect();
    let found = Spi::connect_mut(|client| block_cache::lookup(client, room_nid, snapshot_nid, &keys)).or_raise("snapshot_lookup");
    TableIterator::new(found.into_iter().enumerate().map(|(i, ev)| (i as i64 + 1, ev)))
}

/// The full state of a snapshot as three parallel arrays sorted by key (roomserver.snapshot_entries
/// unnests them): one row instead of a row per entry keeps the call cheap for 100,000 entries.
#[pg_extern(stable, strict, parallel_safe)]
fn snapshot_state_arrays(
    room_nid: i64,
    snapshot_nid: i64,
) -> TableIterator<'static, (name!(type_nids, Vec<i64>), name!(state_key_nids, Vec<i64>), name!(event_nids, Vec<i64>))> {
    let state = Spi::connect_mut(|client| block_cache::full_state(client, room_nid, snapshot_nid)).or_raise("snapshot_state_arrays");
    let (mut t, mut k, mut e) = (Vec::with_capacity(state.len()), Vec::with_capacity(state.len()), Vec::with_capacity(state.len()));
    for x in state {
        t.push(x.type_nid);
        k.push(x.state_key_nid);
        e.push(x.event_nid);
    }
    TableIterator::once((t, k, e))
}

/// The full state of a snapshot as NIDs, sorted by key: the k-way merge of its blocks (from the
/// backend's cache), newest block winning.
#[pg_extern(stable, strict, parallel_safe)]
fn snapshot_entries(
    room_nid: i64,
    snapshot_nid: i64,
) -> TableIterator<'static, (name!(type_nid, i64), name!(state_key_nid, i64), name!(event_nid, i64))> {
    let state = Spi::connect_mut(|client| block_cache::full_state(client, room_nid, snapshot_nid)).or_raise("snapshot_entries");
    TableIterator::new(state.into_iter().map(|e| (e.type_nid, e.state_key_nid, e.event_nid)))
}

/// The entries of one state block (event NID 0: the block removes the key), for DBAs: blocks
/// are stored packed (roomserver.state_blocks.entries).
#[pg_extern(stable, strict, parallel_safe)]
fn block_entries(
    room_nid: i64,
    block_nid: i64,
) -> TableIterator<'static, (name!(type_nid, i64), name!(state_key_nid, i64), name!(event_nid, i64))> {
    let block = Spi::connect_mut(|client| block_cache::blocks(client, room_nid, &[block_nid])).or_raise("block_entries");
    let entries: Vec<(i64, i64, i64)> = block[0].entries.iter().map(|e| (e.type_nid, e.state_key_nid, e.event_nid)).collect();
    TableIterator::new(entries)
}

/// What changed from one snapshot of a room to another: the entries of `to_snapshot` that
/// differ from `from_snapshot` (event NID 0: the key is gone). Reads only the blocks the two do
/// not share, so consecutive states diff in proportion to the change, not to the state.
#[pg_extern(stable, strict, parallel_safe)]
fn snapshot_diff(
    room_nid: i64,
    from_snapshot: i64,
    to_snapshot: i64,
) -> TableIterator<'static, (name!(type_nid, i64), name!(state_key_nid, i64), name!(event_nid, i64))> {
    let changed = Spi::connect_mut(|client| -> roomserver_core::Result<Vec<(i64, i64, i64)>> {
        let from = block_cache::snapshot(client, room_nid, from_snapshot)?;
        let to = block_cache::snapshot(client, room_nid, to_snapshot)?;
        let shared: std::collections::HashSet<i64> = from.blocks.iter().map(|b| b.id).collect();
        let shared: std::collections::HashSet<i64> = to.blocks.iter().map(|b| b.id).filter(|id| shared.contains(id)).collect();
        let mut keys: Vec<(i64, i64)> = Vec::new();
        for snap in [&from, &to] {
            let ids: Vec<i64> = snap.blocks.iter().map(|b| b.id).filter(|id| !shared.contains(id)).collect();
            for b in block_cache::blocks(client, room_nid, &ids)? {
                keys.extend(b.entries.iter().map(|e| e.key()));
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let before = block_cache::lookup(client, room_nid, from_snapshot, &keys)?;
        let after = block_cache::lookup(client, room_nid, to_snapshot, &keys)?;
        Ok(keys
            .into_iter()
            .zip(before.into_iter().zip(after))
            .filter(|(_, (b, a))| b != a)
            .map(|((t, k), (_, a))| (t, k, a.unwrap_or(0)))
            .collect())
    })
    .or_raise("snapshot_diff");
    TableIterator::new(changed)
}
