//! The signature checks on a received PDU (server-server API "Validating hashes and signatures
//! on received events"): every server core's `servers_that_must_sign` names must have signed the
//! redacted event with a key we can get. Which servers, and what is signed, are core's; this
//! only fetches keys.

use ed25519_dalek::VerifyingKey;
use roomserver_core::signing::{servers_that_must_sign, signing_key_ids, verify_event_signature};
use roomserver_core::RoomVersion;
use serde_json::Value;

use crate::auth::KeySource;
use crate::keys::ServerKey;

/// This server's own key, so that events we signed are checked without asking ourselves.
pub struct OwnKey<'a> {
    pub server_name: &'a str,
    pub key_id: &'a str,
    pub key: VerifyingKey,
}

impl<'a> OwnKey<'a> {
    pub fn of(server_name: &'a str, key: &'a ServerKey) -> OwnKey<'a> {
        OwnKey { server_name, key_id: &key.key_id, key: key.signing_key.verifying_key() }
    }
}

/// Checks the signatures `pdu` (room version `rv`) must carry. The error says whose is missing
/// or wrong; the PDU is then to be dropped, not ingested.
pub async fn check_pdu_signatures<K: KeySource>(pdu: &Value, rv: &RoomVersion, keys: &K, own: &OwnKey<'_>) -> Result<(), String> {
    for server in &servers_that_must_sign(pdu, rv).map_err(|e| e.message)? {
        check_signed_by(pdu, rv, server, keys, own).await?;
    }
    Ok(())
}

/// Checks that `server` signed `pdu`: one valid signature of its suffices (the others may be by
/// keys we cannot get). From room version 5 the key must be valid at the event's
/// `origin_server_ts` (Synapse's `enforce_key_validity`).
pub async fn check_signed_by<K: KeySource>(pdu: &Value, rv: &RoomVersion, server: &str, keys: &K, own: &OwnKey<'_>) -> Result<(), String> {
    let key_ids = signing_key_ids(pdu, server);
    if key_ids.is_empty() {
        return Err(format!("the event is not signed by {server}"));
    }
    let valid_at_ms = match rv.enforce_key_validity {
        true => pdu.get("origin_server_ts").and_then(Value::as_i64).ok_or("the event has no integer origin_server_ts")?,
        false => i64::MIN,
    };
    let mut failures = Vec::new();
    for key_id in key_ids.iter().filter(|k| k.starts_with("ed25519:")) {
        let key = if server == own.server_name && *key_id == own.key_id {
            Ok(own.key)
        } else {
            keys.verify_key(server, key_id, valid_at_ms).await
        };
        match key.and_then(|k| verify_event_signature(pdu, rv, server, key_id, &k).map_err(|e| e.to_string())) {
            Ok(()) => return Ok(()),
            Err(e) => failures.push(e),
        }
    }
    Err(format!("no valid signature of {server}: {}", failures.join("; ")))
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
    use crate::auth::test_keys::FixedKeys;
    use roomserver_core::signing::hash_and_sign_event;
    use serde_json::json;

    fn setup() -> (ServerKey, ServerKey, FixedKeys) {
        let remote = ServerKey::generate();
        let us = ServerKey::generate();
        let keys = FixedKeys::of("b.example", &remote);
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

    #[tokio::test]
    async fn from_v5_the_key_must_be_valid_at_the_events_time() {
        let (remote, us, _) = setup();
        let own = OwnKey::of("a.example", &us);
        // The join is stamped at 5 ms; the key is valid until 4 ms.
        let keys = FixedKeys::valid_until("b.example", &remote, 4);
        for (version, accepted) in [("4", true), ("5", false), ("12", false)] {
            let rv = RoomVersion::from_id(version).unwrap();
            let signed = hash_and_sign_event(join(&rv, ""), &rv, "b.example", &remote.key_id, &remote.signing_key).unwrap();
            let outcome = check_pdu_signatures(&signed, &rv, &keys, &own).await;
            assert_eq!(outcome.is_ok(), accepted, "room version {version}: {outcome:?}");
        }
        let rv = RoomVersion::from_id("10").unwrap();
        let keys = FixedKeys::valid_until("b.example", &remote, 5);
        let signed = hash_and_sign_event(join(&rv, ""), &rv, "b.example", &remote.key_id, &remote.signing_key).unwrap();
        check_pdu_signatures(&signed, &rv, &keys, &own).await.expect("valid_until_ts equal to origin_server_ts is valid");
    }
}
