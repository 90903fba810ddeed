//! The body of `GET /_matrix/key/v2/server` (server-server API "Publishing Keys"): building our
//! own, self-signed, and checking a remote server's before its keys are trusted.

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{json, Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::signing::{encode_base64, sign_json, verify_json, verifying_key_from_base64};

/// The self-signed key response of `server_name`, whose only current key is `key` named
/// `key_id`, valid until `valid_until_ts` (ms since the epoch).
pub fn signed_key_response(server_name: &str, key_id: &str, key: &SigningKey, valid_until_ts: i64) -> Result<Value> {
    let mut response = json!({
        "server_name": server_name,
        "verify_keys": {key_id: {"key": encode_base64(key.verifying_key().as_bytes())}},
        "old_verify_keys": {},
        "valid_until_ts": valid_until_ts,
    });
    sign_json(&mut response, server_name, key_id, key)?;
    Ok(response)
}

/// What a verified key response says: the current keys by key ID, and until when they are valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerKeys {
    pub verify_keys: BTreeMap<String, VerifyingKey>,
    pub valid_until_ts: i64,
}

fn bad(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidParameter, None, message)
}

/// Checks a key response fetched from `server_name` as Synapse's `process_v2_response` does:
/// it names `server_name`, its keys decode, every signature of `server_name` made with one of
/// the listed keys verifies, and there is at least one. Expiry is the caller's to judge.
pub fn verify_key_response(response: &Value, server_name: &str) -> Result<ServerKeys> {
    let object: &Map<String, Value> = response.as_object().ok_or_else(|| bad("the key response is not a JSON object"))?;
    match object.get("server_name") {
        Some(Value::String(s)) if s == server_name => {}
        other => return Err(bad(format!("the key response names server {other:?}, not {server_name:?}"))),
    }
    let valid_until_ts = object
        .get("valid_until_ts")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("the key response has no integer valid_until_ts"))?;
    let Some(Value::Object(listed)) = object.get("verify_keys") else {
        return Err(bad("the key response has no verify_keys object"));
    };
    let mut verify_keys = BTreeMap::new();
    for (key_id, entry) in listed {
        let key = entry
            .get("key")
            .and_then(Value::as_str)
            .and_then(verifying_key_from_base64)
            .ok_or_else(|| bad(format!("verify_keys.{key_id} is not an ed25519 public key")))?;
        verify_keys.insert(key_id.clone(), key);
    }
    let mut verified = false;
    let signed_with: Vec<&String> = match object.get("signatures").and_then(|s| s.get(server_name)) {
        Some(Value::Object(by_key)) => by_key.keys().collect(),
        _ => Vec::new(),
    };
    for key_id in signed_with {
        // A signature by a key not listed (an expired one) proves nothing either way.
        let Some(key) = verify_keys.get(key_id) else { continue };
        verify_json(response, server_name, key_id, key).map_err(|e| bad(format!("the key response of {server_name}: {e}")))?;
        verified = true;
    }
    if !verified {
        return Err(bad(format!("the key response of {server_name} is not signed by any key it lists")));
    }
    Ok(ServerKeys { verify_keys, valid_until_ts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn our_response_verifies() {
        let r = signed_key_response("a.example", "ed25519:a_AbCd", &key(1), 1_700_000_000_000).unwrap();
        assert_eq!(r["old_verify_keys"], json!({}));
        let keys = verify_key_response(&r, "a.example").unwrap();
        assert_eq!(keys.valid_until_ts, 1_700_000_000_000);
        assert_eq!(keys.verify_keys.get("ed25519:a_AbCd"), Some(&key(1).verifying_key()));
    }

    #[test]
    fn tampered_or_foreign_responses_are_refused() {
        let r = signed_key_response("a.example", "ed25519:k", &key(1), 5).unwrap();
        assert!(verify_key_response(&r, "b.example").is_err(), "another server's keys");
        let mut later = r.clone();
        later["valid_until_ts"] = json!(6);
        assert!(verify_key_response(&later, "a.example").is_err(), "changed validity");
        let mut swapped = r.clone();
        swapped["verify_keys"]["ed25519:k"]["key"] = json!(encode_base64(key(2).verifying_key().as_bytes()));
        assert!(verify_key_response(&swapped, "a.example").is_err(), "a key the signature was not made with");
        let mut unsigned = r.clone();
        unsigned.as_object_mut().unwrap().remove("signatures");
        assert!(verify_key_response(&unsigned, "a.example").is_err());
        let mut no_ts = r.clone();
        no_ts.as_object_mut().unwrap().remove("valid_until_ts");
        assert!(verify_key_response(&no_ts, "a.example").is_err());
        // Signed only by a key it does not list.
        let other = signed_key_response("a.example", "ed25519:k", &key(1), 5).unwrap();
        let mut relisted = other.clone();
        relisted["verify_keys"] = json!({"ed25519:other": {"key": encode_base64(key(3).verifying_key().as_bytes())}});
        assert!(verify_key_response(&relisted, "a.example").is_err());
    }
}
