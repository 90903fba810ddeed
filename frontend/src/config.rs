//! The configuration file (TOML). Every path and URL is checked when it is loaded, so a bad file
//! stops the server at start with the field named, never at the first request.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use roomserver_core::server_name::ServerName;
use serde::Deserialize;

/// The file as written; [`Config`] is what it means.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    server_name: String,
    listen: String,
    tls_certificate: PathBuf,
    tls_private_key: PathBuf,
    signing_key: PathBuf,
    database_url: String,
    #[serde(default)]
    read_replica_urls: Vec<String>,
    trusted_ca_file: PathBuf,
    key_validity_seconds: Option<u64>,
    max_in_flight_requests: Option<usize>,
    database_pool_size: Option<usize>,
    #[serde(default)]
    key_server_overrides: BTreeMap<String, String>,
    admin_listen: Option<String>,
    admin_token: Option<String>,
}

/// Where outbound requests to a server go instead of where its name resolves (tests, or a
/// server reachable only through a proxy): an `https://host[:port]` base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The host:port to connect to and to check the certificate against.
    pub address: ServerName,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub server_name: String,
    pub listen: SocketAddr,
    pub tls_certificate: PathBuf,
    pub tls_private_key: PathBuf,
    /// Synapse's format; generated on first start when missing.
    pub signing_key: PathBuf,
    pub database_url: String,
    /// Reads go to these, in turn, when given; else to the primary.
    pub read_replica_urls: Vec<String>,
    /// The only CAs outbound TLS trusts.
    pub trusted_ca_file: PathBuf,
    /// How long the keys we publish are valid (`valid_until_ts` = now + this).
    pub key_validity: Duration,
    /// Requests handled at once; more are refused with 429.
    pub max_in_flight_requests: usize,
    /// Connections per database (the primary, and each replica).
    pub database_pool_size: usize,
    /// Server name → endpoint for fetching its keys and, later, calling it.
    pub key_server_overrides: BTreeMap<String, Endpoint>,
    /// The admin API (local users' rooms and events): a loopback address and its bearer token.
    pub admin: Option<AdminConfig>,
}

#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: String,
}

/// A shorter admin token is refused: it is the only thing between a local process and sending
/// as any local user.
pub const MIN_ADMIN_TOKEN_LENGTH: usize = 16;

pub const DEFAULT_KEY_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);
pub const DEFAULT_MAX_IN_FLIGHT_REQUESTS: usize = 256;
pub const DEFAULT_DATABASE_POOL_SIZE: usize = 16;

#[derive(Debug)]
pub enum ConfigError {
    Read { path: PathBuf, error: std::io::Error },
    Syntax(String),
    Invalid { field: &'static str, reason: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            ConfigError::Syntax(message) => write!(f, "the configuration is not valid TOML of the expected shape: {message}"),
            ConfigError::Invalid { field, reason } => write!(f, "configuration field {field}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.into() }
}

/// Parses an override's `https://host[:port]` (no path: it names a server, not a resource).
pub fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let rest = url.strip_prefix("https://").ok_or("must start with https://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let address = ServerName::parse(rest).map_err(|e| e.message)?;
    Ok(Endpoint { address })
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        let mut config = Config::parse(&text)?;
        // Relative paths are relative to the configuration file, not to the working directory.
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.tls_certificate, &mut config.tls_private_key, &mut config.signing_key, &mut config.trusted_ca_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        ServerName::parse(&file.server_name).map_err(|e| invalid("server_name", e.message))?;
        let listen = file.listen.parse().map_err(|_| invalid("listen", format!("{:?} is not an address:port", file.listen)))?;
        if file.database_url.trim().is_empty() {
            return Err(invalid("database_url", "is empty"));
        }
        for url in &file.read_replica_urls {
            url.parse::<tokio_postgres::Config>().map_err(|e| invalid("read_replica_urls", format!("{url:?}: {e}")))?;
        }
        file.database_url.parse::<tokio_postgres::Config>().map_err(|e| invalid("database_url", e.to_string()))?;
        let key_validity = match file.key_validity_seconds {
            None => DEFAULT_KEY_VALIDITY,
            Some(0) => return Err(invalid("key_validity_seconds", "must be positive")),
            Some(s) => Duration::from_secs(s),
        };
        let positive = |field: &'static str, value: Option<usize>, default: usize| match value {
            None => Ok(default),
            Some(0) => Err(invalid(field, "must be positive")),
            Some(n) => Ok(n),
        };
        let mut key_server_overrides = BTreeMap::new();
        for (name, url) in file.key_server_overrides {
            ServerName::parse(&name).map_err(|e| invalid("key_server_overrides", e.message))?;
            let endpoint = parse_endpoint(&url).map_err(|e| invalid("key_server_overrides", format!("{name} = {url:?}: {e}")))?;
            key_server_overrides.insert(name, endpoint);
        }
        let admin = match (file.admin_listen, file.admin_token) {
            (None, None) => None,
            (Some(_), None) => return Err(invalid("admin_token", "is needed with admin_listen")),
            (None, Some(_)) => return Err(invalid("admin_listen", "is needed with admin_token")),
            (Some(listen), Some(token)) => {
                let listen: SocketAddr = listen.parse().map_err(|_| invalid("admin_listen", format!("{listen:?} is not an address:port")))?;
                // Plain HTTP with a bearer token: never off this machine.
                if !listen.ip().is_loopback() {
                    return Err(invalid("admin_listen", format!("{listen} is not a loopback address")));
                }
                if token.len() < MIN_ADMIN_TOKEN_LENGTH || token.chars().any(|c| c.is_whitespace()) {
                    return Err(invalid("admin_token", format!("must be at least {MIN_ADMIN_TOKEN_LENGTH} characters, no spaces")));
                }
                Some(AdminConfig { listen, token })
            }
        };
        Ok(Config {
            server_name: file.server_name,
            listen,
            tls_certificate: file.tls_certificate,
            tls_private_key: file.tls_private_key,
            signing_key: file.signing_key,
            database_url: file.database_url,
            read_replica_urls: file.read_replica_urls,
            trusted_ca_file: file.trusted_ca_file,
            key_validity,
            max_in_flight_requests: positive("max_in_flight_requests", file.max_in_flight_requests, DEFAULT_MAX_IN_FLIGHT_REQUESTS)?,
            database_pool_size: positive("database_pool_size", file.database_pool_size, DEFAULT_DATABASE_POOL_SIZE)?,
            key_server_overrides,
            admin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
server_name = "example.org"
listen = "127.0.0.1:8448"
tls_certificate = "tls.crt"
tls_private_key = "tls.key"
signing_key = "signing.key"
database_url = "host=/run/postgresql dbname=matrix"
trusted_ca_file = "ca.pem"
"#;

    fn with(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{MINIMAL}{extra}"))
    }

    fn field_of(r: Result<Config, ConfigError>) -> &'static str {
        match r {
            Err(ConfigError::Invalid { field, .. }) => field,
            Err(e) => panic!("expected an invalid field, got {e}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn minimal_file_gets_the_defaults() {
        let c = with("").unwrap();
        assert_eq!(c.server_name, "example.org");
        assert_eq!(c.listen, "127.0.0.1:8448".parse().unwrap());
        assert_eq!(c.key_validity, DEFAULT_KEY_VALIDITY);
        assert_eq!(c.max_in_flight_requests, DEFAULT_MAX_IN_FLIGHT_REQUESTS);
        assert!(c.read_replica_urls.is_empty() && c.key_server_overrides.is_empty());
        assert!(c.admin.is_none());
    }

    #[test]
    fn optional_fields_are_read() {
        let c = with(
            "read_replica_urls = [\"postgres://replica/matrix\"]\nkey_validity_seconds = 3600\nmax_in_flight_requests = 8\n\
             [key_server_overrides]\n\"s1.example\" = \"https://127.0.0.1:4443\"\n",
        )
        .unwrap();
        assert_eq!(c.read_replica_urls, vec!["postgres://replica/matrix"]);
        assert_eq!(c.key_validity, Duration::from_secs(3600));
        assert_eq!(c.max_in_flight_requests, 8);
        assert_eq!(c.key_server_overrides["s1.example"].address.to_string(), "127.0.0.1:4443");
    }

    #[test]
    fn bad_files_name_the_field() {
        assert_eq!(field_of(Config::parse(&MINIMAL.replace("example.org", "exa mple.org"))), "server_name");
        assert_eq!(field_of(Config::parse(&MINIMAL.replace("127.0.0.1:8448", "localhost"))), "listen");
        assert_eq!(field_of(with("key_validity_seconds = 0")), "key_validity_seconds");
        assert_eq!(field_of(with("max_in_flight_requests = 0")), "max_in_flight_requests");
        assert_eq!(field_of(with("read_replica_urls = [\"host=a port=notaport\"]")), "read_replica_urls");
        assert_eq!(field_of(with("[key_server_overrides]\n\"s1.example\" = \"http://127.0.0.1:1\"")), "key_server_overrides");
        assert_eq!(field_of(with("[key_server_overrides]\n\"bad name\" = \"https://127.0.0.1:1\"")), "key_server_overrides");
        assert_eq!(field_of(with("admin_listen = \"127.0.0.1:8009\"")), "admin_token");
        assert_eq!(field_of(with("admin_token = \"0123456789abcdef\"")), "admin_listen");
        assert_eq!(field_of(with("admin_listen = \"0.0.0.0:8009\"\nadmin_token = \"0123456789abcdef\"")), "admin_listen");
        assert_eq!(field_of(with("admin_listen = \"127.0.0.1:8009\"\nadmin_token = \"short\"")), "admin_token");
        let admin = with("admin_listen = \"[::1]:8009\"\nadmin_token = \"0123456789abcdef\"").unwrap().admin.unwrap();
        assert_eq!((admin.listen, admin.token.as_str()), ("[::1]:8009".parse().unwrap(), "0123456789abcdef"));
        assert!(matches!(with("unknown_field = 1"), Err(ConfigError::Syntax(_))), "typos are errors");
        assert!(matches!(Config::parse("server_name = \"x\""), Err(ConfigError::Syntax(_))), "missing fields");
        assert!(matches!(Config::load(Path::new("/nonexistent/roomserver-http.toml")), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let dir = std::env::temp_dir().join(format!("roomserver-http-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.signing_key, dir.join("signing.key"));
        assert_eq!(c.trusted_ca_file, dir.join("ca.pem"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
