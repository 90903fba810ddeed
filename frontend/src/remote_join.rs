//! Joining a local user to a room hosted elsewhere (server-server API "Joining Rooms", the
//! joining server's side): `make_join` at a resident server, our join built from its template
//! by core's `join_from_template` and signed, `send_join` (v2, the whole state: no
//! `omit_members`), the answer's state and auth chain checked (`pdu_checks`) and stored as the
//! main README's "Joining a room hosted elsewhere" says: outliers, then the join with that state.

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use roomserver_core::hashes::event_id;
use roomserver_core::local_event::join_from_template;
use roomserver_core::room_version::ALL;
use roomserver_core::{Pdu, RoomVersion};
use serde_json::Value;

use crate::errors::{ApiError, Call};
use crate::local_events::{check_local_user, sign};
use crate::now_ms;
use crate::outbound::Signer;
use crate::pdu_checks::{check_pdu_signatures, keep_verified};
use crate::routes::AppState;
use crate::outbound::percent_encoded;
use crate::statements::INGEST_OUTLIERS;

const INGEST_JOIN: &str = "SELECT roomserver.ingest_event($1::text::jsonb, $2, false, $3)::text";

/// The join as stored.
pub struct Joined {
    pub event_id: String,
}

fn unsupported_room_version(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION", message)
}

/// A signed request to another server that must answer 200 with JSON; otherwise [`refusal`].
pub async fn ask_server(state: &AppState, server: &str, method: Method, path: &str, body: Option<&Value>, what: &str) -> Result<Value, ApiError> {
    let signer = Signer { origin: &state.server_name, key: &state.key };
    let response = state.client.request(server, method, path, body, Some(signer)).await.map_err(|e| ApiError::bad_gateway(format!("{what} at {server}: {e}")))?;
    if response.status != StatusCode::OK {
        return Err(refusal(server, what, response.status, &response.json().unwrap_or(Value::Null)));
    }
    response.json().map_err(|e| ApiError::bad_gateway(format!("{what} at {server}: {e}")))
}

/// Our answer when `server` refused `what`: the remote's status class and its errcode in the
/// message. 403 and 404 are the caller's to see, an incompatible room version is ours (we
/// offered every version we support), anything else is a bad gateway.
pub fn refusal(server: &str, what: &str, status: StatusCode, answer: &Value) -> ApiError {
    let field = |name: &str| answer.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    let errcode = field("errcode");
    let message = format!("{server} refused {what} ({status}): {errcode} {}", field("error"));
    match (status, errcode.as_str()) {
        (_, "M_INCOMPATIBLE_ROOM_VERSION" | "M_UNSUPPORTED_ROOM_VERSION") => unsupported_room_version(message),
        (StatusCode::FORBIDDEN, _) => ApiError::forbidden(message),
        (StatusCode::NOT_FOUND, _) => ApiError::not_found(message),
        _ => ApiError::bad_gateway(message),
    }
}

/// The PDUs of `field` in an answer from `server` that belong to `room_id`, by core's reading
/// (a v12 create event has no `room_id`: its hash is the room's ID). Others are dropped: a
/// resident server has no business sending them.
pub fn room_pdus(answer: &Value, field: &str, room_id: &str, rv: &RoomVersion, server: &str) -> Result<Vec<Value>, ApiError> {
    let pdus = answer.get(field).and_then(Value::as_array).ok_or_else(|| ApiError::bad_gateway(format!("{server}'s answer has no {field:?} list")))?;
    Ok(pdus.iter().filter(|p| Pdu::from_json(p, rv).is_ok_and(|pdu| pdu.room_id == room_id)).cloned().collect())
}

/// Joins local user `user_id` to `room_id` through the first of `servers` that lets us (the
/// others are tried in turn; the last refusal is the answer when none does).
pub async fn join_remote_room(state: &AppState, room_id: &str, user_id: &str, servers: &[String]) -> Result<Joined, ApiError> {
    check_local_user(state, user_id)?;
    let mut last = ApiError::invalid_param("no server other than this one to join through");
    for server in servers.iter().filter(|s| **s != state.server_name) {
        match join_through(state, room_id, user_id, server).await {
            Ok(joined) => return Ok(joined),
            Err(e) => {
                eprintln!("roomserver-http: joining {room_id} through {server}: {}", e.message);
                last = e;
            }
        }
    }
    Err(last)
}

async fn join_through(state: &AppState, room_id: &str, user_id: &str, server: &str) -> Result<Joined, ApiError> {
    let versions: Vec<String> = ALL.iter().map(|v| format!("ver={}", v.id)).collect();
    let path = format!("/_matrix/federation/v1/make_join/{}/{}?{}", percent_encoded(room_id), percent_encoded(user_id), versions.join("&"));
    let made = ask_server(state, server, Method::GET, &path, None, "make_join").await?;
    // Absent: room version 1 (spec).
    let version = made.get("room_version").and_then(Value::as_str).unwrap_or("1");
    let rv = RoomVersion::from_id(version).map_err(|e| unsupported_room_version(e.message))?;
    let template = made.get("event").ok_or_else(|| ApiError::bad_gateway(format!("{server}'s make_join answer has no event")))?;
    let join = join_from_template(&rv, template, room_id, user_id, now_ms())
        .map_err(|e| ApiError::bad_gateway(format!("{server}'s make_join template: {}", e.message)))?;
    let join = sign(state, join, &rv)?;
    let join_id = event_id(&join, &rv).map_err(|e| ApiError::internal(e.message))?;

    let path = format!("/_matrix/federation/v2/send_join/{}/{}", percent_encoded(room_id), percent_encoded(&join_id));
    let answer = ask_server(state, server, Method::PUT, &path, Some(&join), "send_join").await?;
    if answer.get("members_omitted").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::bad_gateway(format!("{server} omitted members from send_join, which we did not ask for")));
    }
    // The resident server may have countersigned the join (a restricted join): then its copy,
    // if it is the same event with valid signatures.
    let join = match answer.get("event").filter(|e| e.is_object()) {
        Some(countersigned) => {
            if event_id(countersigned, &rv).ok().as_deref() != Some(join_id.as_str()) {
                return Err(ApiError::bad_gateway(format!("{server} answered send_join with another event than {join_id}")));
            }
            check_pdu_signatures(countersigned, &rv, &state.remote_keys, &state.own_key())
                .await
                .map_err(|e| ApiError::bad_gateway(format!("{server}'s countersigned join: {e}")))?;
            countersigned.clone()
        }
        None => join,
    };
    let room_state = keep_verified(room_pdus(&answer, "state", room_id, &rv, server)?, &rv, &state.remote_keys, &state.own_key(), server).await;
    let auth_chain = keep_verified(room_pdus(&answer, "auth_chain", room_id, &rv, server)?, &rv, &state.remote_keys, &state.own_key(), server).await;
    let state_ids: Vec<String> = room_state.iter().filter_map(|p| event_id(p, &rv).ok()).collect();
    // An event may be in both lists; each is given once.
    let mut seen = HashSet::new();
    let outliers: Vec<Value> = room_state.into_iter().chain(auth_chain).filter(|p| event_id(p, &rv).is_ok_and(|id| seen.insert(id))).collect();

    // 23503: an event names auth events neither stored nor in the answer (or dropped from it):
    // the resident's answer is incomplete, not our fault.
    let ingest_error = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(d) if d.code().code() == "23503" => ApiError::bad_gateway(format!("{server}'s send_join answer is incomplete: {}", d.message())),
        _ => ApiError::from_db(&e, Call::Read),
    };
    let client = state.db.writer().await?;
    let statement = client.prepare_cached(INGEST_OUTLIERS).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    client.query_one(&statement, &[&Value::Array(outliers).to_string(), &rv.id]).await.map_err(ingest_error)?;
    let statement = client.prepare_cached(INGEST_JOIN).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let row = client.query_one(&statement, &[&join.to_string(), &rv.id, &state_ids]).await.map_err(ingest_error)?;
    let result: Value = serde_json::from_str(row.get::<_, &str>(0)).map_err(ApiError::internal)?;
    for refusal in ["rejection", "soft_failure"] {
        if let Some(reason) = result.get(refusal).filter(|r| !r.is_null()) {
            return Err(ApiError::bad_gateway(format!("our join is stored but refused by the state {server} gave ({refusal}): {reason}")));
        }
    }
    Ok(Joined { event_id: join_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refusals_keep_the_remote_errcode() {
        let e = refusal("s.example", "make_join", StatusCode::FORBIDDEN, &json!({"errcode": "M_FORBIDDEN", "error": "not invited"}));
        assert_eq!((e.status, e.errcode), (StatusCode::FORBIDDEN, "M_FORBIDDEN"));
        assert!(e.message.contains("s.example") && e.message.contains("M_FORBIDDEN") && e.message.contains("not invited"), "{}", e.message);
        let e = refusal("s.example", "make_join", StatusCode::BAD_REQUEST, &json!({"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "room_version": "99"}));
        assert_eq!((e.status, e.errcode), (StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION"));
        assert_eq!(refusal("s.example", "send_join", StatusCode::NOT_FOUND, &Value::Null).errcode, "M_NOT_FOUND");
        let e = refusal("s.example", "send_join", StatusCode::INTERNAL_SERVER_ERROR, &json!("oops"));
        assert_eq!((e.status, e.errcode), (StatusCode::BAD_GATEWAY, "M_UNKNOWN"));
    }

    #[test]
    fn answers_keep_the_rooms_pdus_and_v12_create_events() {
        let rv = RoomVersion::from_id("12").unwrap();
        let create = roomserver_core::local_event::create_event(&rv, "@bob:s.example", None, 1).unwrap();
        let room_id = roomserver_core::hashes::room_id_from_create_event(&create, &rv).unwrap();
        let member = |room: &str| {
            roomserver_core::hashes::with_content_hash(json!({"type": "m.room.member", "state_key": "@bob:s.example", "sender": "@bob:s.example",
                "room_id": room, "content": {"membership": "join"}, "depth": 2, "origin_server_ts": 2, "prev_events": [], "auth_events": []}))
            .unwrap()
        };
        let answer = json!({"state": [create, member(&room_id), member("!elsewhere")]});
        let kept = room_pdus(&answer, "state", &room_id, &rv, "s.example").unwrap();
        assert_eq!(kept.len(), 2, "the create event (no room_id) and the member of this room: {kept:?}");
        assert!(kept.iter().all(|p| p.get("room_id").and_then(Value::as_str) != Some("!elsewhere")));
        assert_eq!(room_pdus(&answer, "auth_chain", &room_id, &rv, "s.example").unwrap_err().status, StatusCode::BAD_GATEWAY);
    }
}
