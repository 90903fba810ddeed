//! Ingest phase 4: what the batch refers to, as stored. Its own events if they are stored
//! already, the prev and auth events they name (with what admission needs to know of them), and
//! each room's forward extremities with their states and current state.

use std::collections::HashMap;

use roomserver_core::room_state::{KnownEvent, KnownEvents, RoomTips};

use crate::store::plans::{query, Statement, INT8_ARRAY, TEXT_ARRAY};

// Stored events by ID (the batch's own, and the events it references), with what admission
// needs to know about them.
const FIND_EVENTS: Statement = Statement {
    name: "ingest.find_events",
    // Events of other rooms too, with their room's ID: an event ID names one event.
    sql: "SELECT s.event_id, s.room_nid, s.event_nid, s.outlier, s.state_after, s.rejection IS NOT NULL OR s.soft_failure IS NOT NULL,
                 CASE WHEN s.room_nid + 0 <> ALL ($2) THEN (SELECT r.room_id FROM roomserver.rooms r WHERE r.room_nid = s.room_nid) END
          FROM roomserver.stored_events s
          WHERE s.event_id = ANY ($1)",
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

/// Stored events by ID: those of `room_nids`, and (event ID -> room ID) those of other rooms.
pub fn known_events(client: &mut pgrx::spi::SpiClient<'_>, ids: Vec<String>, room_nids: Vec<i64>) -> (KnownEvents, HashMap<String, String>) {
    let (mut known, mut elsewhere) = (KnownEvents::new(), HashMap::new());
    let rows = query(client, &FIND_EVENTS, &[ids.into(), room_nids.into()], |r| {
        let event = KnownEvent {
            nid: r.value(3, "event_nid"),
            outlier: r.value(4, "outlier"),
            excluded: r.value(6, "excluded"),
            state_after: r.nullable(5, "state_after"),
        };
        (r.value::<String>(1, "event_id"), r.value::<i64>(2, "room_nid"), event, r.nullable::<String>(7, "other_room_id"))
    });
    for (id, room_nid, event, other_room) in rows {
        match other_room {
            Some(room_id) => {
                elsewhere.insert(id, room_id);
            }
            None => {
                known.insert((id, room_nid), event);
            }
        }
    }
    (known, elsewhere)
}

/// Each room's tips as stored (the batch changes a copy; only the difference is written back).
pub fn room_tips(client: &mut pgrx::spi::SpiClient<'_>, room_nids: Vec<i64>) -> HashMap<i64, RoomTips> {
    query(client, &ROOM_CONTEXTS, &[room_nids.into()], |r| {
        let extremities: Vec<i64> = r.value(3, "extremities");
        let states: Vec<i64> = r.value(4, "extremity_states");
        let tips = RoomTips { extremities: extremities.into_iter().zip(states).collect(), current: r.nullable(2, "current_state") };
        (r.value::<i64>(1, "room_nid"), tips)
    })
    .into_iter()
    .collect()
}
