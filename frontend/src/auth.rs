//! X-Matrix request authentication (server-server API "Request Authentication"): the origin
//! signs `{method, uri, origin, destination, content}` (content only when there is a body) with
//! core's signed JSON, and sends the signature in `Authorization: X-Matrix origin=…,
//! destination=…,key=…,sig=…`. Inbound requests are checked here; outbound ones signed here.

use std::fmt;

use ed25519_dalek::VerifyingKey;
use roomserver_core::server_name::ServerName;
use roomserver_core::signing::{signature_of, verify_json};
use serde_json::{Map, Value};

use crate::keys::ServerKey;
use crate::now_ms;

/// The parameters of one `X-Matrix` Authorization header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XMatrix {
    pub origin: String,
    /// Absent from servers older than spec v1.3; then it is taken to be us.
    pub destination: Option<String>,
    pub key: String,
    pub sig: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: X-Matrix …` header.
    Missing,
    /// A header that does not parse; says why.
    Malformed(String),
    /// The request is signed for another server.
    WrongDestination(String),
    /// The origin's key could not be had (fetch failed, unknown key ID, expired).
    KeyUnavailable(String),
    /// The signature does not verify.
    BadSignature(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str("missing X-Matrix Authorization header"),
            AuthError::Malformed(why) => write!(f, "malformed X-Matrix Authorization header: {why}"),
            AuthError::WrongDestination(d) => write!(f, "the request is signed for {d:?}, not for this server"),
            AuthError::KeyUnavailable(why) => write!(f, "cannot get the origin's key: {why}"),
            AuthError::BadSignature(why) => write!(f, "invalid X-Matrix signature: {why}"),
        }
    }
}

/// Splits `s` at commas outside quoted strings.
fn split_params(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A parameter value: a token, or a quoted string with `\` escapes (RFC 9110 auth-param).
fn unquote(value: &str) -> Result<String, AuthError> {
    let Some(inner) = value.strip_prefix('"') else {
        if value.contains('"') || value.is_empty() {
            return Err(AuthError::Malformed(format!("bad value {value:?}")));
        }
        return Ok(value.to_owned());
    };
    let inner = inner.strip_suffix('"').ok_or_else(|| AuthError::Malformed(format!("unterminated quoted value {value:?}")))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or_else(|| AuthError::Malformed("a value ends in a backslash".into()))?),
            '"' => return Err(AuthError::Malformed(format!("unescaped quote in {value:?}"))),
            c => out.push(c),
        }
    }
    Ok(out)
}

impl XMatrix {
    /// Parses one Authorization header value. The scheme and parameter names are
    /// case-insensitive; unknown parameters are ignored, as the spec asks.
    pub fn parse(header: &str) -> Result<XMatrix, AuthError> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("X-Matrix") {
            return Err(AuthError::Missing);
        }
        let (mut origin, mut destination, mut key, mut sig) = (None, None, None, None);
        for param in split_params(params) {
            let param = param.trim();
            if param.is_empty() {
                continue;
            }
            let (name, value) = param.split_once('=').ok_or_else(|| AuthError::Malformed(format!("parameter {param:?} has no '='")))?;
            let slot = match name.trim().to_ascii_lowercase().as_str() {
                "origin" => &mut origin,
                "destination" => &mut destination,
                "key" => &mut key,
                "sig" => &mut sig,
                _ => continue,
            };
            if slot.replace(unquote(value.trim())?).is_some() {
                return Err(AuthError::Malformed(format!("parameter {name:?} is given twice")));
            }
        }
        let required = |v: Option<String>, name: &str| v.ok_or_else(|| AuthError::Malformed(format!("no {name} parameter")));
        let origin = required(origin, "origin")?;
        ServerName::parse(&origin).map_err(|e| AuthError::Malformed(e.message))?;
        Ok(XMatrix { origin, destination, key: required(key, "key")?, sig: required(sig, "sig")? })
    }

    /// The header value, every value quoted.
    pub fn to_header_value(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = format!("X-Matrix origin={}", quote(&self.origin));
        if let Some(d) = &self.destination {
            out.push_str(&format!(",destination={}", quote(d)));
        }
        out.push_str(&format!(",key={},sig={}", quote(&self.key), quote(&self.sig)));
        out
    }
}

/// The JSON object an X-Matrix signature covers. `uri` is the path and query as sent.
pub fn signed_request_object(method: &str, uri: &str, origin: &str, destination: &str, content: Option<&Value>) -> Value {
    let mut object = Map::new();
    object.insert("method".into(), Value::String(method.to_owned()));
    object.insert("uri".into(), Value::String(uri.to_owned()));
    object.insert("origin".into(), Value::String(origin.to_owned()));
    object.insert("destination".into(), Value::String(destination.to_owned()));
    if let Some(content) = content {
        object.insert("content".into(), content.clone());
    }
    Value::Object(object)
}

/// The Authorization header value for an outbound request from `origin` (signed with `key`).
pub fn sign_request(method: &str, uri: &str, origin: &str, destination: &str, content: Option<&Value>, key: &ServerKey) -> String {
    let object = signed_request_object(method, uri, origin, destination, content);
    let Value::Object(object) = object else { unreachable!("signed_request_object builds an object") };
    let sig = signature_of(&object, &key.signing_key).expect("a request body parsed from JSON text by serde_json has a canonical form unless it holds floats");
    XMatrix { origin: origin.to_owned(), destination: Some(destination.to_owned()), key: key.key_id.clone(), sig }.to_header_value()
}

/// Where the origins' keys come from (the remote key cache; a fixed map in tests).
pub trait KeySource {
    /// `server_name`'s key `key_id`, valid (its `valid_until_ts` not passed) at `valid_at_ms`,
    /// Unix milliseconds: now for a request, an event's `origin_server_ts` for its signatures
    /// (`i64::MIN`: any key the server published, for room versions before 5).
    fn verify_key(&self, server_name: &str, key_id: &str, valid_at_ms: i64) -> impl std::future::Future<Output = Result<VerifyingKey, String>> + Send;
}

/// Authenticates a request to `our_name`: the first X-Matrix header among `authorization`
/// values, checked against the origin's key. Returns the origin.
pub async fn authenticate<K: KeySource>(
    authorization: &[&str],
    method: &str,
    uri: &str,
    content: Option<&Value>,
    our_name: &str,
    keys: &K,
) -> Result<String, AuthError> {
    let header = authorization
        .iter()
        .find(|h| h.trim_start().get(..8).is_some_and(|s| s.eq_ignore_ascii_case("X-Matrix")))
        .ok_or(AuthError::Missing)?;
    let x = XMatrix::parse(header)?;
    if let Some(d) = &x.destination {
        if d != our_name {
            return Err(AuthError::WrongDestination(d.clone()));
        }
    }
    let key = keys.verify_key(&x.origin, &x.key, now_ms()).await.map_err(AuthError::KeyUnavailable)?;
    let mut object = signed_request_object(method, uri, &x.origin, our_name, content);
    object["signatures"] = serde_json::json!({ &x.origin: { &x.key: &x.sig } });
    verify_json(&object, &x.origin, &x.key, &key).map_err(|e| AuthError::BadSignature(e.to_string()))?;
    Ok(x.origin)
}

/// A fixed key map for unit tests, in place of the remote key cache.
#[cfg(test)]
pub(crate) mod test_keys {
    use super::KeySource;
    use crate::keys::ServerKey;
    use ed25519_dalek::VerifyingKey;
    use std::collections::HashMap;

    /// Keys by (server, key ID), each with its `valid_until_ts`.
    pub struct FixedKeys(HashMap<(String, String), (VerifyingKey, i64)>);

    impl FixedKeys {
        /// The public half of `key`, as `server_name`'s, valid forever.
        pub fn of(server_name: &str, key: &ServerKey) -> FixedKeys {
            FixedKeys::valid_until(server_name, key, i64::MAX)
        }

        /// The public half of `key`, as `server_name`'s, valid until `valid_until_ms`.
        pub fn valid_until(server_name: &str, key: &ServerKey, valid_until_ms: i64) -> FixedKeys {
            FixedKeys(HashMap::from([((server_name.to_owned(), key.key_id.clone()), (key.signing_key.verifying_key(), valid_until_ms))]))
        }
    }

    impl KeySource for FixedKeys {
        async fn verify_key(&self, server_name: &str, key_id: &str, valid_at_ms: i64) -> Result<VerifyingKey, String> {
            match self.0.get(&(server_name.to_owned(), key_id.to_owned())) {
                Some((key, until)) if valid_at_ms <= *until => Ok(*key),
                Some((_, until)) => Err(format!("the key {key_id} of {server_name} is valid until {until}, not at {valid_at_ms}")),
                None => Err(format!("no key {key_id} of {server_name}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::FixedKeys;
    use super::*;
    use serde_json::json;

    fn origin_key() -> (ServerKey, FixedKeys) {
        let key = ServerKey::generate();
        let keys = FixedKeys::of("s1.example", &key);
        (key, keys)
    }

    #[test]
    fn headers_parse_quoted_or_not() {
        let x = XMatrix::parse(r#"X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF...""#).unwrap();
        assert_eq!(
            x,
            XMatrix {
                origin: "origin.hs.example.com".into(),
                destination: Some("destination.hs.example.com".into()),
                key: "ed25519:key1".into(),
                sig: "ABCDEF...".into()
            }
        );
        let y = XMatrix::parse("x-matrix Origin=origin.hs.example.com, key=ed25519:key1 , sig=ABCDEF...,extra=\"a,b\"").unwrap();
        assert_eq!(y.origin, "origin.hs.example.com");
        assert_eq!(y.destination, None);
        assert_eq!(y.key, "ed25519:key1");
        let z = XMatrix::parse(r#"X-Matrix origin="127.0.0.1:8448",key="ed25519:a\"b",sig="s""#).unwrap();
        assert_eq!(z.key, "ed25519:a\"b");
        assert_eq!(XMatrix::parse(&z.to_header_value()).unwrap(), z);
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(XMatrix::parse("Bearer abc"), Err(AuthError::Missing));
        assert_eq!(XMatrix::parse("X-Matrix"), Err(AuthError::Missing));
        for bad in [
            "X-Matrix key=\"ed25519:1\",sig=\"s\"",
            "X-Matrix origin=a.example,sig=s",
            "X-Matrix origin=a.example,key=k",
            "X-Matrix origin=\"a.example,key=k,sig=s",
            "X-Matrix origin=a.example,origin=b.example,key=k,sig=s",
            "X-Matrix origin,key=k,sig=s",
            "X-Matrix origin=\"bad name\",key=k,sig=s",
            "X-Matrix origin=a\"b,key=k,sig=s",
        ] {
            assert!(matches!(XMatrix::parse(bad), Err(AuthError::Malformed(_))), "{bad}");
        }
    }

    async fn check(header: &str, method: &str, uri: &str, content: Option<&Value>, keys: &FixedKeys) -> Result<String, AuthError> {
        authenticate(&[header], method, uri, content, "us.example:8448", keys).await
    }

    #[tokio::test]
    async fn signed_requests_verify_with_body_and_query() {
        let (key, keys) = origin_key();
        let uri = "/_matrix/federation/v1/backfill/!r:x?v=%24a&v=%24b&limit=10";
        let header = sign_request("GET", uri, "s1.example", "us.example:8448", None, &key);
        assert_eq!(check(&header, "GET", uri, None, &keys).await, Ok("s1.example".to_owned()));

        let body = json!({"earliest_events": [], "latest_events": ["$x"], "limit": 5});
        let uri = "/_matrix/federation/v1/get_missing_events/!r:x";
        let header = sign_request("POST", uri, "s1.example", "us.example:8448", Some(&body), &key);
        assert!(check(&header, "POST", uri, Some(&body), &keys).await.is_ok());

        // Everything signed is checked: the body, the method, the query, the path.
        let other_body = json!({"earliest_events": [], "latest_events": ["$y"], "limit": 5});
        assert!(matches!(check(&header, "POST", uri, Some(&other_body), &keys).await, Err(AuthError::BadSignature(_))));
        assert!(matches!(check(&header, "POST", uri, None, &keys).await, Err(AuthError::BadSignature(_))));
        assert!(matches!(check(&header, "PUT", uri, Some(&body), &keys).await, Err(AuthError::BadSignature(_))));
        assert!(matches!(check(&header, "POST", &format!("{uri}?limit=6"), Some(&body), &keys).await, Err(AuthError::BadSignature(_))));
    }

    #[tokio::test]
    async fn destination_and_keys_are_checked() {
        let (key, keys) = origin_key();
        let uri = "/_matrix/federation/v1/event/$e";
        let elsewhere = sign_request("GET", uri, "s1.example", "other.example", None, &key);
        assert_eq!(check(&elsewhere, "GET", uri, None, &keys).await, Err(AuthError::WrongDestination("other.example".into())));

        // Without destination (pre-v1.3 servers) it is taken to be us, so the signature must be for us.
        let for_us = sign_request("GET", uri, "s1.example", "us.example:8448", None, &key);
        let mut x = XMatrix::parse(&for_us).unwrap();
        x.destination = None;
        assert!(check(&x.to_header_value(), "GET", uri, None, &keys).await.is_ok());
        let mut x = XMatrix::parse(&elsewhere).unwrap();
        x.destination = None;
        assert!(matches!(check(&x.to_header_value(), "GET", uri, None, &keys).await, Err(AuthError::BadSignature(_))));

        // A key the origin does not have, or another server claiming to be the origin.
        let impostor = ServerKey::generate();
        let forged = sign_request("GET", uri, "s1.example", "us.example:8448", None, &impostor);
        assert!(matches!(check(&forged, "GET", uri, None, &keys).await, Err(AuthError::KeyUnavailable(_))));
        let mut same_id = ServerKey::generate();
        same_id.key_id = key.key_id.clone();
        let forged = sign_request("GET", uri, "s1.example", "us.example:8448", None, &same_id);
        assert!(matches!(check(&forged, "GET", uri, None, &keys).await, Err(AuthError::BadSignature(_))));

        assert_eq!(authenticate(&[], "GET", uri, None, "us.example:8448", &keys).await, Err(AuthError::Missing));
        assert_eq!(authenticate(&["Bearer x"], "GET", uri, None, "us.example:8448", &keys).await, Err(AuthError::Missing));
    }
}
