//! `roomserver.ingest_event` / `roomserver.ingest_events`: the SQL faces of ingest
//! ([`crate::store::ingest`]).

use pgrx::prelude::*;
use pgrx::JsonB;
use roomserver_core::Error;
use serde_json::Value;

use crate::api::json_input::JsonInput;
use crate::errors::{null_argument, raise};
use roomserver_core::room_state::Mode;

use crate::store::ingest::{ingest, Call, Options};

/// Stores one PDU. Returns `{"event_id", "event_nid", "room_id", "duplicate", "content_hash_ok",
/// "outlier", "rejection", "soft_failure"}`. `room_version` is needed only while the room's create
/// event is unknown. With `outlier`, the event is stored without state (its prev events need not
/// be known); otherwise its prev and auth events must be stored, with state, unless
/// `state_event_ids` gives the state before it (stored events, typically the `state` and
/// `auth_chain` of a `send_join` response ingested just before as outliers): then its prev events
/// need not be stored.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_event(
    pdu: Option<JsonInput>,
    room_version: default!(Option<&str>, "NULL"),
    outlier: default!(bool, false),
    state_event_ids: default!(Option<Vec<Option<String>>>, "NULL"),
) -> JsonB {
    let pdu = pdu.unwrap_or_else(|| null_argument("pdu"));
    let state_event_ids = state_event_ids.map(|ids| {
        if outlier {
            raise(Error::invalid(Some("state_event_ids"), "an outlier has no state: give state_event_ids or outlier => true, not both"), "ingest_event")
        }
        ids.into_iter().map(|id| id.unwrap_or_else(|| null_argument("state_event_ids[i]"))).collect()
    });
    let mode = if outlier { Mode::Outliers } else { Mode::Live };
    let mut results = ingest(vec![pdu.0], Options { requested: room_version, mode, state_event_ids }, Call::Single);
    JsonB(results.pop().expect("one result per PDU"))
}

/// Stores a JSON array of PDUs, in any order (each is admitted after the events of the array it
/// references). Returns one result per element, as `ingest_event` does. With `backfilled` the
/// events are history (a `/backfill` response): they never become forward extremities nor change
/// the current state, and those whose prev events are not stored yet are stored as outliers,
/// to get their state when the events before them arrive.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_events(
    pdus: Option<JsonInput>,
    room_version: default!(Option<&str>, "NULL"),
    outlier: default!(bool, false),
    backfilled: default!(bool, false),
) -> SetOfIterator<'static, JsonB> {
    let pdus = pdus.unwrap_or_else(|| null_argument("pdus"));
    let Value::Array(items) = pdus.0 else {
        raise(Error::bad_json("(root)", "pdus must be a JSON array of PDUs"), "ingest_events")
    };
    let mode = match (outlier, backfilled) {
        (true, true) => raise(
            Error::invalid(Some("backfilled"), "outlier and backfilled exclude each other: backfilled events get their state where they can"),
            "ingest_events",
        ),
        (true, false) => Mode::Outliers,
        (false, true) => Mode::Backfilled,
        (false, false) => Mode::Live,
    };
    SetOfIterator::new(ingest(items, Options { requested: room_version, mode, state_event_ids: None }, Call::Batch).into_iter().map(JsonB))
}
