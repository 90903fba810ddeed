//! Building the server from its configuration, and serving HTTPS (HTTP/1.1 over rustls) until
//! told to stop, then letting the requests in flight finish.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::admin::admin_router;
use crate::config::Config;
use crate::db::Database;
use crate::keys::ServerKey;
use crate::outbound::{root_store_from_pem, FederationClient};
use crate::outbox::Outbox;
use crate::remote_keys::RemoteKeys;
use crate::routes::{router, AppState};

/// A TLS handshake that takes longer than this is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a stop signal, requests in flight get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The TLS server configuration from PEM files: the certificate chain and its private key.
pub fn tls_server_config(certificate_pem: &[u8], key_pem: &[u8]) -> Result<rustls::ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(certificate_pem).collect::<Result<_, _>>().map_err(|e| format!("TLS certificate: {e}"))?;
    if chain.is_empty() {
        return Err("TLS certificate: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("TLS private key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What [`build`] makes: the federation router and its TLS, and the admin router when configured.
pub struct Built {
    pub federation: Router,
    pub tls: rustls::ServerConfig,
    pub admin: Option<Router>,
}

/// Everything the server needs, from the configuration (the signing key is generated when
/// its file is missing).
pub fn build(config: &Config) -> Result<Built, String> {
    let key = ServerKey::load_or_generate(&config.signing_key).map_err(|e| e.to_string())?;
    let tls = tls_server_config(&read(&config.tls_certificate)?, &read(&config.tls_private_key)?)?;
    let roots = root_store_from_pem(&read(&config.trusted_ca_file)?).map_err(|e| format!("{}: {e}", config.trusted_ca_file.display()))?;
    let client = FederationClient::new(roots, config.key_server_overrides.clone());
    let db = Database::new(&config.database_url, &config.read_replica_urls, &config.server_name, config.database_pool_size)?;
    let state = AppState {
        server_name: config.server_name.clone(),
        outbox: Outbox::new(client.clone(), config.server_name.clone(), &key),
        key,
        key_validity: config.key_validity,
        remote_keys: RemoteKeys::new(client.clone()),
        client,
        db,
        in_flight: Semaphore::new(config.max_in_flight_requests),
    };
    let state = Arc::new(state);
    let admin = config.admin.as_ref().map(|a| admin_router(state.clone(), &a.token));
    Ok(Built { federation: router(state), tls, admin })
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then waits up to
/// [`SHUTDOWN_GRACE`] for open connections.
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig, app: Router, shutdown: impl Future<Output = ()>) {
    serve_with(listener, Some(TlsAcceptor::from(Arc::new(tls))), app, shutdown).await
}

/// Serves `app` over plain HTTP: only for the admin API, whose listener is loopback.
pub async fn serve_plain(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
    serve_with(listener, None, app, shutdown).await
}

async fn serve_with(listener: TcpListener, acceptor: Option<TlsAcceptor>, app: Router, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let builder = hyper::server::conn::http1::Builder::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    eprintln!("roomserver-http: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let result = match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => return eprintln!("roomserver-http: TLS handshake with {peer}: {e}"),
                        Err(_) => return,
                    };
                    watcher.watch(builder.serve_connection(TokioIo::new(tls), service)).await
                }
                None => watcher.watch(builder.serve_connection(TokioIo::new(tcp), service)).await,
            };
            if let Err(e) = result {
                eprintln!("roomserver-http: connection with {peer}: {e}");
            }
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        eprintln!("roomserver-http: connections still open after {SHUTDOWN_GRACE:?}; stopping anyway");
    }
}
