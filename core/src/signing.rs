//! Signed JSON and event signatures (spec appendix "Signing JSON", server-server API "Signing
//! events" and "Validating hashes and signatures on received events").
//!
//! - Signing JSON: the signature is ed25519 over the canonical JSON of the object without
//!   `signatures` and `unsigned`; it is added under `signatures.<server>.<key id>` in unpadded
//!   standard base64. Other signatures already present are kept.
//! - Signing an event: its content hash is set first, then the *redacted* event (per room
//!   version) is signed, so a redacted copy still verifies.

use std::collections::BTreeSet;
use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{Map, Value};

use crate::canonical_json::to_canonical_bytes;
use crate::error::{Error, Result};
use crate::hashes::with_content_hash;
use crate::redaction::redact;
use crate::room_version::{EventFormat, RoomVersion};
use crate::visibility::server_name_of;

/// Lenient decoding: padding optional and non-zero trailing bits allowed, as Python's decoder
/// (Synapse's `decode_base64`) is. The spec's own example seed ends in such bits.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent).with_decode_allow_trailing_bits(true);
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes base64 as servers send it: unpadded standard base64 per the spec, but padded and
/// URL-safe forms are accepted too (Synapse's `decode_base64` does the same).
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    LENIENT_STANDARD.decode(s).ok().or_else(|| LENIENT_URL_SAFE.decode(s).ok())
}

/// Encodes bytes as the spec's unpadded standard base64 (keys, signatures, hashes).
pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

/// A public key from its unpadded base64 form, as `verify_keys` and key files carry it.
pub fn verifying_key_from_base64(s: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = decode_base64(s)?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The bytes a JSON object's signatures cover: its canonical JSON without `signatures` and
/// `unsigned`.
pub fn signed_bytes(object: &Map<String, Value>) -> Result<Vec<u8>> {
    let covered: Map<String, Value> =
        object.iter().filter(|(k, _)| !matches!(k.as_str(), "signatures" | "unsigned")).map(|(k, v)| (k.clone(), v.clone())).collect();
    to_canonical_bytes(&Value::Object(covered))
}

fn as_object_mut(value: &mut Value) -> Result<&mut Map<String, Value>> {
    value.as_object_mut().ok_or_else(|| Error::bad_json("(root)", "only a JSON object can be signed"))
}

fn as_object(value: &Value) -> Result<&Map<String, Value>> {
    value.as_object().ok_or_else(|| Error::bad_json("(root)", "only a JSON object carries signatures"))
}

/// The signature of `object` by `key`, unpadded base64.
pub fn signature_of(object: &Map<String, Value>, key: &SigningKey) -> Result<String> {
    Ok(encode_base64(&key.sign(&signed_bytes(object)?).to_bytes()))
}

/// Signs `value` (a JSON object) as `server_name` with `key` named `key_id` (`ed25519:…`),
/// adding the signature under `signatures.<server_name>.<key_id>`.
pub fn sign_json(value: &mut Value, server_name: &str, key_id: &str, key: &SigningKey) -> Result<()> {
    let signature = signature_of(as_object(value)?, key)?;
    insert_signature(as_object_mut(value)?, server_name, key_id, signature)
}

fn insert_signature(object: &mut Map<String, Value>, server_name: &str, key_id: &str, signature: String) -> Result<()> {
    let signatures = object.entry("signatures").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(signatures) = signatures else { return Err(Error::wrong_type("signatures", "an object")) };
    let by_server = signatures.entry(server_name).or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(by_server) = by_server else {
        return Err(Error::wrong_type(&format!("signatures.{server_name}"), "an object"));
    };
    by_server.insert(key_id.to_owned(), Value::String(signature));
    Ok(())
}

/// Why a signature did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// There is no `signatures.<server>.<key id>` string.
    NotSigned { server_name: String, key_id: String },
    /// The signature is not 64 bytes of base64.
    Malformed { server_name: String, key_id: String },
    /// The signature does not match the object and key.
    Mismatch { server_name: String, key_id: String },
    /// The object has no canonical form (a float, say), so nothing it claims can be verified.
    NotCanonical(Error),
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::NotSigned { server_name, key_id } => write!(f, "no signature by {server_name} with key {key_id}"),
            SignatureError::Malformed { server_name, key_id } => write!(f, "the signature by {server_name} with key {key_id} is not valid base64 of 64 bytes"),
            SignatureError::Mismatch { server_name, key_id } => write!(f, "the signature by {server_name} with key {key_id} does not match"),
            SignatureError::NotCanonical(e) => write!(f, "not canonical JSON: {}", e.message),
        }
    }
}

impl std::error::Error for SignatureError {}

/// The key IDs `server_name` signed `value` with (the keys a verifier must fetch).
pub fn signing_key_ids<'a>(value: &'a Value, server_name: &str) -> Vec<&'a str> {
    match value.get("signatures").and_then(|s| s.get(server_name)) {
        Some(Value::Object(by_key)) => by_key.iter().filter(|(_, v)| v.is_string()).map(|(k, _)| k.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// Checks `signatures.<server_name>.<key_id>` of `value` against the public key `key`.
pub fn verify_json(value: &Value, server_name: &str, key_id: &str, key: &VerifyingKey) -> std::result::Result<(), SignatureError> {
    let names = || (server_name.to_owned(), key_id.to_owned());
    let encoded = value
        .get("signatures")
        .and_then(|s| s.get(server_name))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            let (server_name, key_id) = names();
            SignatureError::NotSigned { server_name, key_id }
        })?;
    let signature = decode_base64(encoded).and_then(|b| Signature::from_slice(&b).ok()).ok_or_else(|| {
        let (server_name, key_id) = names();
        SignatureError::Malformed { server_name, key_id }
    })?;
    let object = as_object(value).map_err(SignatureError::NotCanonical)?;
    let message = signed_bytes(object).map_err(SignatureError::NotCanonical)?;
    key.verify(&message, &signature).map_err(|_| {
        let (server_name, key_id) = names();
        SignatureError::Mismatch { server_name, key_id }
    })
}

/// Sets the content hash of `pdu` and signs its redacted form (room version `rv`) as
/// `server_name`; the signature is added to `pdu` itself.
pub fn hash_and_sign_event(pdu: Value, rv: &RoomVersion, server_name: &str, key_id: &str, key: &SigningKey) -> Result<Value> {
    let mut pdu = with_content_hash(pdu)?;
    let redacted = redact(&pdu, rv);
    let signature = signature_of(as_object(&redacted)?, key)?;
    insert_signature(as_object_mut(&mut pdu)?, server_name, key_id, signature)?;
    Ok(pdu)
}

/// Checks the signature of `server_name` with `key_id` on `pdu`: it covers the redacted event
/// (room version `rv`), whose `signatures` are the PDU's own.
pub fn verify_event_signature(
    pdu: &Value,
    rv: &RoomVersion,
    server_name: &str,
    key_id: &str,
    key: &VerifyingKey,
) -> std::result::Result<(), SignatureError> {
    verify_json(&redact(pdu, rv), server_name, key_id, key)
}

/// The servers whose signatures a received PDU of room version `rv` must carry (spec
/// "Validating hashes and signatures on received events", as Synapse applies it in
/// `_check_sigs_on_pdu`):
///
/// - the sender's server, except for an invite made from a third-party invite: its sender is
///   the original inviter, but another server may have sent it;
/// - room versions 1-2: the server of the event ID (`$opaque:server`), which assigned it;
/// - a restricted join (v8+, `join_authorised_via_users_server` in a join's content): the
///   authorising user's server.
pub fn servers_that_must_sign(pdu: &Value, rv: &RoomVersion) -> Result<BTreeSet<String>> {
    let object = as_object(pdu)?;
    let string_of = |field: &str| -> Result<&str> {
        match object.get(field) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Error::wrong_type(field, "a string")),
            None => Err(Error::missing(field)),
        }
    };
    let server_of = |field: &str, id: &str| -> Result<String> {
        server_name_of(id)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Error::bad_json(field, format!("\"{field}\" = {id:?} names no server")))
    };
    let content = object.get("content").and_then(Value::as_object);
    let is_member = object.get("type").and_then(Value::as_str) == Some("m.room.member");
    let membership = content.and_then(|c| c.get("membership")).and_then(Value::as_str);

    let mut servers = BTreeSet::new();
    let third_party_invite = is_member && membership == Some("invite") && content.is_some_and(|c| c.contains_key("third_party_invite"));
    if !third_party_invite {
        servers.insert(server_of("sender", string_of("sender")?)?);
    }
    if rv.event_format == EventFormat::V1 {
        servers.insert(server_of("event_id", string_of("event_id")?)?);
    }
    if rv.restricted_join_rule && is_member && membership == Some("join") {
        if let Some(authoriser) = content.and_then(|c| c.get("join_authorised_via_users_server")) {
            let field = "content.join_authorised_via_users_server";
            let authoriser = authoriser.as_str().ok_or_else(|| Error::wrong_type(field, "a string"))?;
            servers.insert(server_of(field, authoriser)?);
        }
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The key of the spec appendix "Signing JSON" (and of Synapse's tests/crypto tests).
    const SEED: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

    fn spec_key() -> SigningKey {
        let seed: [u8; 32] = decode_base64(SEED).unwrap().try_into().unwrap();
        SigningKey::from_bytes(&seed)
    }

    fn rv(id: &str) -> RoomVersion {
        RoomVersion::from_id(id).unwrap()
    }

    // Appendix "Signing JSON": the signatures of {} and {"one": 1, "two": "Two"}.
    #[test]
    fn spec_appendix_signing_json_examples() {
        let mut empty = json!({});
        sign_json(&mut empty, "domain", "ed25519:1", &spec_key()).unwrap();
        assert_eq!(
            empty,
            json!({"signatures": {"domain": {"ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}})
        );
        let mut two = json!({"one": 1, "two": "Two"});
        sign_json(&mut two, "domain", "ed25519:1", &spec_key()).unwrap();
        assert_eq!(
            two["signatures"]["domain"]["ed25519:1"],
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        );
        let public = spec_key().verifying_key();
        verify_json(&empty, "domain", "ed25519:1", &public).unwrap();
        verify_json(&two, "domain", "ed25519:1", &public).unwrap();
    }

    #[test]
    fn unsigned_and_other_signatures_are_not_covered() {
        let key = spec_key();
        let mut v = json!({"a": 1, "signatures": {"other": {"ed25519:x": "abc"}}});
        sign_json(&mut v, "domain", "ed25519:1", &key).unwrap();
        assert_eq!(v["signatures"]["other"]["ed25519:x"], "abc", "existing signatures are kept");
        v["unsigned"] = json!({"age": 5});
        verify_json(&v, "domain", "ed25519:1", &key.verifying_key()).unwrap();
        v["a"] = json!(2);
        assert!(matches!(verify_json(&v, "domain", "ed25519:1", &key.verifying_key()), Err(SignatureError::Mismatch { .. })));
    }

    #[test]
    fn verification_failures_are_named() {
        let key = spec_key().verifying_key();
        let v = json!({"signatures": {"domain": {"ed25519:1": "!!"}}});
        assert!(matches!(verify_json(&v, "domain", "ed25519:1", &key), Err(SignatureError::Malformed { .. })));
        assert!(matches!(verify_json(&v, "domain", "ed25519:2", &key), Err(SignatureError::NotSigned { .. })));
        assert!(matches!(verify_json(&v, "elsewhere", "ed25519:1", &key), Err(SignatureError::NotSigned { .. })));
        let other = SigningKey::from_bytes(&[7; 32]);
        let mut w = json!({"x": "y"});
        sign_json(&mut w, "domain", "ed25519:1", &other).unwrap();
        assert!(matches!(verify_json(&w, "domain", "ed25519:1", &key), Err(SignatureError::Mismatch { .. })));
        let mut f = json!({"x": 1});
        sign_json(&mut f, "domain", "ed25519:1", &spec_key()).unwrap();
        f["x"] = json!(1.5);
        assert!(matches!(verify_json(&f, "domain", "ed25519:1", &key), Err(SignatureError::NotCanonical(_))));
        assert_eq!(signing_key_ids(&w, "domain"), vec!["ed25519:1"]);
        assert!(signing_key_ids(&w, "nobody").is_empty());
    }

    // Synapse's tests/crypto/test_event_signing.py (room version 1, the same key and server).
    #[test]
    fn synapse_event_signing_vectors_v1() {
        let minimal = json!({"event_id": "$0:domain", "origin_server_ts": 1000000, "signatures": {}, "type": "X",
            "unsigned": {"age_ts": 1000000}});
        let signed = hash_and_sign_event(minimal, &rv("1"), "domain", "ed25519:1", &spec_key()).unwrap();
        assert_eq!(signed["hashes"]["sha256"], "A6Nco6sqoy18PPfPDVdYvoowfc0PVBk9g9OiyT3ncRM");
        assert_eq!(
            signed["signatures"]["domain"]["ed25519:1"],
            "PBc48yDVszWB9TRaB/+CZC1B+pDAC10F8zll006j+NNfe4PEMWcVuLaG63LFTK9e4rwJE8iLZMPtCKhDTXhpAQ"
        );
        let message = json!({"content": {"body": "Here is the message content"}, "event_id": "$0:domain",
            "origin_server_ts": 1000000, "type": "m.room.message", "room_id": "!r:domain", "sender": "@u:domain",
            "signatures": {}, "unsigned": {"age_ts": 1000000}});
        let signed = hash_and_sign_event(message, &rv("1"), "domain", "ed25519:1", &spec_key()).unwrap();
        assert_eq!(signed["hashes"]["sha256"], "rDCeYBepPlI891h/RkI2/Lkf9bt7u0TxFku4tMs7WKk");
        assert_eq!(
            signed["signatures"]["domain"]["ed25519:1"],
            "Ay4aj2b5oJ1k8INYZ9n3KnszCflM0emwcmQQ7vxpbdcSv9bkJxIZdWX1IJllcZLq89+D3sSabE+vqPtZs9akDw"
        );
    }

    fn message_event(rv: &RoomVersion) -> Value {
        let mut ev = json!({"type": "m.room.message", "room_id": "!r:a.example", "sender": "@u:a.example",
            "content": {"msgtype": "m.text", "body": "hello"}, "depth": 4, "prev_events": [], "auth_events": [],
            "origin_server_ts": 1700000000000i64});
        if rv.event_format == EventFormat::V1 {
            ev["event_id"] = json!("$abc:a.example");
        }
        ev
    }

    #[test]
    fn event_signatures_round_trip_and_detect_tampering() {
        let key = SigningKey::from_bytes(&[42; 32]);
        let public = key.verifying_key();
        for v in ["1", "10", "12"] {
            let rv = rv(v);
            let signed = hash_and_sign_event(message_event(&rv), &rv, "a.example", "ed25519:k", &key).unwrap();
            assert!(crate::hashes::content_hash_matches(&signed).unwrap(), "v{v}");
            verify_event_signature(&signed, &rv, "a.example", "ed25519:k", &public).unwrap();

            // The redacted copy (what a server serves after a redaction) still verifies.
            verify_event_signature(&redact(&signed, &rv), &rv, "a.example", "ed25519:k", &public).unwrap();
            // So does one with `unsigned` added in transit.
            let mut with_unsigned = signed.clone();
            with_unsigned["unsigned"] = json!({"age": 10});
            verify_event_signature(&with_unsigned, &rv, "a.example", "ed25519:k", &public).unwrap();

            // Content is not covered by the signature (only by the hash): the signature holds,
            // the content hash does not.
            let mut new_content = signed.clone();
            new_content["content"]["body"] = json!("changed");
            verify_event_signature(&new_content, &rv, "a.example", "ed25519:k", &public).unwrap();
            assert!(!crate::hashes::content_hash_matches(&new_content).unwrap());

            // Anything that survives redaction is covered.
            for (field, value) in [("depth", json!(5)), ("sender", json!("@v:a.example")), ("origin_server_ts", json!(1))] {
                let mut tampered = signed.clone();
                tampered[field] = value;
                assert!(
                    matches!(verify_event_signature(&tampered, &rv, "a.example", "ed25519:k", &public), Err(SignatureError::Mismatch { .. })),
                    "v{v} {field}"
                );
            }
            let mut tampered_hash = signed.clone();
            tampered_hash["hashes"]["sha256"] = json!("AAAA");
            assert!(verify_event_signature(&tampered_hash, &rv, "a.example", "ed25519:k", &public).is_err(), "v{v} hashes");
            assert!(verify_event_signature(&signed, &rv, "b.example", "ed25519:k", &public).is_err());
        }
    }

    #[test]
    fn servers_that_must_sign_by_room_version() {
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let msg = json!({"type": "m.room.message", "sender": "@u:a.example:8448", "event_id": "$x:b.example", "content": {}});
        assert_eq!(servers_that_must_sign(&msg, &rv("1")).unwrap(), set(&["a.example:8448", "b.example"]));
        assert_eq!(servers_that_must_sign(&msg, &rv("2")).unwrap(), set(&["a.example:8448", "b.example"]));
        assert_eq!(servers_that_must_sign(&msg, &rv("3")).unwrap(), set(&["a.example:8448"]));
        assert_eq!(servers_that_must_sign(&msg, &rv("12")).unwrap(), set(&["a.example:8448"]));

        let join = json!({"type": "m.room.member", "sender": "@j:a.example", "state_key": "@j:a.example",
            "content": {"membership": "join", "join_authorised_via_users_server": "@mod:c.example"}});
        assert_eq!(servers_that_must_sign(&join, &rv("7")).unwrap(), set(&["a.example"]), "no restricted joins before v8");
        for v in ["8", "10", "12"] {
            assert_eq!(servers_that_must_sign(&join, &rv(v)).unwrap(), set(&["a.example", "c.example"]), "v{v}");
        }
        let mut leave = join.clone();
        leave["content"]["membership"] = json!("leave");
        assert_eq!(servers_that_must_sign(&leave, &rv("10")).unwrap(), set(&["a.example"]));

        let tpi = json!({"type": "m.room.member", "sender": "@inviter:a.example", "state_key": "@i:d.example",
            "content": {"membership": "invite", "third_party_invite": {"signed": {}}}});
        assert!(servers_that_must_sign(&tpi, &rv("10")).unwrap().is_empty());

        assert!(servers_that_must_sign(&json!({"type": "m.room.message"}), &rv("10")).is_err());
        assert!(servers_that_must_sign(&json!({"sender": "nocolon"}), &rv("10")).is_err());
        assert!(servers_that_must_sign(&json!({"sender": "@u:a"}), &rv("1")).is_err(), "v1 needs the event ID");
        let bad = json!({"type": "m.room.member", "sender": "@j:a.example", "content": {"membership": "join", "join_authorised_via_users_server": 3}});
        assert!(servers_that_must_sign(&bad, &rv("10")).is_err());
    }
}
