//! State snapshots and blocks, cached for the life of the backend.
//!
//! A snapshot or a block never changes once written and its NID (from a sequence) is never
//! reused, so a backend may keep what it has read: after the first read of a room's state, a
//! single-key lookup is a binary search per block in memory (no SQL at all) and a full state is a
//! k-way merge of cached blocks. Ingest and the read functions share the cache.
//!
//! What could make an entry wrong, and what clears the cache:
//! - the state tables are truncated, dropped or re-created (NIDs could then be reused), or their
//!   privileges change: a relcache invalidation of one of them (delivered at the next
//!   transaction start at the latest), or a reset of all caches;
//! - a transaction or a subtransaction (`ROLLBACK TO SAVEPOINT`, a PL/pgSQL `EXCEPTION` block)
//!   that wrote state rolls back: any abort, since aborts are rare and the cache refills itself.
//!
//! The cache answers without SQL, so it checks privileges itself: a role that may not SELECT
//! the tables the cache mirrors gets the 42501 a query of them would raise (`SET ROLE` in a
//! pooled backend must not read what another role's call cached).
//!
//! Nothing maps hashes to NIDs here: deduplication always asks the tables. The cache is bounded
//! by the setting `roomserver.cache_size`; past it, it starts over.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PgSqlErrorCode};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::spi::SpiClient;
use roomserver_core::room_state::Snapshot;
use roomserver_core::state_blocks::{self, decode_entries, BlockRef, Entry, StateHash};
use roomserver_core::{Error, Result};

use crate::store::plans::{query, query_first, Statement, INT8, INT8_ARRAY};

/// `roomserver.cache_size`: the memory a backend may spend on the cache, in kB (GUC_UNIT_KB).
pub static CACHE_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_CACHE_SIZE_KB);
/// 100 MB: the states of several 100,000-member rooms with their history.
const DEFAULT_CACHE_SIZE_KB: i32 = 100 * 1024;
/// What one cached unit costs: a block entry (three NIDs), or three NIDs of an auth chain.
const UNIT_BYTES: usize = 24;

/// Registers `roomserver.cache_size` (called from `_PG_init`).
pub fn define_settings() {
    GucRegistry::define_int_guc(
        c"roomserver.cache_size",
        c"Memory each backend may use to cache state blocks, snapshots and auth chains.",
        c"Past it the cache is emptied and refills itself. 0 keeps nothing between lookups.",
        &CACHE_SIZE_KB,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
}

/// How many units ([`UNIT_BYTES`]) the cache may hold now.
fn capacity_units() -> usize {
    usize::try_from(CACHE_SIZE_KB.get()).unwrap_or(0).saturating_mul(1024) / UNIT_BYTES
}

/// A cached block: its entries sorted by key and its newest event.
pub struct Block {
    pub entries: Vec<Entry>,
    pub max_event_nid: i64,
}

#[derive(Default)]
struct Cache {
    snapshots: HashMap<i64, (i64, Rc<Snapshot>)>,
    blocks: HashMap<i64, (i64, Rc<Block>)>,
    /// Memory held, in units of [`UNIT_BYTES`]: a block entry is one unit, an auth chain one
    /// per three NIDs (plus one), a resolution one per snapshot it resolved.
    units: usize,
    /// Results of state resolution: sorted snapshot NIDs -> the resolved snapshot.
    resolutions: HashMap<Vec<i64>, i64>,
    /// Stored auth chains of state events (stored_events.auth_chain never changes).
    chains: HashMap<i64, Rc<Vec<i64>>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    // Set by the callbacks, which must not touch CACHE (they can run in the middle of a query
    // made while it is borrowed); acted on at the next use.
    static STALE: Cell<bool> = const { Cell::new(false) };
    // The OIDs of the tables the cache mirrors (state_snapshots, state_blocks, stored_events),
    // once known; 0 before.
    static WATCHED: Cell<[u32; 3]> = const { Cell::new([0; 3]) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    // The last role found allowed to read the watched tables; cleared with the cache, so a
    // GRANT or REVOKE (a relcache invalidation) makes it check again.
    static ALLOWED_ROLE: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

// The callbacks only set thread-locals: they cannot raise, so they need no #[pg_guard].
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let r = relid.to_u32();
    if r == 0 || WATCHED.with(Cell::get).contains(&r) {
        STALE.with(|s| s.set(true));
    }
}

unsafe extern "C-unwind" fn on_transaction_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if event == pg_sys::XactEvent::XACT_EVENT_ABORT || event == pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT {
        STALE.with(|s| s.set(true));
    }
}

unsafe extern "C-unwind" fn on_subtransaction_event(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        STALE.with(|s| s.set(true));
    }
}

const WATCHED_OIDS: Statement = Statement {
    name: "cache.watched",
    sql: "SELECT 'roomserver.state_snapshots'::pg_catalog.regclass::pg_catalog.oid::bigint,
                 'roomserver.state_blocks'::pg_catalog.regclass::pg_catalog.oid::bigint,
                 'roomserver.stored_events'::pg_catalog.regclass::pg_catalog.oid::bigint",
    args: &[],
    mutating: false,
};
const SNAPSHOT: Statement = Statement {
    name: "cache.snapshot",
    sql: "SELECT state_hash, block_nids, block_sizes, state_size FROM roomserver.state_snapshots WHERE room_nid = $1 AND snapshot_nid = $2",
    args: &[INT8, INT8],
    mutating: false,
};
const CHAINS: Statement = Statement {
    name: "cache.chains",
    sql: "SELECT e.event_nid, e.auth_chain FROM unnest($2::bigint[]) AS q(nid)
          CROSS JOIN LATERAL (SELECT e.event_nid, e.auth_chain FROM roomserver.stored_events e
                              WHERE e.room_nid = $1 AND e.event_nid = q.nid OFFSET 0) e",
    args: &[INT8, INT8_ARRAY],
    mutating: false,
};
const BLOCKS: Statement = Statement {
    name: "cache.blocks",
    // A primary-key probe per block, whatever the statistics were when the plan was kept.
    sql: "SELECT b.block_nid, b.entries, b.max_event_nid FROM unnest($2::bigint[]) AS q(nid)
          CROSS JOIN LATERAL (SELECT * FROM roomserver.state_blocks b WHERE b.room_nid = $1 AND b.block_nid = q.nid OFFSET 0) b",
    args: &[INT8, INT8_ARRAY],
    mutating: false,
};

/// Called before every use: registers the callbacks once, drops a stale or oversized cache.
fn prepare(client: &mut SpiClient<'_>) {
    if !REGISTERED.with(Cell::get) {
        // SAFETY: plain C registrations with functions that only set thread-locals.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0));
            pg_sys::RegisterXactCallback(Some(on_transaction_event), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subtransaction_event), std::ptr::null_mut());
        }
        REGISTERED.with(|r| r.set(true));
        STALE.with(|s| s.set(true));
    }
    if STALE.with(|s| s.replace(false)) {
        CACHE.with(|c| *c.borrow_mut() = Cache::default());
        ALLOWED_ROLE.with(|r| r.set(None));
        let oids: [i64; 3] = query_first(client, &WATCHED_OIDS, &[], |r| {
            [r.value(1, "state_snapshots oid"), r.value(2, "state_blocks oid"), r.value(3, "stored_events oid")]
        })
        .unwrap_or_default();
        WATCHED.with(|w| w.set(oids.map(|o| o as u32)));
    }
    check_privileges();
    if CACHE.with(|c| c.borrow().units > capacity_units()) {
        CACHE.with(|c| *c.borrow_mut() = Cache::default());
    }
}

/// Raises 42501, as a query of the table would, when the current role may not read one of the
/// tables the cache mirrors.
fn check_privileges() {
    // SAFETY: reads the backend's current user; no allocation.
    let role = unsafe { pg_sys::GetUserId() };
    if ALLOWED_ROLE.with(Cell::get) == Some(role) {
        return;
    }
    for (oid, name) in WATCHED.with(Cell::get).into_iter().zip(["state_snapshots", "state_blocks", "stored_events"]) {
        // SAFETY: a syscache lookup of a relation that exists (its OID was just read).
        let verdict = unsafe { pg_sys::pg_class_aclcheck(pg_sys::Oid::from(oid), role, pg_sys::ACL_SELECT as pg_sys::AclMode) };
        if verdict != pg_sys::AclResult::ACLCHECK_OK {
            ErrorReport::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, format!("permission denied for table {name}"), "pg_roomserver")
                .report(pgrx::PgLogLevel::ERROR);
        }
    }
    ALLOWED_ROLE.with(|r| r.set(Some(role)));
}

/// The snapshot an earlier resolution of `states` gave in this backend (see
/// `StateStore::known_resolution`). Snapshot NIDs are global, so the room needs no key.
pub fn known_resolution(client: &mut SpiClient<'_>, states: &[i64]) -> Option<i64> {
    prepare(client);
    CACHE.with(|c| c.borrow().resolutions.get(states).copied())
}

pub fn remember_resolution(states: &[i64], result: i64) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.units += states.len();
        c.resolutions.insert(states.to_vec(), result);
    });
}

/// The stored auth chains of events of the room (empty for events that have none), in the
/// order asked; the ones not cached are read in one query.
pub fn auth_chains(client: &mut SpiClient<'_>, room_nid: i64, nids: &[i64]) -> Result<Vec<Rc<Vec<i64>>>> {
    prepare(client);
    let mut missing: Vec<i64> = CACHE.with(|c| {
        let c = c.borrow();
        nids.iter().copied().filter(|n| !c.chains.contains_key(n)).collect()
    });
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let rows: Vec<(i64, Option<Vec<u8>>)> =
            query(client, &CHAINS, &[room_nid.into(), missing.into()], |r| (r.value(1, "event_nid"), r.nullable(2, "auth_chain")));
        for (nid, bytes) in rows {
            let chain = match bytes {
                Some(b) => roomserver_core::nid_set::decode(&b).map_err(|e| Error::corrupt("stored_events.auth_chain", e))?,
                None => Vec::new(),
            };
            CACHE.with(|c| {
                let mut c = c.borrow_mut();
                c.units += chain.len() / 3 + 1;
                c.chains.insert(nid, Rc::new(chain));
            });
        }
    }
    CACHE.with(|c| {
        let c = c.borrow();
        nids.iter().map(|n| c.chains.get(n).cloned().ok_or_else(|| Error::not_found(format!("event NID {n} is not stored")))).collect()
    })
}

/// A snapshot of the room; `Error::not_found` when there is none.
pub fn snapshot(client: &mut SpiClient<'_>, room_nid: i64, nid: i64) -> Result<Rc<Snapshot>> {
    prepare(client);
    if let Some((room, s)) = CACHE.with(|c| c.borrow().snapshots.get(&nid).cloned()) {
        if room == room_nid {
            return Ok(s);
        }
        return Err(Error::not_found(format!("state snapshot {nid} of room NID {room_nid} not found")));
    }
    let row: Option<(Vec<u8>, Vec<i64>, Vec<i32>, i32)> = query_first(client, &SNAPSHOT, &[room_nid.into(), nid.into()], |r| {
        (r.value(1, "state_hash"), r.value(2, "block_nids"), r.value(3, "block_sizes"), r.value(4, "state_size"))
    });
    let (hash, ids, sizes, size) = row.ok_or_else(|| Error::not_found(format!("state snapshot {nid} of room NID {room_nid} not found")))?;
    let hash: [u8; 32] = hash.try_into().map_err(|_| Error::corrupt("state_snapshots.state_hash", "not 32 bytes"))?;
    if ids.len() != sizes.len() {
        return Err(Error::corrupt("state_snapshots.block_sizes", "not as many sizes as block_nids"));
    }
    let blocks = ids.into_iter().zip(sizes).map(|(id, len)| BlockRef { id, len: len as usize }).collect();
    let snap = Rc::new(Snapshot { nid, hash: StateHash(hash), blocks, size: i64::from(size) });
    CACHE.with(|c| c.borrow_mut().snapshots.insert(nid, (room_nid, snap.clone())));
    Ok(snap)
}

/// Blocks of the room by NID, in the order asked; the missing ones are read in one query.
pub fn blocks(client: &mut SpiClient<'_>, room_nid: i64, ids: &[i64]) -> Result<Vec<Rc<Block>>> {
    prepare(client);
    let mut missing: Vec<i64> = CACHE.with(|c| {
        let c = c.borrow();
        ids.iter().copied().filter(|id| !matches!(c.blocks.get(id), Some((r, _)) if *r == room_nid)).collect()
    });
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let rows: Vec<(i64, Vec<u8>, i64)> = query(client, &BLOCKS, &[room_nid.into(), missing.into()], |r| {
            (r.value(1, "block_nid"), r.value(2, "entries"), r.value(3, "max_event_nid"))
        });
        for (id, bytes, max_event_nid) in rows {
            let entries = decode_entries(&bytes).map_err(|e| Error::corrupt("state_blocks.entries", e))?;
            CACHE.with(|c| {
                let mut c = c.borrow_mut();
                c.units += entries.len();
                c.blocks.insert(id, (room_nid, Rc::new(Block { entries, max_event_nid })));
            });
        }
    }
    CACHE.with(|c| {
        let c = c.borrow();
        ids.iter()
            .map(|id| match c.blocks.get(id) {
                Some((r, b)) if *r == room_nid => Ok(b.clone()),
                _ => Err(Error::not_found(format!("state block {id} of room NID {room_nid} not found"))),
            })
            .collect()
    })
}

/// The blocks of a snapshot, oldest first.
pub fn snapshot_blocks(client: &mut SpiClient<'_>, room_nid: i64, snapshot_nid: i64) -> Result<Vec<Rc<Block>>> {
    let snap = snapshot(client, room_nid, snapshot_nid)?;
    let ids: Vec<i64> = snap.blocks.iter().map(|b| b.id).collect();
    blocks(client, room_nid, &ids)
}

/// The entries of blocks as the core's layers (oldest first).
fn layers(blocks: &[Rc<Block>]) -> Vec<&[Entry]> {
    blocks.iter().map(|b| b.entries.as_slice()).collect()
}

/// The event for each key in a snapshot (`None`: not in the state): the newest block holding
/// the key decides (`state_blocks::lookup`).
pub fn lookup(client: &mut SpiClient<'_>, room_nid: i64, snapshot_nid: i64, keys: &[(i64, i64)]) -> Result<Vec<Option<i64>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let blocks = snapshot_blocks(client, room_nid, snapshot_nid)?;
    let layers = layers(&blocks);
    Ok(keys.iter().map(|key| state_blocks::lookup(&layers, *key)).collect())
}

/// The full state of a snapshot, sorted by key: the merge of its blocks, newest winning
/// (`state_blocks::full_state`).
pub fn full_state(client: &mut SpiClient<'_>, room_nid: i64, snapshot_nid: i64) -> Result<Vec<Entry>> {
    let blocks = snapshot_blocks(client, room_nid, snapshot_nid)?;
    Ok(state_blocks::full_state(&layers(&blocks)))
}
