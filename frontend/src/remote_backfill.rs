//! Fetching the history of a room we joined part-way through: `/backfill` from a server in the
//! room, starting at the missing prev events `roomserver.backward_extremities` lists, each
//! answer's PDUs checked (`pdu_checks`) and stored with `ingest_events(..., backfilled => true)`
//! (history: no extremity or current-state change), round after round until no gap is left,
//! a round brings nothing new, or the rounds asked for are done. When no gap is left but the
//! create event is still an outlier, it is asked for once more (see [`GAPS`]).

use std::collections::HashSet;

use axum::http::Method;
use roomserver_core::hashes::event_id;
use roomserver_core::{Pdu, RoomVersion};
use serde_json::Value;

use crate::errors::{ApiError, Call};
use crate::pdu_checks::keep_verified;
use crate::remote_join::{ask_server, room_pdus};
use crate::routes::AppState;
use crate::outbound::percent_encoded;
use crate::statements::{INGEST_OUTLIERS, UNKNOWN_EVENTS};

/// At most this many gap events are named in one `/backfill` (`v`), the deepest first.
pub const MAX_BACKFILL_FROM: i64 = 20;
/// At most this many auth events a round's events name but nobody stored are fetched with `/event`.
pub const MAX_AUTH_FETCHES: usize = 200;

const ROOM_VERSION: &str = "SELECT room_version FROM roomserver.rooms WHERE room_id = $1";
/// Where to backfill from: the missing prev events of the room's gaps, those after the deepest
/// stored events first; when there is no gap but the create event is still an outlier (it came
/// with a send_join's auth chain and nothing re-sent it since), the create event itself: stored
/// again as history it gets its state, and the outliers after it theirs.
const GAPS: &str = "WITH gaps AS (SELECT m, max(b.depth) AS d FROM roomserver.backward_extremities($1) b, unnest(b.missing_prev_events) m GROUP BY m) \
                    SELECT CASE WHEN EXISTS (SELECT 1 FROM gaps) THEN array(SELECT m FROM gaps ORDER BY d DESC, m COLLATE \"C\" LIMIT $2) \
                    ELSE array(SELECT e.event_id FROM roomserver.events e WHERE e.room_id = $1 AND e.type = 'm.room.create' \
                               AND e.state_key = '' AND e.outlier AND NOT e.rejected) END";
const OTHER_SERVERS: &str = "SELECT array(SELECT roomserver.joined_servers($1))";
/// How many of the events were not stored before.
const INGEST_BACKFILLED: &str = "SELECT count(*) FILTER (WHERE NOT (r ->> 'duplicate')::boolean) \
                                 FROM roomserver.ingest_events($1::text::jsonb, $2, false, true) r";

/// What a backfill did: events newly stored, requests made, and whether the history is whole
/// (no gap left, the create event with its state).
pub struct Backfilled {
    pub events: i64,
    pub rounds: usize,
    pub complete: bool,
}

/// Backfills `room_id` from `server` (default: the first other server with joined members), at
/// most `rounds` requests of `limit` events.
pub async fn backfill_room(state: &AppState, room_id: &str, server: Option<&str>, limit: i64, rounds: usize) -> Result<Backfilled, ApiError> {
    let client = state.db.writer().await?;
    let db = |e: tokio_postgres::Error| ApiError::from_db(&e, Call::Read);
    let statement = client.prepare_cached(ROOM_VERSION).await.map_err(db)?;
    let rows = client.query(&statement, &[&room_id]).await.map_err(db)?;
    let row = rows.first().ok_or_else(|| ApiError::not_found(format!("Unknown room {room_id}")))?;
    let rv = RoomVersion::from_id(row.get::<_, &str>(0)).map_err(|e| ApiError::internal(e.message))?;
    let server = match server {
        Some(s) => s.to_owned(),
        None => {
            let statement = client.prepare_cached(OTHER_SERVERS).await.map_err(db)?;
            let servers: Vec<String> = client.query_one(&statement, &[&room_id]).await.map_err(db)?.get(0);
            servers.into_iter().find(|s| *s != state.server_name).ok_or_else(|| ApiError::invalid_param("no other server is in the room: name one"))?
        }
    };
    let mut done = Backfilled { events: 0, rounds: 0, complete: false };
    while done.rounds < rounds {
        let from = gaps(&client, room_id).await?;
        if from.is_empty() {
            break;
        }
        done.rounds += 1;
        let v: Vec<String> = from.iter().map(|id| format!("v={}", percent_encoded(id))).collect();
        let path = format!("/_matrix/federation/v1/backfill/{}?{}&limit={limit}", percent_encoded(room_id), v.join("&"));
        let answer = ask_server(state, &server, Method::GET, &path, None, "backfill").await?;
        let pdus = keep_verified(room_pdus(&answer, "pdus", room_id, &rv, &server)?, &rv, &state.remote_keys, &state.own_key(), &server).await;
        let auth_events = fetch_unknown_auth_events(state, &client, &server, &pdus, &rv).await?;
        if !auth_events.is_empty() {
            let statement = client.prepare_cached(INGEST_OUTLIERS).await.map_err(db)?;
            client.query_one(&statement, &[&Value::Array(auth_events).to_string(), &rv.id]).await.map_err(db)?;
        }
        let statement = client.prepare_cached(INGEST_BACKFILLED).await.map_err(db)?;
        let new: i64 = client.query_one(&statement, &[&Value::Array(pdus).to_string(), &rv.id]).await.map_err(db)?.get(0);
        done.events += new;
        if new == 0 {
            break;
        }
    }
    done.complete = gaps(&client, room_id).await?.is_empty();
    Ok(done)
}

async fn gaps(client: &deadpool_postgres::Object, room_id: &str) -> Result<Vec<String>, ApiError> {
    let statement = client.prepare_cached(GAPS).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    Ok(client.query_one(&statement, &[&room_id, &MAX_BACKFILL_FROM]).await.map_err(|e| ApiError::from_db(&e, Call::Read))?.get(0))
}

/// The auth events that `pdus` name, that are neither among them nor stored, and the auth
/// events those name in turn, fetched from `server` with `/event` and checked: what ingest
/// needs stored (as outliers) before the backfilled events.
async fn fetch_unknown_auth_events(
    state: &AppState,
    client: &deadpool_postgres::Object,
    server: &str,
    pdus: &[Value],
    rv: &RoomVersion,
) -> Result<Vec<Value>, ApiError> {
    let mut have: HashSet<String> = pdus.iter().filter_map(|p| event_id(p, rv).ok()).collect();
    let mut named: Vec<String> = pdus.iter().filter_map(|p| Pdu::from_json(p, rv).ok()).flat_map(|p| p.auth_events).collect();
    let mut fetched = Vec::new();
    let statement = client.prepare_cached(UNKNOWN_EVENTS).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
    while !named.is_empty() {
        named.retain(|id| !have.contains(id));
        named.sort();
        named.dedup();
        let unknown: Vec<String> = client.query_one(&statement, &[&named]).await.map_err(|e| ApiError::from_db(&e, Call::Read))?.get(0);
        if fetched.len() + unknown.len() > MAX_AUTH_FETCHES {
            return Err(ApiError::bad_gateway(format!("the backfilled events need more than {MAX_AUTH_FETCHES} unknown auth events")));
        }
        let mut round = Vec::with_capacity(unknown.len());
        for id in &unknown {
            let answer = ask_server(state, server, Method::GET, &format!("/_matrix/federation/v1/event/{}", percent_encoded(id)), None, "event").await?;
            round.extend(answer.get("pdus").and_then(Value::as_array).cloned().unwrap_or_default());
            have.insert(id.clone());
        }
        let round = keep_verified(round, rv, &state.remote_keys, &state.own_key(), server).await;
        named = round.iter().filter_map(|p| Pdu::from_json(p, rv).ok()).flat_map(|p| p.auth_events).collect();
        fetched.extend(round);
    }
    Ok(fetched)
}
