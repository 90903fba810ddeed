//! Other servers' signing keys, fetched from their `GET /_matrix/key/v2/server` (directly: no
//! notary servers), verified with core's key response check, and cached until their
//! `valid_until_ts`, capped. One fetch per server at a time: concurrent requests from one origin
//! wait for the same fetch, and a server is asked again at most every [`MIN_REFETCH_INTERVAL`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use ed25519_dalek::VerifyingKey;
use roomserver_core::server_keys::verify_key_response;

use crate::auth::KeySource;
use crate::outbound::FederationClient;

/// Keys are trusted for at most this long after a fetch, whatever `valid_until_ts` says.
pub const MAX_CACHE_TIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// A server whose keys were just fetched (or failed to be) is not asked again before this.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What is known of one server's keys.
#[derive(Default)]
struct Known {
    keys: BTreeMap<String, VerifyingKey>,
    /// Until when (ms since the epoch) `keys` may be used: `valid_until_ts`, capped.
    usable_until_ms: i64,
    last_attempt: Option<Instant>,
}

impl Known {
    fn usable(&self, key_id: &str, now_ms: i64) -> Option<VerifyingKey> {
        (now_ms < self.usable_until_ms).then(|| self.keys.get(key_id).copied()).flatten()
    }
}

pub struct RemoteKeys {
    client: FederationClient,
    servers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Known>>>>,
}

impl RemoteKeys {
    pub fn new(client: FederationClient) -> RemoteKeys {
        RemoteKeys { client, servers: Mutex::new(HashMap::new()) }
    }

    fn entry(&self, server_name: &str) -> Arc<tokio::sync::Mutex<Known>> {
        let mut servers = self.servers.lock().expect("no code panics while holding this lock");
        servers.entry(server_name.to_owned()).or_default().clone()
    }

    /// Fetches and verifies `server_name`'s keys: (keys, usable until).
    async fn fetch(&self, server_name: &str) -> Result<(BTreeMap<String, VerifyingKey>, i64), String> {
        let response = self.client.request(server_name, Method::GET, "/_matrix/key/v2/server", None, None).await?;
        if response.status != StatusCode::OK {
            return Err(format!("{server_name} answered its key request with {}", response.status));
        }
        let keys = verify_key_response(&response.json()?, server_name).map_err(|e| e.message)?;
        let cap = now_ms().saturating_add(MAX_CACHE_TIME.as_millis() as i64);
        Ok((keys.verify_keys, keys.valid_until_ts.min(cap)))
    }
}

impl KeySource for RemoteKeys {
    async fn verify_key(&self, server_name: &str, key_id: &str) -> Result<VerifyingKey, String> {
        let entry = self.entry(server_name);
        let mut known = entry.lock().await;
        if let Some(key) = known.usable(key_id, now_ms()) {
            return Ok(key);
        }
        if known.last_attempt.is_some_and(|t| t.elapsed() < MIN_REFETCH_INTERVAL) {
            return Err(format!("no valid key {key_id} of {server_name} (asked less than {MIN_REFETCH_INTERVAL:?} ago)"));
        }
        known.last_attempt = Some(Instant::now());
        let (keys, usable_until_ms) = self.fetch(server_name).await?;
        known.keys = keys;
        known.usable_until_ms = usable_until_ms;
        known.usable(key_id, now_ms()).ok_or_else(|| {
            if known.keys.contains_key(key_id) {
                format!("the key {key_id} of {server_name} expired at {usable_until_ms}")
            } else {
                format!("{server_name} has no key {key_id}")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_usable_until_their_validity() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let known = Known { keys: BTreeMap::from([("ed25519:a".to_owned(), key)]), usable_until_ms: 1000, last_attempt: None };
        assert_eq!(known.usable("ed25519:a", 999), Some(key));
        assert_eq!(known.usable("ed25519:a", 1000), None, "expired");
        assert_eq!(known.usable("ed25519:b", 0), None, "unknown key ID");
        assert_eq!(Known::default().usable("ed25519:a", 0), None);
    }
}
