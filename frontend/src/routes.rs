//! The HTTP surface: which path goes to which handler, X-Matrix authentication in front of the
//! federation paths, the bound on requests in flight, and MSC3743's 404/405 for the rest.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::auth::authenticate;
use crate::db::Database;
use crate::errors::ApiError;
use crate::federation_reads as reads;
use crate::joins;
use crate::keys::ServerKey;
use crate::outbound::FederationClient;
use crate::outbox::Outbox;
use crate::remote_keys::RemoteKeys;

/// The largest request body taken: a `/send` of 50 PDUs of up to 64 KiB, and its EDUs.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

pub struct AppState {
    pub server_name: String,
    pub key: ServerKey,
    pub key_validity: Duration,
    pub remote_keys: RemoteKeys,
    /// Outbound requests (fetching what a received PDU lacks).
    pub client: FederationClient,
    /// Outbound `/send` of our events.
    pub outbox: Outbox,
    pub db: Database,
    pub in_flight: Semaphore,
}

impl AppState {
    /// Our key, for checking events we signed without asking ourselves.
    pub fn own_key(&self) -> crate::pdu_checks::OwnKey<'_> {
        crate::pdu_checks::OwnKey::of(&self.server_name, &self.key)
    }
}

/// The authenticated origin of a request.
#[derive(Clone)]
pub struct Origin(pub String);

/// The request's body as JSON (`None`: no body).
#[derive(Clone)]
pub struct JsonBody(pub Option<Value>);

/// A response body that is already JSON text (what the SQL functions return).
pub fn json_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

pub fn router(state: Arc<AppState>) -> Router {
    let federation = Router::new()
        .route("/_matrix/federation/v1/backfill/{room_id}", get(reads::backfill))
        .route("/_matrix/federation/v1/get_missing_events/{room_id}", post(reads::get_missing_events))
        .route("/_matrix/federation/v1/forwards_fill/{room_id}", get(reads::forwards_fill))
        .route("/_matrix/federation/org.matrix.msc4000/forwards_fill/{room_id}", get(reads::forwards_fill))
        .route("/_matrix/federation/v1/state_ids/{room_id}", get(reads::state_ids))
        .route("/_matrix/federation/v1/state/{room_id}", get(reads::state))
        .route("/_matrix/federation/v1/event_auth/{room_id}/{event_id}", get(reads::event_auth))
        .route("/_matrix/federation/v1/event/{event_id}", get(reads::event))
        .route("/_matrix/federation/v1/timestamp_to_event/{room_id}", get(reads::timestamp_to_event))
        .route("/_matrix/federation/v1/make_join/{room_id}/{user_id}", get(joins::make_join))
        .route("/_matrix/federation/v2/send_join/{room_id}/{event_id}", put(joins::send_join_v2))
        .route("/_matrix/federation/v1/send/{txn_id}", put(crate::transactions::send_transaction))
        // route_layer: only matched routes are authenticated, so an unknown path is a 404 to all.
        .route_layer(middleware::from_fn_with_state(state.clone(), require_x_matrix));
    Router::new()
        .route("/_matrix/key/v2/server", get(server_keys))
        .route("/_matrix/federation/v1/version", get(version))
        .merge(federation)
        .fallback(|| async { ApiError::unrecognized_path() })
        .method_not_allowed_fallback(|| async { ApiError::unrecognized_method() })
        .layer(middleware::from_fn_with_state(state.clone(), limit_in_flight))
        .with_state(state)
}

/// 429 beyond `max_in_flight_requests`, rather than queueing without bound.
async fn limit_in_flight(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match state.in_flight.try_acquire() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::limit_exceeded().into_response(),
    }
}

/// Reads the body, checks the X-Matrix signature over it, and hands the handler the origin and
/// the parsed body.
async fn require_x_matrix(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|_| ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", "The request body is too large"))?;
    let content = match bytes.is_empty() {
        true => None,
        false => Some(serde_json::from_slice::<Value>(&bytes).map_err(|e| ApiError::not_json(format!("The body is not JSON: {e}")))?),
    };
    let origin = {
        let authorization: Vec<&str> = parts.headers.get_all(header::AUTHORIZATION).iter().filter_map(|v| v.to_str().ok()).collect();
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        authenticate(&authorization, parts.method.as_str(), uri, content.as_ref(), &state.server_name, &state.remote_keys)
            .await
            .map_err(|e| ApiError::unauthorized(e.to_string()))?
    };
    parts.extensions.insert(Origin(origin));
    parts.extensions.insert(JsonBody(content));
    Ok(next.run(Request::from_parts(parts, Body::from(bytes))).await)
}

async fn server_keys(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.key.key_response(&state.server_name, state.key_validity, SystemTime::now())).into_response()
}

async fn version() -> Response {
    axum::Json(json!({"server": {"name": "roomserver-http", "version": env!("CARGO_PKG_VERSION")}})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Method, StatusCode};
    use tower::ServiceExt;

    /// A server whose database and remote servers are unreachable: what is answered without them.
    fn app(max_in_flight: usize) -> (Router, Arc<AppState>) {
        let client = FederationClient::new(rustls::RootCertStore::empty(), Default::default());
        let key = ServerKey::generate();
        let state = Arc::new(AppState {
            server_name: "us.example:8448".into(),
            outbox: Outbox::new(client.clone(), "us.example:8448".into(), &key),
            key,
            key_validity: Duration::from_secs(3600),
            remote_keys: RemoteKeys::new(client.clone()),
            client,
            db: Database::new("host=/nonexistent dbname=none", &[], "us.example:8448", 1).unwrap(),
            in_flight: Semaphore::new(max_in_flight),
        });
        (router(state.clone()), state)
    }

    async fn call(app: Router, method: Method, uri: &str, authorization: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(a) = authorization {
            request = request.header(header::AUTHORIZATION, a);
        }
        let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_unrecognized() {
        let (app, _) = app(4);
        let (status, body) = call(app.clone(), Method::GET, "/_matrix/federation/v1/no_such_endpoint/x", None).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_UNRECOGNIZED")));
        let (status, body) = call(app.clone(), Method::GET, "/_matrix/federation/unstable/forwards_fill/!r:x", None).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_UNRECOGNIZED")));
        let (status, body) = call(app.clone(), Method::POST, "/_matrix/federation/v1/version", None).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("M_UNRECOGNIZED")));
        let (status, body) = call(app, Method::GET, "/_matrix/federation/v1/get_missing_events/!r:x", None).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("M_UNRECOGNIZED")));
    }

    #[tokio::test]
    async fn federation_paths_need_x_matrix() {
        let (app, _) = app(4);
        for uri in ["/_matrix/federation/v1/backfill/!r:x?v=$e&limit=1", "/_matrix/federation/v1/event/$e",
            "/_matrix/federation/org.matrix.msc4000/forwards_fill/!r:x?from_event_id=$e&limit=1"]
        {
            let (status, body) = call(app.clone(), Method::GET, uri, None).await;
            assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED")), "{uri}");
        }
        let (status, body) = call(app.clone(), Method::GET, "/_matrix/federation/v1/event/$e", Some("X-Matrix origin=a.example")).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED")));
        // Signed for another server: refused before any key is fetched.
        let key = ServerKey::generate();
        let header = crate::auth::sign_request("GET", "/_matrix/federation/v1/event/$e", "a.example", "them.example", None, &key);
        let (status, body) = call(app, Method::GET, "/_matrix/federation/v1/event/$e", Some(&header)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["error"].as_str().unwrap().contains("them.example"), "{body}");
    }

    #[tokio::test]
    async fn version_and_keys_need_no_authentication() {
        let (app, state) = app(4);
        let (status, body) = call(app.clone(), Method::GET, "/_matrix/federation/v1/version", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["server"]["name"], "roomserver-http");
        let (status, body) = call(app, Method::GET, "/_matrix/key/v2/server", None).await;
        assert_eq!(status, StatusCode::OK);
        let keys = roomserver_core::server_keys::verify_key_response(&body, "us.example:8448").unwrap();
        assert_eq!(keys.verify_keys[&state.key.key_id], state.key.signing_key.verifying_key());
    }

    #[tokio::test]
    async fn requests_beyond_the_in_flight_bound_get_429() {
        let (app, state) = app(1);
        let _held = state.in_flight.try_acquire().unwrap();
        let (status, body) = call(app, Method::GET, "/_matrix/federation/v1/version", None).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("M_LIMIT_EXCEEDED")));
    }
}
