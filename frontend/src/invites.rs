//! Inviting a user of another server (server-server API "Inviting to a room", v2): our invite
//! event goes to the invitee's server, which signs it too and sends it back; only that
//! countersigned event is stored and sent to the room. The event is `roomserver.prepare_event`'s
//! like every local event; the checks are pdu_checks'.

use axum::http::{Method, StatusCode};
use roomserver_core::hashes::event_id;
use roomserver_core::visibility::server_name_of;
use serde_json::{json, Value};

use crate::errors::{ApiError, Call};
use crate::local_events::{ingest, prepare_signed, send_to_room, Sent};
use crate::outbound::{percent_encoded, Signer};
use crate::pdu_checks::{check_pdu_signatures, check_signed_by};
use crate::routes::AppState;

/// What the invitee's server is shown of the room before it joins: the state events the spec
/// lists for `invite_room_state`, and the inviter's membership, each a whole PDU (Matrix 1.18,
/// MSC4311: Synapse checks them against the room version in v12 rooms).
const INVITE_ROOM_STATE: &str = "SELECT coalesce(jsonb_agg(roomserver.pdu(c.event_id) - 'unsigned' ORDER BY c.type, c.state_key), '[]')::text \
     FROM roomserver.current_state c WHERE c.room_id = $1 \
       AND (c.type IN ('m.room.create', 'm.room.join_rules', 'm.room.name', 'm.room.canonical_alias', 'm.room.avatar', \
                       'm.room.encryption', 'm.room.topic') \
            OR (c.type = 'm.room.member' AND c.state_key = $2))";

/// Invites `invitee` (a user of another server) to `room_id` as local user `sender`.
pub async fn invite_remote(state: &AppState, room_id: &str, sender: &str, invitee: &str) -> Result<Sent, ApiError> {
    let destination = server_name_of(invitee)
        .filter(|_| invitee.starts_with('@'))
        .ok_or_else(|| ApiError::invalid_param(format!("{invitee:?} is not a user ID")))?
        .to_owned();
    let client = state.db.writer().await?;
    let (pdu, rv) = prepare_signed(state, &client, room_id, "m.room.member", Some(invitee), sender, &json!({"membership": "invite"})).await?;
    let id = event_id(&pdu, &rv).map_err(|e| ApiError::internal(e.message))?;
    let statement = client.prepare_cached(INVITE_ROOM_STATE).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let row = client.query_one(&statement, &[&room_id, &sender]).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let invite_room_state: Value = serde_json::from_str(row.get::<_, &str>(0)).map_err(ApiError::internal)?;

    let path = format!("/_matrix/federation/v2/invite/{}/{}", percent_encoded(room_id), percent_encoded(&id));
    let body = json!({"event": pdu, "room_version": rv.id, "invite_room_state": invite_room_state});
    let signer = Signer { origin: &state.server_name, key: &state.key };
    let response = state
        .client
        .request(&destination, Method::PUT, &path, Some(&body), Some(signer))
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("{destination} did not answer the invite: {e}")))?;
    let answer = response.json().map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("{destination}: {e}")))?;
    if response.status != StatusCode::OK {
        let status = if response.status == StatusCode::FORBIDDEN { StatusCode::FORBIDDEN } else { StatusCode::BAD_GATEWAY };
        let errcode = if status == StatusCode::FORBIDDEN { "M_FORBIDDEN" } else { "M_UNKNOWN" };
        return Err(ApiError::new(status, errcode, format!("{destination} refused the invite ({}): {answer}", response.status)));
    }
    let signed = answer.get("event").cloned().ok_or_else(|| bad_answer(&destination, "no \"event\""))?;
    let countersigned = check_countersigned(state, &signed, &rv, &id, &destination).await.map_err(|e| bad_answer(&destination, &e))?;
    let event_id = ingest(&client, &countersigned, None).await?;
    send_to_room(state, &client, room_id, &countersigned, None).await?;
    Ok(Sent { event_id, pdu: countersigned })
}

/// The invitee's server must send back the event we made (the same event ID: the reference hash
/// leaves signatures out) with our signature and its own.
async fn check_countersigned(state: &AppState, signed: &Value, rv: &roomserver_core::RoomVersion, id: &str, destination: &str) -> Result<Value, String> {
    let returned = event_id(signed, rv).map_err(|e| e.message)?;
    if returned != id {
        return Err(format!("it sent back another event ({returned}, not {id})"));
    }
    let own = state.own_key();
    check_pdu_signatures(signed, rv, &state.remote_keys, &own).await?;
    check_signed_by(signed, rv, destination, &state.remote_keys, &own).await?;
    Ok(signed.clone())
}

fn bad_answer(destination: &str, why: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("{destination}'s answer to the invite is not usable: {why}"))
}
