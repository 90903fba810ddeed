//! Ingest phases 1 and 3: the NIDs a batch needs. First every NID that already exists, in one
//! round trip (the steady state: known room, types and senders, needs no other); then, for what
//! is new, rooms, the room locks, event types and state keys (senders are state keys too: they
//! are the user IDs of member events), and the NIDs of the new events.

use std::collections::HashMap;

use roomserver_core::Error;
use serde_json::Value;

use crate::errors::raise;
use crate::store::plans::{execute, query, Statement, INT8, INT8_ARRAY, TEXT_ARRAY};

// Room conditions are written `room_nid + 0 = ANY (..)` throughout: as plain `room_nid = ANY`
// the planner may AND in a bitmap of the room's whole primary key, which reads every event of the
// room on every call (seen in a profile: 80% of single-event ingest in a 70,000-event room).
//
// Every NID the batch needs that already exists, in one round trip: the steady state (known
// room, types and senders) needs no other lookup.
const LOOKUP: Statement = Statement {
    name: "ingest.lookup",
    sql: "SELECT 'r'::text, r.room_id, r.room_nid, r.room_version FROM roomserver.rooms r WHERE r.room_id = ANY ($1)
          UNION ALL
          SELECT 't', t.event_type, t.event_type_nid, NULL FROM roomserver.event_types t WHERE t.event_type = ANY ($2)
          UNION ALL
          SELECT 'k', k.state_key, k.state_key_nid, k.room_nid::text
          FROM roomserver.event_state_keys k
          WHERE k.state_key = ANY ($3)
            AND k.room_nid + 0 = ANY (ARRAY(SELECT r.room_nid FROM roomserver.rooms r WHERE r.room_id = ANY ($1)))",
    args: &[TEXT_ARRAY, TEXT_ARRAY, TEXT_ARRAY],
    mutating: false,
};

// The rare paths (a new room, type or state key) go through the same concurrency-safe SQL
// functions a DBA can call.
const ASSIGN_ROOMS: Statement = Statement {
    name: "ingest.assign_rooms",
    sql: "SELECT room_id, room_nid, room_version FROM roomserver.assign_room_nids($1, $2)",
    args: &[TEXT_ARRAY, TEXT_ARRAY],
    mutating: true,
};

// One ingest at a time per room: the DAG bookkeeping (pending references now, extremities and
// state later) reads what the previous ingest wrote. Keys: class 0x5253 ("RS"), room NID.
const LOCK_ROOMS: Statement = Statement {
    name: "ingest.lock_rooms",
    sql: "SELECT pg_advisory_xact_lock(21075, (n % 2147483647)::int) FROM unnest($1::bigint[]) AS n ORDER BY n",
    args: &[INT8_ARRAY],
    mutating: true,
};

const ASSIGN_TYPES: Statement = Statement {
    name: "ingest.assign_types",
    sql: "SELECT event_type, event_type_nid FROM roomserver.assign_event_type_nids($1)",
    args: &[TEXT_ARRAY],
    mutating: true,
};

const ASSIGN_STATE_KEYS: Statement = Statement {
    name: "ingest.assign_state_keys",
    sql: "SELECT room_nid, state_key, state_key_nid FROM roomserver.assign_state_key_nids($1, $2)",
    args: &[INT8_ARRAY, TEXT_ARRAY],
    mutating: true,
};

const ALLOCATE_NIDS: Statement = Statement {
    name: "ingest.allocate_nids",
    sql: "SELECT nextval('roomserver.event_nid_seq') FROM generate_series(1, $1)",
    args: &[INT8],
    mutating: true,
};

/// The NIDs of rooms, event types and state keys the batch uses, as known so far.
#[derive(Default)]
pub struct Nids {
    pub rooms: HashMap<String, i64>,
    /// Room ID -> room version, of stored rooms and of rooms the batch creates.
    pub versions: HashMap<String, String>,
    pub types: HashMap<String, i64>,
    /// (room NID, state key) -> state key NID.
    pub keys: HashMap<(i64, String), i64>,
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Nids {
    /// Looks up every NID the raw PDUs mention (they are not validated yet, so these are
    /// guesses that only save round trips; nothing is trusted until a PDU is parsed).
    pub fn lookup(client: &mut pgrx::spi::SpiClient<'_>, items: &[Value]) -> Nids {
        let (mut q_rooms, mut q_types, mut q_keys) = (Vec::new(), Vec::new(), Vec::new());
        for v in items {
            if let Some(r) = str_at(v, "room_id") {
                q_rooms.push(r.to_owned());
                q_keys.extend([str_at(v, "sender"), str_at(v, "state_key")].into_iter().flatten().map(str::to_owned));
            }
            if let Some(t) = str_at(v, "type") {
                q_types.push(t.to_owned());
            }
        }
        let mut nids = Nids::default();
        let rows: Vec<(String, String, i64, Option<String>)> = query(client, &LOOKUP, &[q_rooms.into(), q_types.into(), q_keys.into()], |r| {
            (r.value(1, "kind"), r.value(2, "name"), r.value(3, "nid"), r.nullable(4, "extra"))
        });
        for (kind, name, nid, extra) in rows {
            match kind.as_str() {
                "r" => {
                    nids.versions.insert(name.clone(), extra.unwrap_or_default());
                    nids.rooms.insert(name, nid);
                }
                "t" => {
                    nids.types.insert(name, nid);
                }
                _ => {
                    let room_nid = extra.and_then(|r| r.parse().ok()).unwrap_or_default();
                    nids.keys.insert((room_nid, name), nid);
                }
            }
        }
        nids
    }

    /// The room version of a room stored or created earlier in the batch.
    pub fn version_of(&self, room_id: &str) -> Option<&str> {
        self.versions.get(room_id).map(String::as_str)
    }

    /// NIDs for the rooms of `room_ids` that are new (their versions are in `self.versions`).
    pub fn assign_rooms<'r>(&mut self, client: &mut pgrx::spi::SpiClient<'_>, room_ids: impl Iterator<Item = &'r str>, context: &str) {
        let mut new_rooms: Vec<String> = room_ids.filter(|r| !self.rooms.contains_key(*r)).map(str::to_owned).collect();
        new_rooms.sort();
        new_rooms.dedup();
        if new_rooms.is_empty() {
            return;
        }
        let new_versions: Vec<String> = new_rooms.iter().map(|r| self.versions[r].clone()).collect();
        let created: Vec<(String, i64, String)> = query(client, &ASSIGN_ROOMS, &[new_rooms.into(), new_versions.into()], |r| {
            (r.value(1, "room_id"), r.value(2, "room_nid"), r.value(3, "room_version"))
        });
        for (id, nid, version) in created {
            if version != self.versions[&id] {
                raise(
                    Error::invalid(
                        Some("room_version"),
                        format!("room {id} was created concurrently with room version {version}, not {}", self.versions[&id]),
                    ),
                    context,
                )
            }
            self.rooms.insert(id, nid);
        }
    }

    /// One ingest at a time per room from here on, and before any other NID is assigned: a new
    /// type or state key is a row this transaction holds until it ends, so taking the room lock
    /// after it could wait on a session that waits on that row (40P01). Locks are taken in room
    /// NID order. Returns the room NIDs, sorted.
    pub fn lock_rooms<'r>(&self, client: &mut pgrx::spi::SpiClient<'_>, room_ids: impl Iterator<Item = &'r str>) -> Vec<i64> {
        let mut room_nids: Vec<i64> = room_ids.map(|r| self.rooms[r]).collect();
        room_nids.sort_unstable();
        room_nids.dedup();
        execute(client, &LOCK_ROOMS, &[room_nids.clone().into()], |_| ());
        room_nids
    }

    /// NIDs for new event types and state keys: `types` and `(room ID, state key)` pairs.
    pub fn assign_types_and_keys<'r>(
        &mut self,
        client: &mut pgrx::spi::SpiClient<'_>,
        types: impl Iterator<Item = &'r str>,
        keys: impl Iterator<Item = (&'r str, &'r str)>,
    ) {
        let mut new_types: Vec<String> = types.filter(|t| !self.types.contains_key(*t)).map(str::to_owned).collect();
        new_types.sort();
        new_types.dedup();
        if !new_types.is_empty() {
            let rows: Vec<(String, i64)> =
                query(client, &ASSIGN_TYPES, &[new_types.into()], |r| (r.value(1, "event_type"), r.value(2, "event_type_nid")));
            self.types.extend(rows);
        }
        let (mut key_rooms, mut new_keys) = (Vec::new(), Vec::new());
        for (room_id, k) in keys {
            let r = self.rooms[room_id];
            if !self.keys.contains_key(&(r, k.to_owned())) {
                key_rooms.push(r);
                new_keys.push(k.to_owned());
            }
        }
        if !new_keys.is_empty() {
            let rows: Vec<(i64, String, i64)> = query(client, &ASSIGN_STATE_KEYS, &[key_rooms.into(), new_keys.into()], |r| {
                (r.value(1, "room_nid"), r.value(2, "state_key"), r.value(3, "state_key_nid"))
            });
            for (r, k, n) in rows {
                self.keys.insert((r, k), n);
            }
        }
    }

    /// The NID of a state key of a room the batch has assigned.
    pub fn key(&self, room_nid: i64, state_key: &str) -> i64 {
        self.keys[&(room_nid, state_key.to_owned())]
    }
}

/// `count` new event NIDs, ascending: events are numbered in batch order, so an event's auth
/// events (always stored before it) have smaller NIDs, which state resolution relies on.
pub fn allocate_event_nids(client: &mut pgrx::spi::SpiClient<'_>, count: usize) -> Vec<i64> {
    if count == 0 {
        return Vec::new();
    }
    let mut nids: Vec<i64> = query(client, &ALLOCATE_NIDS, &[(count as i64).into()], |r| r.value(1, "nextval"));
    nids.sort_unstable();
    nids
}
