//! The admin API, on its own loopback listener (plain HTTP) with a bearer token: this server's
//! users create rooms, send events and invite, so that rooms hosted here are real and signed by
//! this server. Every write goes to the primary.
//!
//! - `POST /_roomserver/admin/v1/rooms` `{"creator", "room_version"?}` → `{"room_id", "event_ids"}`
//! - `POST /_roomserver/admin/v1/rooms/{roomId}/events` `{"sender", "type", "state_key"?, "content", "federate"?}`
//!   → `{"event_id"}`; `"federate": false` stores the event without sending it now: the other
//!   servers fetch it (`/get_missing_events`) when a later event names it
//! - `POST /_roomserver/admin/v1/rooms/{roomId}/invite` `{"sender", "user_id"}` → `{"event_id"}`;
//!   a user of another server through its server (`/v2/invite`, see invites.rs)
//! - `POST /_roomserver/admin/v1/rooms/{roomId}/join` `{"user_id", "servers"}` → `{"room_id", "event_id"}`:
//!   a local user joins a room hosted elsewhere through the first of `servers` that lets it
//!   (`remote_join`), the room's state as that server gives it
//! - `POST /_roomserver/admin/v1/rooms/{roomId}/backfill` `{"server"?, "limit"?, "rounds"?}` →
//!   `{"events", "rounds", "complete"}`: the room's history before its gaps, from `server`
//!   (default: another server in the room), `limit` events a request (default 100, at most
//!   1000), at most `rounds` requests (default 10, at most 100); `complete` when no gap is left
//!   and the create event has its state

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::errors::ApiError;
use crate::invites::invite_remote;
use crate::local_events::{create_room, send_local, store_local, DEFAULT_ROOM_VERSION};
use crate::remote_backfill::backfill_room;
use crate::remote_join::join_remote_room;
use crate::routes::AppState;

/// Compares without stopping at the first difference, so the time taken does not tell how much
/// of a guessed token was right.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same_token(t.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", "Invalid admin token").into_response(),
        None => ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "Missing admin token").into_response(),
    }
}

pub fn admin_router(state: Arc<AppState>, token: &str) -> Router {
    let token: Arc<str> = Arc::from(token);
    Router::new()
        .route("/_roomserver/admin/v1/rooms", post(create))
        .route("/_roomserver/admin/v1/rooms/{room_id}/events", post(send))
        .route("/_roomserver/admin/v1/rooms/{room_id}/invite", post(invite))
        .route("/_roomserver/admin/v1/rooms/{room_id}/join", post(join))
        .route("/_roomserver/admin/v1/rooms/{room_id}/backfill", post(backfill))
        .route_layer(middleware::from_fn_with_state(token, require_token))
        .fallback(|| async { ApiError::unrecognized_path() })
        .method_not_allowed_fallback(|| async { ApiError::unrecognized_method() })
        .with_state(state)
}

fn body_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::bad_json("The body must be a JSON object")),
        Err(e) => Err(ApiError::not_json(format!("The body is not JSON: {e}"))),
    }
}

fn string<'a>(body: &'a serde_json::Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_json(format!("{field:?} must be a string"))),
    }
}

fn required<'a>(body: &'a serde_json::Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    string(body, field)?.ok_or_else(|| ApiError::bad_json(format!("Missing {field:?}")))
}

async fn create(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let body = body_object(&body)?;
    let creator = required(&body, "creator")?;
    let version = string(&body, "room_version")?.unwrap_or(DEFAULT_ROOM_VERSION);
    let (room_id, events) = create_room(&state, creator, version).await?;
    let event_ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    Ok(axum::Json(json!({"room_id": room_id, "event_ids": event_ids})).into_response())
}

async fn send(State(state): State<Arc<AppState>>, Path(room_id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let body = body_object(&body)?;
    let content = body.get("content").filter(|c| c.is_object()).ok_or_else(|| ApiError::bad_json("\"content\" must be an object"))?;
    let federate = match body.get("federate") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_json("\"federate\" must be a boolean")),
    };
    let (event_type, state_key, sender) = (required(&body, "type")?, string(&body, "state_key")?, required(&body, "sender")?);
    let sent = match federate {
        true => send_local(&state, &room_id, event_type, state_key, sender, content).await?,
        false => store_local(&state, &room_id, event_type, state_key, sender, content).await?.0,
    };
    Ok(axum::Json(json!({"event_id": sent.event_id})).into_response())
}

async fn invite(State(state): State<Arc<AppState>>, Path(room_id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let body = body_object(&body)?;
    let invitee = required(&body, "user_id")?;
    let sender = required(&body, "sender")?;
    // A user of another server is invited through its server, which countersigns the event.
    let sent = match roomserver_core::visibility::server_name_of(invitee) == Some(state.server_name.as_str()) {
        true => send_local(&state, &room_id, "m.room.member", Some(invitee), sender, &json!({"membership": "invite"})).await?,
        false => invite_remote(&state, &room_id, sender, invitee).await?,
    };
    Ok(axum::Json(json!({"event_id": sent.event_id})).into_response())
}

/// An optional integer field in `1..=max`.
fn bounded(body: &serde_json::Map<String, Value>, field: &str, default: i64, max: i64) -> Result<i64, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_i64().filter(|n| (1..=max).contains(n)).ok_or_else(|| ApiError::bad_json(format!("{field:?} must be an integer from 1 to {max}"))),
    }
}

async fn join(State(state): State<Arc<AppState>>, Path(room_id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let body = body_object(&body)?;
    let user_id = required(&body, "user_id")?;
    let servers: Vec<String> = match body.get("servers") {
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect(),
        _ => return Err(ApiError::bad_json("\"servers\" must be a non-empty list of server names")),
    };
    let joined = join_remote_room(&state, &room_id, user_id, &servers).await?;
    Ok(axum::Json(json!({"room_id": room_id, "event_id": joined.event_id})).into_response())
}

async fn backfill(State(state): State<Arc<AppState>>, Path(room_id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let body = if body.is_empty() { serde_json::Map::new() } else { body_object(&body)? };
    let limit = bounded(&body, "limit", 100, 1000)?;
    let rounds = bounded(&body, "rounds", 10, 100)? as usize;
    let done = backfill_room(&state, &room_id, string(&body, "server")?, limit, rounds).await?;
    Ok(axum::Json(json!({"events": done.events, "rounds": done.rounds, "complete": done.complete})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fields_default_and_refuse_out_of_range() {
        let body = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(bounded(&body(json!({})), "limit", 100, 1000).unwrap(), 100);
        assert_eq!(bounded(&body(json!({"limit": null})), "limit", 100, 1000).unwrap(), 100);
        assert_eq!(bounded(&body(json!({"limit": 1000})), "limit", 100, 1000).unwrap(), 1000);
        for bad in [json!(0), json!(1001), json!(-1), json!("5"), json!(2.5)] {
            assert_eq!(bounded(&body(json!({"limit": bad})), "limit", 100, 1000).unwrap_err().errcode, "M_BAD_JSON");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_token(b"0123456789abcdeX", b"0123456789abcdef"));
        assert!(!same_token(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!same_token(b"", b"0123456789abcdef"));
    }
}
