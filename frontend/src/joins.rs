//! `make_join` and `send_join` (v2): remote users joining rooms hosted here. The template is
//! `roomserver.prepare_event`'s; the signed join is checked (signatures with core's rules, that
//! it is the join it claims to be), ingested on the primary, and answered with the state before
//! it from `roomserver.state`. Both refuse a server the room's ACL denies (crate::room_access)
//! before anything else about the room.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use roomserver_core::hashes::{content_hash_matches, event_id};
use roomserver_core::visibility::server_name_of;
use roomserver_core::RoomVersion;
use serde_json::Value;

use crate::errors::{ApiError, Call};
use crate::pdu_checks::check_pdu_signatures;
use crate::room_access::check_acl;
use crate::routes::{json_text, AppState, JsonBody, Origin};

/// `(room version, allowed by the room's ACL, version supported by the joining server, template)`;
/// the template is prepared only for an allowed server that supports the version.
const MAKE_JOIN: &str = concat!(
    "SELECT r.room_version, ",
    crate::acl_allows!("r.room_id", "$4"),
    ", r.room_version = ANY($3::text[]), ",
    "CASE WHEN r.room_version = ANY($3::text[]) AND ",
    crate::acl_allows!("r.room_id", "$4"),
    " THEN roomserver.prepare_event(r.room_id, 'm.room.member', $2, $2, '{\"membership\": \"join\"}')::text END ",
    "FROM roomserver.rooms r WHERE r.room_id = $1"
);
/// `(room version, allowed by the room's ACL)` of room `$1` for server `$2`.
const ROOM_VERSION: &str = concat!("SELECT r.room_version, ", crate::acl_allows!("r.room_id", "$2"), " FROM roomserver.rooms r WHERE r.room_id = $1");
const INGEST: &str = "SELECT roomserver.ingest_event($1::text::jsonb)::text";
/// The send_join response from the state before the join.
const SEND_JOIN_RESPONSE: &str = "SELECT jsonb_build_object('origin', $3::text, 'event', $4::text::jsonb, \
     'state', q.s -> 'pdus', 'auth_chain', q.s -> 'auth_chain', 'members_omitted', false)::text \
     FROM (SELECT roomserver.state($1, $2) AS s) q";

fn origin_must_be_users_server(origin: &str, user_id: &str) -> Result<(), ApiError> {
    match server_name_of(user_id) {
        Some(s) if s == origin => Ok(()),
        _ => Err(ApiError::forbidden(format!("{origin} may not join {user_id:?} to a room"))),
    }
}

/// The `ver` parameters; absent means room version 1 only (spec).
fn supported_versions(query: &Option<String>) -> Vec<String> {
    let versions: Vec<String> = query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).filter(|(k, _)| k == "ver").map(|(_, v)| v.into_owned()).collect())
        .unwrap_or_default();
    if versions.is_empty() {
        vec!["1".to_owned()]
    } else {
        versions
    }
}

fn incompatible(room_version: &str) -> Response {
    let body = serde_json::json!({"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "Your homeserver does not support the room's version",
        "room_version": room_version});
    let mut response = json_text(body.to_string());
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

pub async fn make_join(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Path((room_id, user_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    origin_must_be_users_server(&origin, &user_id)?;
    let versions = supported_versions(&query);
    let client = state.db.reader().await?;
    let statement = client.prepare_cached(MAKE_JOIN).await.map_err(|e| ApiError::from_db(&e, Call::PrepareEvent))?;
    let rows = client.query(&statement, &[&room_id, &user_id, &versions, &origin]).await.map_err(|e| ApiError::from_db(&e, Call::PrepareEvent))?;
    let row = rows.first().ok_or_else(|| ApiError::not_found(format!("Unknown room {room_id}")))?;
    // Synapse's order: the ACL, then the room version.
    check_acl(row.get(1))?;
    let room_version: String = row.get(0);
    if !row.get::<_, bool>(2) {
        return Ok(incompatible(&room_version));
    }
    let template: String = row.get(3);
    Ok(json_text(format!("{{\"room_version\":{},\"event\":{template}}}", Value::String(room_version))))
}

/// What a send_join's event must be: the join of a user of `origin` to `room_id`, with the ID
/// the path names. Returns the room version's reason when it is not.
fn check_join(pdu: &Value, rv: &RoomVersion, room_id: &str, claimed_id: &str, origin: &str) -> Result<(), ApiError> {
    let computed = event_id(pdu, rv).map_err(|e| ApiError::bad_json(e.message))?;
    if computed != claimed_id {
        return Err(ApiError::bad_json(format!("the event's ID is {computed}, not {claimed_id}")));
    }
    let field = |name: &str| pdu.get(name).and_then(Value::as_str);
    if field("room_id") != Some(room_id) {
        return Err(ApiError::bad_json(format!("the event is not of room {room_id}")));
    }
    if field("type") != Some("m.room.member") || pdu["content"]["membership"].as_str() != Some("join") {
        return Err(ApiError::bad_json("the event is not a join"));
    }
    let sender = field("sender").unwrap_or_default();
    if field("state_key") != Some(sender) {
        return Err(ApiError::bad_json("a join's state_key must be its sender"));
    }
    origin_must_be_users_server(origin, sender)?;
    // A join whose content does not match its hash would be stored redacted: useless as a join.
    if !content_hash_matches(pdu).map_err(|e| ApiError::bad_json(e.message))? {
        return Err(ApiError::bad_json("the event's content hash does not match"));
    }
    Ok(())
}

pub async fn send_join_v2(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Extension(JsonBody(body)): Extension<JsonBody>,
    Path((room_id, claimed_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let pdu = body.filter(Value::is_object).ok_or_else(|| ApiError::bad_json("send_join needs the signed join event as its body"))?;
    let client = state.db.writer().await?;
    let statement = client.prepare_cached(ROOM_VERSION).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let rows = client.query(&statement, &[&room_id, &origin]).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let row = rows.first().ok_or_else(|| ApiError::not_found(format!("Unknown room {room_id}")))?;
    check_acl(row.get(1))?;
    let rv = RoomVersion::from_id(row.get::<_, &str>(0)).map_err(|e| ApiError::internal(e.message))?;
    check_join(&pdu, &rv, &room_id, &claimed_id, &origin)?;
    let own = state.own_key();
    check_pdu_signatures(&pdu, &rv, &state.remote_keys, &own).await.map_err(ApiError::forbidden)?;

    let statement = client.prepare_cached(INGEST).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let row = client.query_one(&statement, &[&pdu.to_string()]).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let result: Value = serde_json::from_str(row.get::<_, &str>(0)).map_err(ApiError::internal)?;
    for refusal in ["rejection", "soft_failure"] {
        if let Some(reason) = result.get(refusal).filter(|r| !r.is_null()) {
            return Err(ApiError::forbidden(format!("the join was refused ({refusal}): {reason}")));
        }
    }
    crate::local_events::send_to_room(&state, &client, &room_id, &pdu, Some(&origin)).await?;
    let statement = client.prepare_cached(SEND_JOIN_RESPONSE).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let row = client
        .query_one(&statement, &[&room_id, &claimed_id, &state.server_name, &pdu.to_string()])
        .await
        .map_err(|e| ApiError::from_db(&e, Call::Read))?;
    Ok(json_text(row.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ver_defaults_to_room_version_1() {
        assert_eq!(supported_versions(&None), vec!["1"]);
        assert_eq!(supported_versions(&Some("ver=10&ver=12".into())), vec!["10", "12"]);
        assert_eq!(supported_versions(&Some("other=x".into())), vec!["1"]);
    }

    #[test]
    fn a_send_join_must_carry_the_join_it_claims() {
        let rv = RoomVersion::from_id("10").unwrap();
        let join = roomserver_core::hashes::with_content_hash(json!({"type": "m.room.member", "state_key": "@bob:b.example",
            "sender": "@bob:b.example", "room_id": "!r:a.example", "content": {"membership": "join"}, "depth": 3,
            "origin_server_ts": 5, "prev_events": [], "auth_events": []}))
        .unwrap();
        let id = event_id(&join, &rv).unwrap();
        check_join(&join, &rv, "!r:a.example", &id, "b.example").unwrap();
        let errcode = |r: Result<(), ApiError>| r.unwrap_err().errcode;
        assert_eq!(errcode(check_join(&join, &rv, "!r:a.example", "$other", "b.example")), "M_BAD_JSON");
        assert_eq!(errcode(check_join(&join, &rv, "!s:a.example", &id, "b.example")), "M_BAD_JSON");
        assert_eq!(errcode(check_join(&join, &rv, "!r:a.example", &id, "c.example")), "M_FORBIDDEN");
        for (path, value) in [("membership", json!("leave")), ("state_key", json!("@carol:b.example")), ("body", json!("x"))] {
            let mut bad = join.clone();
            if path == "membership" || path == "body" {
                bad["content"][path] = value;
            } else {
                bad[path] = value;
            }
            let bad_id = event_id(&bad, &rv).unwrap();
            assert_eq!(errcode(check_join(&bad, &rv, "!r:a.example", &bad_id, "b.example")), "M_BAD_JSON", "{path}");
        }
    }
}
