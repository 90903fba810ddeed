//! The pure functions over the core: canonical JSON, redaction, event IDs and content hashes.
//! They read no tables, so they are IMMUTABLE, STRICT and PARALLEL SAFE.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::api::json_input::JsonInput;
use roomserver_core::{canonical_json, hashes, redaction, RoomVersion};

use crate::errors::{raise, OrRaise};

/// The spec's canonical JSON of a value (keys sorted, no whitespace, integers only).
#[pg_extern(immutable, strict, parallel_safe)]
fn canonical_json(value: JsonInput) -> String {
    canonical_json::to_canonical_string(&value.0).or_raise("canonical_json")
}

/// The redaction algorithm of `room_version` applied to `pdu`.
#[pg_extern(immutable, strict, parallel_safe)]
fn redact(pdu: JsonInput, room_version: &str) -> JsonB {
    let rv = RoomVersion::from_id(room_version).or_raise("redact");
    if !pdu.0.is_object() {
        raise(roomserver_core::Error::bad_json("(root)", "a PDU must be a JSON object"), "redact")
    }
    JsonB(redaction::redact(&pdu.0, &rv))
}

/// The event ID of `pdu` in `room_version`: its `event_id` for v1-v2, `$` + reference hash
/// (standard base64 for v3, URL-safe from v4).
#[pg_extern(immutable, strict, parallel_safe)]
fn event_id_for(pdu: JsonInput, room_version: &str) -> String {
    let rv = RoomVersion::from_id(room_version).or_raise("event_id_for");
    hashes::event_id(&pdu.0, &rv).or_raise("event_id_for")
}

/// The room ID a room version 12 create event defines (`!` + its reference hash).
#[pg_extern(immutable, strict, parallel_safe)]
fn room_id_for_create_event(pdu: JsonInput, room_version: &str) -> String {
    let rv = RoomVersion::from_id(room_version).or_raise("room_id_for_create_event");
    if !rv.room_id_from_create_event {
        raise(
            roomserver_core::Error::invalid(
                Some("room_version"),
                format!("room version {} takes room IDs from the create event's room_id, not from its hash", rv.id),
            ),
            "room_id_for_create_event",
        )
    }
    hashes::room_id_from_create_event(&pdu.0, &rv).or_raise("room_id_for_create_event")
}

/// sha256 content hash of `pdu` (without unsigned, signatures, hashes), unpadded base64.
#[pg_extern(immutable, strict, parallel_safe)]
fn content_hash(pdu: JsonInput) -> String {
    hashes::content_hash(&pdu.0).or_raise("content_hash")
}
