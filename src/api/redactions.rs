//! Redactions applied at read time: the SQL side of core/src/redaction.rs. Which stored
//! redaction names which event is in `roomserver.event_redactions` (written by ingest); whether
//! one applies is `redaction_refusal`, called by `roomserver_internal.stored_pdus` (the one
//! owner of stored row -> PDU) and the `roomserver.redactions` view for each redaction row they
//! find, so an event that nothing redacts costs one index probe and no call.

use pgrx::prelude::*;
use pgrx::JsonB;
use roomserver_core::{redaction, stored_form, Error, RoomVersion};
use serde_json::{Map, Value};

use crate::api::json_input::JsonInput;
use crate::errors::{null_argument, raise, OrRaise};
use crate::store::plans::{query, INT8, Statement};

/// The keys read, by name (sql/schema/01_nids.sql preassigns the types; the empty state key is
/// created with every room), as visibility_inputs reads them.
macro_rules! keys {
    () => {
        "n AS MATERIALIZED (
        SELECT (SELECT t.event_type_nid FROM roomserver.event_types t WHERE t.event_type = 'm.room.create') AS create_type,
               (SELECT t.event_type_nid FROM roomserver.event_types t WHERE t.event_type = 'm.room.power_levels') AS pl_type,
               (SELECT k.state_key_nid FROM roomserver.event_state_keys k WHERE k.state_key = '' AND k.room_nid = $1) AS empty_key
    )"
    };
}

/// The state before the redaction (NULL: an outlier).
const STATE_BEFORE: Statement = Statement {
    name: "redaction.state_before",
    sql: "SELECT e.state_before FROM roomserver.stored_events e WHERE e.room_nid = $1 AND e.event_nid = $2",
    args: &[INT8, INT8],
    mutating: false,
};

/// The create and power levels events in snapshot $2, each as (type, sender, content).
const IN_STATE: Statement = Statement {
    name: "redaction.redact_level_in_state",
    sql: concat!(
        "WITH ",
        keys!(), "
         SELECT t.event_type, s.state_key, e.pdu_rest -> 'content'
         FROM n CROSS JOIN LATERAL roomserver.snapshot_lookup($1, $2, ARRAY[n.create_type, n.pl_type], ARRAY[n.empty_key, n.empty_key]) l
         JOIN roomserver.stored_events e ON e.room_nid = $1 AND e.event_nid = l.event_nid
         JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
         JOIN roomserver.event_state_keys s ON s.room_nid = $1 AND s.state_key_nid = e.sender_nid"
    ),
    args: &[INT8, INT8],
    mutating: false,
};

/// For an outlier redaction $2, which has no state: the power levels event among its auth
/// events, and the room's create event (room version 12 does not list it in auth_events; the
/// room's accepted create event is the shallowest, found first in depth order).
const FOR_OUTLIER: Statement = Statement {
    name: "redaction.redact_level_for_outlier",
    sql: concat!(
        "WITH ",
        keys!(), ", found(nid) AS (
             SELECT ed.target_nid FROM roomserver.event_edges ed
             WHERE ed.room_nid = $1 AND ed.event_nid = $2 AND ed.kind = 'a' AND ed.target_nid IS NOT NULL
           UNION
             (SELECT c.event_nid FROM n, roomserver.stored_events c
              WHERE c.room_nid = $1 AND c.event_type_nid = n.create_type AND c.state_key_nid = n.empty_key AND c.rejection IS NULL
              ORDER BY c.depth, c.event_nid LIMIT 1)
         )
         SELECT DISTINCT ON (e.event_type_nid) t.event_type, s.state_key, e.pdu_rest -> 'content'
         FROM found CROSS JOIN n
         JOIN roomserver.stored_events e ON e.room_nid = $1 AND e.event_nid = found.nid
         JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
         JOIN roomserver.event_state_keys s ON s.room_nid = $1 AND s.state_key_nid = e.sender_nid
         WHERE e.event_type_nid IN (n.create_type, n.pl_type) AND e.state_key_nid = n.empty_key
         ORDER BY e.event_type_nid, e.event_nid"
    ),
    args: &[INT8, INT8],
    mutating: false,
};

/// Whether the sender of redaction `redaction_nid` reaches the `redact` level in the state
/// before it (core `redaction::reaches_redact_level`). Two statements, so that each case is
/// planned for itself (one statement for both read the whole room for the outlier branch even
/// when it was not taken: 37 ms in a 100,000-event room).
fn sender_reaches_redact_level(rv: &RoomVersion, room_nid: i64, redaction_nid: i64, sender: &str) -> bool {
    let found: Vec<(String, String, Option<JsonB>)> = Spi::connect_mut(|client| {
        let state_before: Option<i64> =
            query(client, &STATE_BEFORE, &[room_nid.into(), redaction_nid.into()], |r| r.nullable::<i64>(1, "state_before"))
                .into_iter()
                .next()
                .flatten();
        let read = |r: &crate::store::rows::Row| (r.value(1, "event_type"), r.value(2, "sender"), r.nullable(3, "content"));
        match state_before {
            Some(snapshot) => query(client, &IN_STATE, &[room_nid.into(), snapshot.into()], read),
            None => query(client, &FOR_OUTLIER, &[room_nid.into(), redaction_nid.into()], read),
        }
    });
    let content = |c: &Option<JsonB>| c.as_ref().and_then(|c| c.0.as_object()).cloned().unwrap_or_default();
    let mut power_levels: Option<Map<String, Value>> = None;
    let mut create: Option<(String, Map<String, Value>)> = None;
    for (event_type, event_sender, c) in &found {
        match event_type.as_str() {
            "m.room.power_levels" => power_levels = Some(content(c)),
            _ => create = Some((event_sender.clone(), content(c))),
        }
    }
    redaction::reaches_redact_level(rv, sender, power_levels.as_ref(), create.as_ref().map(|(s, c)| (s.as_str(), c)))
}

#[pg_schema]
mod roomserver_internal {
    use super::*;

    /// The event an m.room.redaction event names (core `redaction::target_of`: top-level
    /// `redacts` before room version 11, `content.redacts` from 11), read from its PDU or its
    /// stored remainder; NULL when it names none. Ingest writes the same into event_redactions;
    /// the 0.2.0 -> 0.3.0 upgrade fills that table with it.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn redaction_target(pdu: JsonInput, room_version: &str) -> Option<String> {
        let rv = RoomVersion::from_id(room_version).or_raise("redaction_target");
        let Value::Object(obj) = &pdu.0 else { raise(Error::bad_json("(root)", "a PDU must be a JSON object"), "redaction_target") };
        redaction::target_of(obj, &rv).map(str::to_owned)
    }

    /// Why the stored redaction `redaction_nid` of room `room_nid` does not apply to its target,
    /// NULL when it does (core `redaction::not_applied`): `rejected` (the redaction's), the
    /// room's version, the redaction's sender, and the target's type and sender (both NULL: the
    /// target is not stored in the room). The power check reads the state before the redaction
    /// and is made only when the rule needs it (room version 3+, different servers).
    #[pg_extern(stable, parallel_safe)]
    fn redaction_refusal(
        room_version: Option<&str>,
        rejected: Option<bool>,
        redaction_sender: Option<&str>,
        target_type: Option<&str>,
        target_sender: Option<&str>,
        room_nid: Option<i64>,
        redaction_nid: Option<i64>,
    ) -> Option<&'static str> {
        let Some(room_version) = room_version else { null_argument("room_version") };
        let Some(rejected) = rejected else { null_argument("rejected") };
        let Some(sender) = redaction_sender else { null_argument("redaction_sender") };
        let Some(room_nid) = room_nid else { null_argument("room_nid") };
        let Some(redaction_nid) = redaction_nid else { null_argument("redaction_nid") };
        let rv = RoomVersion::from_id(room_version).or_raise("redaction_refusal");
        let target = match (target_type, target_sender) {
            (Some(event_type), Some(sender)) => Some(redaction::Target { event_type, sender }),
            _ => None,
        };
        redaction::not_applied(&rv, rejected, sender, target, || sender_reaches_redact_level(&rv, room_nid, redaction_nid, sender))
            .map(redaction::NotApplied::as_str)
    }

    /// The stored remainder (`pdu_rest`) of the redacted form of `pdu`: the PDU redacted by the
    /// room version's algorithm, split by core `stored_form::split` (which owns which keys are
    /// columns). roomserver.purge_redacted_content writes it over the original remainder.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn redacted_pdu_rest(pdu: JsonInput, room_version: &str) -> JsonB {
        let rv = RoomVersion::from_id(room_version).or_raise("redacted_pdu_rest");
        let redacted = redaction::redact(&pdu.0, &rv);
        JsonB(stored_form::split(&redacted, &rv).or_raise("redacted_pdu_rest").rest)
    }
}
