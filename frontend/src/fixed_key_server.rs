//! A stand-in for other servers' key endpoints: `GET /_matrix/key/v2/server` answered with a
//! fixed key response per server, chosen by the Host header (which carries the server name being
//! asked about). The integration tests and the load client (`federation-load`) serve the keys
//! of the servers they sign as with it; `key_server_overrides` point the front end at it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

#[derive(Clone)]
struct Responses {
    by_host: Arc<HashMap<String, Value>>,
    requests: Arc<AtomicUsize>,
}

async fn key_response(State(r): State<Responses>, headers: HeaderMap) -> Response {
    r.requests.fetch_add(1, Ordering::SeqCst);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    match r.by_host.get(host) {
        Some(body) => axum::Json(body.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The key endpoint for `responses` (server name → key response body); `requests` counts the
/// requests it answers. Serve it with [`crate::server::serve`].
pub fn router(responses: HashMap<String, Value>, requests: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route("/_matrix/key/v2/server", get(key_response))
        .with_state(Responses { by_host: Arc::new(responses), requests })
}
