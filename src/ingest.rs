//! `roomserver.ingest_event` / `roomserver.ingest_events`: validate PDUs in Rust, then store a
//! whole batch with a fixed number of set-based statements (NIDs, events, edges), whatever the
//! batch size. Every check happens before the first write, so bad input writes nothing.

use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::JsonB;
use roomserver_core::stored_form::{room_version_for, split, StoredForm};
use roomserver_core::Error;
use serde_json::{json, Value};

use crate::errors::{null_argument, raise, OrRaise};
use crate::spi_plans::{execute, Statement, BOOL_ARRAY, INT2_ARRAY, INT8_ARRAY, TEXT_ARRAY};

/// Stores one PDU. Returns `{"event_id", "event_nid", "room_id", "duplicate", "content_hash_ok"}`.
/// `room_version` is needed only while the room's create event is unknown.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_event(pdu: Option<JsonB>, room_version: default!(Option<&str>, "NULL")) -> JsonB {
    let pdu = pdu.unwrap_or_else(|| null_argument("pdu"));
    let mut results = ingest(vec![pdu.0], room_version, "ingest_event");
    JsonB(results.pop().expect("one result per PDU"))
}

/// Stores a JSON array of PDUs in order (a create event first lets the rest of its room follow
/// in the same call). Returns one result per element, as `ingest_event` does.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_events(pdus: Option<JsonB>, room_version: default!(Option<&str>, "NULL")) -> SetOfIterator<'static, JsonB> {
    let pdus = pdus.unwrap_or_else(|| null_argument("pdus"));
    let Value::Array(items) = pdus.0 else {
        raise(Error::bad_json("(root)", "pdus must be a JSON array of PDUs"), "ingest_events")
    };
    SetOfIterator::new(ingest(items, room_version, "ingest_events").into_iter().map(JsonB))
}

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
const INSERT_EVENTS: Statement = Statement {
    name: "ingest.insert_events",
    sql: "INSERT INTO roomserver.stored_events
              (room_nid, event_id, event_type_nid, state_key_nid, sender_nid, depth, origin_server_ts,
               content_hash_ok, room_id_implied, pdu_rest)
          SELECT u.r, u.id, u.t, u.k, u.s, u.d, u.ts, u.ok, u.imp, u.rest::jsonb
          FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                      $7::bigint[], $8::bool[], $9::bool[], $10::text[])
               AS u(r, id, t, k, s, d, ts, ok, imp, rest)
          ON CONFLICT ON CONSTRAINT stored_events_event_id_room_key DO NOTHING
          RETURNING event_id, room_nid, event_nid",
    args: &[INT8_ARRAY, TEXT_ARRAY, INT8_ARRAY, INT8_ARRAY, INT8_ARRAY, INT8_ARRAY, INT8_ARRAY, BOOL_ARRAY, BOOL_ARRAY, TEXT_ARRAY],
    mutating: true,
};
// Stored events by ID: duplicates of the batch, and the targets of its references that are not
// in the batch itself (few: the auth events every event shares, the events it follows).
const FIND_EVENTS: Statement = Statement {
    name: "ingest.find_events",
    sql: "SELECT s.event_id, s.room_nid, s.event_nid FROM roomserver.stored_events s
          WHERE s.event_id = ANY ($1) AND s.room_nid + 0 = ANY ($2)",
    args: &[TEXT_ARRAY, INT8_ARRAY],
    mutating: false,
};
const INSERT_EDGES: Statement = Statement {
    name: "ingest.insert_edges",
    sql: "INSERT INTO roomserver.event_edges (room_nid, event_nid, kind, position, target_nid, target_event_id, ref_hashes)
          SELECT u.r, u.e, u.k::\"char\", u.p, u.t, u.tid, u.h::jsonb
          FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int2[], $5::bigint[], $6::text[], $7::text[])
               AS u(r, e, k, p, t, tid, h)",
    args: &[INT8_ARRAY, INT8_ARRAY, TEXT_ARRAY, INT2_ARRAY, INT8_ARRAY, TEXT_ARRAY, TEXT_ARRAY],
    mutating: true,
};
// Earlier events that referenced the new ones before they were known.
const RESOLVE_PENDING: Statement = Statement {
    name: "ingest.resolve_pending",
    sql: "UPDATE roomserver.event_edges ed SET target_nid = n.e, target_event_id = NULL
          FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS n(r, id, e)
          WHERE ed.room_nid = n.r AND ed.target_event_id = n.id AND ed.target_nid IS NULL",
    args: &[INT8_ARRAY, TEXT_ARRAY, INT8_ARRAY],
    mutating: true,
};

struct Prepared {
    form: StoredForm,
    /// Index of the first identical event in the batch, for a repeat within one call.
    repeat_of: Option<usize>,
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn ingest(items: Vec<Value>, requested: Option<&str>, context: &str) -> Vec<Value> {
    let batch = items.len() > 1 || context == "ingest_events";
    let field_context = |i: usize| if batch { format!("{context}: pdus[{i}]") } else { context.to_owned() };

    Spi::connect_mut(|client| {
        // 1. Look up every NID the raw PDUs mention (validation comes next, so these are guesses
        //    that only save round trips; nothing is trusted until the PDU is parsed).
        let (mut q_rooms, mut q_types, mut q_keys) = (Vec::new(), Vec::new(), Vec::new());
        for v in &items {
            if let Some(r) = str_at(v, "room_id") {
                q_rooms.push(r.to_owned());
                q_keys.extend([str_at(v, "sender"), str_at(v, "state_key")].into_iter().flatten().map(str::to_owned));
            }
            if let Some(t) = str_at(v, "type") {
                q_types.push(t.to_owned());
            }
        }
        let mut versions: HashMap<String, String> = HashMap::new();
        let mut rooms: HashMap<String, i64> = HashMap::new();
        let mut type_nids: HashMap<String, i64> = HashMap::new();
        let mut key_nids: HashMap<(i64, String), i64> = HashMap::new();
        execute(client, &LOOKUP, &[q_rooms.into(), q_types.into(), q_keys.into()], |t| {
            for row in t {
                let what: String = row.get(1).ok().flatten().unwrap_or_default();
                let name: String = row.get(2).ok().flatten().unwrap_or_default();
                let nid: i64 = row.get(3).ok().flatten().unwrap_or_default();
                let extra: Option<String> = row.get(4).ok().flatten();
                match what.as_str() {
                    "r" => {
                        versions.insert(name.clone(), extra.unwrap_or_default());
                        rooms.insert(name, nid);
                    }
                    "t" => {
                        type_nids.insert(name, nid);
                    }
                    _ => {
                        let room_nid = extra.and_then(|r| r.parse().ok()).unwrap_or_default();
                        key_nids.insert((room_nid, name), nid);
                    }
                }
            }
        });

        // 2. Validate and split every PDU before writing anything.
        let mut prepared: Vec<Prepared> = Vec::with_capacity(items.len());
        let mut first_index: HashMap<(String, String), usize> = HashMap::new();
        for (i, json) in items.iter().enumerate() {
            let known = str_at(json, "room_id").and_then(|r| versions.get(r)).map(String::as_str);
            let rv = room_version_for(json, known, requested).or_raise(&field_context(i));
            let form = split(json, &rv).or_raise(&field_context(i));
            // A create event earlier in the batch sets the version for the rest of its room.
            versions.entry(form.pdu.room_id.clone()).or_insert_with(|| rv.id.to_owned());
            let key = (form.pdu.room_id.clone(), form.pdu.event_id.clone());
            let repeat_of = first_index.get(&key).copied();
            if repeat_of.is_none() {
                first_index.insert(key, i);
            }
            prepared.push(Prepared { form, repeat_of });
        }
        let fresh: Vec<&StoredForm> = prepared.iter().filter(|p| p.repeat_of.is_none()).map(|p| &p.form).collect();

        // 3. NIDs for what is new: rooms, event types, state keys (senders are state keys too:
        //    they are the user IDs of member events).
        let mut new_rooms: Vec<String> = fresh.iter().map(|f| f.pdu.room_id.clone()).filter(|r| !rooms.contains_key(r)).collect();
        new_rooms.sort();
        new_rooms.dedup();
        if !new_rooms.is_empty() {
            let new_versions: Vec<String> = new_rooms.iter().map(|r| versions[r].clone()).collect();
            let created: Vec<(String, i64, String)> = execute(client, &ASSIGN_ROOMS, &[new_rooms.into(), new_versions.into()], |t| {
                t.map(|row| {
                    (row.get(1).ok().flatten().unwrap_or_default(), row.get(2).ok().flatten().unwrap_or_default(), row.get(3).ok().flatten().unwrap_or_default())
                })
                .collect()
            });
            for (id, nid, version) in created {
                if version != versions[&id] {
                    raise(
                        Error::invalid(
                            Some("room_version"),
                            format!("room {id} was created concurrently with room version {version}, not {}", versions[&id]),
                        ),
                        context,
                    )
                }
                rooms.insert(id, nid);
            }
        }
        let mut new_types: Vec<String> = fresh.iter().map(|f| f.pdu.event_type.clone()).filter(|t| !type_nids.contains_key(t)).collect();
        new_types.sort();
        new_types.dedup();
        if !new_types.is_empty() {
            execute(client, &ASSIGN_TYPES, &[new_types.into()], |t| {
                for row in t {
                    type_nids.insert(row.get(1).ok().flatten().unwrap_or_default(), row.get(2).ok().flatten().unwrap_or_default());
                }
            });
        }
        let (mut key_rooms, mut keys) = (Vec::new(), Vec::new());
        for f in &fresh {
            let r = rooms[&f.pdu.room_id];
            for k in [Some(&f.pdu.sender), f.pdu.state_key.as_ref()].into_iter().flatten() {
                if !key_nids.contains_key(&(r, k.clone())) {
                    key_rooms.push(r);
                    keys.push(k.clone());
                }
            }
        }
        if !keys.is_empty() {
            execute(client, &ASSIGN_STATE_KEYS, &[key_rooms.into(), keys.into()], |t| {
                for row in t {
                    let r: i64 = row.get(1).ok().flatten().unwrap_or_default();
                    let k: String = row.get(2).ok().flatten().unwrap_or_default();
                    let n: i64 = row.get(3).ok().flatten().unwrap_or_default();
                    key_nids.insert((r, k), n);
                }
            });
        }

        // 4. One ingest at a time per room from here on.
        let mut room_nids: Vec<i64> = fresh.iter().map(|f| rooms[&f.pdu.room_id]).collect();
        room_nids.sort_unstable();
        room_nids.dedup();
        execute(client, &LOCK_ROOMS, &[room_nids.into()], |_| ());

        // 5. The events themselves; ones already stored are left alone.
        let n = fresh.len();
        let (mut c_room, mut c_id, mut c_type, mut c_key, mut c_sender) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut c_depth, mut c_ts, mut c_ok, mut c_implied, mut c_rest) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for f in &fresh {
            let r = rooms[&f.pdu.room_id];
            c_room.push(r);
            c_id.push(f.pdu.event_id.clone());
            c_type.push(type_nids[&f.pdu.event_type]);
            c_key.push(f.pdu.state_key.as_ref().map(|k| key_nids[&(r, k.clone())]));
            c_sender.push(key_nids[&(r, f.pdu.sender.clone())]);
            c_depth.push(f.pdu.depth);
            c_ts.push(f.pdu.origin_server_ts);
            c_ok.push(f.content_hash_ok);
            c_implied.push(f.room_id_implied);
            c_rest.push(f.rest.to_string());
        }
        let inserted: HashMap<(String, i64), i64> = execute(
            client,
            &INSERT_EVENTS,
            &[
                c_room.clone().into(), c_id.clone().into(), c_type.into(), c_key.into(), c_sender.into(),
                c_depth.into(), c_ts.into(), c_ok.into(), c_implied.into(), c_rest.into(),
            ],
            |t| read_event_nids(t),
        );
        let mut nids = inserted.clone();
        if inserted.len() < n {
            nids.extend(find_events(client, c_id.clone(), c_room.clone()));
        }

        // 6. Edges of the new events, then earlier references to them. Targets in the batch are
        //    known here; the others are looked up once each.
        let mut outside: Vec<String> = Vec::new();
        for f in &fresh {
            let r = rooms[&f.pdu.room_id];
            if inserted.contains_key(&(f.pdu.event_id.clone(), r)) {
                outside.extend(f.edges.iter().filter(|e| !nids.contains_key(&(e.target_event_id.clone(), r))).map(|e| e.target_event_id.clone()));
            }
        }
        outside.sort();
        outside.dedup();
        let targets = if outside.is_empty() { HashMap::new() } else { find_events(client, outside, room_nids_vec(&rooms)) };
        let (mut e_room, mut e_event, mut e_kind, mut e_pos, mut e_target, mut e_target_id, mut e_hashes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut new_room, mut new_id, mut new_nid) = (Vec::new(), Vec::new(), Vec::new());
        for f in &fresh {
            let r = rooms[&f.pdu.room_id];
            let Some(&nid) = inserted.get(&(f.pdu.event_id.clone(), r)) else { continue };
            new_room.push(r);
            new_id.push(f.pdu.event_id.clone());
            new_nid.push(nid);
            for edge in &f.edges {
                let key = (edge.target_event_id.clone(), r);
                let target = nids.get(&key).or_else(|| targets.get(&key)).copied();
                e_room.push(r);
                e_event.push(nid);
                e_kind.push(edge.kind.code().to_owned());
                e_pos.push(edge.position);
                e_target.push(target);
                e_target_id.push(if target.is_none() { Some(edge.target_event_id.clone()) } else { None });
                e_hashes.push(edge.ref_hashes.as_ref().map(Value::to_string));
            }
        }
        if !e_room.is_empty() {
            execute(
                client,
                &INSERT_EDGES,
                &[e_room.into(), e_event.into(), e_kind.into(), e_pos.into(), e_target.into(), e_target_id.into(), e_hashes.into()],
                |_| (),
            );
        }
        if !new_room.is_empty() {
            execute(client, &RESOLVE_PENDING, &[new_room.into(), new_id.into(), new_nid.into()], |_| ());
        }

        // 7. One result per input element, in order.
        prepared
            .iter()
            .map(|p| {
                let f = &p.form;
                let r = rooms[&f.pdu.room_id];
                let key = (f.pdu.event_id.clone(), r);
                let duplicate = p.repeat_of.is_some() || !inserted.contains_key(&key);
                json!({
                    "event_id": f.pdu.event_id,
                    "event_nid": nids.get(&key).copied(),
                    "room_id": f.pdu.room_id,
                    "duplicate": duplicate,
                    "content_hash_ok": f.content_hash_ok,
                })
            })
            .collect()
    })
}

fn room_nids_vec(rooms: &HashMap<String, i64>) -> Vec<i64> {
    rooms.values().copied().collect()
}

fn find_events(client: &mut pgrx::spi::SpiClient<'_>, ids: Vec<String>, room_nids: Vec<i64>) -> HashMap<(String, i64), i64> {
    execute(client, &FIND_EVENTS, &[ids.into(), room_nids.into()], read_event_nids)
}

fn read_event_nids(t: pgrx::spi::SpiTupleTable<'_>) -> HashMap<(String, i64), i64> {
    t.map(|row| {
        let id: String = row.get(1).ok().flatten().unwrap_or_default();
        let r: i64 = row.get(2).ok().flatten().unwrap_or_default();
        let n: i64 = row.get(3).ok().flatten().unwrap_or_default();
        ((id, r), n)
    })
    .collect()
}
