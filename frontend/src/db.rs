//! Connection pools: the primary and the read replicas, used in turn for reads (writes go to the
//! primary). Every session is opened with `roomserver.server_name` set, because the
//! federation functions put it in their responses' `origin`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::errors::ApiError;

/// How long a request waits for a free connection before it is answered 503.
pub const POOL_WAIT: Duration = Duration::from_secs(5);

pub struct Database {
    primary: Pool,
    replicas: Vec<Pool>,
    next_replica: AtomicUsize,
}

fn pool(url: &str, server_name: &str, size: usize) -> Result<Pool, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    // Server names have no spaces or backslashes (their grammar), so no escaping is needed.
    config.options(format!("-c roomserver.server_name={server_name}"));
    config.application_name("roomserver-http");
    config.connect_timeout(POOL_WAIT);
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        // The most recently used connection first: a light load stays on few backends, whose
        // caches stay warm (bench/README.md, "The front end under load": /state_ids at one
        // client 1.5-1.7x the SQL call with round-robin reuse, 0.93-1.06x with this).
        .queue_mode(deadpool_postgres::QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(POOL_WAIT))
        .build()
        .map_err(|e| e.to_string())
}

fn unavailable(error: deadpool_postgres::PoolError) -> ApiError {
    eprintln!("roomserver-http: no database connection: {error}");
    ApiError::unavailable("The database is unavailable")
}

impl Database {
    /// Pools connect lazily: the server starts while the database is still coming up.
    pub fn new(primary_url: &str, replica_urls: &[String], server_name: &str, size: usize) -> Result<Database, String> {
        Ok(Database {
            primary: pool(primary_url, server_name, size)?,
            replicas: replica_urls.iter().map(|u| pool(u, server_name, size)).collect::<Result<_, _>>()?,
            next_replica: AtomicUsize::new(0),
        })
    }

    /// A connection for writes (ingest, prepare_event before a write): the primary.
    pub async fn writer(&self) -> Result<Object, ApiError> {
        self.primary.get().await.map_err(unavailable)
    }

    /// A connection for reads: the next replica, else the primary.
    pub async fn reader(&self) -> Result<Object, ApiError> {
        let pool = match self.replicas.len() {
            0 => &self.primary,
            n => &self.replicas[self.next_replica.fetch_add(1, Ordering::Relaxed) % n],
        };
        pool.get().await.map_err(unavailable)
    }
}
