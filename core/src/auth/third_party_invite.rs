//! Rule "If any signature in `signed` matches any public key in the `m.room.third_party_invite`
//! event, allow": ed25519 over the canonical JSON of `signed` without `signatures`.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Map, Value};

use crate::signing::{decode_base64 as decode_b64, signed_bytes};

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
    let Some(Value::Object(signatures)) = signed.get("signatures") else { return false };
    let Ok(message) = signed_bytes(signed) else { return false };
    signatures
        .values()
        .filter_map(Value::as_object)
        .flat_map(|by_key| by_key.values())
        .filter_map(Value::as_str)
        .filter_map(decode_b64)
        .filter_map(|bytes| Signature::from_slice(&bytes).ok())
        .any(|sig| keys.iter().any(|k| k.verify(&message, &sig).is_ok()))
}
