//! `roomserver.prepare_event`: the unsigned PDU of a local event (core/src/local_event.rs builds
//! it). This shell reads what the core needs — the room, its forward extremities, the current
//! state's events under the auth events selection — and maps the outcome to SQLSTATEs.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{JsonB, PgLogLevel, PgSqlErrorCode};
use roomserver_core::local_event::{prepare, state_keys_needed, LocalEvent, PrepareError, MAX_PREV_EVENTS};
use roomserver_core::room_state::{BatchStore, StateStore};
use roomserver_core::{Error, RoomVersion};
use serde_json::Value;

use crate::api::json_input::JsonInput;
use crate::errors::{null_argument, raise, OrRaise};
use crate::store::plans::{query, query_first, Statement, INT8, INT8_ARRAY, TEXT};
use crate::store::state_store::SpiStateStore;

const CTX: &str = "prepare_event";

const ROOM: Statement = Statement {
    name: "local_event.room",
    sql: "SELECT r.room_nid, r.room_version, r.current_state FROM roomserver.rooms r WHERE r.room_id = $1",
    args: &[TEXT],
    mutating: false,
};

/// The deepest forward extremities, in the core's order (`choose_prev_events`): depth
/// descending, then event ID byte-wise.
const EXTREMITIES: Statement = Statement {
    name: "local_event.extremities",
    sql: "SELECT e.event_nid FROM roomserver.extremities x
          JOIN roomserver.stored_events e ON e.room_nid = x.room_nid AND e.event_nid = x.event_nid
          WHERE x.room_nid = $1
          ORDER BY e.depth DESC, e.event_id COLLATE \"C\" LIMIT $2",
    args: &[INT8, INT8],
    mutating: false,
};

const PDUS: Statement = Statement {
    name: "local_event.pdus",
    sql: "SELECT p.pdu FROM roomserver_internal.stored_pdus($1, $2) p ORDER BY p.ord",
    args: &[INT8, INT8_ARRAY],
    mutating: false,
};

/// Statement start in Unix milliseconds: the default `origin_server_ts`, fixed for the
/// statement, so the function stays STABLE.
fn statement_time_ms() -> i64 {
    // SAFETY: reads the backend's statement start time; no arguments, no side effects.
    let since_2000_us = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    since_2000_us.div_euclid(1000) + 946_684_800_000
}

fn forbidden(req: &LocalEvent, reason: &str) -> ! {
    let what = match &req.state_key {
        Some(k) => format!("{} (state key {k:?})", req.event_type),
        None => req.event_type.clone(),
    };
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{CTX}: {} may not send {what} in room {}: {reason}", req.sender, req.room_id),
        "pg_roomserver",
    )
    .set_detail(format!("rule: {reason}"))
    .set_hint("The authorization rules refuse the event against the room's current state (403 M_FORBIDDEN).")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// The unsigned PDU of a new local event: `prev_events` the room's forward extremities (the 10
/// deepest), `depth` one more than theirs, `auth_events` by the auth events selection from the
/// current state, `hashes.sha256` set; in the room version's format. Refused with 42501 when
/// the authorization rules do not let the sender send it.
///
/// The SQL is written out because pgrx would name the second argument `r#type`; the text is
/// what pgrx writes otherwise (sql/upgrades/0.2.0--0.3.0.sql repeats it).
#[pg_extern(
    stable,
    parallel_safe,
    sql = r#"
CREATE  FUNCTION "prepare_event"(
	"room_id" TEXT, /* Option < & str > */
	"type" TEXT, /* Option < & str > */
	"state_key" TEXT, /* Option < & str > */
	"sender" TEXT, /* Option < & str > */
	"content" jsonb, /* Option < JsonInput > */
	"origin_server_ts" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS jsonb /* JsonB */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'prepare_event_wrapper';
"#
)]
fn prepare_event(
    room_id: Option<&str>,
    r#type: Option<&str>,
    state_key: Option<&str>,
    sender: Option<&str>,
    content: Option<JsonInput>,
    origin_server_ts: default!(Option<i64>, "NULL"),
) -> JsonB {
    let room_id = room_id.unwrap_or_else(|| null_argument("room_id"));
    let event_type = r#type.unwrap_or_else(|| null_argument("type"));
    let sender = sender.unwrap_or_else(|| null_argument("sender"));
    let content = content.unwrap_or_else(|| null_argument("content")).0;
    let req = LocalEvent {
        room_id: room_id.to_owned(),
        sender: sender.to_owned(),
        event_type: event_type.to_owned(),
        state_key: state_key.map(str::to_owned),
        content,
        origin_server_ts: origin_server_ts.unwrap_or_else(statement_time_ms),
    };
    let outcome = Spi::connect_mut(|client| {
        let (room_nid, version, current_state) = query_first(client, &ROOM, &[room_id.into()], |r| {
            (r.value::<i64>(1, "room_nid"), r.value::<String>(2, "room_version"), r.nullable::<i64>(3, "current_state"))
        })
        .unwrap_or_else(|| raise(Error::not_found(format!("room {room_id} not found")), CTX));
        let rv = RoomVersion::from_id(&version).or_raise("rooms.room_version");
        let Some(current_state) = current_state else {
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("{CTX}: room {room_id} has no current state: only outliers of it are stored"),
                "pg_roomserver",
            )
            .set_hint("Join the room (ingest its state and an event with state) before creating events in it.")
            .report(PgLogLevel::ERROR);
            unreachable!()
        };
        let keys = state_keys_needed(&rv, &req).or_raise(CTX);
        let mut store = SpiStateStore::new(client);
        store.enter_room(room_nid, room_id, &rv);
        let key_nids: Vec<(i64, i64)> = store.key_nids(&keys).or_raise(CTX).into_iter().flatten().collect();
        let state_nids: Vec<i64> = store.lookup(current_state, &key_nids).or_raise(CTX).into_iter().flatten().collect();
        let client = store.client();
        let prev_nids: Vec<i64> =
            query(client, &EXTREMITIES, &[room_nid.into(), (MAX_PREV_EVENTS as i64).into()], |r| r.value(1, "event_nid"));
        let pdus = |client: &mut pgrx::spi::SpiClient, nids: Vec<i64>| -> Vec<Value> {
            query(client, &PDUS, &[room_nid.into(), nids.into()], |r| r.value::<JsonB>(1, "pdu").0)
        };
        let extremities = pdus(client, prev_nids);
        let state = pdus(client, state_nids);
        prepare(&rv, &req, &extremities, &state)
    });
    match outcome {
        Ok(pdu) => JsonB(pdu),
        Err(PrepareError::Invalid(e)) => raise(e, CTX),
        Err(PrepareError::Forbidden(rejection)) => forbidden(&req, &rejection.reason),
    }
}
