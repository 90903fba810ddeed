//! The federation read endpoints (README "Federation endpoints"), each one SQL statement: the
//! checks that the room's ACL allows the requesting server and that it is in the room
//! (crate::room_access: `roomserver.server_allowed`, `roomserver.server_in_room`), and the
//! endpoint's function, whose jsonb answer is the response body as it stands. Reads go to a
//! replica when one is configured.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::Extension;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::errors::{ApiError, Call};
use crate::room_access::check_read_access;
use crate::routes::{json_text, AppState, JsonBody, Origin};

/// A room read: `(allowed, in_room, body)`, the function called only when the origin (`$1`) is
/// allowed by room `$2`'s ACL and in the room.
macro_rules! room_read {
    ($call:literal) => {
        concat!(
            "SELECT s.allowed, s.in_room, CASE WHEN s.allowed AND s.in_room THEN ",
            $call,
            "::text END FROM (SELECT ",
            crate::acl_allows!("$2", "$1"),
            " AS allowed, ",
            crate::in_room!("$2", "$1"),
            " AS in_room) s"
        )
    };
}

/// `pub`: the load client (src/bin/federation-load.rs) times this very statement next to the endpoint.
pub const BACKFILL: &str = room_read!("roomserver.backfill($2, $3::text[], $4::integer, $1)");
const GET_MISSING_EVENTS: &str =
    room_read!("roomserver.get_missing_events($2, $3::text[], $4::text[], $5::integer, $6::bigint, $1)");
const FORWARDS_FILL: &str = room_read!("roomserver.forwards_fill($2, $3::text[], $4::integer, $1)");
/// `pub`: as [`BACKFILL`], for the load client.
pub const STATE_IDS: &str = room_read!("roomserver.state_ids($2, $3::text)");
const STATE: &str = room_read!("roomserver.state($2, $3::text)");
const EVENT_AUTH: &str = room_read!("roomserver.event_auth($2, $3::text)");
const TIMESTAMP_TO_EVENT: &str = room_read!("roomserver.timestamp_to_event($2, $3::bigint, $4::text)");
/// `(known, allowed, in_room, body)` for event `$2`, whose room is looked up first.
const EVENT: &str = concat!(
    "SELECT r.room_id IS NOT NULL, r.allowed, r.in_room, CASE WHEN r.allowed AND r.in_room THEN roomserver.event($2, $1)::text END FROM (",
    "SELECT e.room_id, ",
    crate::acl_allows!("e.room_id", "$1"),
    " AS allowed, ",
    crate::in_room!("e.room_id", "$1"),
    " AS in_room FROM (SELECT (SELECT ev.room_id FROM roomserver.events ev WHERE ev.event_id = $2 LIMIT 1) AS room_id) e) r"
);

/// Runs a prepared room read; 403 when the room's ACL denies the origin or it is not in the room.
async fn room_read(state: &AppState, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Response, ApiError> {
    let client = state.db.reader().await?;
    let statement = client.prepare_cached(sql).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let row = client.query_one(&statement, params).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    check_read_access(row.get(0), row.get(1))?;
    let body: Option<String> = row.get(2);
    body.map(json_text).ok_or_else(|| ApiError::internal("a federation function returned NULL"))
}

/// The query string's parameters, decoded.
fn query_pairs(query: &Option<String>) -> Vec<(String, String)> {
    query.as_deref().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn all_of(pairs: &[(String, String)], name: &str) -> Vec<String> {
    pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
}

fn one_of<'a>(pairs: &'a [(String, String)], name: &str) -> Result<&'a str, ApiError> {
    let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match (values.next(), values.next()) {
        (Some(v), None) => Ok(v),
        (None, _) => Err(ApiError::missing_param(format!("Missing query parameter {name:?}"))),
        (Some(_), Some(_)) => Err(ApiError::invalid_param(format!("Query parameter {name:?} given more than once"))),
    }
}

/// A positive `limit`; the SQL functions clamp it to 1000, so anything larger is that.
fn limit(value: &str) -> Result<i32, ApiError> {
    match value.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n.min(i32::MAX as i64) as i32),
        _ => Err(ApiError::invalid_param(format!("limit must be a positive integer, not {value:?}"))),
    }
}

fn nonempty(values: Vec<String>, name: &str) -> Result<Vec<String>, ApiError> {
    if values.is_empty() {
        Err(ApiError::missing_param(format!("Missing query parameter {name:?}")))
    } else {
        Ok(values)
    }
}

pub async fn backfill(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(room_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    walk_read(&state, BACKFILL, &origin, &room_id, &query, "v").await
}

pub async fn forwards_fill(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(room_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    walk_read(&state, FORWARDS_FILL, &origin, &room_id, &query, "from_event_id").await
}

/// `/backfill` and forwards fill: a room read from the events named by the repeated query
/// parameter `start` (at least one), at most `?limit=`.
async fn walk_read(state: &AppState, sql: &str, origin: &str, room_id: &str, query: &Option<String>, start: &str) -> Result<Response, ApiError> {
    let pairs = query_pairs(query);
    let from = nonempty(all_of(&pairs, start), start)?;
    let limit = limit(one_of(&pairs, "limit")?)?;
    room_read(state, sql, &[&origin, &room_id, &from, &limit]).await
}

/// A list of event IDs in a JSON body.
fn event_ids(body: &Value, field: &str, required: bool) -> Result<Vec<String>, ApiError> {
    match body.get(field) {
        None if !required => Ok(Vec::new()),
        None => Err(ApiError::bad_json(format!("Missing {field:?}"))),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| ApiError::bad_json(format!("{field:?} must be a list of event IDs"))))
            .collect(),
        Some(_) => Err(ApiError::bad_json(format!("{field:?} must be a list of event IDs"))),
    }
}

fn optional_integer(body: &Value, field: &str, default: i64) -> Result<i64, ApiError> {
    match body.get(field) {
        None => Ok(default),
        Some(v) => v.as_i64().ok_or_else(|| ApiError::bad_json(format!("{field:?} must be an integer"))),
    }
}

pub async fn get_missing_events(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Extension(JsonBody(body)): Extension<JsonBody>,
    Path(room_id): Path<String>,
) -> Result<Response, ApiError> {
    let body = body.ok_or_else(|| ApiError::not_json("get_missing_events needs a JSON body"))?;
    if !body.is_object() {
        return Err(ApiError::bad_json("The body must be a JSON object"));
    }
    let earliest = event_ids(&body, "earliest_events", false)?;
    let latest = event_ids(&body, "latest_events", true)?;
    let limit = optional_integer(&body, "limit", 10)?;
    if limit <= 0 {
        return Err(ApiError::invalid_param("limit must be positive"));
    }
    let limit = limit.min(i32::MAX as i64) as i32;
    let min_depth = optional_integer(&body, "min_depth", 0)?;
    room_read(&state, GET_MISSING_EVENTS, &[&origin, &room_id, &earliest, &latest, &limit, &min_depth]).await
}

pub async fn state_ids(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(room_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    state_read(&state, STATE_IDS, &origin, &room_id, &query).await
}

pub async fn state(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(room_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    state_read(&state, STATE, &origin, &room_id, &query).await
}

/// `/state_ids` and `/state`: a room read at `?event_id=`.
async fn state_read(state: &AppState, sql: &str, origin: &str, room_id: &str, query: &Option<String>) -> Result<Response, ApiError> {
    let pairs = query_pairs(query);
    let event_id = one_of(&pairs, "event_id")?;
    room_read(state, sql, &[&origin, &room_id, &event_id]).await
}

pub async fn event_auth(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path((room_id, event_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    room_read(&state, EVENT_AUTH, &[&origin, &room_id, &event_id]).await
}

pub async fn timestamp_to_event(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(room_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&query);
    let ts = one_of(&pairs, "ts")?;
    let ts: i64 = ts.parse().map_err(|_| ApiError::invalid_param(format!("ts must be an integer, not {ts:?}")))?;
    let dir = one_of(&pairs, "dir")?;
    if dir != "f" && dir != "b" {
        return Err(ApiError::invalid_param(format!("dir must be \"f\" or \"b\", not {dir:?}")));
    }
    room_read(&state, TIMESTAMP_TO_EVENT, &[&origin, &room_id, &ts, &dir]).await
}

pub async fn event(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path(event_id): Path<String>,
) -> Result<Response, ApiError> {
    let client = state.db.reader().await?;
    let statement = client.prepare_cached(EVENT).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let row = client.query_one(&statement, &[&origin, &event_id]).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    if !row.get::<_, bool>(0) {
        return Err(ApiError::not_found("Unknown event"));
    }
    // The event's room is known: neither check is NULL.
    check_read_access(row.get(1), row.get(2))?;
    let body: Option<String> = row.get(3);
    body.map(json_text).ok_or_else(|| ApiError::internal("roomserver.event returned NULL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let pairs = query_pairs(&Some("v=%24a%3Ax&v=%24b&limit=10&dir=f".to_owned()));
        assert_eq!(all_of(&pairs, "v"), vec!["$a:x", "$b"]);
        assert_eq!(one_of(&pairs, "limit").unwrap(), "10");
        assert_eq!(one_of(&pairs, "v").unwrap_err().errcode, "M_INVALID_PARAM");
        assert_eq!(one_of(&pairs, "ts").unwrap_err().errcode, "M_MISSING_PARAM");
        assert_eq!(limit("10").unwrap(), 10);
        assert_eq!(limit("99999999999").unwrap(), i32::MAX);
        for bad in ["0", "-1", "x", "", "1.5"] {
            assert_eq!(limit(bad).unwrap_err().errcode, "M_INVALID_PARAM", "{bad:?}");
        }
        assert_eq!(nonempty(Vec::new(), "v").unwrap_err().errcode, "M_MISSING_PARAM");
        assert!(query_pairs(&None).is_empty());
    }

    #[test]
    fn json_bodies() {
        let body = serde_json::json!({"latest_events": ["$a"], "earliest_events": "x", "limit": 1.5});
        assert_eq!(event_ids(&body, "latest_events", true).unwrap(), vec!["$a"]);
        assert_eq!(event_ids(&body, "earliest_events", false).unwrap_err().errcode, "M_BAD_JSON");
        assert!(event_ids(&body, "absent", false).unwrap().is_empty());
        assert_eq!(event_ids(&body, "absent", true).unwrap_err().errcode, "M_BAD_JSON");
        assert_eq!(optional_integer(&body, "limit", 10).unwrap_err().errcode, "M_BAD_JSON");
        assert_eq!(optional_integer(&body, "min_depth", 7).unwrap(), 7);
    }

    #[test]
    fn every_statement_checks_the_origin_first() {
        for sql in [BACKFILL, GET_MISSING_EVENTS, FORWARDS_FILL, STATE_IDS, STATE, EVENT_AUTH, TIMESTAMP_TO_EVENT] {
            assert!(sql.contains("roomserver.server_allowed($2, $1) IS NOT FALSE"), "{sql}");
            assert!(sql.contains("roomserver.server_in_room($2, $1)"), "{sql}");
            assert!(sql.contains("CASE WHEN s.allowed AND s.in_room THEN"), "{sql}");
        }
        assert!(EVENT.contains("roomserver.server_allowed(e.room_id, $1) IS NOT FALSE"), "{EVENT}");
        assert!(EVENT.contains("roomserver.server_in_room(e.room_id, $1)"), "{EVENT}");
        assert!(EVENT.contains("CASE WHEN r.allowed AND r.in_room THEN"), "{EVENT}");
    }
}
