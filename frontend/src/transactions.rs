//! `PUT /_matrix/federation/v1/send/{txnId}`: a PDU of a room whose ACL denies the origin is not
//! ingested (its result the error "Server is banned from room"); each PDU's signatures are checked (a PDU that
//! fails is dropped, its result an error; a bad content hash is not an error: ingest stores the
//! event redacted), what it lacks is fetched from the origin as the README's "Receiving live
//! events" says (auth events with `/event_auth`; a gap of prev events with
//! `/get_missing_events`, or when that does not close it, the state before the PDU with
//! `/state_ids` and `/event`), and it is ingested on the primary. EDUs are ignored.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use deadpool_postgres::Object;
use roomserver_core::RoomVersion;
use serde_json::{json, Map, Value};

use crate::errors::{ApiError, Call};
use crate::outbound::{percent_encoded, Signer};
use crate::pdu_checks::check_pdu_signatures;
use crate::room_access::check_acl;
use crate::routes::{AppState, JsonBody, Origin};
use crate::statements::UNKNOWN_EVENTS;

/// The spec's bound on PDUs in a transaction.
pub const MAX_PDUS: usize = 50;
/// `/get_missing_events` is asked for at most this many events before falling back to the state.
pub const MISSING_EVENTS_LIMIT: i64 = 20;
/// At most this many events are fetched one by one for a PDU's state.
pub const MAX_STATE_FETCHES: usize = 2000;

/// `(room version, the room's ACL allows the origin $2)`.
const ROOM_VERSION: &str = concat!("SELECT r.room_version, ", crate::acl_allows!("r.room_id", "$2"), " FROM roomserver.rooms r WHERE r.room_id = $1");
const MISSING: &str = "SELECT roomserver.missing_events($1::text::jsonb)::text";
const EXTREMITIES: &str = "SELECT array(SELECT roomserver.forward_extremities($1))";
const INGEST: &str = "SELECT roomserver.ingest_event($1::text::jsonb, NULL, false, $2)::text";
const INGEST_MANY: &str = "SELECT count(*) FROM roomserver.ingest_events($1::text::jsonb, NULL, $2)";

fn db_error(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => format!("database: {e}"),
    }
}

struct Receiver<'a> {
    state: &'a AppState,
    origin: &'a str,
    client: Object,
}

impl Receiver<'_> {
    async fn fetch(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let signer = Signer { origin: &self.state.server_name, key: &self.state.key };
        let r = self.state.client.request(self.origin, method, path, body, Some(signer)).await?;
        if r.status != StatusCode::OK {
            return Err(format!("{} answered {path} with {}", self.origin, r.status));
        }
        r.json()
    }

    async fn query_text(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<Value, String> {
        let statement = self.client.prepare_cached(sql).await.map_err(db_error)?;
        let row = self.client.query_one(&statement, params).await.map_err(db_error)?;
        serde_json::from_str(row.get::<_, &str>(0)).map_err(|e| e.to_string())
    }

    async fn string_array(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Result<Vec<String>, String> {
        let statement = self.client.prepare_cached(sql).await.map_err(db_error)?;
        Ok(self.client.query_one(&statement, params).await.map_err(db_error)?.get(0))
    }

    async fn verified(&self, pdu: &Value, rv: &RoomVersion) -> Result<(), String> {
        let own = self.state.own_key();
        check_pdu_signatures(pdu, rv, &self.state.remote_keys, &own).await
    }

    /// The fetched events whose signatures verify (others are dropped, as a PDU would be).
    async fn keep_verified(&self, pdus: Vec<Value>, rv: &RoomVersion) -> Vec<Value> {
        let own = self.state.own_key();
        crate::pdu_checks::keep_verified(pdus, rv, &self.state.remote_keys, &own, self.origin).await
    }

    async fn ingest_many(&self, pdus: Vec<Value>, outlier: bool) -> Result<(), String> {
        if pdus.is_empty() {
            return Ok(());
        }
        let statement = self.client.prepare_cached(INGEST_MANY).await.map_err(db_error)?;
        self.client.query_one(&statement, &[&Value::Array(pdus).to_string(), &outlier]).await.map_err(db_error)?;
        Ok(())
    }

    fn pdus_of(value: &Value, field: &str) -> Result<Vec<Value>, String> {
        value.get(field).and_then(Value::as_array).cloned().ok_or_else(|| format!("the response has no {field:?} list"))
    }

    /// Receives one PDU: `Ok` when it is stored (accepted, soft-failed or rejected by the rules:
    /// all are the room's history now), `Err` when it was dropped.
    async fn receive(&self, pdu: &Value, room_id: &str, event_id: &str, rv: &RoomVersion) -> Result<(), String> {
        self.verified(pdu, rv).await?;
        let missing = self.query_text(MISSING, &[&pdu.to_string()]).await?;
        let list = |field: &str| -> Vec<String> {
            missing[field].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
        };
        if !list("missing_auth_events").is_empty() {
            let chain = self.fetch(Method::GET, &format!("/_matrix/federation/v1/event_auth/{}/{}", percent_encoded(room_id), percent_encoded(event_id)), None).await?;
            let chain = self.keep_verified(Self::pdus_of(&chain, "auth_chain")?, rv).await;
            self.ingest_many(chain, true).await?;
        }
        let mut state_event_ids: Option<Vec<String>> = None;
        if !list("missing_prev_events").is_empty() {
            let earliest = self.string_array(EXTREMITIES, &[&room_id]).await?;
            let request = json!({"earliest_events": earliest, "latest_events": [event_id], "limit": MISSING_EVENTS_LIMIT, "min_depth": 0});
            let gap = self.fetch(Method::POST, &format!("/_matrix/federation/v1/get_missing_events/{}", percent_encoded(room_id)), Some(&request)).await;
            let closed = match gap {
                Ok(gap) => {
                    let events = self.keep_verified(Self::pdus_of(&gap, "events")?, rv).await;
                    // Fails (23503) when the gap is wider than what came: then the state is asked.
                    self.ingest_many(events, false).await.is_ok() && {
                        let again = self.query_text(MISSING, &[&pdu.to_string()]).await?;
                        again["missing_prev_events"].as_array().is_some_and(Vec::is_empty)
                    }
                }
                Err(e) => {
                    eprintln!("roomserver-http: get_missing_events from {}: {e}", self.origin);
                    false
                }
            };
            if !closed {
                state_event_ids = Some(self.state_before(pdu, room_id, event_id, rv).await?);
            }
        }
        let result = self.query_text(INGEST, &[&pdu.to_string(), &state_event_ids]).await?;
        if let Some(r) = result.get("rejection").filter(|r| !r.is_null()) {
            eprintln!("roomserver-http: {event_id} from {} is rejected: {r}", self.origin);
        }
        Ok(())
    }

    /// The state before `pdu` from the origin's `/state_ids`, its unknown events fetched with
    /// `/event` and stored as outliers. Returns the state's event IDs.
    async fn state_before(&self, _pdu: &Value, room_id: &str, event_id: &str, rv: &RoomVersion) -> Result<Vec<String>, String> {
        let ids = self.fetch(Method::GET, &format!("/_matrix/federation/v1/state_ids/{}?event_id={}", percent_encoded(room_id), percent_encoded(event_id)), None).await?;
        let strings = |field: &str| -> Result<Vec<String>, String> {
            ids.get(field)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .ok_or_else(|| format!("/state_ids answered no {field:?}"))
        };
        let state_ids = strings("pdu_ids")?;
        let mut wanted = state_ids.clone();
        wanted.extend(strings("auth_chain_ids")?);
        let unknown = self.string_array(UNKNOWN_EVENTS, &[&wanted]).await?;
        if unknown.len() > MAX_STATE_FETCHES {
            return Err(format!("the state before {event_id} needs {} unknown events (more than {MAX_STATE_FETCHES})", unknown.len()));
        }
        let mut fetched = Vec::with_capacity(unknown.len());
        for id in &unknown {
            let body = self.fetch(Method::GET, &format!("/_matrix/federation/v1/event/{}", percent_encoded(id)), None).await?;
            fetched.extend(Self::pdus_of(&body, "pdus")?);
        }
        let fetched = self.keep_verified(fetched, rv).await;
        self.ingest_many(fetched, true).await?;
        Ok(state_ids)
    }
}

pub async fn send_transaction(
    State(state): State<Arc<AppState>>,
    Extension(Origin(origin)): Extension<Origin>,
    Extension(JsonBody(body)): Extension<JsonBody>,
    Path(_txn_id): Path<String>,
) -> Result<Response, ApiError> {
    let body = body.filter(Value::is_object).ok_or_else(|| ApiError::bad_json("A transaction is a JSON object"))?;
    let pdus = match body.get("pdus") {
        None => Vec::new(),
        Some(Value::Array(p)) if p.len() <= MAX_PDUS => p.clone(),
        Some(Value::Array(_)) => return Err(ApiError::bad_json(format!("A transaction holds at most {MAX_PDUS} PDUs"))),
        Some(_) => return Err(ApiError::bad_json("\"pdus\" must be a list")),
    };
    let receiver = Receiver { state: &state, origin: &origin, client: state.db.writer().await? };
    let mut results = Map::new();
    for pdu in &pdus {
        let Some(room_id) = pdu.get("room_id").and_then(Value::as_str) else { continue };
        let statement = receiver.client.prepare_cached(ROOM_VERSION).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
        let rows = receiver.client.query(&statement, &[&room_id, &origin]).await.map_err(|e| ApiError::from_db(&e, Call::Read))?;
        // A room we do not know: nothing to key a result by (no room version, no event ID).
        let Some(row) = rows.first() else { continue };
        let Ok(rv) = RoomVersion::from_id(row.get::<_, &str>(0)) else { continue };
        let Ok(event_id) = roomserver_core::hashes::event_id(pdu, &rv) else { continue };
        let outcome = match check_acl(row.get(1)) {
            // The spec: ACLs apply to the origin of a transaction; Synapse checks each PDU's room.
            Err(denied) => Err(denied.message),
            Ok(()) => receiver.receive(pdu, room_id, &event_id, &rv).await,
        };
        let result = match outcome {
            Ok(()) => json!({}),
            Err(e) => {
                eprintln!("roomserver-http: PDU {event_id} from {origin}: {e}");
                json!({"error": e})
            }
        };
        results.insert(event_id, result);
    }
    Ok(axum::Json(json!({"pdus": results})).into_response())
}
