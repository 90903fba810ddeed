//! The federation traversals (`/backfill`, `/get_missing_events`, MSC4000 forwards fill): the
//! core's `BatchedWalk` over prepared SPI plans. Each expansion reads the prev (or successor)
//! edges of a whole frontier, plus a breadth-first read-ahead bounded by what can still be
//! emitted, in one statement; history visibility is read for the taken events in one more. The
//! SQL wrappers in sql/api/04_federation.sql turn the result into the response body (and leave
//! rejected events out: they are walked through, never returned).

use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use roomserver_core::event::reference_ids;
use roomserver_core::traversal::{BatchedWalk, Direction, NeighbourSource, WalkNode};
use roomserver_core::visibility::{outlier_visible_to_server, visible_from_stored_state};
use roomserver_core::{Error, RoomVersion};
use serde_json::{json, Value};

use crate::api::json_input::JsonInput;
use crate::errors::{null_argument, raise, OrRaise};
use crate::store::rows::Row;
use crate::store::plans::{query, query_first, Statement, INT8, INT8_ARRAY, TEXT, TEXT_ARRAY};

/// The most events one call returns; larger limits are clamped (Synapse clamps backfill to 100
/// and get_missing_events to 20; ours reads only what it returns, so it allows more).
pub const MAX_LIMIT: i32 = 1000;

const ROOM: Statement = Statement {
    name: "federation_room",
    sql: "SELECT room_nid, room_version FROM roomserver_internal.find_room($1)",
    args: &[TEXT],
    mutating: false,
};

/// The known events of the room among the given IDs (never another room's).
const EVENTS_BY_ID: Statement = Statement {
    name: "federation_events_by_id",
    sql: "SELECT e.event_nid, e.depth, e.event_id, e.outlier FROM roomserver.stored_events e
          WHERE e.event_id = ANY ($2) AND e.room_nid = $1",
    args: &[INT8, TEXT_ARRAY],
    mutating: false,
};

/// Breadth-first from the frontier ($2) over prev_events, not through $3 nor below depth $4,
/// at most $5 events expanded; for each, its known prev events with depth and ID. The outer
/// LIMIT stops the recursion early (a recursive CTE is evaluated only as far as it is read).
const EXPAND_BACKWARDS: Statement = Statement {
    name: "federation_expand_backwards",
    sql: "WITH RECURSIVE w(nid) AS (
              SELECT unnest($2::bigint[])
            UNION
              SELECT ed.target_nid
              FROM w
              JOIN roomserver.event_edges ed ON ed.room_nid = $1 AND ed.event_nid = w.nid AND ed.kind = 'p'
              JOIN roomserver.stored_events t ON t.room_nid = $1 AND t.event_nid = ed.target_nid
              WHERE t.depth >= $4 AND ed.target_nid <> ALL ($3::bigint[])
          )
          SELECT x.nid, t.event_nid, t.depth, t.event_id
          FROM (SELECT nid FROM w LIMIT $5) x
          LEFT JOIN (roomserver.event_edges ed
                     JOIN roomserver.stored_events t ON t.room_nid = ed.room_nid AND t.event_nid = ed.target_nid)
            ON ed.room_nid = $1 AND ed.event_nid = x.nid AND ed.kind = 'p'",
    args: &[INT8, INT8_ARRAY, INT8_ARRAY, INT8, INT8],
    mutating: false,
};

/// The mirror image over successors (reverse prev_events edges, index event_edges_target).
const EXPAND_FORWARDS: Statement = Statement {
    name: "federation_expand_forwards",
    sql: "WITH RECURSIVE w(nid) AS (
              SELECT unnest($2::bigint[])
            UNION
              SELECT ed.event_nid
              FROM w
              JOIN roomserver.event_edges ed ON ed.room_nid = $1 AND ed.target_nid = w.nid AND ed.kind = 'p'
          )
          SELECT x.nid, s.event_nid, s.depth, s.event_id
          FROM (SELECT nid FROM w LIMIT $3) x
          LEFT JOIN (roomserver.event_edges ed
                     JOIN roomserver.stored_events s ON s.room_nid = ed.room_nid AND s.event_nid = ed.event_nid)
            ON ed.room_nid = $1 AND ed.target_nid = x.nid AND ed.kind = 'p'",
    args: &[INT8, INT8_ARRAY, INT8],
    mutating: false,
};

/// What history visibility needs of each taken event, in order: whether it is an outlier (then
/// its sender and whether it is a state event decide), the m.room.history_visibility content in
/// the state after it, and, only where that content says invited or joined, the memberships
/// there of the requesting server's users.
const VISIBILITY: Statement = Statement {
    name: "federation_visibility",
    sql: "SELECT v.outlier, v.history_visibility, v.memberships, v.sender, v.is_state
          FROM roomserver_internal.visibility_inputs($1, $2, $3) v ORDER BY v.ord",
    args: &[INT8, INT8_ARRAY, TEXT],
    mutating: false,
};

struct SqlNeighbours {
    room_nid: i64,
    direction: Direction,
    stop: Vec<i64>,
    min_depth: i64,
}

impl NeighbourSource<i64> for SqlNeighbours {
    fn expand(&mut self, frontier: &[i64], budget: usize) -> Vec<(i64, Vec<WalkNode<i64>>)> {
        let mut by_event: HashMap<i64, Vec<WalkNode<i64>>> = HashMap::new();
        let read = |r: &Row| {
            let nid: i64 = r.value(1, "event_nid");
            let ns = by_event.entry(nid).or_default();
            if let Some(handle) = r.nullable::<i64>(2, "neighbour_nid") {
                ns.push(WalkNode { handle, depth: r.value(3, "depth"), event_id: r.value(4, "event_id") });
            }
        };
        Spi::connect_mut(|client| match self.direction {
            Direction::Backwards => query(
                client,
                &EXPAND_BACKWARDS,
                &[
                    self.room_nid.into(),
                    frontier.to_vec().into(),
                    self.stop.clone().into(),
                    self.min_depth.into(),
                    (budget as i64).into(),
                ],
                read,
            ),
            Direction::Forwards => {
                query(client, &EXPAND_FORWARDS, &[self.room_nid.into(), frontier.to_vec().into(), (budget as i64).into()], read)
            }
        });
        by_event.into_iter().collect()
    }
}

fn checked_limit(limit: Option<i32>) -> usize {
    match limit {
        None => null_argument("limit"),
        Some(l) if l <= 0 => {
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("limit must be positive, got {l}"),
                "pg_roomserver",
            )
            .report(PgLogLevel::ERROR);
            unreachable!()
        }
        Some(l) => l.min(MAX_LIMIT) as usize,
    }
}

fn ids(list: Option<Vec<Option<String>>>, name: &str) -> Vec<String> {
    match list {
        None => null_argument(name),
        // NULL elements name no event: skipped like unknown IDs.
        Some(v) => v.into_iter().flatten().collect(),
    }
}

fn room_nid(client: &mut SpiClient, room_id: Option<&str>) -> i64 {
    let Some(room_id) = room_id else { null_argument("room_id") };
    query_first(client, &ROOM, &[room_id.into()], |r| r.nullable::<i64>(1, "room_nid"))
        .flatten()
        .unwrap_or_else(|| null_argument("room_nid"))
}

/// The room of a room ID and its version; ERROR P0002 when unknown (find_room).
fn room(client: &mut SpiClient, room_id: &str) -> (i64, RoomVersion) {
    let (room_nid, version) = query_first(client, &ROOM, &[room_id.into()], |r| {
        (r.value::<i64>(1, "room_nid"), r.value::<String>(2, "room_version"))
    })
    .unwrap_or_else(|| raise(Error::not_found(format!("room {room_id} not found")), "missing_events"));
    (room_nid, RoomVersion::from_id(&version).or_raise("rooms.room_version"))
}

fn known_events(client: &mut SpiClient, room_nid: i64, ids: Vec<String>) -> Vec<WalkNode<i64>> {
    if ids.is_empty() {
        return Vec::new();
    }
    query(client, &EVENTS_BY_ID, &[room_nid.into(), ids.into()], |r| WalkNode {
        handle: r.value(1, "event_nid"),
        depth: r.value(2, "depth"),
        event_id: r.value(3, "event_id"),
    })
}

/// Whether `server` may see each event unredacted; all true for internal calls (NULL).
fn visibility(client: &mut SpiClient, room_nid: i64, nids: &[i64], server: Option<&str>) -> Vec<bool> {
    let Some(server) = server else { return vec![true; nids.len()] };
    if nids.is_empty() {
        return Vec::new();
    }
    query(client, &VISIBILITY, &[room_nid.into(), nids.to_vec().into(), server.into()], |r| {
        let outlier: bool = r.value(1, "outlier");
        if outlier {
            // No state of its own: only what does not depend on state decides.
            return outlier_visible_to_server(&r.value::<String>(4, "sender"), r.value(5, "is_state"), server);
        }
        let content: Option<pgrx::JsonB> = r.nullable(2, "history_visibility");
        // NULL when the state does not restrict visibility to members.
        let memberships: Vec<Option<String>> = r.nullable(3, "memberships").unwrap_or_default();
        visible_from_stored_state(content.as_ref().map(|c| &c.0 as &Value), memberships.iter().flatten().map(String::as_str))
    })
}

/// The prev and auth events an incoming PDU references that this server lacks (Dendrite's
/// QueryMissingAuthPrevEvents): prev events not stored with state (unknown, or outliers: ingest
/// needs their state) and auth events not stored at all; each list in PDU order, no repeats.
/// The references are read as ingest reads them (core/src/event.rs) for the room's version.
#[pg_extern(stable, parallel_safe)]
fn missing_events(pdu: Option<JsonInput>) -> JsonB {
    const CONTEXT: &str = "missing_events";
    let Some(JsonInput(pdu)) = pdu else { null_argument("pdu") };
    let Some(obj) = pdu.as_object() else { raise(Error::bad_json("(root)", "a PDU must be a JSON object"), CONTEXT) };
    let lists = ["prev_events", "auth_events"].map(|field| (field, obj.get(field).and_then(Value::as_array)));
    if let Some((field, _)) = lists.iter().find(|(_, list)| list.is_none()) {
        raise(Error::bad_json(field, "prev_events and auth_events must be arrays"), CONTEXT)
    }
    // A room version 12 create event has no room_id, but references nothing either.
    if lists.iter().all(|(_, list)| list.is_some_and(|l| l.is_empty())) {
        return JsonB(json!({"missing_prev_events": [], "missing_auth_events": []}));
    }
    let Some(Value::String(room_id)) = obj.get("room_id") else { raise(Error::bad_json("room_id", "room_id must be a string"), CONTEXT) };
    let (prevs, auths, stored) = Spi::connect_mut(|client| {
        let (room_nid, rv) = room(client, room_id);
        let prevs = reference_ids(obj, "prev_events", &rv).or_raise(CONTEXT);
        let auths = reference_ids(obj, "auth_events", &rv).or_raise(CONTEXT);
        let ids: Vec<String> = prevs.iter().chain(&auths).cloned().collect();
        // event ID -> whether it is stored as an outlier
        let stored: HashMap<String, bool> =
            query(client, &EVENTS_BY_ID, &[room_nid.into(), ids.into()], |r| (r.value(3, "event_id"), r.value(4, "outlier")))
                .into_iter()
                .collect();
        (prevs, auths, stored)
    });
    let missing = |ids: Vec<String>, lacking: &dyn Fn(Option<&bool>) -> bool| {
        let mut seen = std::collections::HashSet::new();
        ids.into_iter().filter(|id| lacking(stored.get(id)) && seen.insert(id.clone())).collect::<Vec<String>>()
    };
    JsonB(json!({
        "missing_prev_events": missing(prevs, &|s| s != Some(&false)),
        "missing_auth_events": missing(auths, &|s| s.is_none()),
    }))
}

type WalkRow = TableIterator<'static, (name!(room_nid, i64), name!(event_nids, Vec<i64>), name!(visible, Vec<bool>))>;

fn finish(room_nid: i64, taken: Vec<WalkNode<i64>>, server: Option<&str>) -> WalkRow {
    let nids: Vec<i64> = taken.iter().map(|n| n.handle).collect();
    let visible = Spi::connect_mut(|client| visibility(client, room_nid, &nids, server));
    TableIterator::once((room_nid, nids, visible))
}

/// The walks are internal: the API (sql/api/04_federation.sql) shapes their result.
#[pg_schema]
mod roomserver_internal {
    use super::*;

    /// `/backfill`'s walk: the events of `v` and their ancestors, newest first (core/src/traversal.rs
    /// `backfill`), as event NIDs with the requesting server's visibility of each.
    #[pg_extern(stable, parallel_safe)]
    fn backfill_walk(
        room_id: Option<&str>,
        v: Option<Vec<Option<String>>>,
        limit: Option<i32>,
        requesting_server: default!(Option<&str>, "NULL"),
    ) -> TableIterator<'static, (name!(room_nid, i64), name!(event_nids, Vec<i64>), name!(visible, Vec<bool>))> {
        let v = ids(v, "v");
        let limit = checked_limit(limit);
        let (room_nid, seeds) = Spi::connect_mut(|client| {
            let room_nid = room_nid(client, room_id);
            (room_nid, known_events(client, room_nid, v))
        });
        let mut walk = BatchedWalk::new(Direction::Backwards);
        seeds.into_iter().for_each(|n| walk.seed(n));
        let mut source = SqlNeighbours { room_nid, direction: Direction::Backwards, stop: Vec::new(), min_depth: i64::MIN };
        let (taken, _) = walk.run(limit, &mut source);
        finish(room_nid, taken, requesting_server)
    }

    /// MSC4000 forwards fill's walk: the events of `from_event_id` and their successors, oldest
    /// first (core/src/traversal.rs `forwards_fill`).
    #[pg_extern(stable, parallel_safe)]
    fn forwards_fill_walk(
        room_id: Option<&str>,
        from_event_id: Option<Vec<Option<String>>>,
        limit: Option<i32>,
        requesting_server: default!(Option<&str>, "NULL"),
    ) -> TableIterator<'static, (name!(room_nid, i64), name!(event_nids, Vec<i64>), name!(visible, Vec<bool>))> {
        let from = ids(from_event_id, "from_event_id");
        let limit = checked_limit(limit);
        let (room_nid, seeds) = Spi::connect_mut(|client| {
            let room_nid = room_nid(client, room_id);
            (room_nid, known_events(client, room_nid, from))
        });
        let mut walk = BatchedWalk::new(Direction::Forwards);
        seeds.into_iter().for_each(|n| walk.seed(n));
        let mut source = SqlNeighbours { room_nid, direction: Direction::Forwards, stop: Vec::new(), min_depth: i64::MIN };
        let (taken, _) = walk.run(limit, &mut source);
        finish(room_nid, taken, requesting_server)
    }

    /// `/get_missing_events`' walk: the events before `latest_events` and after `earliest_events`
    /// with depth ≥ `min_depth`, the given events excluded, oldest first (core/src/traversal.rs
    /// `get_missing_events`).
    #[pg_extern(stable, parallel_safe)]
    fn get_missing_events_walk(
        room_id: Option<&str>,
        earliest_events: Option<Vec<Option<String>>>,
        latest_events: Option<Vec<Option<String>>>,
        limit: Option<i32>,
        min_depth: Option<i64>,
        requesting_server: default!(Option<&str>, "NULL"),
    ) -> TableIterator<'static, (name!(room_nid, i64), name!(event_nids, Vec<i64>), name!(visible, Vec<bool>))> {
        let earliest = ids(earliest_events, "earliest_events");
        let latest = ids(latest_events, "latest_events");
        let limit = checked_limit(limit);
        let Some(min_depth) = min_depth else { null_argument("min_depth") };
        let (room_nid, earliest, latest) = Spi::connect_mut(|client| {
            let room_nid = room_nid(client, room_id);
            let e: Vec<i64> = known_events(client, room_nid, earliest).into_iter().map(|n| n.handle).collect();
            let l: Vec<i64> = known_events(client, room_nid, latest).into_iter().map(|n| n.handle).collect();
            (room_nid, e, l)
        });
        let mut walk = BatchedWalk::new(Direction::Backwards).min_depth(min_depth);
        walk.exclude(earliest.iter().copied());
        walk.exclude(latest.iter().copied());
        // A latest event the requester also lists as earliest is not walked from (as Synapse).
        latest.iter().filter(|l| !earliest.contains(l)).for_each(|l| walk.start_from(*l));
        let mut source = SqlNeighbours { room_nid, direction: Direction::Backwards, stop: earliest, min_depth };
        let (mut taken, _) = walk.run(limit, &mut source);
        // Oldest first, so that the requester can process each after its prev events.
        taken.sort_unstable_by(|a, b| (a.depth, a.event_id.as_bytes()).cmp(&(b.depth, b.event_id.as_bytes())));
        finish(room_nid, taken, requesting_server)
    }

    /// The server name of a user ID (core/src/visibility.rs `server_name_of`: what follows the
    /// first `:`), NULL when it has none. COST 10 (a call costs about ten times a built-in's, 1 us)
    /// so that the planner tests cheaper conditions on a row first.
    #[pg_extern(immutable, strict, parallel_safe, cost = 10)]
    fn server_name_of(user_id: &str) -> Option<String> {
        roomserver_core::visibility::server_name_of(user_id).map(str::to_owned)
    }

    /// Whether the `m.room.server_acl` content `acl` allows `server_name` (core/src/server_acl.rs:
    /// the one place of the rule). roomserver.server_allowed reads the room's ACL and calls it.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn server_acl_allows(acl: JsonInput, server_name: &str) -> bool {
        roomserver_core::server_acl::server_allowed(&acl.0, server_name)
    }

    /// Whether `server_name` may see each event of `event_nids` (of room `room_nid`) unredacted,
    /// by history visibility (core/src/visibility.rs); events of other rooms are not in the answer.
    #[pg_extern(stable, strict, parallel_safe)]
    fn server_may_see_events(room_nid: i64, event_nids: Vec<i64>, server_name: &str) -> Vec<bool> {
        Spi::connect_mut(|client| visibility(client, room_nid, &event_nids, Some(server_name)))
    }
}
