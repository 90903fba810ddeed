//! The SQL surface: every `#[pg_extern]` of the extension. Each function converts its arguments,
//! calls the core or the store, and converts the result; SQL-language functions and views are in
//! `sql/api/`.

pub mod auth;
pub mod federation;
pub mod ingest;
pub mod json;
pub mod json_input;
pub mod local_events;
mod redactions;
pub mod state;
