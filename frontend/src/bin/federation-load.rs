//! `federation-load`: the front end's benchmark (bench/README.md, "The front end under load";
//! run by scripts/bench-frontend.sh). N concurrent clients call `/backfill` (limit 100) and
//! `/state_ids` of one room through a running roomserver-http, signed as one of the room's
//! servers, and, in the same run with the same start events and the same N, the statement the
//! handler issues (`federation_reads::BACKFILL`, `STATE_IDS`: the ACL and in-room checks and the
//! function) over N tokio-postgres connections. Each cell (endpoint, N, mode) runs for a fixed
//! time after a warm-up, in turns with the other modes of its endpoint and N (so that the
//! machine's other work falls on all of them alike); it reports requests/s, p50 and p99, and p50
//! against the SQL call's.
//!
//! Modes:
//! - `sql`: the handler's statement, prepared once per connection (the handler's prepare_cached).
//! - `keep-alive`: one HTTPS connection per client, kept open, as a federating server keeps its
//!   connections; the X-Matrix headers are signed once per start event before timing (X-Matrix
//!   has no nonce, so a header stays valid; the server still verifies every request).
//! - `new-connection`: `FederationClient::request` as it stands (one TCP + TLS connection per
//!   request, signed per request): what a client without connection reuse pays.
//!
//! The client serves the origin's key itself, at the address the server's configuration gives
//! for the origin in `key_server_overrides`, with the server's certificate (both are loopback).
//! Before timing, the HTTP answers are checked against the SQL answers (origin_server_ts aside).
//!
//! Where the time goes: for each cell, the CPU time and the run-queue wait (time runnable but
//! not running) per request of the client, the front end (`--server-pid`) and the PostgreSQL
//! backends serving the cell, from Linux's `/proc/PID/task/*/schedstat`. On a shared machine the
//! wait, not the front end's CPU, is what an extra process hop mostly adds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use roomserver_core::server_name::{Host, ServerName};
use roomserver_http::auth::sign_request;
use roomserver_http::config::Config;
use roomserver_http::federation_reads::{BACKFILL, STATE_IDS};
use roomserver_http::keys::ServerKey;
use roomserver_http::outbound::{root_store_from_pem, FederationClient, Signer};
use rustls::pki_types::ServerName as TlsServerName;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Statement};
use tokio_rustls::TlsConnector;

const USAGE: &str = "usage: federation-load --config roomserver-http.toml --origin SERVER [--room ROOM_ID]
       [--clients 1,4,16] [--seconds 5] [--warmup 1] [--requests N] [--limit 100] [--starts 200]
       [--modes sql,keep-alive,new-connection] [--endpoints backfill,state_ids] [--server-pid PID]
       [--rounds 5]
  --origin    a server with joined members in the room; its key is served at its
              key_server_overrides address of the configuration
  --room      default: the database's only room
  --seconds   measured time per cell (endpoint, clients, mode), after --warmup seconds
  --rounds    the cell's time is split into this many turns, the modes alternating
  --requests  also stop a cell after this many measured requests
  --starts    how many of the room's events (depth >= 3 x limit) the requests cycle through
  --server-pid  roomserver-http's process, for its CPU time and run-queue wait per request";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Backfill,
    StateIds,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Sql,
    KeepAlive,
    NewConnection,
}

impl Endpoint {
    fn parse(s: &str) -> Result<Endpoint, String> {
        match s {
            "backfill" => Ok(Endpoint::Backfill),
            "state_ids" => Ok(Endpoint::StateIds),
            _ => Err(format!("unknown endpoint {s:?}")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Endpoint::Backfill => "backfill",
            Endpoint::StateIds => "state_ids",
        }
    }

    fn statement(self) -> &'static str {
        match self {
            Endpoint::Backfill => BACKFILL,
            Endpoint::StateIds => STATE_IDS,
        }
    }

    /// The request's path and query from start event `start`.
    fn path(self, room_id: &str, start: &str, limit: i32) -> String {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        match self {
            Endpoint::Backfill => format!("/_matrix/federation/v1/backfill/{}?v={}&limit={limit}", enc(room_id), enc(start)),
            Endpoint::StateIds => format!("/_matrix/federation/v1/state_ids/{}?event_id={}", enc(room_id), enc(start)),
        }
    }
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "sql" => Ok(Mode::Sql),
            "keep-alive" => Ok(Mode::KeepAlive),
            "new-connection" => Ok(Mode::NewConnection),
            _ => Err(format!("unknown mode {s:?}")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Sql => "sql",
            Mode::KeepAlive => "http keep-alive",
            Mode::NewConnection => "http new connection",
        }
    }
}

struct Args {
    config: PathBuf,
    origin: String,
    room_id: Option<String>,
    clients: Vec<usize>,
    seconds: f64,
    warmup: f64,
    requests: Option<usize>,
    limit: i32,
    starts: i64,
    modes: Vec<Mode>,
    endpoints: Vec<Endpoint>,
    server_pid: Option<u32>,
    rounds: usize,
}

fn parse_args() -> Result<Args, String> {
    fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse().map_err(|_| format!("bad value for {flag}: {v}"))
    }
    fn list<T>(flag: &str, v: Option<String>, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
        let v: String = value(flag, v)?;
        let items = v.split(',').map(|s| item(s.trim())).collect::<Result<Vec<T>, String>>()?;
        if items.is_empty() {
            return Err(format!("{flag} is empty"));
        }
        Ok(items)
    }
    let mut args = Args {
        config: PathBuf::new(),
        origin: String::new(),
        room_id: None,
        clients: vec![1, 4, 16],
        seconds: 5.0,
        warmup: 1.0,
        requests: None,
        limit: 100,
        starts: 200,
        modes: vec![Mode::Sql, Mode::KeepAlive, Mode::NewConnection],
        endpoints: vec![Endpoint::Backfill, Endpoint::StateIds],
        server_pid: None,
        rounds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--config" => args.config = value(&flag, it.next())?,
            "--origin" => args.origin = value(&flag, it.next())?,
            "--room" => args.room_id = Some(value(&flag, it.next())?),
            "--clients" => {
                args.clients = list(&flag, it.next(), |s| s.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| format!("bad client count {s:?}")))?
            }
            "--seconds" => args.seconds = value(&flag, it.next())?,
            "--warmup" => args.warmup = value(&flag, it.next())?,
            "--requests" => args.requests = Some(value(&flag, it.next())?),
            "--limit" => args.limit = value(&flag, it.next())?,
            "--starts" => args.starts = value(&flag, it.next())?,
            "--modes" => args.modes = list(&flag, it.next(), Mode::parse)?,
            "--endpoints" => args.endpoints = list(&flag, it.next(), Endpoint::parse)?,
            "--server-pid" => args.server_pid = Some(value(&flag, it.next())?),
            "--rounds" => args.rounds = value(&flag, it.next())?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.config.as_os_str().is_empty() || args.origin.is_empty() {
        return Err("--config and --origin are required".into());
    }
    if !(args.seconds > 0.0 && args.warmup >= 0.0 && args.limit > 0 && args.starts > 0) {
        return Err("--seconds, --limit and --starts must be positive, --warmup not negative".into());
    }
    Ok(args)
}

/// The nearest-rank percentile of ascending samples: the smallest sample with at least a
/// share `q` of all samples at or below it. `None` without samples.
fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// CPU time and run-queue wait of a set of processes, in nanoseconds.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Sched {
    cpu_ns: u64,
    wait_ns: u64,
}

impl Sched {
    /// The first two fields of a schedstat line: time on the CPU, time waiting on a run queue.
    fn parse(line: &str) -> Option<Sched> {
        let mut fields = line.split_whitespace().map(|f| f.parse::<u64>().ok());
        Some(Sched { cpu_ns: fields.next()??, wait_ns: fields.next()?? })
    }

    /// Process `pid`'s threads, summed; zero when it is gone or the kernel keeps no schedstat.
    fn of(pid: u32) -> Sched {
        let mut total = Sched::default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return total };
        for task in tasks.flatten() {
            if let Some(s) = std::fs::read_to_string(task.path().join("schedstat")).ok().as_deref().and_then(Sched::parse) {
                total.cpu_ns += s.cpu_ns;
                total.wait_ns += s.wait_ns;
            }
        }
        total
    }
}

/// The processes a cell watches: the client, the front end, the PostgreSQL backends.
#[derive(Default)]
struct Watched {
    client: HashMap<u32, Sched>,
    server: HashMap<u32, Sched>,
    backends: HashMap<u32, Sched>,
}

impl Watched {
    fn sample(client: &[u32], server: &[u32], backends: &[u32]) -> Watched {
        let map = |pids: &[u32]| pids.iter().map(|p| (*p, Sched::of(*p))).collect();
        Watched { client: map(client), server: map(server), backends: map(backends) }
    }

    /// Per group, what was used since `before` (a process not seen then counts from zero).
    fn since(&self, before: &Watched) -> [Sched; 3] {
        let delta = |now: &HashMap<u32, Sched>, then: &HashMap<u32, Sched>| {
            let mut d = Sched::default();
            for (pid, s) in now {
                let t = then.get(pid).copied().unwrap_or_default();
                d.cpu_ns += s.cpu_ns.saturating_sub(t.cpu_ns);
                d.wait_ns += s.wait_ns.saturating_sub(t.wait_ns);
            }
            d
        };
        [delta(&self.client, &before.client), delta(&self.server, &before.server), delta(&self.backends, &before.backends)]
    }
}

/// What the run shares: the room, its start events, who signs, where to connect.
struct Bench {
    config: Config,
    origin: String,
    origin_key: ServerKey,
    room_id: String,
    starts: Vec<String>,
    limit: i32,
    /// The front end's address and its name for TLS.
    address: ServerName,
    tls: TlsConnector,
    client: FederationClient,
    /// Per endpoint, per start event: (path and query, Authorization header).
    signed: HashMap<&'static str, Vec<(String, String)>>,
    /// For the backends' process IDs.
    monitor: tokio_postgres::Client,
    server_pid: Option<u32>,
}

/// One client's connection, of one mode.
enum Caller {
    Sql { db: tokio_postgres::Client, statement: Statement, backend_pid: u32 },
    KeepAlive { sender: SendRequest<Full<Bytes>> },
    NewConnection,
}

fn tls_name(address: &ServerName) -> Result<TlsServerName<'static>, String> {
    Ok(match &address.host {
        Host::Ipv4(ip) => TlsServerName::IpAddress((*ip).into()),
        Host::Ipv6(ip) => TlsServerName::IpAddress((*ip).into()),
        Host::Dns(name) => TlsServerName::try_from(name.clone()).map_err(|e| format!("{name}: {e}"))?,
    })
}

/// A session as db.rs opens the front end's: the federation functions read the server name.
async fn database(config: &Config) -> Result<tokio_postgres::Client, String> {
    let mut db_config: tokio_postgres::Config = config.database_url.parse().map_err(|e| format!("database_url: {e}"))?;
    db_config.options(format!("-c roomserver.server_name={}", config.server_name));
    db_config.application_name("federation-load");
    let (db, connection) = db_config.connect(NoTls).await.map_err(|e| format!("database: {e}"))?;
    tokio::spawn(connection);
    Ok(db)
}

impl Bench {
    /// The front end's pool connections' backends.
    async fn front_end_backends(&self) -> Vec<u32> {
        let rows = self
            .monitor
            .query("SELECT pid FROM pg_catalog.pg_stat_activity WHERE application_name = 'roomserver-http' AND datname = pg_catalog.current_database()", &[])
            .await
            .unwrap_or_default();
        rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect()
    }

    async fn connect(&self, mode: Mode, endpoint: Endpoint) -> Result<Caller, String> {
        match mode {
            Mode::Sql => {
                let db = database(&self.config).await?;
                let statement = db.prepare(endpoint.statement()).await.map_err(|e| format!("prepare: {e}"))?;
                let backend_pid = db.query_one("SELECT pg_backend_pid()", &[]).await.map_err(|e| e.to_string())?.get::<_, i32>(0) as u32;
                Ok(Caller::Sql { db, statement, backend_pid })
            }
            Mode::KeepAlive => {
                let host = self.address.host_string();
                let port = self.address.port_or_default();
                let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connect to {host}:{port}: {e}"))?;
                tcp.set_nodelay(true).map_err(|e| e.to_string())?;
                let tls = self.tls.connect(tls_name(&self.address)?, tcp).await.map_err(|e| format!("TLS: {e}"))?;
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP: {e}"))?;
                tokio::spawn(connection);
                Ok(Caller::KeepAlive { sender })
            }
            Mode::NewConnection => Ok(Caller::NewConnection),
        }
    }

    /// One request from start event `i`: the response body, or why it failed.
    async fn call(&self, caller: &mut Caller, endpoint: Endpoint, i: usize) -> Result<String, String> {
        match caller {
            Caller::Sql { db, statement, .. } => {
                let from = vec![self.starts[i].clone()];
                let params: Vec<&(dyn ToSql + Sync)> = match endpoint {
                    Endpoint::Backfill => vec![&self.origin, &self.room_id, &from, &self.limit],
                    Endpoint::StateIds => vec![&self.origin, &self.room_id, &self.starts[i]],
                };
                let row = db.query_one(&*statement, &params).await.map_err(|e| format!("sql: {e}"))?;
                // The handler's statement: (allowed by the room's ACL, in the room, body).
                match (row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, Option<String>>(2)) {
                    (true, true, Some(body)) => Ok(body),
                    (allowed, in_room, _) => Err(format!("sql: allowed = {allowed}, in_room = {in_room}, no body")),
                }
            }
            Caller::KeepAlive { sender } => {
                let (path, authorization) = &self.signed[endpoint.name()][i];
                let request = Request::builder()
                    .method(Method::GET)
                    .uri(path.as_str())
                    .header(header::HOST, &self.config.server_name)
                    .header(header::AUTHORIZATION, authorization.as_str())
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                sender.ready().await.map_err(|e| format!("connection: {e}"))?;
                let response = sender.send_request(request).await.map_err(|e| format!("request: {e}"))?;
                let status = response.status();
                let body = response.into_body().collect().await.map_err(|e| format!("response: {e}"))?.to_bytes();
                http_body(status, &body)
            }
            Caller::NewConnection => {
                let path = &self.signed[endpoint.name()][i].0;
                let signer = Signer { origin: &self.origin, key: &self.origin_key };
                let response = self.client.request(&self.config.server_name, Method::GET, path, None, Some(signer)).await?;
                http_body(response.status, &response.body)
            }
        }
    }
}

fn http_body(status: StatusCode, body: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(body).into_owned();
    match status {
        StatusCode::OK => Ok(text),
        _ => Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>())),
    }
}

/// One mode's clients in one cell (endpoint, clients, mode), kept over the cell's rounds, and
/// what they measured.
struct Cell {
    mode: Mode,
    callers: Vec<Caller>,
    sql_backends: Vec<u32>,
    /// Start events are handed out in turn from one counter, so the clients share the cycle
    /// and each round goes on where the last one stopped.
    next: Arc<AtomicUsize>,
    latencies: Vec<Duration>,
    window: Duration,
    /// Client, front end, backends: used during the measured time.
    sched: [Sched; 3],
}

/// A cell's figures.
struct Figures {
    requests: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

impl Cell {
    async fn open(bench: &Bench, endpoint: Endpoint, mode: Mode, clients: usize) -> Result<Cell, String> {
        let mut callers = Vec::with_capacity(clients);
        for _ in 0..clients {
            callers.push(bench.connect(mode, endpoint).await?);
        }
        let sql_backends = callers.iter().filter_map(|c| if let Caller::Sql { backend_pid, .. } = c { Some(*backend_pid) } else { None }).collect();
        Ok(Cell {
            mode,
            callers,
            sql_backends,
            next: Arc::new(AtomicUsize::new(0)),
            latencies: Vec::new(),
            window: Duration::ZERO,
            sched: [Sched::default(); 3],
        })
    }

    async fn watch(&self, bench: &Bench) -> Watched {
        let backends = match self.mode {
            Mode::Sql => self.sql_backends.clone(),
            // The front end's pool grows as needed: its backends are listed at both ends.
            Mode::KeepAlive | Mode::NewConnection => bench.front_end_backends().await,
        };
        Watched::sample(&[std::process::id()], &bench.server_pid.into_iter().collect::<Vec<_>>(), &backends)
    }

    /// All clients call for `warmup` (not measured), then for `measure` or until `cap` measured
    /// requests.
    async fn run(&mut self, bench: &Arc<Bench>, endpoint: Endpoint, warmup: Duration, measure: Duration, cap: usize) -> Result<(), String> {
        let measured = Arc::new(AtomicUsize::new(0));
        let measure_from = Instant::now() + warmup;
        let deadline = measure_from + measure;
        let mut tasks = Vec::with_capacity(self.callers.len());
        for mut caller in std::mem::take(&mut self.callers) {
            let (bench, next, measured) = (bench.clone(), self.next.clone(), measured.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut last_end = measure_from;
                loop {
                    let t0 = Instant::now();
                    if t0 >= deadline || measured.load(Ordering::Relaxed) >= cap {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed) % bench.starts.len();
                    bench.call(&mut caller, endpoint, i).await?;
                    let t1 = Instant::now();
                    if t0 >= measure_from {
                        latencies.push(t1 - t0);
                        measured.fetch_add(1, Ordering::Relaxed);
                        last_end = last_end.max(t1);
                    }
                }
                Ok::<_, String>((caller, latencies, last_end))
            }));
        }
        tokio::time::sleep_until(measure_from.into()).await;
        let before = self.watch(bench).await;
        let mut end = measure_from;
        for task in tasks {
            let (caller, latencies, last_end) = task.await.map_err(|e| e.to_string())??;
            self.callers.push(caller);
            self.latencies.extend(latencies);
            end = end.max(last_end);
        }
        let used = self.watch(bench).await.since(&before);
        for (total, round) in self.sched.iter_mut().zip(used) {
            total.cpu_ns += round.cpu_ns;
            total.wait_ns += round.wait_ns;
        }
        self.window += end - measure_from;
        Ok(())
    }

    fn figures(&self) -> Result<Figures, String> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let (Some(p50), Some(p99)) = (percentile(&sorted, 0.50), percentile(&sorted, 0.99)) else {
            return Err("no request completed in the measured time".into());
        };
        Ok(Figures { requests: sorted.len(), per_second: sorted.len() as f64 / self.window.as_secs_f64(), p50, p99 })
    }
}

/// Waits until the front end answers `/version`.
async fn wait_for_server(bench: &Bench) -> Result<(), String> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match bench.client.request(&bench.config.server_name, Method::GET, "/_matrix/federation/v1/version", None, None).await {
            Ok(r) if r.status == StatusCode::OK => return Ok(()),
            Ok(r) if Instant::now() > give_up => return Err(format!("/version answered {}", r.status)),
            Err(e) if Instant::now() > give_up => return Err(format!("the front end does not answer: {e}")),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The HTTP answers equal the SQL answers, `origin_server_ts` (the time of the call) aside.
async fn check_answers(bench: &Bench, endpoints: &[Endpoint]) -> Result<(), String> {
    let comparable = |text: &str| -> Result<Value, String> {
        let mut v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if let Some(o) = v.as_object_mut() {
            o.remove("origin_server_ts");
        }
        Ok(v)
    };
    for &endpoint in endpoints {
        let mut sql = bench.connect(Mode::Sql, endpoint).await?;
        let mut http = bench.connect(Mode::KeepAlive, endpoint).await?;
        let mut fresh = bench.connect(Mode::NewConnection, endpoint).await?;
        for i in 0..bench.starts.len().min(3) {
            let expected = comparable(&bench.call(&mut sql, endpoint, i).await?)?;
            for caller in [&mut http, &mut fresh] {
                let got = comparable(&bench.call(caller, endpoint, i).await?)?;
                if got != expected {
                    return Err(format!("{}: the HTTP answer from {} differs from the SQL answer", endpoint.name(), bench.starts[i]));
                }
            }
            let items = match endpoint {
                Endpoint::Backfill => expected["pdus"].as_array().map_or(0, Vec::len),
                Endpoint::StateIds => expected["pdu_ids"].as_array().map_or(0, Vec::len),
            };
            if items == 0 {
                return Err(format!("{}: an empty answer from {}", endpoint.name(), bench.starts[i]));
            }
        }
    }
    Ok(())
}

/// Serves the origin's key where the front end's configuration says the origin's keys are.
async fn serve_origin_key(config: &Config, origin: &str, key: &ServerKey) -> Result<(), String> {
    let endpoint = config
        .key_server_overrides
        .get(origin)
        .ok_or_else(|| format!("the configuration has no key_server_overrides entry for {origin}"))?;
    let listener = TcpListener::bind((endpoint.address.host_string().as_str(), endpoint.address.port_or_default()))
        .await
        .map_err(|e| format!("key server on {}: {e}", endpoint.address))?;
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let tls = roomserver_http::server::tls_server_config(&read(&config.tls_certificate)?, &read(&config.tls_private_key)?)?;
    let responses = HashMap::from([(origin.to_owned(), key.key_response(origin, Duration::from_secs(24 * 3600), SystemTime::now()))]);
    let app = roomserver_http::fixed_key_server::router(responses, Arc::new(AtomicUsize::new(0)));
    tokio::spawn(roomserver_http::server::serve(listener, tls, app, std::future::pending()));
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let max_clients = *args.clients.iter().max().expect("--clients is not empty");
    if config.database_pool_size < max_clients {
        eprintln!("federation-load: database_pool_size {} < {max_clients} clients: HTTP requests will wait for connections", config.database_pool_size);
    }
    let origin_key = ServerKey::generate();
    serve_origin_key(&config, &args.origin, &origin_key).await?;

    let ca = std::fs::read(&config.trusted_ca_file).map_err(|e| format!("{}: {e}", config.trusted_ca_file.display()))?;
    let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(root_store_from_pem(&ca)?)
        .with_no_client_auth();
    let client = FederationClient::new(root_store_from_pem(&ca)?, Default::default());
    let address = client.address_of(&config.server_name)?;

    let monitor = database(&config).await?;
    let mut bench = Bench {
        config,
        origin: args.origin.clone(),
        origin_key,
        room_id: String::new(),
        starts: Vec::new(),
        limit: args.limit,
        address,
        tls: TlsConnector::from(Arc::new(tls_config)),
        client,
        signed: HashMap::new(),
        monitor,
        server_pid: args.server_pid,
    };
    let db = &bench.monitor;
    let room_id = match &args.room_id {
        Some(r) => r.clone(),
        None => {
            let rows = db.query("SELECT room_id FROM roomserver.rooms", &[]).await.map_err(|e| e.to_string())?;
            match rows.as_slice() {
                [row] => row.get(0),
                _ => return Err(format!("{} rooms in the database: name one with --room", rows.len())),
            }
        }
    };
    // A fixed pseudo-random choice (by hash), the same for every mode and every run on this room.
    let min_depth = 3 * args.limit as i64;
    let starts: Vec<String> = db
        .query(
            "SELECT event_id FROM roomserver.events WHERE room_id = $1 AND NOT outlier AND depth >= $2 ORDER BY md5(event_id) LIMIT $3",
            &[&room_id, &min_depth, &args.starts],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if starts.is_empty() {
        return Err(format!("{room_id} has no event at depth {min_depth} or more"));
    }
    let events: i64 = db.query_one("SELECT count(*) FROM roomserver.events WHERE room_id = $1", &[&room_id]).await.map_err(|e| e.to_string())?.get(0);
    for &endpoint in &args.endpoints {
        let signed = starts
            .iter()
            .map(|s| {
                let path = endpoint.path(&room_id, s, args.limit);
                let authorization = sign_request("GET", &path, &bench.origin, &bench.config.server_name, None, &bench.origin_key);
                (path, authorization)
            })
            .collect();
        bench.signed.insert(endpoint.name(), signed);
    }
    bench.room_id = room_id;
    bench.starts = starts;
    let bench = Arc::new(bench);

    wait_for_server(&bench).await?;
    check_answers(&bench, &args.endpoints).await?;

    println!(
        "# federation-load: room {} ({events} events), origin {}, limit {}, {} start events cycled; per cell {} s measured in {} turns (modes alternating) after {} s warm-up{}",
        bench.room_id,
        bench.origin,
        bench.limit,
        bench.starts.len(),
        args.seconds,
        args.rounds.max(1),
        args.warmup,
        args.requests.map_or(String::new(), |n| format!(" or {n} requests"))
    );
    println!("# cpu_ms/req and runq_ms/req: CPU time and run-queue wait per request of client / front end / PostgreSQL backends");
    println!(
        "{:<10} {:>7}  {:<20} {:>8} {:>9} {:>8} {:>8} {:>11}  {:>20} {:>20}",
        "endpoint", "clients", "mode", "requests", "req/s", "p50_ms", "p99_ms", "p50_vs_sql", "cpu_ms/req", "runq_ms/req"
    );
    let rounds = args.rounds.max(1);
    let per_round = Duration::from_secs_f64(args.seconds / rounds as f64);
    let cap = args.requests.map_or(usize::MAX, |n| n.div_ceil(rounds));
    for &endpoint in &args.endpoints {
        for &clients in &args.clients {
            let context = |mode: Mode, e: String| format!("{} {} x{clients}: {e}", endpoint.name(), mode.name());
            let mut cells = Vec::with_capacity(args.modes.len());
            for &mode in &args.modes {
                cells.push(Cell::open(&bench, endpoint, mode, clients).await.map_err(|e| context(mode, e))?);
            }
            // The modes take turns, so that the machine's other work falls on all of them alike.
            for round in 0..rounds {
                let warmup = if round == 0 { Duration::from_secs_f64(args.warmup) } else { Duration::ZERO };
                for cell in &mut cells {
                    cell.run(&bench, endpoint, warmup, per_round, cap).await.map_err(|e| context(cell.mode, e))?;
                }
            }
            let mut sql_p50 = None;
            for cell in &cells {
                let mode = cell.mode;
                let figures = cell.figures().map_err(|e| context(mode, e))?;
                if mode == Mode::Sql {
                    sql_p50 = Some(figures.p50);
                }
                let ratio = match (mode, sql_p50) {
                    (Mode::Sql, _) | (_, None) => String::new(),
                    (_, Some(base)) => format!("{:.2}x", figures.p50.as_secs_f64() / base.as_secs_f64()),
                };
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                let per_request = |ns: u64| ns as f64 / 1e6 / figures.requests as f64;
                let three = |f: fn(&Sched) -> u64| {
                    let [client, front, pg] = cell.sched.each_ref().map(|s| per_request(f(s)));
                    let front = if mode == Mode::Sql || bench.server_pid.is_none() { "-".to_owned() } else { format!("{front:.2}") };
                    format!("{client:.2}/{front}/{pg:.2}")
                };
                println!(
                    "{:<10} {:>7}  {:<20} {:>8} {:>9.1} {:>8.2} {:>8.2} {:>11}  {:>20} {:>20}",
                    endpoint.name(),
                    clients,
                    mode.name(),
                    figures.requests,
                    figures.per_second,
                    ms(figures.p50),
                    ms(figures.p99),
                    ratio,
                    three(|s| s.cpu_ns),
                    three(|s| s.wait_ns)
                );
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("federation-load: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("federation-load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |n: u64| Duration::from_millis(n);
        let hundred: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&hundred, 0.50), Some(ms(50)));
        assert_eq!(percentile(&hundred, 0.99), Some(ms(99)));
        assert_eq!(percentile(&hundred, 1.0), Some(ms(100)));
        assert_eq!(percentile(&hundred, 0.0), Some(ms(1)));
        let ten: Vec<Duration> = (1..=10).map(ms).collect();
        assert_eq!(percentile(&ten, 0.50), Some(ms(5)));
        assert_eq!(percentile(&ten, 0.99), Some(ms(10)), "fewer than 100 samples: the largest");
        assert_eq!(percentile(&[ms(7)], 0.5), Some(ms(7)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn schedstat_lines() {
        assert_eq!(Sched::parse("355900456 256573340 328\n"), Some(Sched { cpu_ns: 355900456, wait_ns: 256573340 }));
        assert_eq!(Sched::parse("12"), None);
        assert_eq!(Sched::parse(""), None);
        let own = Sched::of(std::process::id());
        if std::path::Path::new("/proc/self/schedstat").exists() {
            assert!(own.cpu_ns > 0, "this test runs, so it has used the CPU");
        }
    }

    #[test]
    fn paths_encode_the_room_and_the_event() {
        assert_eq!(Endpoint::Backfill.path("!r:s", "$e/1", 100), "/_matrix/federation/v1/backfill/%21r%3As?v=%24e%2F1&limit=100");
        assert_eq!(Endpoint::StateIds.path("!r:s", "$e", 100), "/_matrix/federation/v1/state_ids/%21r%3As?event_id=%24e");
    }
}
