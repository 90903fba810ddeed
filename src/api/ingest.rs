//! `roomserver.ingest_event` / `roomserver.ingest_events`: the SQL faces of ingest
//! ([`crate::store::ingest`]).

use pgrx::prelude::*;
use pgrx::JsonB;
use roomserver_core::Error;
use serde_json::Value;

use crate::api::json_input::JsonInput;
use crate::errors::{null_argument, raise};
use crate::store::ingest::{ingest, Call};

/// Stores one PDU. Returns `{"event_id", "event_nid", "room_id", "duplicate", "content_hash_ok",
/// "outlier", "rejection", "soft_failure"}`. `room_version` is needed only while the room's create
/// event is unknown. With `outlier`, the event is stored without state (its prev events need not
/// be known); otherwise its prev and auth events must be stored, with state.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_event(pdu: Option<JsonInput>, room_version: default!(Option<&str>, "NULL"), outlier: default!(bool, false)) -> JsonB {
    let pdu = pdu.unwrap_or_else(|| null_argument("pdu"));
    let mut results = ingest(vec![pdu.0], room_version, outlier, Call::Single);
    JsonB(results.pop().expect("one result per PDU"))
}

/// Stores a JSON array of PDUs in order (a create event first lets the rest of its room follow
/// in the same call). Returns one result per element, as `ingest_event` does.
#[pg_extern(volatile, parallel_unsafe)]
fn ingest_events(
    pdus: Option<JsonInput>,
    room_version: default!(Option<&str>, "NULL"),
    outlier: default!(bool, false),
) -> SetOfIterator<'static, JsonB> {
    let pdus = pdus.unwrap_or_else(|| null_argument("pdus"));
    let Value::Array(items) = pdus.0 else {
        raise(Error::bad_json("(root)", "pdus must be a JSON array of PDUs"), "ingest_events")
    };
    SetOfIterator::new(ingest(items, room_version, outlier, Call::Batch).into_iter().map(JsonB))
}

