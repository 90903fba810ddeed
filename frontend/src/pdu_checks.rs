//! The signature checks on a received PDU (server-server API "Validating hashes and signatures
//! on received events"): every server core's `servers_that_must_sign` names must have signed the
//! redacted event with a key we can get. Which servers, and what is signed, are core's; this
//! only fetches keys.

use ed25519_dalek::VerifyingKey;
use roomserver_core::signing::{servers_that_must_sign, signing_key_ids, verify_event_signature};
use roomserver_core::RoomVersion;
use serde_json::Value;

use crate::auth::KeySource;

/// This server's own key, so that events we signed are checked without asking ourselves.
pub struct OwnKey<'a> {
    pub server_name: &'a str,
    pub key_id: &'a str,
    pub key: VerifyingKey,
}

/// Checks the signatures `pdu` (room version `rv`) must carry. The error says whose is missing
/// or wrong; the PDU is then to be dropped, not ingested.
pub async fn check_pdu_signatures<K: KeySource>(pdu: &Value, rv: &RoomVersion, keys: &K, own: &OwnKey<'_>) -> Result<(), String> {
    let servers = servers_that_must_sign(pdu, rv).map_err(|e| e.message)?;
    for server in &servers {
        let key_ids = signing_key_ids(pdu, server);
        if key_ids.is_empty() {
            return Err(format!("the event is not signed by {server}"));
        }
        // One valid signature per server suffices; the others may be by keys we cannot get.
        let mut failures = Vec::new();
        let mut verified = false;
        for key_id in key_ids.iter().filter(|k| k.starts_with("ed25519:")) {
            let key = if server == own.server_name && *key_id == own.key_id {
                Ok(own.key)
            } else {
                keys.verify_key(server, key_id).await
            };
            match key.and_then(|k| verify_event_signature(pdu, rv, server, key_id, &k).map_err(|e| e.to_string())) {
                Ok(()) => {
                    verified = true;
                    break;
                }
                Err(e) => failures.push(e),
            }
        }
        if !verified {
            return Err(format!("no valid signature of {server}: {}", failures.join("; ")));
        }
    }
    Ok(())
}

/// The fetched events (from `source`) whose signatures verify; the others are dropped with a
/// log line, as a `/send` PDU that fails would be.
pub async fn keep_verified<K: KeySource>(pdus: Vec<Value>, rv: &RoomVersion, keys: &K, own: &OwnKey<'_>, source: &str) -> Vec<Value> {
    let mut kept = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        match check_pdu_signatures(&pdu, rv, keys, own).await {
            Ok(()) => kept.push(pdu),
            Err(e) => eprintln!("roomserver-http: dropping an event fetched from {source}: {e}"),
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ServerKey;
    use roomserver_core::signing::hash_and_sign_event;
    use serde_json::json;
    use std::collections::HashMap;

    struct FixedKeys(HashMap<(String, String), VerifyingKey>);

    impl KeySource for FixedKeys {
        async fn verify_key(&self, server_name: &str, key_id: &str) -> Result<VerifyingKey, String> {
            self.0.get(&(server_name.to_owned(), key_id.to_owned())).copied().ok_or_else(|| format!("no key {key_id} of {server_name}"))
        }
    }

    fn setup() -> (ServerKey, ServerKey, FixedKeys) {
        let remote = ServerKey::generate();
        let us = ServerKey::generate();
        let keys = FixedKeys(HashMap::from([(("b.example".to_owned(), remote.key_id.clone()), remote.signing_key.verifying_key())]));
        (remote, us, keys)
    }

    fn join(rv: &RoomVersion, event_id_server: &str) -> Value {
        let mut pdu = json!({"type": "m.room.member", "state_key": "@bob:b.example", "sender": "@bob:b.example",
            "room_id": "!r:a.example", "content": {"membership": "join"}, "depth": 3, "origin_server_ts": 5,
            "prev_events": [], "auth_events": []});
        if !rv.event_id_is_hash() {
            pdu["event_id"] = json!(format!("$j:{event_id_server}"));
        }
        pdu
    }

    #[tokio::test]
    async fn the_senders_server_must_sign() {
        let rv = RoomVersion::from_id("10").unwrap();
        let (remote, us, keys) = setup();
        let own = OwnKey { server_name: "a.example", key_id: &us.key_id, key: us.signing_key.verifying_key() };
        let signed = hash_and_sign_event(join(&rv, ""), &rv, "b.example", &remote.key_id, &remote.signing_key).unwrap();
        check_pdu_signatures(&signed, &rv, &keys, &own).await.unwrap();
        // Content outside the redacted form is not signed (a bad hash is ingest's to redact)...
        let mut extra = signed.clone();
        extra["content"]["displayname"] = json!("Bob");
        check_pdu_signatures(&extra, &rv, &keys, &own).await.unwrap();
        // ...but what the redacted form keeps is.
        let mut moved = signed.clone();
        moved["depth"] = json!(4);
        assert!(check_pdu_signatures(&moved, &rv, &keys, &own).await.unwrap_err().contains("does not match"));
        // Signed by us, not by the sender's server.
        let ours = hash_and_sign_event(join(&rv, ""), &rv, "a.example", &us.key_id, &us.signing_key).unwrap();
        assert!(check_pdu_signatures(&ours, &rv, &keys, &own).await.unwrap_err().contains("not signed by b.example"));
        // A key the server does not have.
        let impostor = ServerKey::generate();
        let forged = hash_and_sign_event(join(&rv, ""), &rv, "b.example", &impostor.key_id, &impostor.signing_key).unwrap();
        assert!(check_pdu_signatures(&forged, &rv, &keys, &own).await.unwrap_err().contains("no key"));
    }

    #[tokio::test]
    async fn v1_event_ids_need_their_servers_signature_too() {
        let rv = RoomVersion::from_id("1").unwrap();
        let (remote, us, keys) = setup();
        let own = OwnKey { server_name: "a.example", key_id: &us.key_id, key: us.signing_key.verifying_key() };
        let by_sender = hash_and_sign_event(join(&rv, "b.example"), &rv, "b.example", &remote.key_id, &remote.signing_key).unwrap();
        check_pdu_signatures(&by_sender, &rv, &keys, &own).await.unwrap();
        // The event ID names us: our own signature is needed as well, checked with our key.
        let named_by_us = hash_and_sign_event(join(&rv, "a.example"), &rv, "b.example", &remote.key_id, &remote.signing_key).unwrap();
        assert!(check_pdu_signatures(&named_by_us, &rv, &keys, &own).await.unwrap_err().contains("not signed by a.example"));
        let both = hash_and_sign_event(named_by_us, &rv, "a.example", &us.key_id, &us.signing_key).unwrap();
        check_pdu_signatures(&both, &rv, &keys, &own).await.unwrap();
    }
}
