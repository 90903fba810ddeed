//! Outbound `/send`: new events of this server (and joins it accepted) go to the other servers
//! in the room. One queue and one worker per destination, so a destination gets our events in
//! the order we made them; a transaction holds up to [`MAX_PDUS_PER_TRANSACTION`] and is retried
//! with the same transaction ID (the receiver deduplicates) with exponential backoff, at most
//! [`MAX_ATTEMPTS`] times; then it is dropped (logged): the destination catches up with
//! `/get_missing_events` when our next event reaches it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::keys::ServerKey;
use crate::outbound::{FederationClient, Signer};

/// The spec's limit on PDUs in one transaction.
pub const MAX_PDUS_PER_TRANSACTION: usize = 50;
/// Attempts per transaction before it is dropped.
pub const MAX_ATTEMPTS: u32 = 8;
/// The first retry waits this long; each next one twice as long, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before retry number `attempt` (1 = the first retry).
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

struct Inner {
    client: FederationClient,
    server_name: String,
    key: ServerKey,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>,
    next_txn: AtomicU64,
}

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

impl Outbox {
    pub fn new(client: FederationClient, server_name: String, key: &ServerKey) -> Outbox {
        let key = ServerKey { key_id: key.key_id.clone(), signing_key: key.signing_key.clone() };
        Outbox { inner: Arc::new(Inner { client, server_name, key, queues: Mutex::new(HashMap::new()), next_txn: AtomicU64::new(0) }) }
    }

    /// Queues `pdu` for each of `destinations` (never ourselves). Needs a tokio runtime.
    pub fn enqueue(&self, pdu: &Value, destinations: &[String]) {
        let mut queues = self.inner.queues.lock().expect("no code panics while holding this lock");
        for destination in destinations.iter().filter(|d| **d != self.inner.server_name) {
            let sender = queues.entry(destination.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(worker(self.inner.clone(), destination.clone(), rx));
                tx
            });
            // The worker only ends when the sender is dropped, which is here, under the lock.
            let _ = sender.send(pdu.clone());
        }
    }
}

async fn worker(inner: Arc<Inner>, destination: String, mut queue: mpsc::UnboundedReceiver<Value>) {
    while let Some(first) = queue.recv().await {
        let mut pdus = vec![first];
        while pdus.len() < MAX_PDUS_PER_TRANSACTION {
            match queue.try_recv() {
                Ok(p) => pdus.push(p),
                Err(_) => break,
            }
        }
        let now = crate::now_ms();
        // Unique across restarts (the start time) and within a run (the counter).
        let txn_id = format!("{now}-{}", inner.next_txn.fetch_add(1, Ordering::Relaxed));
        let body = json!({"origin": inner.server_name, "origin_server_ts": now, "pdus": pdus, "edus": []});
        let path = format!("/_matrix/federation/v1/send/{txn_id}");
        for attempt in 1..=MAX_ATTEMPTS {
            let signer = Signer { origin: &inner.server_name, key: &inner.key };
            match inner.client.request(&destination, Method::PUT, &path, Some(&body), Some(signer)).await {
                Ok(r) if r.status == StatusCode::OK => break,
                outcome => {
                    let why = match outcome {
                        Ok(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body[..r.body.len().min(200)])),
                        Err(e) => e,
                    };
                    if attempt == MAX_ATTEMPTS {
                        eprintln!("roomserver-http: dropping transaction {txn_id} to {destination} ({} PDUs) after {attempt} attempts: {why}", pdus.len());
                    } else {
                        eprintln!("roomserver-http: transaction {txn_id} to {destination}, attempt {attempt}: {why}");
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(8), Duration::from_secs(60));
        assert_eq!(backoff(40), MAX_BACKOFF);
        let total: Duration = (1..MAX_ATTEMPTS).map(backoff).sum();
        assert!(total < Duration::from_secs(300), "a transaction is given up within minutes: {total:?}");
    }
}
