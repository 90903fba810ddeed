//! Events of this server's users: built by `roomserver.prepare_event` (or core's
//! `create_event` for a new room), signed with core's `hash_and_sign_event`, ingested on the
//! primary. What may be sent is the extension's and core's to decide; this only wires the calls.


use rand_core::{OsRng, RngCore};
use roomserver_core::local_event::{create_event, public_room_initial_state};
use roomserver_core::signing::hash_and_sign_event;
use roomserver_core::visibility::server_name_of;
use roomserver_core::RoomVersion;
use serde_json::Value;

use crate::errors::{ApiError, Call};
use crate::now_ms;
use crate::routes::AppState;

/// The room version of rooms created without one (Synapse's default since 1.133 is 10; 12 is
/// the newest this server supports).
pub const DEFAULT_ROOM_VERSION: &str = "12";

const PREPARE: &str = "SELECT r.room_version, roomserver.prepare_event(r.room_id, $2, $3, $4, $5::text::jsonb)::text \
                       FROM roomserver.rooms r WHERE r.room_id = $1";
const INGEST: &str = "SELECT roomserver.ingest_event($1::text::jsonb, $2)::text";
/// The servers with joined members in the room now (`roomserver.joined_servers`) that the room's
/// ACL allows: where its new events go. A denied server gets none of them, as Synapse does it
/// (the ACL is read after the event is stored, so a new ACL applies to itself already).
const DESTINATIONS: &str = concat!(
    "SELECT coalesce(array_agg(s.server_name ORDER BY s.server_name), '{}') FROM roomserver.joined_servers($1) s(server_name) WHERE ",
    crate::acl_allows!("$1", "s.server_name")
);

/// Queues `pdu` for the other servers in the room that its ACL allows (after it is stored, so
/// that the current state, which it may have changed, names them), except `except` (a joining
/// server has the join).
pub async fn send_to_room(state: &AppState, client: &deadpool_postgres::Object, room_id: &str, pdu: &Value, except: Option<&str>) -> Result<(), ApiError> {
    let statement = client.prepare_cached(DESTINATIONS).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let servers: Vec<String> = client.query_one(&statement, &[&room_id]).await.map_err(|e| ApiError::from_db(&e, Call::Read))?.get(0);
    let servers: Vec<String> = servers.into_iter().filter(|s| Some(s.as_str()) != except).collect();
    state.outbox.enqueue(pdu, &servers);
    Ok(())
}

/// A local event as stored: its ID and the signed PDU.
pub struct Sent {
    pub event_id: String,
    pub pdu: Value,
}

/// Refuses a sender that is not a user of this server: we sign only for our own users.
pub fn check_local_user(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    match server_name_of(user_id) {
        Some(s) if user_id.starts_with('@') && s == state.server_name => Ok(()),
        _ => Err(ApiError::forbidden(format!("{user_id:?} is not a user of {}", state.server_name))),
    }
}

pub(crate) fn sign(state: &AppState, pdu: Value, rv: &RoomVersion) -> Result<Value, ApiError> {
    hash_and_sign_event(pdu, rv, &state.server_name, &state.key.key_id, &state.key.signing_key).map_err(|e| ApiError::internal(e.message))
}

/// Ingests a PDU we signed; a rejection or soft failure (the state moved on since it was
/// prepared) is the sender's 403.
pub async fn ingest(client: &deadpool_postgres::Object, pdu: &Value, room_version: Option<&str>) -> Result<String, ApiError> {
    let statement = client.prepare_cached(INGEST).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let row = client.query_one(&statement, &[&pdu.to_string(), &room_version]).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    let result: Value = serde_json::from_str(row.get::<_, &str>(0)).map_err(ApiError::internal)?;
    for refusal in ["rejection", "soft_failure"] {
        if let Some(reason) = result.get(refusal).filter(|r| !r.is_null()) {
            return Err(ApiError::forbidden(format!("the event was refused ({refusal}): {reason}")));
        }
    }
    result["event_id"].as_str().map(str::to_owned).ok_or_else(|| ApiError::internal(format!("ingest_event returned no event_id: {result}")))
}

/// Builds, signs and stores an event of local user `sender` in `room_id`, and queues it for the
/// other servers in the room.
pub async fn send_local(
    state: &AppState,
    room_id: &str,
    event_type: &str,
    state_key: Option<&str>,
    sender: &str,
    content: &Value,
) -> Result<Sent, ApiError> {
    let (sent, client) = store_local(state, room_id, event_type, state_key, sender, content).await?;
    send_to_room(state, &client, room_id, &sent.pdu, None).await?;
    Ok(sent)
}

/// Builds, signs and stores an event of local user `sender` in `room_id` without sending it:
/// the other servers get it when a later event names it (they ask `/get_missing_events`).
/// Returns the primary's connection it used.
pub async fn store_local(
    state: &AppState,
    room_id: &str,
    event_type: &str,
    state_key: Option<&str>,
    sender: &str,
    content: &Value,
) -> Result<(Sent, deadpool_postgres::Object), ApiError> {
    let client = state.db.writer().await?;
    let (pdu, _) = prepare_signed(state, &client, room_id, event_type, state_key, sender, content).await?;
    let event_id = ingest(&client, &pdu, None).await?;
    Ok((Sent { event_id, pdu }, client))
}

/// The signed PDU of a new event of local user `sender` (from `roomserver.prepare_event` on
/// `client`), not stored yet, and its room version.
pub async fn prepare_signed(
    state: &AppState,
    client: &deadpool_postgres::Object,
    room_id: &str,
    event_type: &str,
    state_key: Option<&str>,
    sender: &str,
    content: &Value,
) -> Result<(Value, RoomVersion), ApiError> {
    check_local_user(state, sender)?;
    let statement = client.prepare_cached(PREPARE).await.map_err(|e| ApiError::from_db(&e, Call::PrepareEvent))?;
    let rows = client
        .query(&statement, &[&room_id, &event_type, &state_key, &sender, &content.to_string()])
        .await
        .map_err(|e| ApiError::from_db(&e, Call::PrepareEvent))?;
    let row = rows.first().ok_or_else(|| ApiError::not_found(format!("Unknown room {room_id}")))?;
    let rv = RoomVersion::from_id(row.get::<_, &str>(0)).map_err(|e| ApiError::internal(e.message))?;
    let unsigned: Value = serde_json::from_str(row.get::<_, &str>(1)).map_err(ApiError::internal)?;
    Ok((sign(state, unsigned, &rv)?, rv))
}

/// A fresh opaque part of a room ID (before room version 12): 18 random letters, as Synapse's.
fn random_room_localpart() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = [0u8; 18];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| LETTERS[*b as usize % LETTERS.len()] as char).collect()
}

/// Creates a public room of local user `creator`: the create event, then core's initial state,
/// each signed and stored. Returns the room ID and the events, in order.
pub async fn create_room(state: &AppState, creator: &str, room_version: &str) -> Result<(String, Vec<Sent>), ApiError> {
    check_local_user(state, creator)?;
    let rv = RoomVersion::from_id(room_version).map_err(|e| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION", e.message))?;
    let room_id = (!rv.room_id_from_create_event).then(|| format!("!{}:{}", random_room_localpart(), state.server_name));
    let create = create_event(&rv, creator, room_id.as_deref(), now_ms()).map_err(|e| ApiError::bad_json(e.message))?;
    let create = sign(state, create, &rv)?;
    let client = state.db.writer().await?;
    let create_id = ingest(&client, &create, Some(rv.id)).await?;
    drop(client);
    let room_id = match room_id {
        Some(id) => id,
        None => roomserver_core::hashes::room_id_from_create_event(&create, &rv).map_err(|e| ApiError::internal(e.message))?,
    };
    let mut events = vec![Sent { event_id: create_id, pdu: create }];
    for (event_type, state_key, content) in public_room_initial_state(&rv, creator) {
        events.push(send_local(state, &room_id, &event_type, Some(&state_key), creator, &content).await?);
    }
    Ok((room_id, events))
}
