//! `roomserver.ingest_event` / `roomserver.ingest_events` (src/api/ingest.rs) store PDUs in
//! phases, each in its own file:
//!
//! 1. [`nids::Nids::lookup`]: every NID the raw PDUs mention that exists, in one round trip;
//! 2. [`prepare`]: every PDU validated and split for storage before anything is written;
//! 3. [`nids`]: NIDs for new rooms, the room locks, new types and state keys, new events;
//! 4. [`context`]: what the batch refers to as stored, and each room's tips;
//! 5. admission, the Matrix half: `roomserver_core::room_state::admit_batch`;
//! 6. [`write`]: the batch written with a fixed number of set-based statements;
//! 7. one result per input element.
//!
//! Malformed input is refused before the first write, and an ERROR undoes everything, so bad
//! input leaves the database as it was.

pub(crate) mod context;
mod nids;
mod prepare;
mod write;

use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};
use roomserver_core::{nid_set, Error};
use roomserver_core::room_state::{admit_batch, dag_order, Candidate, Mode, Outcome};
use serde_json::{json, Value};

use crate::errors::raise;
use crate::store::state_store::SpiStateStore;
use prepare::Prepared;
use write::{EdgeRow, EventRow, OutlierUpgrade, Writes};

/// Which SQL function is ingesting: errors name it, and a batch's errors name the element.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Single,
    Batch,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Single => "ingest_event",
            Call::Batch => "ingest_events",
        }
    }

    /// The error context of the element at `position`.
    fn at(self, position: usize) -> String {
        match self {
            Call::Single => self.name().to_owned(),
            Call::Batch => format!("{}: pdus[{position}]", self.name()),
        }
    }
}

/// Refuses to run where nothing can be written, then ingests under the room locks.
///
/// Under READ COMMITTED the room lock makes every later statement see what the previous ingest
/// into the room committed. Under REPEATABLE READ or SERIALIZABLE the transaction's snapshot can
/// predate it: a row that ingest would write then already exists, invisible, and its unique
/// index raises 23505. That is a serialization failure like any other, so it is raised as
/// `40001` and the caller retries the transaction.
/// How to ingest, beyond the PDUs: the room version while the room is unknown, the mode
/// (live, outliers, backfilled history), and the state before a single event whose prev events
/// are not stored (joining a room part-way through its history).
pub struct Options<'a> {
    pub requested: Option<&'a str>,
    pub mode: Mode,
    pub state_event_ids: Option<Vec<String>>,
}

pub fn ingest(items: Vec<Value>, options: Options<'_>, call: Call) -> Vec<Value> {
    let context = call.name();
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
        return ingest_locked(items, &options, call);
    }
    PgTryBuilder::new(move || ingest_locked(items, &options, call))
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

fn ingest_locked(items: Vec<Value>, options: &Options<'_>, call: Call) -> Vec<Value> {
    let context = call.name();
    let requested = options.requested;
    Spi::connect_mut(|client| {
        let mut nids = nids::Nids::lookup(client, &items);
        let prepared: Vec<Prepared> = prepare::prepare(&items, &mut nids, requested, call);
        // First occurrences only: a repeat within the call is a duplicate of its first.
        let fresh: Vec<&Prepared> = prepared.iter().filter(|p| p.repeat_of.is_none()).collect();

        nids.assign_rooms(client, fresh.iter().map(|p| p.form.pdu.room_id.as_str()), context);
        let room_nids = nids.lock_rooms(client, fresh.iter().map(|p| p.form.pdu.room_id.as_str()));
        nids.assign_types_and_keys(
            client,
            fresh.iter().map(|p| p.form.pdu.event_type.as_str()),
            fresh.iter().flat_map(|p| {
                let pdu = &p.form.pdu;
                [Some(pdu.sender.as_str()), pdu.state_key.as_deref()].into_iter().flatten().map(move |k| (pdu.room_id.as_str(), k))
            }),
        );

        // In DAG order from here on: new NIDs ascend in it, so an event's auth events always have
        // smaller NIDs than it (state resolution relies on it), whatever order the batch came in.
        let refs: Vec<(&str, i64, Vec<&str>)> = fresh
            .iter()
            .map(|p| {
                let pdu = &p.form.pdu;
                (pdu.event_id.as_str(), nids.rooms[&pdu.room_id], pdu.prev_events.iter().chain(&pdu.auth_events).map(String::as_str).collect())
            })
            .collect();
        let fresh: Vec<&Prepared> = dag_order(&refs).into_iter().map(|i| fresh[i]).collect();

        let mut wanted: Vec<String> = Vec::new();
        for p in &fresh {
            wanted.push(p.form.pdu.event_id.clone());
            wanted.extend(p.form.edges.iter().map(|e| e.target_event_id.clone()));
        }
        let mut supplied_ids: Vec<String> = options.state_event_ids.clone().unwrap_or_default();
        supplied_ids.sort();
        supplied_ids.dedup();
        wanted.extend(supplied_ids.iter().cloned());
        wanted.sort();
        wanted.dedup();
        let (mut known, elsewhere) = context::known_events(client, wanted, room_nids.clone());
        let supplied: Option<Vec<i64>> = options.state_event_ids.as_ref().and_then(|_| fresh.first()).map(|p| {
            supplied_state_nids(&supplied_ids, nids.rooms[&p.form.pdu.room_id], &known, &elsewhere, &call.at(p.position))
        });
        // An event ID names one event (room versions 1-2 carry their IDs in the PDU, so another
        // room's event can claim one): a new event under an ID stored in another room is refused.
        for p in &fresh {
            let pdu = &p.form.pdu;
            if let Some(other) = elsewhere.get(&pdu.event_id) {
                if !known.contains_key(&(pdu.event_id.clone(), nids.rooms[&pdu.room_id])) {
                    raise(
                        Error::invalid(
                            Some("event_id"),
                            format!("event ID {} already names an event of room {other}: an event ID names one event", pdu.event_id),
                        ),
                        &call.at(p.position),
                    )
                }
            }
        }
        // Only live events move the extremities.
        let followed = if options.mode == Mode::Live {
            context::followed_events(client, fresh.iter().map(|p| p.form.pdu.event_id.clone()).collect(), room_nids.clone())
        } else {
            Default::default()
        };
        let stored_tips = context::room_tips(client, room_nids);
        let mut tips = stored_tips.clone();

        let is_new: Vec<bool> = fresh.iter().map(|p| !known.contains_key(&(p.form.pdu.event_id.clone(), nids.rooms[&p.form.pdu.room_id]))).collect();
        let mut new_nids = nids::allocate_event_nids(client, is_new.iter().filter(|n| **n).count()).into_iter();
        let versions: Vec<roomserver_core::RoomVersion> = fresh.iter().map(|p| p.rv.clone()).collect();
        let candidates: Vec<Candidate> = fresh
            .iter()
            .zip(&is_new)
            .zip(&versions)
            .map(|((p, new), rv)| {
                let pdu = &p.form.pdu;
                let r = nids.rooms[&pdu.room_id];
                Candidate {
                    position: p.position,
                    room_nid: r,
                    rv,
                    pdu,
                    type_nid: nids.types[&pdu.event_type],
                    state_key_nid: pdu.state_key.as_deref().map(|k| nids.key(r, k)),
                    new_nid: if *new { Some(new_nids.next().expect("one NID per new event")) } else { None },
                    supplied_state: supplied.as_deref(),
                    followed: followed.contains(&pdu.event_id),
                }
            })
            .collect();

        let mut store = SpiStateStore::new(client);
        let batch = admit_batch(&mut store, &candidates, &mut known, &mut tips, options.mode, &|id| elsewhere.contains_key(id))
            .unwrap_or_else(|e| raise(e.error, &e.position.map_or_else(|| context.to_owned(), |i| call.at(i))));
        let outcomes: Vec<Option<Outcome>> = batch.outcomes;
        let client = store.client();

        let mut writes = rows(&fresh, &outcomes, &nids, &known);
        // Stored outliers that gained their state because the history before them arrived.
        writes.upgrades.extend(batch.upgraded.iter().map(|(room_nid, o)| OutlierUpgrade {
            room_nid: *room_nid,
            event_nid: o.nid,
            rejection: o.rejection.clone(),
            soft_failure: o.soft_failure.clone(),
            state_before: o.state_before,
            state_after: o.state_after,
        }));
        writes.execute(client);
        write::write_tips(client, &stored_tips, &tips);

        // One result per input element, in order.
        let by_position: HashMap<usize, &Outcome> =
            fresh.iter().zip(&outcomes).filter_map(|(p, o)| o.as_ref().map(|o| (p.position, o))).collect();
        prepared
            .iter()
            .map(|p| {
                let f = &p.form;
                let r = nids.rooms[&f.pdu.room_id];
                let mine = by_position.get(&p.position);
                let k = known.get(&(f.pdu.event_id.clone(), r));
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

/// The NIDs of the events given as the state before an event (`state_event_ids`): each must be
/// stored in the event's room.
fn supplied_state_nids(
    ids: &[String],
    room_nid: i64,
    known: &roomserver_core::room_state::KnownEvents,
    elsewhere: &HashMap<String, String>,
    context: &str,
) -> Vec<i64> {
    let mut nids = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        match known.get(&(id.clone(), room_nid)) {
            Some(k) => nids.push(k.nid),
            None => match elsewhere.get(id) {
                Some(other) => raise(
                    Error::invalid(Some("state_event_ids"), format!("state event {id} belongs to room {other}, not the event's room")),
                    context,
                ),
                None => missing.push(id.as_str()),
            },
        }
    }
    if !missing.is_empty() {
        raise(
            Error::missing_references(format!(
                "state_event_ids names events that are not stored: {}; store them first (as outliers)",
                missing.join(", ")
            )),
            context,
        );
    }
    nids
}

/// The rows the admitted events become.
fn rows(fresh: &[&Prepared], outcomes: &[Option<Outcome>], nids: &nids::Nids, known: &roomserver_core::room_state::KnownEvents) -> Writes {
    let mut w = Writes::default();
    for (p, o) in fresh.iter().zip(outcomes) {
        let Some(o) = o else { continue };
        let f = &p.form;
        let r = nids.rooms[&f.pdu.room_id];
        if o.upgrade {
            w.upgrades.push(OutlierUpgrade {
                room_nid: r,
                event_nid: o.nid,
                rejection: o.rejection.clone(),
                soft_failure: o.soft_failure.clone(),
                state_before: o.state_before,
                state_after: o.state_after,
            });
            continue;
        }
        w.events.push(EventRow {
            room_nid: r,
            event_nid: o.nid,
            event_id: f.pdu.event_id.clone(),
            event_type_nid: nids.types[&f.pdu.event_type],
            state_key_nid: f.pdu.state_key.as_deref().map(|k| nids.key(r, k)),
            sender_nid: nids.key(r, &f.pdu.sender),
            depth: f.pdu.depth,
            origin_server_ts: f.pdu.origin_server_ts,
            content_hash_ok: f.content_hash_ok,
            room_id_implied: f.room_id_implied,
            pdu_rest: f.rest.to_string(),
            outlier: o.outlier,
            rejection: o.rejection.clone(),
            soft_failure: o.soft_failure.clone(),
            state_before: o.state_before,
            state_after: o.state_after,
            auth_chain: o.stored_auth_chain.as_ref().map(|c| nid_set::encode(c.iter().copied())),
        });
        // The target as stored (the remainder: a redaction stored redacted for a bad content
        // hash has lost a top-level redacts), whatever the outcome: applied or not is read time's.
        if f.pdu.event_type == "m.room.redaction" {
            if let Some(target) = f.rest.as_object().and_then(|rest| roomserver_core::redaction::target_of(rest, &p.rv)) {
                w.redactions.push(write::RedactionRow { room_nid: r, redaction_nid: o.nid, target_event_id: target.to_owned() });
            }
        }
        for edge in &f.edges {
            let target = known.get(&(edge.target_event_id.clone(), r)).map(|k| k.nid);
            w.edges.push(EdgeRow {
                room_nid: r,
                event_nid: o.nid,
                kind: edge.kind.code(),
                position: edge.position,
                target_nid: target,
                target_event_id: if target.is_none() { Some(edge.target_event_id.clone()) } else { None },
                ref_hashes: edge.ref_hashes.as_ref().map(Value::to_string),
            });
        }
    }
    w
}
