//! roomserver-http: the reference Matrix federation front end over pg_roomserver. It
//! authenticates requests, parses them, makes one SQL call and maps errors; the Matrix logic
//! (signing, key responses, server names) is roomserver-core's.

pub mod admin;
pub mod auth;
pub mod config;
pub mod db;
pub mod errors;
pub mod federation_reads;
pub mod fixed_key_server;
pub mod invites;
pub mod joins;
pub mod keys;
pub mod local_events;
pub mod outbound;
pub mod outbox;
pub mod pdu_checks;
pub mod remote_backfill;
pub mod remote_join;
pub mod remote_keys;
pub mod room_access;
pub mod routes;
pub mod server;
pub mod statements;
pub mod transactions;

/// The time now in Unix milliseconds (Matrix timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
