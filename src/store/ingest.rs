//! `roomserver.ingest_event` / `roomserver.ingest_events`: validate PDUs in Rust, admit each one
//! (state before it, checks on receipt, state after it: `roomserver_core::room_state`), then
//! store the batch with a fixed number of set-based statements (events, edges, extremities),
//! whatever its size. Malformed input is refused before the first write, and an ERROR undoes
//! everything, so bad input leaves the database as it was.

use std::collections::{BTreeMap, HashMap};

use pgrx::prelude::*;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};
use roomserver_core::room_state::{admit, chain_from_auth_events, check_outlier, resolve_snapshots, superseded_extremities, StoredEvent};
use roomserver_core::stored_form::{room_version_for, split, StoredForm};
use roomserver_core::{nid_set, Error, RoomVersion};
use serde_json::{json, Value};

use crate::errors::{raise, OrRaise};
use crate::store::plans::{execute, Statement, BOOL_ARRAY, BYTEA_ARRAY, INT2_ARRAY, INT8, INT8_ARRAY, TEXT_ARRAY};
use crate::store::state_store::SpiStateStore;

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
const INSERT_EVENTS: Statement = Statement {
    name: "ingest.insert_events",
    sql: "INSERT INTO roomserver.stored_events
              (room_nid, event_nid, event_id, event_type_nid, state_key_nid, sender_nid, depth, origin_server_ts,
               content_hash_ok, room_id_implied, pdu_rest, outlier, rejection, soft_failure, state_before, state_after, auth_chain)
          SELECT u.r, u.n, u.id, u.t, u.k, u.s, u.d, u.ts, u.ok, u.imp, u.rest::jsonb, u.o, u.rej, u.soft, u.b, u.a, u.c
          FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
                      $8::bigint[], $9::bool[], $10::bool[], $11::text[], $12::bool[], $13::text[], $14::text[],
                      $15::bigint[], $16::bigint[], $17::bytea[])
               AS u(r, n, id, t, k, s, d, ts, ok, imp, rest, o, rej, soft, b, a, c)",
    args: &[
        INT8_ARRAY, INT8_ARRAY, TEXT_ARRAY, INT8_ARRAY, INT8_ARRAY, INT8_ARRAY, INT8_ARRAY, INT8_ARRAY, BOOL_ARRAY, BOOL_ARRAY,
        TEXT_ARRAY, BOOL_ARRAY, TEXT_ARRAY, TEXT_ARRAY, INT8_ARRAY, INT8_ARRAY, BYTEA_ARRAY,
    ],
    mutating: true,
};
// Outliers that arrive again with their prev events known get their state.
const UPGRADE_OUTLIERS: Statement = Statement {
    name: "ingest.upgrade_outliers",
    sql: "UPDATE roomserver.stored_events e
          SET outlier = false, rejection = u.rej, soft_failure = u.soft, state_before = u.b, state_after = u.a
          FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS u(r, n, rej, soft, b, a)
          WHERE e.room_nid = u.r AND e.event_nid = u.n",
    args: &[INT8_ARRAY, INT8_ARRAY, TEXT_ARRAY, TEXT_ARRAY, INT8_ARRAY, INT8_ARRAY],
    mutating: true,
};
// Stored events by ID (the batch's own, and the events it references), with what admission
// needs to know about them.
const FIND_EVENTS: Statement = Statement {
    name: "ingest.find_events",
    sql: "SELECT s.event_id, s.room_nid, s.event_nid, s.outlier, s.state_after, s.rejection IS NOT NULL OR s.soft_failure IS NOT NULL
          FROM roomserver.stored_events s
          WHERE s.event_id = ANY ($1) AND s.room_nid + 0 = ANY ($2)",
    args: &[TEXT_ARRAY, INT8_ARRAY],
    mutating: false,
};
// Each room's current state and forward extremities with their states.
const ROOM_CONTEXTS: Statement = Statement {
    name: "ingest.room_contexts",
    sql: "SELECT r.room_nid, r.current_state,
                 ARRAY(SELECT x.event_nid FROM roomserver.extremities x WHERE x.room_nid = r.room_nid ORDER BY x.event_nid),
                 -- A scalar subquery per extremity: a primary key probe each, whatever the
                 -- statistics said when the plan was made.
                 ARRAY(SELECT (SELECT e.state_after FROM roomserver.stored_events e
                               WHERE e.room_nid = x.room_nid AND e.event_nid = x.event_nid)
                       FROM roomserver.extremities x WHERE x.room_nid = r.room_nid ORDER BY x.event_nid)
          FROM roomserver.rooms r WHERE r.room_nid = ANY ($1)",
    args: &[INT8_ARRAY],
    mutating: false,
};
// Only the extremities that changed are deleted and inserted (and the current state only
// written when it changed): a message on a linear timeline replaces one row, and rewriting the
// room's whole set would leave dead index entries for every later ingest to step over.
const SET_EXTREMITIES_DELETE: Statement = Statement {
    name: "ingest.extremities_delete",
    sql: "DELETE FROM roomserver.extremities x USING unnest($1::bigint[], $2::bigint[]) AS n(r, e)
          WHERE x.room_nid = n.r AND x.event_nid = n.e",
    args: &[INT8_ARRAY, INT8_ARRAY],
    mutating: true,
};
const SET_EXTREMITIES_INSERT: Statement = Statement {
    name: "ingest.extremities_insert",
    sql: "INSERT INTO roomserver.extremities (room_nid, event_nid) SELECT * FROM unnest($1::bigint[], $2::bigint[])
          ON CONFLICT DO NOTHING",
    args: &[INT8_ARRAY, INT8_ARRAY],
    mutating: true,
};
const SET_CURRENT_STATE: Statement = Statement {
    name: "ingest.current_state",
    sql: "UPDATE roomserver.rooms r SET current_state = u.s FROM unnest($1::bigint[], $2::bigint[]) AS u(r, s) WHERE r.room_nid = u.r",
    args: &[INT8_ARRAY, INT8_ARRAY],
    mutating: true,
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

/// Refuses to run where nothing can be written, then ingests under the room locks.
///
/// Under READ COMMITTED the room lock makes every later statement see what the previous ingest
/// into the room committed. Under REPEATABLE READ or SERIALIZABLE the transaction's snapshot can
/// predate it: a row that ingest would write then already exists, invisible, and its unique
/// index raises 23505. That is a serialization failure like any other, so it is raised as
/// `40001` and the caller retries the transaction.
pub fn ingest(items: Vec<Value>, requested: Option<&str>, as_outlier: bool, context: &str) -> Vec<Value> {
    // SAFETY: plain reads of backend globals.
    let (in_recovery, read_only, snapshot_per_xact) =
        unsafe { (pg_sys::RecoveryInProgress(), pg_sys::XactReadOnly, pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32) };
    if in_recovery || read_only {
        let why = if in_recovery { "on a hot standby" } else { "in a read-only transaction" };
        ErrorReport::new(PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION, format!("{context}: cannot ingest {why}"), "pg_roomserver")
            .set_hint("ingest on the primary; read functions work on a standby")
            .report(PgLogLevel::ERROR);
    }
    if !snapshot_per_xact {
        return ingest_locked(items, requested, as_outlier, context);
    }
    let context_owned = context.to_owned();
    PgTryBuilder::new(move || ingest_locked(items, requested, as_outlier, &context_owned))
        .catch_when(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, |e| {
            let detail = match &e {
                pg_sys::panic::CaughtError::PostgresError(r) | pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_owned(),
                pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_owned(),
            };
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                format!("{context}: a concurrent transaction ingested into the same room after this transaction's snapshot was taken"),
                "pg_roomserver",
            )
            .set_detail(detail)
            .set_hint("retry the transaction")
            .report(PgLogLevel::ERROR);
            unreachable!("ERROR does not return")
        })
        .execute()
}

fn ingest_locked(items: Vec<Value>, requested: Option<&str>, as_outlier: bool, context: &str) -> Vec<Value> {
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

        // 3. NIDs for what is new: rooms first, then (under the room lock) event types, state keys (senders are state keys too:
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
        // 4. One ingest at a time per room from here on, and before any other NID is assigned:
        //    a new type or state key is a row this transaction holds until it ends, so taking
        //    the room lock after it could wait on a session that waits on that row (40P01).
        //    Locks are taken in room NID order.
        let mut room_nids: Vec<i64> = fresh.iter().map(|f| rooms[&f.pdu.room_id]).collect();
        room_nids.sort_unstable();
        room_nids.dedup();
        execute(client, &LOCK_ROOMS, &[room_nids.clone().into()], |_| ());

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

        // 5. What the batch refers to: its own events if already stored, and their prev and
        //    auth events, with the facts admission needs.
        let mut wanted: Vec<String> = Vec::new();
        for f in &fresh {
            wanted.push(f.pdu.event_id.clone());
            wanted.extend(f.edges.iter().map(|e| e.target_event_id.clone()));
        }
        wanted.sort();
        wanted.dedup();
        let mut known: HashMap<(String, i64), Known> = find_known(client, wanted, room_nids.clone());
        let mut contexts: HashMap<i64, RoomContext> = load_contexts(client, room_nids.clone());

        // 6. NIDs for the new events, ascending in batch order: an event's auth events are
        //    always stored before it, so they always have smaller NIDs (resolution relies on it).
        let new_count = fresh.iter().filter(|f| !known.contains_key(&(f.pdu.event_id.clone(), rooms[&f.pdu.room_id]))).count();
        let mut new_nids: Vec<i64> = if new_count == 0 {
            Vec::new()
        } else {
            execute(client, &ALLOCATE_NIDS, &[(new_count as i64).into()], |t| t.map(|r| r.get::<i64>(1).ok().flatten().unwrap_or_default()).collect())
        };
        new_nids.sort_unstable();
        let mut next_nid = new_nids.into_iter();

        // 7. Admit each event in order.
        let mut outcomes: HashMap<(String, i64), Outcome> = HashMap::new();
        let mut known_by_nid: HashMap<(i64, i64), Known> = known.iter().map(|((_, r), k)| ((*r, k.nid), k.clone())).collect();
        let mut batch_prevs: HashMap<(i64, i64), Vec<i64>> = HashMap::new();
        let mut store = SpiStateStore::new(client);
        for (i, f) in fresh.iter().enumerate() {
            let pdu = &f.pdu;
            let r = rooms[&pdu.room_id];
            let rv = RoomVersion::from_id(&versions[&pdu.room_id]).or_raise(context);
            store.set_room(r, &pdu.room_id, rv);
            let key = (pdu.event_id.clone(), r);
            let existing = known.get(&key).cloned();
            let upgrade = match &existing {
                Some(k) if k.outlier && !as_outlier => true,
                Some(_) => continue, // stored already: a duplicate
                None => false,
            };
            let where_ = field_context(prepared.iter().position(|p| std::ptr::eq(&p.form, *f)).unwrap_or(i));
            let (mut missing_auth, mut auth_nids) = (Vec::new(), Vec::new());
            for a in &pdu.auth_events {
                match known.get(&(a.clone(), r)) {
                    Some(k) => auth_nids.push(k.nid),
                    None => missing_auth.push(a.clone()),
                }
            }
            if !missing_auth.is_empty() {
                raise(
                    Error::missing_references(format!(
                        "event {} cannot be stored: its auth events are not known: {}",
                        pdu.event_id,
                        missing_auth.join(", ")
                    )),
                    &where_,
                )
            }
            let nid = match &existing {
                Some(k) => k.nid,
                None => next_nid.next().expect("one NID per new event"),
            };
            let type_nid = type_nids[&pdu.event_type];
            let state_key_nid = pdu.state_key.as_ref().map(|k| key_nids[&(r, k.clone())]);
            let chain = chain_from_auth_events(&mut store, &auth_nids).or_raise(&where_);
            let mut event = StoredEvent {
                nid,
                type_nid,
                state_key_nid,
                rejected: false,
                soft_failed: false,
                prev_nids: Vec::new(),
                state_after: None,
                pdu: pdu.clone(),
            };
            let outcome = if as_outlier {
                let rejection = check_outlier(&rv, &mut store, &event, &auth_nids).or_raise(&where_);
                Outcome { nid, outlier: true, rejection, soft_failure: None, before: None, after: None, upgrade, chain: None }
            } else {
                let (mut missing_prev, mut prev_states, mut prev_nids) = (Vec::new(), Vec::new(), Vec::new());
                for p in &pdu.prev_events {
                    match known.get(&(p.clone(), r)) {
                        Some(Known { state_after: Some(s), nid, .. }) => {
                            prev_states.push(*s);
                            prev_nids.push(*nid);
                        }
                        Some(_) => missing_prev.push(format!("{p} (an outlier: its state is not known)")),
                        None => missing_prev.push(p.clone()),
                    }
                }
                if !missing_prev.is_empty() {
                    raise(
                        Error::missing_references(format!(
                            "event {} cannot be stored with state: its prev events are not known: {}; store it with outlier => true, or its prev events first",
                            pdu.event_id,
                            missing_prev.join(", ")
                        )),
                        &where_,
                    )
                }
                let ctx = contexts.entry(r).or_default();
                let current: Vec<i64> = ctx.extremities.values().copied().collect();
                let adm = admit(&rv, &mut store, &event, &prev_states, &auth_nids, &current).or_raise(&where_);
                // Resolving the current state may need the event itself.
                let admitted = StoredEvent { rejected: adm.rejection.is_some(), state_after: Some(adm.state_after), ..event.clone() };
                store.remember(admitted, chain.clone());
                batch_prevs.insert((r, nid), prev_nids.clone());
                if adm.rejection.is_none() && adm.soft_failure.is_none() {
                    let gone = superseded_extremities(&prev_nids, |e| {
                        if let Some(k) = known_by_nid.get(&(r, e)) {
                            if !k.excluded {
                                return Ok(None);
                            }
                            if let Some(p) = batch_prevs.get(&(r, e)) {
                                return Ok(Some(p.clone()));
                            }
                        }
                        Ok(excluded_prevs(store.client(), r, e))
                    })
                    .or_raise(&where_);
                    let ctx = contexts.entry(r).or_default();
                    for p in &gone {
                        ctx.extremities.remove(p);
                    }
                    ctx.extremities.insert(nid, adm.state_after);
                    ctx.room_version = Some(rv.clone());
                }
                Outcome {
                    nid,
                    outlier: false,
                    rejection: adm.rejection,
                    soft_failure: adm.soft_failure,
                    before: Some(adm.state_before),
                    after: Some(adm.state_after),
                    upgrade,
                    chain: None,
                }
            };
            event.rejected = outcome.rejection.is_some();
            event.state_after = outcome.after;
            let excluded = outcome.rejection.is_some() || outcome.soft_failure.is_some();
            known.insert(key.clone(), Known { nid, outlier: outcome.outlier, excluded, state_after: outcome.after });
            known_by_nid.insert((r, nid), Known { nid, outlier: outcome.outlier, excluded, state_after: outcome.after });
            store.remember(event, chain.clone());
            let mut o = outcome;
            if pdu.is_state() && !o.upgrade {
                o.chain = Some(nid_set::encode(chain));
            }
            outcomes.insert(key, o);
        }
        // The current state of each room whose extremities changed: resolved once per call (the
        // checks above read only the keys they need from the extremities' states).
        for (r, ctx) in contexts.iter_mut() {
            let Some(rv) = ctx.room_version.clone() else { continue };
            let states: Vec<i64> = ctx.extremities.values().copied().collect();
            if states.is_empty() {
                continue;
            }
            let room_id = rooms.iter().find(|(_, n)| *n == r).map(|(id, _)| id.clone()).unwrap_or_default();
            store.set_room(*r, &room_id, rv.clone());
            ctx.current = Some(resolve_snapshots(&rv, &mut store, &states).or_raise(context));
        }
        let client = store.client();

        // 8. The new events, their edges, earlier references to them; upgraded outliers.
        let (mut c_room, mut c_nid, mut c_id, mut c_type, mut c_key, mut c_sender) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut c_depth, mut c_ts, mut c_ok, mut c_implied, mut c_rest) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut c_outlier, mut c_rejection, mut c_soft, mut c_before, mut c_after, mut c_chain) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut u_room, mut u_nid, mut u_rejection, mut u_soft, mut u_before, mut u_after) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut e_room, mut e_event, mut e_kind, mut e_pos, mut e_target, mut e_target_id, mut e_hashes) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for f in &fresh {
            let r = rooms[&f.pdu.room_id];
            let key = (f.pdu.event_id.clone(), r);
            let Some(o) = outcomes.get(&key) else { continue };
            if o.upgrade {
                u_room.push(r);
                u_nid.push(o.nid);
                u_rejection.push(o.rejection.clone());
                u_soft.push(o.soft_failure.clone());
                u_before.push(o.before);
                u_after.push(o.after);
                continue;
            }
            c_room.push(r);
            c_nid.push(o.nid);
            c_id.push(f.pdu.event_id.clone());
            c_type.push(type_nids[&f.pdu.event_type]);
            c_key.push(f.pdu.state_key.as_ref().map(|k| key_nids[&(r, k.clone())]));
            c_sender.push(key_nids[&(r, f.pdu.sender.clone())]);
            c_depth.push(f.pdu.depth);
            c_ts.push(f.pdu.origin_server_ts);
            c_ok.push(f.content_hash_ok);
            c_implied.push(f.room_id_implied);
            c_rest.push(f.rest.to_string());
            c_outlier.push(o.outlier);
            c_rejection.push(o.rejection.clone());
            c_soft.push(o.soft_failure.clone());
            c_before.push(o.before);
            c_after.push(o.after);
            c_chain.push(o.chain.clone());
            for edge in &f.edges {
                let target = known.get(&(edge.target_event_id.clone(), r)).map(|k| k.nid);
                e_room.push(r);
                e_event.push(o.nid);
                e_kind.push(edge.kind.code().to_owned());
                e_pos.push(edge.position);
                e_target.push(target);
                e_target_id.push(if target.is_none() { Some(edge.target_event_id.clone()) } else { None });
                e_hashes.push(edge.ref_hashes.as_ref().map(Value::to_string));
            }
        }
        let (new_room, new_id, new_nid) = (c_room.clone(), c_id.clone(), c_nid.clone());
        if !c_room.is_empty() {
            execute(
                client,
                &INSERT_EVENTS,
                &[
                    c_room.into(), c_nid.into(), c_id.into(), c_type.into(), c_key.into(), c_sender.into(), c_depth.into(),
                    c_ts.into(), c_ok.into(), c_implied.into(), c_rest.into(), c_outlier.into(), c_rejection.into(),
                    c_soft.into(), c_before.into(), c_after.into(), c_chain.into(),
                ],
                |_| (),
            );
        }
        if !u_room.is_empty() {
            execute(
                client,
                &UPGRADE_OUTLIERS,
                &[u_room.into(), u_nid.into(), u_rejection.into(), u_soft.into(), u_before.into(), u_after.into()],
                |_| (),
            );
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

        // 9. Forward extremities and current state of the rooms that changed.
        let (mut d_room, mut d_event, mut i_room, mut i_event, mut s_room, mut s_current) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (r, ctx) in &contexts {
            for e in ctx.stored_extremities.iter().filter(|e| !ctx.extremities.contains_key(e)) {
                d_room.push(*r);
                d_event.push(*e);
            }
            for e in ctx.extremities.keys().filter(|e| !ctx.stored_extremities.contains(e)) {
                i_room.push(*r);
                i_event.push(*e);
            }
            if ctx.current != ctx.stored_current {
                s_room.push(*r);
                s_current.push(ctx.current);
            }
        }
        if !d_room.is_empty() {
            execute(client, &SET_EXTREMITIES_DELETE, &[d_room.into(), d_event.into()], |_| ());
        }
        if !i_room.is_empty() {
            execute(client, &SET_EXTREMITIES_INSERT, &[i_room.into(), i_event.into()], |_| ());
        }
        if !s_room.is_empty() {
            execute(client, &SET_CURRENT_STATE, &[s_room.into(), s_current.into()], |_| ());
        }

        // 10. One result per input element, in order.
        prepared
            .iter()
            .map(|p| {
                let f = &p.form;
                let r = rooms[&f.pdu.room_id];
                let key = (f.pdu.event_id.clone(), r);
                let first = p.repeat_of.is_none();
                let mine = outcomes.get(&key).filter(|_| first);
                let k = known.get(&key);
                json!({
                    "event_id": f.pdu.event_id,
                    "event_nid": k.map(|k| k.nid),
                    "room_id": f.pdu.room_id,
                    "duplicate": mine.is_none(),
                    "content_hash_ok": f.content_hash_ok,
                    "outlier": k.map(|k| k.outlier),
                    "rejection": mine.and_then(|o| o.rejection.clone()),
                    "soft_failure": mine.and_then(|o| o.soft_failure.clone()),
                })
            })
            .collect()
    })
}

/// An event already stored (or admitted earlier in this call).
#[derive(Clone)]
struct Known {
    nid: i64,
    outlier: bool,
    /// Rejected or soft-failed.
    excluded: bool,
    state_after: Option<i64>,
}

/// What admission decided for an event of the batch.
struct Outcome {
    nid: i64,
    outlier: bool,
    rejection: Option<String>,
    soft_failure: Option<String>,
    before: Option<i64>,
    after: Option<i64>,
    /// A stored outlier that now gets its state.
    upgrade: bool,
    chain: Option<Vec<u8>>,
}

/// A room's forward extremities (event NID -> state after) and current state.
#[derive(Default)]
struct RoomContext {
    extremities: BTreeMap<i64, i64>,
    current: Option<i64>,
    /// Set when an event of this call changed the extremities.
    room_version: Option<RoomVersion>,
    /// As stored when the call began: only the difference is written back.
    stored_extremities: Vec<i64>,
    stored_current: Option<i64>,
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

fn excluded_prevs(client: &mut pgrx::spi::SpiClient<'_>, room_nid: i64, event_nid: i64) -> Option<Vec<i64>> {
    execute(client, &EXCLUDED_PREVS, &[room_nid.into(), event_nid.into()], |t| {
        t.into_iter().next().map(|r| r.get::<Vec<i64>>(1).ok().flatten().unwrap_or_default())
    })
}

fn find_known(client: &mut pgrx::spi::SpiClient<'_>, ids: Vec<String>, room_nids: Vec<i64>) -> HashMap<(String, i64), Known> {
    execute(client, &FIND_EVENTS, &[ids.into(), room_nids.into()], |t| {
        t.map(|row| {
            let id: String = row.get(1).ok().flatten().unwrap_or_default();
            let r: i64 = row.get(2).ok().flatten().unwrap_or_default();
            let nid: i64 = row.get(3).ok().flatten().unwrap_or_default();
            let outlier: bool = row.get(4).ok().flatten().unwrap_or_default();
            let state_after: Option<i64> = row.get(5).ok().flatten();
            let excluded: bool = row.get(6).ok().flatten().unwrap_or_default();
            ((id, r), Known { nid, outlier, excluded, state_after })
        })
        .collect()
    })
}

fn load_contexts(client: &mut pgrx::spi::SpiClient<'_>, room_nids: Vec<i64>) -> HashMap<i64, RoomContext> {
    execute(client, &ROOM_CONTEXTS, &[room_nids.into()], |t| {
        t.map(|row| {
            let r: i64 = row.get(1).ok().flatten().unwrap_or_default();
            let current: Option<i64> = row.get(2).ok().flatten();
            let ext: Vec<i64> = row.get(3).ok().flatten().unwrap_or_default();
            let states: Vec<i64> = row.get(4).ok().flatten().unwrap_or_default();
            let stored_extremities = ext.clone();
            (r, RoomContext { extremities: ext.into_iter().zip(states).collect(), current, stored_extremities, stored_current: current, room_version: None })
        })
        .collect()
    })
}

