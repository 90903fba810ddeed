//! Rule "If any signature in `signed` matches any public key in the `m.room.third_party_invite`
//! event, allow": ed25519 over the canonical JSON of `signed` without `signatures`.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Map, Value};

use crate::canonical_json::to_canonical_bytes;

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    // Keys and signatures are unpadded base64 in the spec; accept padded and URL-safe forms too.
    [&STANDARD_NO_PAD, &STANDARD, &URL_SAFE_NO_PAD, &URL_SAFE].iter().find_map(|e| e.decode(s).ok())
}

/// The public keys of an `m.room.third_party_invite` content: `public_key` and
/// `public_keys[].public_key`.
fn public_keys(invite: &Map<String, Value>) -> Vec<VerifyingKey> {
    let mut encoded: Vec<&str> = Vec::new();
    if let Some(k) = invite.get("public_key").and_then(Value::as_str) {
        encoded.push(k);
    }
    if let Some(Value::Array(keys)) = invite.get("public_keys") {
        encoded.extend(keys.iter().filter_map(|k| k.get("public_key")).filter_map(Value::as_str));
    }
    encoded
        .into_iter()
        .filter_map(decode_b64)
        .filter_map(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .filter_map(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .collect()
}

/// Whether any signature in `signed.signatures` verifies with any key of the invite event.
pub(super) fn signed_by_invite_keys(signed: &Map<String, Value>, invite: &Map<String, Value>) -> bool {
    let keys = public_keys(invite);
    if keys.is_empty() {
        return false;
    }
    let mut unsigned = signed.clone();
    let Some(Value::Object(signatures)) = unsigned.remove("signatures") else { return false };
    unsigned.remove("unsigned");
    let Ok(message) = to_canonical_bytes(&Value::Object(unsigned)) else { return false };
    signatures
        .values()
        .filter_map(Value::as_object)
        .flat_map(|by_key| by_key.values())
        .filter_map(Value::as_str)
        .filter_map(decode_b64)
        .filter_map(|bytes| Signature::from_slice(&bytes).ok())
        .any(|sig| keys.iter().any(|k| k.verify(&message, &sig).is_ok()))
}
