//! Other servers' signing keys, fetched from their `GET /_matrix/key/v2/server` (directly: no
//! notary servers), verified with core's key response check, and cached until their
//! `valid_until_ts`, capped. One fetch per server at a time: concurrent requests from one origin
//! wait for the same fetch, and a server is asked again at most every [`MIN_REFETCH_INTERVAL`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ed25519_dalek::VerifyingKey;
use roomserver_core::server_keys::verify_key_response;

use crate::auth::KeySource;
use crate::now_ms;
use crate::outbound::FederationClient;

/// Keys are trusted for at most this long after a fetch, whatever `valid_until_ts` says.
pub const MAX_CACHE_TIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// A server whose keys were just fetched (or failed to be) is not asked again before this.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// What is known of one server's keys.
#[derive(Default)]
struct Known {
    keys: BTreeMap<String, VerifyingKey>,
    /// The `valid_until_ts` of `keys` (ms since the epoch).
    valid_until_ms: i64,
    /// Until when `keys` may be used without asking the server again (ms since the epoch):
    /// `valid_until_ms`, capped at [`MAX_CACHE_TIME`] after the fetch.
    cached_until_ms: i64,
    last_attempt: Option<Instant>,
}

impl Known {
    /// The key, if what is cached shows it valid at `valid_at_ms` and the cache is fresh at `now_ms`.
    fn usable(&self, key_id: &str, valid_at_ms: i64, now_ms: i64) -> Option<VerifyingKey> {
        (valid_at_ms <= self.valid_until_ms && now_ms < self.cached_until_ms).then(|| self.keys.get(key_id).copied()).flatten()
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

    /// Fetches and verifies `server_name`'s keys: (keys, valid until, cached until).
    async fn fetch(&self, server_name: &str) -> Result<(BTreeMap<String, VerifyingKey>, i64, i64), String> {
        let response = self.client.request(server_name, Method::GET, "/_matrix/key/v2/server", None, None).await?;
        if response.status != StatusCode::OK {
            return Err(format!("{server_name} answered its key request with {}", response.status));
        }
        let keys = verify_key_response(&response.json()?, server_name).map_err(|e| e.message)?;
        let cap = now_ms().saturating_add(MAX_CACHE_TIME.as_millis() as i64);
        Ok((keys.verify_keys, keys.valid_until_ts, keys.valid_until_ts.min(cap)))
    }
}

impl KeySource for RemoteKeys {
    async fn verify_key(&self, server_name: &str, key_id: &str, valid_at_ms: i64) -> Result<VerifyingKey, String> {
        let entry = self.entry(server_name);
        let mut known = entry.lock().await;
        if let Some(key) = known.usable(key_id, valid_at_ms, now_ms()) {
            return Ok(key);
        }
        if known.last_attempt.is_some_and(|t| t.elapsed() < MIN_REFETCH_INTERVAL) {
            return Err(format!("no valid key {key_id} of {server_name} (asked less than {MIN_REFETCH_INTERVAL:?} ago)"));
        }
        known.last_attempt = Some(Instant::now());
        let (keys, valid_until_ms, cached_until_ms) = self.fetch(server_name).await?;
        known.keys = keys;
        known.valid_until_ms = valid_until_ms;
        known.cached_until_ms = cached_until_ms;
        known.usable(key_id, valid_at_ms, now_ms()).ok_or_else(|| {
            if !known.keys.contains_key(key_id) {
                format!("{server_name} has no key {key_id}")
            } else if valid_until_ms <= now_ms() {
                format!("the key {key_id} of {server_name} expired at {valid_until_ms}")
            } else {
                format!("the key {key_id} of {server_name} is valid until {valid_until_ms}, not at {valid_at_ms}")
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
        let known = Known { keys: BTreeMap::from([("ed25519:a".to_owned(), key)]), valid_until_ms: 1000, cached_until_ms: 1000, last_attempt: None };
        assert_eq!(known.usable("ed25519:a", 999, 999), Some(key));
        assert_eq!(known.usable("ed25519:a", 1000, 999), Some(key), "valid_until_ts is inclusive");
        assert_eq!(known.usable("ed25519:a", 1000, 1000), None, "the cache expired: ask again");
        assert_eq!(known.usable("ed25519:b", 0, 0), None, "unknown key ID");
        assert_eq!(Known::default().usable("ed25519:a", 0, 0), None);
    }

    #[test]
    fn an_event_needs_a_key_valid_at_its_timestamp() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        // A fresh fetch: valid for a day, cached for a day.
        let known = Known { keys: BTreeMap::from([("ed25519:a".to_owned(), key)]), valid_until_ms: 86_400_000, cached_until_ms: 86_400_000, last_attempt: None };
        assert_eq!(known.usable("ed25519:a", 5, 10), Some(key), "an old event");
        assert_eq!(known.usable("ed25519:a", 86_400_001, 10), None, "an event stamped after the key's validity");
        assert_eq!(known.usable("ed25519:a", i64::MIN, 10), Some(key), "room versions before 5: any published key");
    }
}
