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

// The events among $1 that a stored accepted event with state names as a prev event: through a
// reference still pending on the ID (a new event that fills a gap), or a resolved one (a stored
// outlier sent again). They are no forward extremities.
const FOLLOWED: Statement = Statement {
    name: "ingest.followed",
    // Probes only: each ID's pending references (pending index), or its stored event (unique
    // index) and that event's successors (edge index), each successor's flags by primary key, in
    // lateral subqueries (OFFSET 0 keeps each one a probe). Written as EXISTS over the
    // successors' flags, the kept plan hashed a scan of every accepted event of the room
    // (through the timestamp index, whose predicate the flags match) on every call: single-event
    // ingest fell to a sixth of its rate at 3,000 events.
    sql: "SELECT q.id FROM unnest($1::text[]) AS q(id)
          WHERE EXISTS (SELECT 1 FROM (SELECT ed.room_nid, ed.event_nid FROM roomserver.event_edges ed
                                       WHERE ed.target_event_id = q.id AND ed.target_nid IS NULL AND ed.room_nid = ANY ($2) AND ed.kind = 'p'
                                       OFFSET 0) e
                        CROSS JOIN LATERAL (SELECT s.outlier, s.rejection, s.soft_failure FROM roomserver.stored_events s
                                            WHERE s.room_nid = e.room_nid AND s.event_nid = e.event_nid OFFSET 0) s
                        WHERE NOT s.outlier AND s.rejection IS NULL AND s.soft_failure IS NULL)
             OR EXISTS (SELECT 1 FROM (SELECT x.room_nid, x.event_nid FROM roomserver.stored_events x
                                       WHERE x.event_id = q.id AND x.room_nid = ANY ($2) OFFSET 0) x
                        CROSS JOIN LATERAL (SELECT ed.event_nid FROM roomserver.event_edges ed
                                            WHERE ed.room_nid = x.room_nid AND ed.target_nid = x.event_nid AND ed.kind = 'p' OFFSET 0) e
                        CROSS JOIN LATERAL (SELECT s.outlier, s.rejection, s.soft_failure FROM roomserver.stored_events s
                                            WHERE s.room_nid = x.room_nid AND s.event_nid = e.event_nid OFFSET 0) s
                        WHERE NOT s.outlier AND s.rejection IS NULL AND s.soft_failure IS NULL)",
    args: &[TEXT_ARRAY, INT8_ARRAY],
    mutating: false,
};

/// The batch's events that stored events with state follow already (see FOLLOWED).
pub fn followed_events(client: &mut pgrx::spi::SpiClient<'_>, ids: Vec<String>, room_nids: Vec<i64>) -> std::collections::HashSet<String> {
    query(client, &FOLLOWED, &[ids.into(), room_nids.into()], |r| r.value::<String>(1, "id")).into_iter().collect()
}

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
