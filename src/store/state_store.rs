//! The core's `StateStore` and `BatchStore` over the state tables (sql/schema/03_state.sql), through kept SPI plans.
//!
//! Snapshots and blocks come from the backend's cache ([`crate::store::block_cache`]): after the first
//! call into a room its state is looked up in memory, which is what makes ingest into a large
//! room cheap. Events, whose rows can change (an outlier gains its state), are cached for one
//! call only; the store also holds the events the call has admitted but not yet written, so
//! later events of the same batch see them.

use std::collections::HashMap;
use std::rc::Rc;

use pgrx::spi::SpiClient;
use roomserver_core::room_state::{BatchStore, KnownEvent, Snapshot, StateStore, StoredEvent};
use roomserver_core::state_blocks::{block_hash, encode_entries, BlockRef, Entry, StateHash};
use roomserver_core::stored_form::StoredColumns;
use roomserver_core::{nid_set, Error, Result, RoomVersion};

use serde_json::Value;

use crate::store::block_cache;
use crate::store::rows;
use crate::store::plans::{execute, query, query_first, Statement, BYTEA, INT4, INT4_ARRAY, INT8, INT8_ARRAY, TEXT_ARRAY};

const STORE_SNAPSHOT: Statement = Statement {
    name: "state.store_snapshot",
    sql: "SELECT roomserver_internal.store_snapshot($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    args: &[INT8, BYTEA, INT8_ARRAY, INT4_ARRAY, BYTEA, BYTEA, INT4, INT8, INT4],
    mutating: true,
};
// What state computations need of stored events, read from the columns and edges: no JSON
// rebuild, no hashing (the PDU was validated when it was stored).
// Written as lateral probes by primary key: a kept plan must not depend on the statistics of
// the moment it was made (early in a room's life they say "a handful of rows per room").
const EVENTS: Statement = Statement {
    name: "state.events",
    sql: "SELECT e.event_nid, e.event_type_nid, e.state_key_nid, e.rejection IS NOT NULL, e.state_after,
                 e.event_id, (SELECT t.event_type FROM roomserver.event_types t WHERE t.event_type_nid = e.event_type_nid),
                 (SELECT k.state_key FROM roomserver.event_state_keys k WHERE k.room_nid = e.room_nid AND k.state_key_nid = e.state_key_nid),
                 (SELECT s.state_key FROM roomserver.event_state_keys s WHERE s.room_nid = e.room_nid AND s.state_key_nid = e.sender_nid),
                 e.pdu_rest -> 'content', e.depth, e.origin_server_ts,
                 e.pdu_rest ->> 'redacts', e.auth_chain, e.soft_failure IS NOT NULL,
                 ARRAY(SELECT COALESCE((SELECT x.event_id FROM roomserver.stored_events x WHERE x.room_nid = ed.room_nid AND x.event_nid = ed.target_nid),
                                       ed.target_event_id)
                       FROM roomserver.event_edges ed
                       WHERE ed.room_nid = e.room_nid AND ed.event_nid = e.event_nid AND ed.kind = 'p' ORDER BY ed.position),
                 ARRAY(SELECT COALESCE((SELECT x.event_id FROM roomserver.stored_events x WHERE x.room_nid = ed.room_nid AND x.event_nid = ed.target_nid),
                                       ed.target_event_id)
                       FROM roomserver.event_edges ed
                       WHERE ed.room_nid = e.room_nid AND ed.event_nid = e.event_nid AND ed.kind = 'a' ORDER BY ed.position)
          FROM unnest($2::bigint[]) AS q(nid)
          -- OFFSET 0 keeps the subquery a probe per NID (no flattening into a hash join).
          CROSS JOIN LATERAL (SELECT * FROM roomserver.stored_events e WHERE e.room_nid = $1 AND e.event_nid = q.nid OFFSET 0) e",
    args: &[INT8, INT8_ARRAY],
    mutating: false,
};
const EVENT_NID: Statement = Statement {
    name: "state.event_nid",
    sql: "SELECT e.event_nid FROM roomserver.stored_events e WHERE e.event_id = $2 AND e.room_nid = $1",
    args: &[INT8, crate::store::plans::TEXT],
    mutating: false,
};
const KEY_NIDS: Statement = Statement {
    name: "state.key_nids",
    sql: "SELECT * FROM (
              SELECT u.ord, (SELECT t.event_type_nid FROM roomserver.event_types t WHERE t.event_type = u.t) AS t,
                     (SELECT k.state_key_nid FROM roomserver.event_state_keys k WHERE k.state_key = u.k AND k.room_nid = $1) AS k
              FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(t, k, ord)) found
          WHERE t IS NOT NULL AND k IS NOT NULL",
    args: &[INT8, TEXT_ARRAY, TEXT_ARRAY],
    mutating: false,
};

/// Per-room caches, kept for the whole call.
#[derive(Default)]
struct RoomCache {
    events: HashMap<i64, Rc<StoredEvent>>,
    ids: HashMap<String, i64>,
    chains: HashMap<i64, Rc<Vec<i64>>>,
    keys: HashMap<(String, String), Option<(i64, i64)>>,
}

pub struct SpiStateStore<'a, 'conn> {
    client: &'a mut SpiClient<'conn>,
    rooms: HashMap<i64, RoomCache>,
    room_nid: i64,
    room_id: String,
    rv: Option<RoomVersion>,
}

impl<'a, 'conn> SpiStateStore<'a, 'conn> {
    /// A store that reads nothing until [`BatchStore::enter_room`] points it at a room.
    pub fn new(client: &'a mut SpiClient<'conn>) -> Self {
        SpiStateStore { client, rooms: HashMap::new(), room_nid: 0, room_id: String::new(), rv: None }
    }

    fn room_version(&self) -> RoomVersion {
        self.rv.clone().expect("SpiStateStore used before enter_room")
    }

    pub fn client(&mut self) -> &mut SpiClient<'conn> {
        self.client
    }

    fn cache(&mut self) -> &mut RoomCache {
        self.rooms.entry(self.room_nid).or_default()
    }

}

// The prev events of a stored event that was rejected or soft-failed (none when it was not).
const EXCLUDED_PREVS: Statement = Statement {
    name: "ingest.excluded_prevs",
    sql: "SELECT ARRAY(SELECT ed.target_nid FROM roomserver.event_edges ed
                       WHERE ed.room_nid = e.room_nid AND ed.event_nid = e.event_nid AND ed.kind = 'p' AND ed.target_nid IS NOT NULL)
          FROM roomserver.stored_events e
          WHERE e.room_nid = $1 AND e.event_nid = $2 AND (e.rejection IS NOT NULL OR e.soft_failure IS NOT NULL)",
    args: &[INT8, INT8],
    mutating: false,
};

impl BatchStore for SpiStateStore<'_, '_> {
    // The caches of other rooms are kept.
    fn enter_room(&mut self, room_nid: i64, room_id: &str, rv: &RoomVersion) {
        self.room_nid = room_nid;
        self.room_id = room_id.to_owned();
        self.rv = Some(rv.clone());
    }

    fn remember(&mut self, event: StoredEvent, auth_chain: Vec<i64>) {
        let c = self.cache();
        c.ids.insert(event.pdu.event_id.clone(), event.nid);
        c.chains.insert(event.nid, Rc::new(auth_chain));
        c.events.insert(event.nid, Rc::new(event));
    }

    fn excluded_prevs(&mut self, event_nid: i64) -> Result<Option<Vec<i64>>> {
        let room = self.room_nid;
        Ok(query_first(self.client, &EXCLUDED_PREVS, &[room.into(), event_nid.into()], |r| r.value(1, "prev_nids")))
    }

    fn outliers_after(&mut self, events: &[(i64, &str)]) -> Result<Vec<(i64, bool)>> {
        let room = self.room_nid;
        let nids: Vec<i64> = events.iter().map(|(n, _)| *n).collect();
        let ids: Vec<String> = events.iter().map(|(_, id)| (*id).to_owned()).collect();
        Ok(query(self.client, &OUTLIERS_AFTER, &[room.into(), nids.into(), ids.into()], |r| (r.value(1, "event_nid"), r.value(2, "followed"))))
    }

    fn known_events(&mut self, ids: &[String]) -> Result<Vec<(String, KnownEvent)>> {
        let (known, _) = crate::store::ingest::context::known_events(self.client, ids.to_vec(), vec![self.room_nid]);
        Ok(known.into_iter().map(|((id, _), k)| (id, k)).collect())
    }
}

// The stored outliers after some events (by prev_events, directly or through other outliers):
// the successors of events stored before, and of events of this call through the references
// still pending on their IDs (those edges are resolved when the call writes).
const OUTLIERS_AFTER: Statement = Statement {
    name: "ingest.outliers_after",
    // Probes only, whatever the plan's statistics: each given event and each event reached has
    // its successors read through the edge indexes, and each successor's flag by primary key, in
    // lateral subqueries (OFFSET 0 keeps each one a probe). With `= ANY` and plain joins the
    // kept plan read every edge of the room (5 ms a call at 1,000 events), and this runs on
    // every call that gives events state.
    sql: "WITH RECURSIVE w(nid) AS (
              SELECT n.event_nid
              FROM (SELECT e.event_nid FROM unnest($2::bigint[]) AS q(nid)
                    CROSS JOIN LATERAL (SELECT ed.event_nid FROM roomserver.event_edges ed
                                        WHERE ed.room_nid = $1 AND ed.target_nid = q.nid AND ed.kind = 'p' OFFSET 0) e
                    UNION
                    SELECT e.event_nid FROM unnest($3::text[]) AS q(id)
                    CROSS JOIN LATERAL (SELECT ed.event_nid FROM roomserver.event_edges ed
                                        WHERE ed.target_event_id = q.id AND ed.room_nid = $1 AND ed.target_nid IS NULL AND ed.kind = 'p'
                                        OFFSET 0) e) n
              CROSS JOIN LATERAL (SELECT s.outlier FROM roomserver.stored_events s
                                  WHERE s.room_nid = $1 AND s.event_nid = n.event_nid OFFSET 0) s
              WHERE s.outlier
            UNION
              SELECT e.event_nid
              FROM w
              CROSS JOIN LATERAL (SELECT ed.event_nid FROM roomserver.event_edges ed
                                  WHERE ed.room_nid = $1 AND ed.target_nid = w.nid AND ed.kind = 'p' OFFSET 0) e
              CROSS JOIN LATERAL (SELECT s.outlier FROM roomserver.stored_events s
                                  WHERE s.room_nid = $1 AND s.event_nid = e.event_nid OFFSET 0) s
              WHERE s.outlier
          )
          -- Whether an accepted event with state follows it: then it is history, not a tip.
          SELECT w.nid, EXISTS (SELECT 1 FROM (SELECT ed.event_nid FROM roomserver.event_edges ed
                                               WHERE ed.room_nid = $1 AND ed.target_nid = w.nid AND ed.kind = 'p' OFFSET 0) e
                                CROSS JOIN LATERAL (SELECT s.outlier, s.rejection, s.soft_failure FROM roomserver.stored_events s
                                                    WHERE s.room_nid = $1 AND s.event_nid = e.event_nid OFFSET 0) s
                                WHERE NOT s.outlier AND s.rejection IS NULL AND s.soft_failure IS NULL)
          FROM w",
    args: &[INT8, INT8_ARRAY, TEXT_ARRAY],
    mutating: false,
};

impl StateStore for SpiStateStore<'_, '_> {
    fn snapshot(&mut self, nid: i64) -> Result<Rc<Snapshot>> {
        block_cache::snapshot(self.client, self.room_nid, nid)
    }

    fn block(&mut self, block_nid: i64) -> Result<Rc<Vec<Entry>>> {
        // The core wants the entries alone; blocks are shared, so this is one copy per use of a
        // block the core folds (small ones: the big ones are only folded when the state doubles).
        let b = block_cache::blocks(self.client, self.room_nid, &[block_nid])?.pop().expect("one block per NID");
        Ok(Rc::new(b.entries.clone()))
    }

    fn lookup(&mut self, snapshot: i64, keys: &[(i64, i64)]) -> Result<Vec<Option<i64>>> {
        block_cache::lookup(self.client, self.room_nid, snapshot, keys)
    }

    fn entries_since(&mut self, snapshot: i64, min_event_nid: i64) -> Result<Vec<Entry>> {
        // Candidates from the blocks holding an event that new (usually the few small recent
        // ones), kept only where no newer block overrides them.
        let blocks = block_cache::snapshot_blocks(self.client, self.room_nid, snapshot)?;
        let mut out: Vec<Entry> = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            if b.max_event_nid < min_event_nid {
                continue;
            }
            for e in b.entries.iter().filter(|e| e.event_nid >= min_event_nid) {
                let overridden = blocks[i + 1..].iter().any(|n| n.entries.binary_search_by(|x| x.key().cmp(&e.key())).is_ok());
                if !overridden {
                    out.push(*e);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn save_snapshot(&mut self, kept: &[BlockRef<i64>], new_block: Vec<Entry>, hash: StateHash, size: i64) -> Result<i64> {
        let room = self.room_nid;
        let kept_ids: Vec<i64> = kept.iter().map(|b| b.id).collect();
        let kept_sizes: Vec<i32> = kept.iter().map(|b| b.len as i32).collect();
        let bh = block_hash(&new_block).to_vec();
        let count = new_block.len() as i32;
        let max_event = new_block.iter().map(|e| e.event_nid).max().unwrap_or(0);
        let nid: Option<i64> = execute(
            self.client,
            &STORE_SNAPSHOT,
            &[room.into(), hash.0.to_vec().into(), kept_ids.into(), kept_sizes.into(), bh.into(), encode_entries(&new_block).into(), count.into(), max_event.into(), (size as i32).into()],
            |t| rows::first(t, STORE_SNAPSHOT.name, |r| r.value(1, "store_snapshot")),
        );
        nid.ok_or_else(|| Error::corrupt("store_snapshot", "it returned no snapshot"))
    }

    fn events(&mut self, nids: &[i64]) -> Result<Vec<Rc<StoredEvent>>> {
        let missing: Vec<i64> = {
            let c = self.cache();
            let mut m: Vec<i64> = nids.iter().copied().filter(|n| !c.events.contains_key(n)).collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            let room = self.room_nid;
            let room_id = self.room_id.clone();
            let rv = self.room_version();
            let loaded: Vec<(StoredEvent, Option<Vec<u8>>)> = query(self.client, &EVENTS, &[room.into(), missing.into()], |r| {
                let content = match r.nullable::<pgrx::JsonB>(10, "content").map(|j| j.0) {
                    Some(Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                };
                let columns = StoredColumns {
                    event_id: r.value(6, "event_id"),
                    room_id: room_id.clone(),
                    sender: r.value(9, "sender"),
                    event_type: r.value(7, "event_type"),
                    state_key: r.nullable(8, "state_key"),
                    content,
                    prev_events: r.value(16, "prev_events"),
                    auth_events: r.value(17, "auth_events"),
                    depth: r.value(11, "depth"),
                    origin_server_ts: r.value(12, "origin_server_ts"),
                    top_level_redacts: r.nullable(13, "redacts"),
                };
                let ev = StoredEvent {
                    nid: r.value(1, "event_nid"),
                    type_nid: r.value(2, "event_type_nid"),
                    state_key_nid: r.nullable(3, "state_key_nid"),
                    rejected: r.value(4, "rejected"),
                    soft_failed: r.value(15, "soft_failed"),
                    prev_nids: Vec::new(),
                    state_after: r.nullable(5, "state_after"),
                    pdu: columns.into_pdu(&rv),
                };
                (ev, r.nullable(14, "auth_chain"))
            });
            for (ev, chain) in loaded {
                let nid = ev.nid;
                let c = self.cache();
                c.ids.insert(ev.pdu.event_id.clone(), nid);
                if let Some(bytes) = chain {
                    c.chains.insert(nid, Rc::new(nid_set::decode(&bytes).map_err(|e| Error::corrupt("stored_events.auth_chain", e))?));
                }
                c.events.insert(nid, Rc::new(ev));
            }
        }
        let c = self.cache();
        nids.iter()
            .map(|n| c.events.get(n).cloned().ok_or_else(|| Error::not_found(format!("event NID {n} is not stored"))))
            .collect()
    }

    fn event_nid(&mut self, event_id: &str) -> Result<Option<i64>> {
        if let Some(n) = self.cache().ids.get(event_id) {
            return Ok(Some(*n));
        }
        let room = self.room_nid;
        let nid: Option<i64> = query_first(self.client, &EVENT_NID, &[room.into(), event_id.into()], |r| r.value(1, "event_nid"));
        if let Some(n) = nid {
            self.cache().ids.insert(event_id.to_owned(), n);
        }
        Ok(nid)
    }

    fn auth_chain(&mut self, nid: i64) -> Result<Rc<Vec<i64>>> {
        if let Some(c) = self.cache().chains.get(&nid) {
            return Ok(c.clone());
        }
        // Loading the event loads its chain; events without one (non-state) have none.
        self.events(&[nid])?;
        Ok(self.cache().chains.entry(nid).or_insert_with(|| Rc::new(Vec::new())).clone())
    }

    // Events of this call (not yet written) from the call's cache, the rest from the backend's.
    fn auth_chains(&mut self, nids: &[i64]) -> Result<Vec<Rc<Vec<i64>>>> {
        let stored: Vec<i64> = {
            let c = self.cache();
            nids.iter().copied().filter(|n| !c.chains.contains_key(n)).collect()
        };
        let loaded = block_cache::auth_chains(self.client, self.room_nid, &stored)?;
        let from_db: HashMap<i64, Rc<Vec<i64>>> = stored.into_iter().zip(loaded).collect();
        let c = self.cache();
        Ok(nids.iter().map(|n| c.chains.get(n).cloned().or_else(|| from_db.get(n).cloned()).unwrap_or_default()).collect())
    }

    fn known_resolution(&mut self, states: &[i64]) -> Option<i64> {
        block_cache::known_resolution(self.client, states)
    }

    fn remember_resolution(&mut self, states: &[i64], result: i64) {
        block_cache::remember_resolution(states, result);
    }

    fn key_nids(&mut self, keys: &[(String, String)]) -> Result<Vec<Option<(i64, i64)>>> {
        let missing: Vec<&(String, String)> = keys.iter().filter(|k| !self.cache().keys.contains_key(*k)).collect();
        if !missing.is_empty() {
            let types: Vec<String> = missing.iter().map(|k| k.0.clone()).collect();
            let sks: Vec<String> = missing.iter().map(|k| k.1.clone()).collect();
            let room = self.room_nid;
            let mut found: Vec<Option<(i64, i64)>> = vec![None; missing.len()];
            let rows: Vec<(i64, i64, i64)> = query(self.client, &KEY_NIDS, &[room.into(), types.into(), sks.into()], |r| {
                (r.value(1, "ord"), r.value(2, "event_type_nid"), r.value(3, "state_key_nid"))
            });
            for (ord, tn, kn) in rows {
                if let Some(slot) = found.get_mut((ord - 1) as usize) {
                    *slot = Some((tn, kn));
                }
            }
            let owned: Vec<(String, String)> = missing.into_iter().cloned().collect();
            let c = self.cache();
            for (k, v) in owned.into_iter().zip(found) {
                c.keys.insert(k, v);
            }
        }
        let c = self.cache();
        Ok(keys.iter().map(|k| c.keys.get(k).copied().flatten()).collect())
    }
}
