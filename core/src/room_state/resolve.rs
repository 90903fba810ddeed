//! New snapshots from a change, and state resolution between snapshots.
//!
//! Resolution never loads a whole state. Snapshots of one room share their older blocks, so only
//! keys in the blocks they do not share can differ; those are looked up in every snapshot to find
//! the conflicted keys. The algorithms then need, besides the conflicted events, only:
//! - the unconflicted events whose auth chains meet the events in some but not all of the
//!   conflicted events' chains (`D0` below). An event's auth events are always stored before it,
//!   so they have smaller NIDs, and such unconflicted events have NIDs of at least `min(D0)`:
//!   they are found with [`StateStore::entries_since`]. With them in the state sets, the auth
//!   chain difference is exactly the one over the full states.
//! - the unconflicted events the authorization rules look up for the events being checked
//!   (create, power levels, join rules, the members involved).
//! The resolved state is the first snapshot plus the keys the algorithm decided.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{StateStore, StoredEvent};
use crate::auth::{auth_types_for_event, StateMap};
use crate::error::{Error, Result};
use crate::event::Pdu;
use crate::room_version::RoomVersion;
use crate::state_blocks::{child_layout, merge_layers, Entry};
use crate::state_res::resolve_with_auth_difference;

/// The snapshot that is `parent` with `change` applied (an entry with event NID 0 removes its
/// key). Returns `parent` itself when nothing changes.
pub fn apply_change(store: &mut dyn StateStore, parent: i64, change: Vec<Entry>) -> Result<i64> {
    if change.is_empty() {
        return Ok(parent);
    }
    let snap = store.snapshot(parent)?;
    let change = crate::state_blocks::normalise(change);
    let keys: Vec<(i64, i64)> = change.iter().map(Entry::key).collect();
    let old: HashMap<(i64, i64), Option<i64>> = keys.iter().copied().zip(store.lookup(parent, &keys)?).collect();
    let size = snap.size
        + change
            .iter()
            .map(|e| match (old[&e.key()].is_some(), e.event_nid != 0) {
                (false, true) => 1,
                (true, false) => -1,
                _ => 0,
            })
            .sum::<i64>();
    let mut failure: Option<Error> = None;
    let layout = child_layout(
        &snap.blocks,
        snap.hash,
        change,
        |id| match store.block(*id) {
            Ok(b) => b.as_ref().clone(),
            Err(e) => {
                failure.get_or_insert(e);
                Vec::new()
            }
        },
        |k| old.get(&k).copied().flatten(),
    );
    if let Some(e) = failure {
        return Err(e);
    }
    if layout.state_hash == snap.hash {
        return Ok(parent);
    }
    store.save_snapshot(&layout.kept, layout.new_block, layout.state_hash, size)
}

/// Resolves the states of `snapshots` with the algorithm of `rv` and returns the snapshot of the
/// result (an existing one when that state is already stored).
pub fn resolve_snapshots(rv: &RoomVersion, store: &mut dyn StateStore, snapshots: &[i64]) -> Result<i64> {
    let mut snaps = snapshots.to_vec();
    snaps.sort_unstable();
    snaps.dedup();
    match snaps.as_slice() {
        [] => return Err(Error::invalid(None, "state resolution needs at least one state")),
        [only] => return Ok(*only),
        _ => {}
    }
    if let Some(known) = store.known_resolution(&snaps) {
        return Ok(known);
    }
    let infos = snaps.iter().map(|&s| store.snapshot(s)).collect::<Result<Vec<_>>>()?;
    let mut hashes: Vec<_> = infos.iter().map(|i| i.hash).collect();
    hashes.dedup();
    if hashes.len() == 1 {
        return Ok(snaps[0]);
    }

    // 1. Keys that may differ: those in blocks not shared by every snapshot. Shared blocks are
    //    a common prefix (a snapshot is a prefix of its parent's blocks plus a new one), so a
    //    key's value in a snapshot is the one in its own suffix if there, else the prefix's.
    let mut shared: HashSet<i64> = infos[0].blocks.iter().map(|b| b.id).collect();
    for info in &infos[1..] {
        let ids: HashSet<i64> = info.blocks.iter().map(|b| b.id).collect();
        shared.retain(|b| ids.contains(b));
    }
    // Each suffix as one sorted run (a k-way merge, removals kept as 0), the keys as their sorted
    // union: no hashing, since after a fold that reached the bottom one suffix is a whole state.
    let mut suffixes: Vec<Vec<Entry>> = Vec::with_capacity(infos.len());
    for info in &infos {
        let blocks = info.blocks.iter().filter(|b| !shared.contains(&b.id)).map(|b| store.block(b.id)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[Entry]> = blocks.iter().map(|b| b.as_slice()).collect();
        suffixes.push(merge_layers(&refs, false));
    }
    let keys: Vec<(i64, i64)> = {
        let refs: Vec<&[Entry]> = suffixes.iter().map(Vec::as_slice).collect();
        merge_layers(&refs, false).iter().map(Entry::key).collect()
    };
    let in_suffix = |suffix: &[Entry], k: &(i64, i64)| suffix.binary_search_by(|e| e.key().cmp(k)).ok().map(|i| suffix[i].event_nid);
    // The prefix's value, for keys some suffix lacks: looked up in a snapshot whose suffix lacks it.
    let mut prefix: HashMap<(i64, i64), Option<i64>> = HashMap::new();
    for (i, suffix) in suffixes.iter().enumerate() {
        let ask: Vec<(i64, i64)> =
            keys.iter().copied().filter(|k| in_suffix(suffix, k).is_none() && !prefix.contains_key(k)).collect();
        for (k, v) in ask.iter().zip(store.lookup(snaps[i], &ask)?) {
            prefix.insert(*k, v);
        }
    }
    let values: Vec<Vec<Option<i64>>> = suffixes
        .iter()
        .map(|suffix| {
            keys.iter()
                .map(|k| match in_suffix(suffix, k) {
                    Some(ev) => (ev != 0).then_some(ev),
                    None => prefix[k],
                })
                .collect()
        })
        .collect();
    let conflicted: Vec<usize> = (0..keys.len()).filter(|&k| values.iter().any(|v| v[k] != values[0][k])).collect();
    let conflicted_keys: HashSet<(i64, i64)> = conflicted.iter().map(|&k| keys[k]).collect();

    // 2. D0: events in some but not all of the conflicted events' (inclusive) auth chains.
    //    (Loading the events first brings their chains in one round trip.)
    let conflicted_events: Vec<i64> = conflicted.iter().flat_map(|&k| values.iter().filter_map(move |v| v[k])).collect();
    store.events(&conflicted_events)?;
    let mut chains: Vec<HashSet<i64>> = Vec::with_capacity(snaps.len());
    for v in &values {
        let mut chain = HashSet::new();
        for &k in &conflicted {
            if let Some(ev) = v[k] {
                chain.insert(ev);
                chain.extend(store.auth_chain(ev)?.iter().copied());
            }
        }
        chains.push(chain);
    }
    let d0: BTreeSet<i64> = chains.iter().flatten().copied().filter(|e| !chains.iter().all(|c| c.contains(e))).collect();

    // 3. The auth difference of the full states: D0 minus what some unconflicted event (in
    //    every state) has in its inclusive auth chain. Such an event is newer than the D0 event
    //    it covers, so only the unconflicted entries from min(D0) on are read, and only their
    //    stored chains (integers), not the events.
    let mut remaining: HashSet<i64> = d0.iter().copied().collect();
    // a. D0 events still in the state, unconflicted (the old join rules, create, power levels a
    //    branch's event names): each is its own witness.
    if !remaining.is_empty() {
        let d0_events = store.events(&d0.iter().copied().collect::<Vec<_>>())?;
        let keyed: Vec<(i64, (i64, i64))> =
            d0_events.iter().filter_map(|e| e.key().map(|k| (e.nid, k))).filter(|(_, k)| !conflicted_keys.contains(k)).collect();
        let keys: Vec<(i64, i64)> = keyed.iter().map(|(_, k)| *k).collect();
        let mut witnesses: Vec<i64> = Vec::new();
        for ((nid, _), now) in keyed.iter().zip(store.lookup(snaps[0], &keys)?) {
            if now == Some(*nid) {
                remaining.remove(nid);
                witnesses.push(*nid);
            }
        }
        // a'. And what is in their chains: the old events D0 holds are mostly the history of
        //    such an event (a sender's earlier memberships and who invited them), met through
        //    it from one branch only. Without this, min(D0) is old and b reads most of the state.
        if !remaining.is_empty() {
            for chain in store.auth_chains(&witnesses)? {
                remaining.retain(|x| chain.binary_search(x).is_err());
            }
        }
    }
    // b. Then the chains of the unconflicted events from min(what is left) on, in chunks, until
    //    nothing is left to decide (usually nothing is left after a).
    if let Some(&min) = remaining.iter().min() {
        let newer: Vec<i64> = store
            .entries_since(snaps[0], min)?
            .into_iter()
            .filter(|e| !conflicted_keys.contains(&e.key()))
            .map(|e| e.event_nid)
            .collect();
        // Sorted, with a "covered" mark: chains are long and mostly older than min, which a
        // comparison rules out before any search.
        let mut left: Vec<i64> = remaining.iter().copied().collect();
        left.sort_unstable();
        let mut covered = vec![false; left.len()];
        let mut cover = |x: i64| {
            if x >= min {
                if let Ok(i) = left.binary_search(&x) {
                    covered[i] = true;
                }
            }
        };
        for batch in newer.chunks(4096) {
            for (u, chain) in batch.iter().zip(store.auth_chains(batch)?) {
                cover(*u);
                for &x in chain.iter().rev() {
                    if x < min {
                        break;
                    }
                    cover(x);
                }
            }
        }
        remaining = left.into_iter().zip(covered).filter(|(_, c)| !c).map(|(x, _)| x).collect();
    }
    let auth_difference: BTreeSet<i64> = remaining.into_iter().collect();
    let mut unconflicted: Vec<Entry> = Vec::new();
    let mut involved: BTreeSet<i64> = auth_difference.clone();
    involved.extend(conflicted.iter().flat_map(|&k| values.iter().filter_map(move |v| v[k])));
    let involved: Vec<i64> = involved.into_iter().collect();
    let mut auth_keys: BTreeSet<(String, String)> =
        ["m.room.create", "m.room.power_levels", "m.room.join_rules"].iter().map(|t| ((*t).to_owned(), String::new())).collect();
    for ev in store.events(&involved)? {
        auth_keys.extend(auth_types_for_event(rv, &ev.pdu));
    }
    let auth_keys: Vec<(String, String)> = auth_keys.into_iter().collect();
    let auth_key_nids: Vec<(i64, i64)> =
        store.key_nids(&auth_keys)?.into_iter().flatten().filter(|k| !conflicted_keys.contains(k)).collect();
    for (key, ev) in auth_key_nids.iter().zip(store.lookup(snaps[0], &auth_key_nids)?) {
        if let Some(ev) = ev {
            unconflicted.push(Entry { type_nid: key.0, state_key_nid: key.1, event_nid: ev });
        }
    }

    // 4. The restricted state sets, and every event they and their auth chains name.
    store.events(&unconflicted.iter().map(|e| e.event_nid).collect::<Vec<_>>())?;
    let mut set_nids: Vec<Vec<i64>> = Vec::with_capacity(snaps.len());
    for v in &values {
        let mut set: Vec<i64> = conflicted.iter().filter_map(|&k| v[k]).collect();
        set.extend(unconflicted.iter().map(|e| e.event_nid));
        set.sort_unstable();
        set.dedup();
        set_nids.push(set);
    }
    // Every event of the sets and of their auth chains, each event's chain read once (the sets
    // share most of their events): a flat vector sorted once, not a tree grown one NID at a time.
    let mut members: Vec<i64> = set_nids.iter().flatten().copied().collect();
    members.sort_unstable();
    members.dedup();
    let mut wanted: Vec<i64> = members.clone();
    for &e in &members {
        wanted.extend(store.auth_chain(e)?.iter().copied());
    }
    wanted.sort_unstable();
    wanted.dedup();
    let loaded: Vec<std::rc::Rc<StoredEvent>> = store.events(&wanted)?;
    let by_nid: HashMap<i64, &StoredEvent> = loaded.iter().map(|e| (e.nid, e.as_ref())).collect();
    let by_id: HashMap<String, &Pdu> = loaded.iter().map(|e| (e.pdu.event_id.clone(), &e.pdu)).collect();
    let nid_of: HashMap<&str, &StoredEvent> = loaded.iter().map(|e| (e.pdu.event_id.as_str(), e.as_ref())).collect();
    let sets: Vec<StateMap<String>> = set_nids
        .iter()
        .map(|set| {
            set.iter()
                .map(|n| {
                    let ev = by_nid[n];
                    ((ev.pdu.event_type.clone(), ev.pdu.state_key.clone().unwrap_or_default()), ev.pdu.event_id.clone())
                })
                .collect()
        })
        .collect();
    let difference: Vec<String> = store.events(&auth_difference.iter().copied().collect::<Vec<_>>())?.iter().map(|e| e.pdu.event_id.clone()).collect();
    let resolved = resolve_with_auth_difference(rv, &sets, &by_id, Some(&difference))?;

    // 5. The first snapshot plus what the algorithm decided.
    let mut change: Vec<Entry> = Vec::with_capacity(resolved.len() + conflicted.len());
    let mut decided: HashSet<(i64, i64)> = HashSet::new();
    for id in resolved.values() {
        let ev = nid_of.get(id.as_str()).ok_or_else(|| Error::not_found(format!("resolved event {id} was not loaded")))?;
        let key = ev.key().ok_or_else(|| Error::invalid(None, format!("resolved event {id} is not a state event")))?;
        decided.insert(key);
        change.push(Entry { type_nid: key.0, state_key_nid: key.1, event_nid: ev.nid });
    }
    // The unconflicted state wins in every algorithm, and the sets held only an excerpt of it:
    // a key outside the conflicted ones that the algorithm set (an auth difference event applied
    // for a key the excerpt lacks) keeps its value in the states, unless they all lack it.
    let others: Vec<(i64, i64)> = change.iter().map(Entry::key).filter(|k| !conflicted_keys.contains(k)).collect();
    let present: HashSet<(i64, i64)> =
        others.iter().copied().zip(store.lookup(snaps[0], &others)?).filter(|(_, v)| v.is_some()).map(|(k, _)| k).collect();
    change.retain(|e| !present.contains(&e.key()));
    for &k in &conflicted_keys {
        if !decided.contains(&k) {
            change.push(Entry { type_nid: k.0, state_key_nid: k.1, event_nid: 0 });
        }
    }
    let result = apply_change(store, snaps[0], change)?;
    store.remember_resolution(&snaps, result);
    Ok(result)
}
