//! This server's signing key, in Synapse's key file format (one line: `ed25519 <version>
//! <unpadded base64 of the 32-byte seed>`, the key ID being `ed25519:<version>`), and the body of
//! `GET /_matrix/key/v2/server`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};
use roomserver_core::server_keys::signed_key_response;
use roomserver_core::signing::{decode_base64, encode_base64};
use serde_json::Value;

pub struct ServerKey {
    /// `ed25519:<version>`.
    pub key_id: String,
    pub signing_key: SigningKey,
}

#[derive(Debug)]
pub enum KeyFileError {
    Io { path: PathBuf, error: std::io::Error },
    Malformed { path: PathBuf, reason: &'static str },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Io { path, error } => write!(f, "signing key file {}: {error}", path.display()),
            KeyFileError::Malformed { path, reason } => write!(f, "signing key file {}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// A key version like Synapse's: `a_` and four random letters.
fn random_key_version() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = [0u8; 4];
    OsRng.fill_bytes(&mut bytes);
    // 256 is not a multiple of 52: the bias is harmless in a name that only has to differ.
    let letters: String = bytes.iter().map(|b| LETTERS[*b as usize % LETTERS.len()] as char).collect();
    format!("a_{letters}")
}

impl ServerKey {
    pub fn generate() -> ServerKey {
        ServerKey { key_id: format!("ed25519:{}", random_key_version()), signing_key: SigningKey::generate(&mut OsRng) }
    }

    /// The key file's line.
    pub fn to_key_file_line(&self) -> String {
        let version = self.key_id.strip_prefix("ed25519:").unwrap_or(&self.key_id);
        format!("ed25519 {version} {}\n", encode_base64(self.signing_key.as_bytes()))
    }

    /// Reads the first key of a key file (Synapse allows several lines; the first signs).
    pub fn parse_key_file(text: &str, path: &Path) -> Result<ServerKey, KeyFileError> {
        let malformed = |reason| KeyFileError::Malformed { path: path.to_owned(), reason };
        let line = text.lines().map(str::trim).find(|l| !l.is_empty()).ok_or_else(|| malformed("it is empty"))?;
        let mut parts = line.split_whitespace();
        let (Some(algorithm), Some(version), Some(seed), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("expected one line \"ed25519 <version> <base64 seed>\""));
        };
        if algorithm != "ed25519" {
            return Err(malformed("only ed25519 keys are supported"));
        }
        let seed: [u8; 32] = decode_base64(seed)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("the seed is not base64 of 32 bytes"))?;
        Ok(ServerKey { key_id: format!("ed25519:{version}"), signing_key: SigningKey::from_bytes(&seed) })
    }

    /// Loads the key file at `path`, generating it (mode 0600) when it does not exist.
    pub fn load_or_generate(path: &Path) -> Result<ServerKey, KeyFileError> {
        let io = |error| KeyFileError::Io { path: path.to_owned(), error };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_key_file(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ServerKey::generate();
                let mut options = std::fs::OpenOptions::new();
                // create_new: two servers started at once must not both write a key.
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(io)?;
                file.write_all(key.to_key_file_line().as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The body of `GET /_matrix/key/v2/server` as of `now`.
    pub fn key_response(&self, server_name: &str, validity: Duration, now: SystemTime) -> Value {
        let valid_until_ts = (now + validity).duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        signed_key_response(server_name, &self.key_id, &self.signing_key, valid_until_ts)
            .expect("a key response holds only strings and integers, so it has a canonical form")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomserver_core::server_keys::verify_key_response;

    #[test]
    fn key_file_round_trip_in_synapses_format() {
        let key = ServerKey::generate();
        let line = key.to_key_file_line();
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts[0], "ed25519");
        assert!(parts[1].starts_with("a_") && parts[1].len() == 6, "{line}");
        assert_eq!(parts[2].len(), 43, "unpadded base64 of 32 bytes");
        let back = ServerKey::parse_key_file(&line, Path::new("k")).unwrap();
        assert_eq!(back.key_id, key.key_id);
        assert_eq!(back.signing_key.as_bytes(), key.signing_key.as_bytes());
    }

    #[test]
    fn synapse_key_file_is_read() {
        // The seed of the spec's signing examples, as Synapse would write it.
        let key = ServerKey::parse_key_file("ed25519 a_xYzW YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n", Path::new("k")).unwrap();
        assert_eq!(key.key_id, "ed25519:a_xYzW");
        for bad in ["", "ed25519 a_x", "curve25519 a_x YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1", "ed25519 a_x c2hvcnQ", "ed25519 a b c d"] {
            assert!(matches!(ServerKey::parse_key_file(bad, Path::new("k")), Err(KeyFileError::Malformed { .. })), "{bad:?}");
        }
    }

    #[test]
    fn key_file_is_generated_once() {
        let path = std::env::temp_dir().join(format!("roomserver-http-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let first = ServerKey::load_or_generate(&path).unwrap();
        let second = ServerKey::load_or_generate(&path).unwrap();
        assert_eq!(first.key_id, second.key_id);
        assert_eq!(first.signing_key.as_bytes(), second.signing_key.as_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn key_response_is_self_signed_and_expires_after_the_validity() {
        let key = ServerKey::generate();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let response = key.key_response("a.example:8448", Duration::from_secs(3600), now);
        let keys = verify_key_response(&response, "a.example:8448").unwrap();
        assert_eq!(keys.valid_until_ts, 1_700_003_600_000);
        assert_eq!(keys.verify_keys[&key.key_id], key.signing_key.verifying_key());
        assert!(verify_key_response(&response, "b.example").is_err());
    }
}
