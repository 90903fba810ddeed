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

const KNOWN_ROOMS: Statement = Statement {
    name: "ingest.known_rooms",
    sql: "SELECT room_id, room_version FROM roomserver.rooms WHERE room_id = ANY ($1)",
    args: &[TEXT_ARRAY],
    mutating: false,
};
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
const EXISTING_EVENTS: Statement = Statement {
    name: "ingest.existing_events",
    sql: "SELECT e.event_id, e.room_nid, e.event_nid
          FROM unnest($1::text[], $2::bigint[]) AS u(id, r)
          JOIN roomserver.stored_events e ON e.event_id = u.id AND e.room_nid = u.r",
    args: &[TEXT_ARRAY, INT8_ARRAY],
    mutating: false,
};
// References to events already stored (in this batch or before) are resolved to NIDs at once.
const INSERT_EDGES: Statement = Statement {
    name: "ingest.insert_edges",
    sql: "INSERT INTO roomserver.event_edges (room_nid, event_nid, kind, position, target_nid, target_event_id, ref_hashes)
          SELECT u.r, u.e, u.k::\"char\", u.p, t.event_nid, CASE WHEN t.event_nid IS NULL THEN u.tid END, u.h::jsonb
          FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int2[], $5::text[], $6::text[]) AS u(r, e, k, p, tid, h)
          LEFT JOIN roomserver.stored_events t ON t.event_id = u.tid AND t.room_nid = u.r",
    args: &[INT8_ARRAY, INT8_ARRAY, TEXT_ARRAY, INT2_ARRAY, TEXT_ARRAY, TEXT_ARRAY],
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

fn ingest(items: Vec<Value>, requested: Option<&str>, context: &str) -> Vec<Value> {
    let batch = items.len() > 1 || context == "ingest_events";
    let field_context = |i: usize| if batch { format!("{context}: pdus[{i}]") } else { context.to_owned() };

    Spi::connect_mut(|client| {
        // 1. Room versions: known rooms from the table, rooms created earlier in this batch.
        let mentioned: Vec<Option<String>> = items
            .iter()
            .filter_map(|v| v.get("room_id").and_then(Value::as_str).map(|s| Some(s.to_owned())))
            .collect();
        let mut versions: HashMap<String, String> = execute(client, &KNOWN_ROOMS, &[mentioned.into()], |t| {
            t.map(|row| (row.get::<String>(1).ok().flatten().unwrap_or_default(), row.get::<String>(2).ok().flatten().unwrap_or_default()))
                .collect()
        });

        // 2. Validate and split every PDU before writing anything.
        let mut prepared: Vec<Prepared> = Vec::with_capacity(items.len());
        let mut first_index: HashMap<(String, String), usize> = HashMap::new();
        for (i, json) in items.iter().enumerate() {
            let room_id = json.get("room_id").and_then(Value::as_str);
            let known = room_id.and_then(|r| versions.get(r)).map(String::as_str);
            let rv = room_version_for(json, known, requested).or_raise(&field_context(i));
            let form = split(json, &rv).or_raise(&field_context(i));
            versions.entry(form.pdu.room_id.clone()).or_insert_with(|| rv.id.to_owned());
            let key = (form.pdu.room_id.clone(), form.pdu.event_id.clone());
            let repeat_of = first_index.get(&key).copied();
            if repeat_of.is_none() {
                first_index.insert(key, i);
            }
            prepared.push(Prepared { form, repeat_of });
        }
        let fresh: Vec<&StoredForm> = prepared.iter().filter(|p| p.repeat_of.is_none()).map(|p| &p.form).collect();

        // 3. Room NIDs (creating rooms), then serialise with other ingests into the same rooms.
        let mut room_ids: Vec<String> = fresh.iter().map(|f| f.pdu.room_id.clone()).collect();
        room_ids.sort();
        room_ids.dedup();
        let room_versions: Vec<String> = room_ids.iter().map(|r| versions[r].clone()).collect();
        let rooms: HashMap<String, i64> =
            execute(client, &ASSIGN_ROOMS, &[room_ids.clone().into(), room_versions.into()], |t| {
                t.map(|row| {
                    let id: String = row.get(1).ok().flatten().unwrap_or_default();
                    let nid: i64 = row.get(2).ok().flatten().unwrap_or_default();
                    let version: String = row.get(3).ok().flatten().unwrap_or_default();
                    (id, nid, version)
                })
                .collect::<Vec<_>>()
            })
            .into_iter()
            .map(|(id, nid, version)| {
                if version != versions[&id] {
                    raise(
                        Error::invalid(
                            Some("room_version"),
                            format!("room {id} was created concurrently with room version {version}, not {}", versions[&id]),
                        ),
                        context,
                    )
                }
                (id, nid)
            })
            .collect();
        let mut room_nids: Vec<i64> = rooms.values().copied().collect();
        room_nids.sort_unstable();
        execute(client, &LOCK_ROOMS, &[room_nids.into()], |_| ());

        // 4. Event type and state key NIDs (senders are state keys too: they are user IDs).
        let types: Vec<String> = fresh.iter().map(|f| f.pdu.event_type.clone()).collect();
        let type_nids: HashMap<String, i64> = execute(client, &ASSIGN_TYPES, &[types.into()], |t| {
            t.map(|row| (row.get::<String>(1).ok().flatten().unwrap_or_default(), row.get::<i64>(2).ok().flatten().unwrap_or_default()))
                .collect()
        });
        let mut key_rooms = Vec::new();
        let mut keys = Vec::new();
        for f in &fresh {
            let r = rooms[&f.pdu.room_id];
            key_rooms.push(r);
            keys.push(f.pdu.sender.clone());
            if let Some(k) = &f.pdu.state_key {
                key_rooms.push(r);
                keys.push(k.clone());
            }
        }
        let key_nids: HashMap<(i64, String), i64> =
            execute(client, &ASSIGN_STATE_KEYS, &[key_rooms.into(), keys.into()], |t| {
                t.map(|row| {
                    let r: i64 = row.get(1).ok().flatten().unwrap_or_default();
                    let k: String = row.get(2).ok().flatten().unwrap_or_default();
                    let n: i64 = row.get(3).ok().flatten().unwrap_or_default();
                    ((r, k), n)
                })
                .collect()
            });

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
            let existing = execute(client, &EXISTING_EVENTS, &[c_id.clone().into(), c_room.clone().into()], |t| read_event_nids(t));
            nids.extend(existing);
        }

        // 6. Edges of the new events, then earlier references to them.
        let (mut e_room, mut e_event, mut e_kind, mut e_pos, mut e_target, mut e_hashes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut new_room, mut new_id, mut new_nid) = (Vec::new(), Vec::new(), Vec::new());
        for f in &fresh {
            let r = rooms[&f.pdu.room_id];
            let Some(&nid) = inserted.get(&(f.pdu.event_id.clone(), r)) else { continue };
            new_room.push(r);
            new_id.push(f.pdu.event_id.clone());
            new_nid.push(nid);
            for edge in &f.edges {
                e_room.push(r);
                e_event.push(nid);
                e_kind.push(edge.kind.code().to_owned());
                e_pos.push(edge.position);
                e_target.push(edge.target_event_id.clone());
                e_hashes.push(edge.ref_hashes.as_ref().map(Value::to_string));
            }
        }
        if !e_room.is_empty() {
            execute(
                client,
                &INSERT_EDGES,
                &[e_room.into(), e_event.into(), e_kind.into(), e_pos.into(), e_target.into(), e_hashes.into()],
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

fn read_event_nids(t: pgrx::spi::SpiTupleTable<'_>) -> HashMap<(String, i64), i64> {
    t.map(|row| {
        let id: String = row.get(1).ok().flatten().unwrap_or_default();
        let r: i64 = row.get(2).ok().flatten().unwrap_or_default();
        let n: i64 = row.get(3).ok().flatten().unwrap_or_default();
        ((id, r), n)
    })
    .collect()
}
