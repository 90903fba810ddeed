//! Outbound HTTPS to other servers: where a server name connects (an explicit override, else the
//! spec's direct rules: IP literal or hostname, explicit port or 8448; no `.well-known` or SRV
//! delegation yet), TLS trusting only the configured CAs, X-Matrix signing when asked. One
//! connection per request: key fetches are rare, and pooling waits for `/send` (a later stage).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use roomserver_core::server_name::{Host, ServerName};
use rustls::pki_types::{CertificateDer, ServerName as TlsServerName};
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::auth::sign_request;
use crate::config::Endpoint;
use crate::keys::ServerKey;

/// Bound on a whole outbound exchange (connect, TLS, request, response).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a response body.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct FederationClient {
    tls: TlsConnector,
    overrides: Arc<BTreeMap<String, Endpoint>>,
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("the response is not JSON: {e}"))
    }
}

/// Who signs an outbound request: our name and key.
pub struct Signer<'a> {
    pub origin: &'a str,
    pub key: &'a ServerKey,
}

/// A path segment or query value of an outbound request, percent-encoded (room and event IDs
/// hold `!`, `$`, `:`, `/`, `+`; a space is `%20`, not `+`, so that it reads the same in a path).
pub fn percent_encoded(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>().replace('+', "%20")
}

/// Reads the CA certificates of a PEM file into a root store.
pub fn root_store_from_pem(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("bad PEM: {e}"))?;
        roots.add(cert).map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate in the file".into());
    }
    Ok(roots)
}

impl FederationClient {
    pub fn new(roots: rustls::RootCertStore, overrides: BTreeMap<String, Endpoint>) -> FederationClient {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        FederationClient { tls: TlsConnector::from(Arc::new(config)), overrides: Arc::new(overrides) }
    }

    /// Where requests to `server_name` connect: its override, else the name itself.
    pub fn address_of(&self, server_name: &str) -> Result<ServerName, String> {
        match self.overrides.get(server_name) {
            Some(endpoint) => Ok(endpoint.address.clone()),
            None => ServerName::parse(server_name).map_err(|e| e.message),
        }
    }

    /// Sends `method path_and_query` to `destination` (a server name), with a JSON body when
    /// given, signed as `signer` when given. The Host header is the destination's server name.
    pub async fn request(
        &self,
        destination: &str,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        signer: Option<Signer<'_>>,
    ) -> Result<Response, String> {
        let address = self.address_of(destination)?;
        let mut builder = Request::builder().method(method.clone()).uri(path_and_query).header(header::HOST, destination);
        if let Some(signer) = signer {
            let authorization = sign_request(method.as_str(), path_and_query, signer.origin, destination, body, signer.key);
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        let bytes = match body {
            Some(b) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(b).expect("serialising a serde_json::Value cannot fail"))
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(bytes)).map_err(|e| format!("bad request: {e}"))?;
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(&address, request))
            .await
            .map_err(|_| format!("{destination}: no answer within {REQUEST_TIMEOUT:?}"))?
    }

    async fn exchange(&self, address: &ServerName, request: Request<Full<Bytes>>) -> Result<Response, String> {
        let host = address.host_string();
        let port = address.port_or_default();
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connect to {host}:{port}: {e}"))?;
        let tls_name = match &address.host {
            Host::Ipv4(ip) => TlsServerName::IpAddress((*ip).into()),
            Host::Ipv6(ip) => TlsServerName::IpAddress((*ip).into()),
            Host::Dns(name) => TlsServerName::try_from(name.clone()).map_err(|e| format!("{name}: {e}"))?,
        };
        let tls = self.tls.connect(tls_name, tcp).await.map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP with {host}:{port}: {e}"))?;
        // The connection task ends when the exchange does (the sender is dropped).
        tokio::spawn(connection);
        let response = sender.send_request(request).await.map_err(|e| format!("request to {host}:{port}: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("response from {host}:{port}: {e}"))?
            .to_bytes();
        Ok(Response { status, body })
    }
}
