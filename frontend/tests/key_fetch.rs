//! Fetching other servers' keys over TLS from a loopback key server (no PostgreSQL needed):
//! verified, cached, refused when they lie about their name or have expired.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roomserver_http::auth::KeySource;
use roomserver_http::config::parse_endpoint;
use roomserver_http::keys::ServerKey;
use roomserver_http::outbound::FederationClient;
use roomserver_http::remote_keys::RemoteKeys;

#[tokio::test]
async fn keys_are_fetched_verified_and_cached() {
    let tls = common::test_tls();
    let good = ServerKey::generate();
    let liar = ServerKey::generate();
    let expired = ServerKey::generate();
    let now = SystemTime::now();
    let responses = HashMap::from([
        ("good.example".to_owned(), good.key_response("good.example", Duration::from_secs(3600), now)),
        // Signed correctly, but for another name than it is asked about.
        ("liar.example".to_owned(), liar.key_response("someone-else.example", Duration::from_secs(3600), now)),
        ("expired.example".to_owned(), expired.key_response("expired.example", Duration::from_secs(1), UNIX_EPOCH)),
    ]);
    let server = common::start_key_server(&tls, responses).await;
    let endpoint = parse_endpoint(&format!("https://127.0.0.1:{}", server.address.port())).unwrap();
    let overrides: BTreeMap<String, _> = ["good.example", "liar.example", "expired.example", "absent.example"]
        .into_iter()
        .map(|name| (name.to_owned(), endpoint.clone()))
        .collect();
    let keys = RemoteKeys::new(FederationClient::new(common::roots(&tls), overrides));

    let got = keys.verify_key("good.example", &good.key_id, roomserver_http::now_ms()).await.unwrap();
    assert_eq!(got, good.signing_key.verifying_key());
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    // Cached: no second request, for the same key or concurrently.
    let (a, b) = tokio::join!(keys.verify_key("good.example", &good.key_id, roomserver_http::now_ms()), keys.verify_key("good.example", &good.key_id, roomserver_http::now_ms()));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    // An unknown key ID is not refetched within the minimum interval.
    assert!(keys.verify_key("good.example", "ed25519:other", roomserver_http::now_ms()).await.unwrap_err().contains("asked less than"));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // An event's signature needs the key valid at the event's time: an old one is, one stamped
    // after the key's valid_until_ts is not.
    let now = roomserver_http::now_ms();
    assert_eq!(keys.verify_key("good.example", &good.key_id, now - 86_400_000).await.unwrap(), got);
    assert!(keys.verify_key("good.example", &good.key_id, now + 30 * 86_400_000).await.is_err());
    let e = keys.verify_key("liar.example", &liar.key_id, roomserver_http::now_ms()).await.unwrap_err();
    assert!(e.contains("someone-else.example"), "{e}");
    let e = keys.verify_key("expired.example", &expired.key_id, roomserver_http::now_ms()).await.unwrap_err();
    assert!(e.contains("expired"), "{e}");
    let e = keys.verify_key("absent.example", "ed25519:x", roomserver_http::now_ms()).await.unwrap_err();
    assert!(e.contains("404"), "{e}");
}

#[tokio::test]
async fn untrusted_certificates_are_refused() {
    let tls = common::test_tls();
    let key = ServerKey::generate();
    let responses = HashMap::from([("good.example".to_owned(), key.key_response("good.example", Duration::from_secs(3600), SystemTime::now()))]);
    let server = common::start_key_server(&tls, responses).await;
    let endpoint = parse_endpoint(&format!("https://127.0.0.1:{}", server.address.port())).unwrap();
    // Another CA than the one that signed the server's certificate.
    let other = common::test_tls();
    let keys = RemoteKeys::new(FederationClient::new(common::roots(&other), BTreeMap::from([("good.example".to_owned(), endpoint)])));
    let e = keys.verify_key("good.example", &key.key_id, roomserver_http::now_ms()).await.unwrap_err();
    assert!(e.contains("TLS"), "{e}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
}
