//! What the integration tests share: a test CA and a certificate for loopback made at test time,
//! and a loopback key server (the library's fixed_key_server) that answers
//! `GET /_matrix/key/v2/server` for several fake servers.

#![allow(dead_code)] // each test binary uses part of it

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use axum::Router;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct TestTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA, and a certificate it signed for `localhost` and `127.0.0.1`.
pub fn test_tls() -> TestTls {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "roomserver-http test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    TestTls { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

pub fn roots(tls: &TestTls) -> rustls::RootCertStore {
    roomserver_http::outbound::root_store_from_pem(tls.ca_pem.as_bytes()).unwrap()
}

/// A running loopback key server; stops when dropped.
pub struct KeyServer {
    pub address: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

/// Serves `responses` (Host → key response body) over TLS on loopback.
pub async fn start_key_server(tls: &TestTls, responses: HashMap<String, Value>) -> KeyServer {
    let requests = Arc::new(AtomicUsize::new(0));
    let app = roomserver_http::fixed_key_server::router(responses, requests.clone());
    start_tls_server(tls, app, requests).await
}

pub async fn start_tls_server(tls: &TestTls, app: Router, requests: Arc<AtomicUsize>) -> KeyServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = roomserver_http::server::tls_server_config(tls.cert_pem.as_bytes(), tls.key_pem.as_bytes()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(roomserver_http::server::serve(listener, config, app, async {
        let _ = stopped.await;
    }));
    KeyServer { address, requests, _stop: stop }
}
