//! Ingest phase 6: the batch written with a fixed number of set-based statements whatever its
//! size (events, edges, references that were pending on the new events, outliers that got their
//! state, forward extremities, current state). Rows are gathered one struct per row and turned
//! into the statements' column arrays only here.

use std::collections::HashMap;

use roomserver_core::room_state::RoomTips;
use pgrx::datum::DatumWithOid;
use pgrx::IntoDatum;

use crate::store::plans::{execute, Statement, BOOL_ARRAY, BYTEA_ARRAY, INT2_ARRAY, INT8_ARRAY, TEXT_ARRAY};

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

const INSERT_EDGES: Statement = Statement {
    name: "ingest.insert_edges",
    sql: "INSERT INTO roomserver.event_edges (room_nid, event_nid, kind, position, target_nid, target_event_id, ref_hashes)
          SELECT u.r, u.e, u.k::\"char\", u.p, u.t, u.tid, u.h::jsonb
          FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int2[], $5::bigint[], $6::text[], $7::text[])
               AS u(r, e, k, p, t, tid, h)",
    args: &[INT8_ARRAY, INT8_ARRAY, TEXT_ARRAY, INT2_ARRAY, INT8_ARRAY, TEXT_ARRAY, TEXT_ARRAY],
    mutating: true,
};

// The targets of the new m.room.redaction events (applied or not is decided at read time).
const INSERT_REDACTIONS: Statement = Statement {
    name: "ingest.insert_redactions",
    sql: "INSERT INTO roomserver.event_redactions (room_nid, redaction_nid, target_event_id)
          SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])",
    args: &[INT8_ARRAY, INT8_ARRAY, TEXT_ARRAY],
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

/// A new row of `roomserver.stored_events`.
pub struct EventRow {
    pub room_nid: i64,
    pub event_nid: i64,
    pub event_id: String,
    pub event_type_nid: i64,
    pub state_key_nid: Option<i64>,
    pub sender_nid: i64,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub content_hash_ok: bool,
    pub room_id_implied: bool,
    /// The PDU's JSON remainder, as text.
    pub pdu_rest: String,
    pub outlier: bool,
    pub rejection: Option<String>,
    pub soft_failure: Option<String>,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
    pub auth_chain: Option<Vec<u8>>,
}

/// A stored outlier that gets its state.
pub struct OutlierUpgrade {
    pub room_nid: i64,
    pub event_nid: i64,
    pub rejection: Option<String>,
    pub soft_failure: Option<String>,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
}

/// A new row of `roomserver.event_edges`: a prev or auth reference of a new event.
pub struct EdgeRow {
    pub room_nid: i64,
    pub event_nid: i64,
    pub kind: &'static str,
    pub position: i16,
    /// The target's NID when it is stored; otherwise its ID is kept until it arrives.
    pub target_nid: Option<i64>,
    pub target_event_id: Option<String>,
    pub ref_hashes: Option<String>,
}

/// A new row of `roomserver.event_redactions`: a new m.room.redaction event and the event it names.
pub struct RedactionRow {
    pub room_nid: i64,
    pub redaction_nid: i64,
    pub target_event_id: String,
}

/// Everything the batch writes.
#[derive(Default)]
pub struct Writes {
    pub events: Vec<EventRow>,
    pub upgrades: Vec<OutlierUpgrade>,
    pub edges: Vec<EdgeRow>,
    pub redactions: Vec<RedactionRow>,
}

/// One column of `rows` as a statement argument.
fn column<R, T: IntoDatum>(rows: &[R], f: impl Fn(&R) -> T) -> DatumWithOid<'static>
where
    Vec<T>: IntoDatum,
{
    rows.iter().map(f).collect::<Vec<T>>().into()
}

impl Writes {
    pub fn execute(&self, client: &mut pgrx::spi::SpiClient<'_>) {
        let ev = &self.events;
        if !ev.is_empty() {
            let args = [
                column(ev, |r| r.room_nid),
                column(ev, |r| r.event_nid),
                column(ev, |r| r.event_id.clone()),
                column(ev, |r| r.event_type_nid),
                column(ev, |r| r.state_key_nid),
                column(ev, |r| r.sender_nid),
                column(ev, |r| r.depth),
                column(ev, |r| r.origin_server_ts),
                column(ev, |r| r.content_hash_ok),
                column(ev, |r| r.room_id_implied),
                column(ev, |r| r.pdu_rest.clone()),
                column(ev, |r| r.outlier),
                column(ev, |r| r.rejection.clone()),
                column(ev, |r| r.soft_failure.clone()),
                column(ev, |r| r.state_before),
                column(ev, |r| r.state_after),
                column(ev, |r| r.auth_chain.clone()),
            ];
            execute(client, &INSERT_EVENTS, &args, |_| ());
        }
        let up = &self.upgrades;
        if !up.is_empty() {
            let args = [
                column(up, |r| r.room_nid),
                column(up, |r| r.event_nid),
                column(up, |r| r.rejection.clone()),
                column(up, |r| r.soft_failure.clone()),
                column(up, |r| r.state_before),
                column(up, |r| r.state_after),
            ];
            execute(client, &UPGRADE_OUTLIERS, &args, |_| ());
        }
        let ed = &self.edges;
        if !ed.is_empty() {
            let args = [
                column(ed, |r| r.room_nid),
                column(ed, |r| r.event_nid),
                column(ed, |r| r.kind.to_owned()),
                column(ed, |r| r.position),
                column(ed, |r| r.target_nid),
                column(ed, |r| r.target_event_id.clone()),
                column(ed, |r| r.ref_hashes.clone()),
            ];
            execute(client, &INSERT_EDGES, &args, |_| ());
        }
        let rd = &self.redactions;
        if !rd.is_empty() {
            let args = [column(rd, |r| r.room_nid), column(rd, |r| r.redaction_nid), column(rd, |r| r.target_event_id.clone())];
            execute(client, &INSERT_REDACTIONS, &args, |_| ());
        }
        if !ev.is_empty() {
            let args = [column(ev, |r| r.room_nid), column(ev, |r| r.event_id.clone()), column(ev, |r| r.event_nid)];
            execute(client, &RESOLVE_PENDING, &args, |_| ());
        }
    }
}

/// Writes back the forward extremities and current states that differ from `stored`.
pub fn write_tips(client: &mut pgrx::spi::SpiClient<'_>, stored: &HashMap<i64, RoomTips>, now: &HashMap<i64, RoomTips>) {
    let (mut gone, mut added, mut current): (Vec<(i64, i64)>, Vec<(i64, i64)>, Vec<(i64, Option<i64>)>) = (vec![], vec![], vec![]);
    let empty = RoomTips::default();
    for (r, tips) in now {
        let before = stored.get(r).unwrap_or(&empty);
        gone.extend(before.extremities.keys().filter(|e| !tips.extremities.contains_key(e)).map(|e| (*r, *e)));
        added.extend(tips.extremities.keys().filter(|e| !before.extremities.contains_key(e)).map(|e| (*r, *e)));
        if tips.current != before.current {
            current.push((*r, tips.current));
        }
    }
    if !gone.is_empty() {
        execute(client, &SET_EXTREMITIES_DELETE, &[column(&gone, |p| p.0), column(&gone, |p| p.1)], |_| ());
    }
    if !added.is_empty() {
        execute(client, &SET_EXTREMITIES_INSERT, &[column(&added, |p| p.0), column(&added, |p| p.1)], |_| ());
    }
    if !current.is_empty() {
        execute(client, &SET_CURRENT_STATE, &[column(&current, |p| p.0), column(&current, |p| p.1)], |_| ());
    }
}
