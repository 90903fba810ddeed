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

/// The loopback sockets of a front end under test, bound first so that its server name (which
/// names the port) is known before the fake remote servers are built.
pub struct OurListeners {
    pub federation: TcpListener,
    pub admin: TcpListener,
    /// `127.0.0.1:PORT`: our server name.
    pub our_name: String,
    pub admin_address: SocketAddr,
}

pub async fn bind_our_listeners() -> OurListeners {
    let federation = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let our_name = format!("127.0.0.1:{}", federation.local_addr().unwrap().port());
    let admin_address = admin.local_addr().unwrap();
    OurListeners { federation, admin, our_name, admin_address }
}

/// A front end under test, serving federation (TLS) and the admin API (plain) until stopped.
pub struct OurServer {
    pub dir: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    federation: tokio::task::JoinHandle<()>,
    admin: tokio::task::JoinHandle<()>,
}

/// Starts roomserver-http on `listeners` from a configuration written to a fresh directory
/// (`label` names it): the test certificate, `database_url`, the admin API with `admin_token`,
/// and `key_server_overrides` (server name, `https://…` URL).
pub async fn start_our_server(listeners: OurListeners, tls: &TestTls, label: &str, database_url: &str, admin_token: &str, overrides: &[(&str, &str)]) -> OurServer {
    let dir = std::env::temp_dir().join(format!("roomserver-http-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in [("ca.pem", &tls.ca_pem), ("tls.crt", &tls.cert_pem), ("tls.key", &tls.key_pem)] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let (our_name, admin_address) = (&listeners.our_name, listeners.admin_address);
    let mut config_text = format!(
        "server_name = {our_name:?}\nlisten = {our_name:?}\ntls_certificate = \"tls.crt\"\ntls_private_key = \"tls.key\"\n\
         signing_key = \"signing.key\"\ndatabase_url = {database_url:?}\ntrusted_ca_file = \"ca.pem\"\ndatabase_pool_size = 2\n\
         admin_listen = \"{admin_address}\"\nadmin_token = {admin_token:?}\n[key_server_overrides]\n"
    );
    for (name, url) in overrides {
        config_text.push_str(&format!("{name:?} = {url:?}\n"));
    }
    std::fs::write(dir.join("config.toml"), config_text).unwrap();
    let config = roomserver_http::config::Config::load(&dir.join("config.toml")).unwrap();
    let built = roomserver_http::server::build(&config).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (mut s1, mut s2) = (stopped.clone(), stopped);
    let federation = tokio::spawn(roomserver_http::server::serve(listeners.federation, built.tls, built.federation, async move {
        let _ = s1.changed().await;
    }));
    let admin = tokio::spawn(roomserver_http::server::serve_plain(listeners.admin, built.admin.unwrap(), async move {
        let _ = s2.changed().await;
    }));
    OurServer { dir, stop, federation, admin }
}

impl OurServer {
    /// Stops both listeners (bounded) and removes the directory.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(std::time::Duration::from_secs(15), self.federation).await.expect("the server stops").unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(15), self.admin).await.expect("the admin API stops").unwrap();
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}
