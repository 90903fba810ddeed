//! pg_roomserver: the storage half of a Matrix roomserver as a PostgreSQL extension.
//!
//! The Matrix logic lives in the `roomserver-core` crate (no PostgreSQL types). This crate only
//! adapts it: SQL functions (`#[pg_extern]`), SPI, type conversion and error reporting. Tables,
//! indexes, views and SQL-language functions are hand-written in `sql/`.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod api;
mod errors;
mod store;

// The schema (tables, sequences, indexes): written once per release, changed only by upgrade
// scripts (sql/pg_roomserver--A--B.sql).
extension_sql_file!("../sql/schema/01_nids.sql", name = "schema_nids", bootstrap);
extension_sql_file!("../sql/schema/02_events.sql", name = "schema_events", requires = ["schema_nids"]);
extension_sql_file!("../sql/schema/03_state.sql", name = "schema_state", requires = ["schema_events"]);
extension_sql_file!("../sql/schema/04_redactions.sql", name = "schema_redactions", requires = ["schema_state"]);
// The API (functions and views): CREATE OR REPLACE throughout, so every upgrade script replays it.
extension_sql_file!("../sql/api/01_nid_functions.sql", name = "nid_functions", requires = ["schema_redactions"]);
extension_sql_file!(
    "../sql/api/02_event_reads.sql",
    name = "event_reads",
    requires = ["nid_functions", redact, redaction_refusal, redacted_pdu_rest]
);
extension_sql_file!(
    "../sql/api/03_state.sql",
    name = "state",
    requires = ["event_reads", nid_set_decode, nid_set_union, snapshot_lookup, snapshot_state_arrays, snapshot_entries, block_entries]
);
extension_sql_file!(
    "../sql/api/04_federation.sql",
    name = "federation",
    requires = ["state", redact, backfill_walk, forwards_fill_walk, get_missing_events_walk, server_may_see_events, server_name_of, server_acl_allows]
);
// Needs the schema only; ordered after "federation" so that the API files run in their order.
extension_sql_file!("../sql/api/06_timeline.sql", name = "timeline", requires = ["federation"]);
extension_sql_file!("../sql/api/05_access.sql", name = "access", requires = ["timeline"]);
// The catalog comments of the Rust functions (SQL-language ones are commented where defined).
extension_sql_file!(
    "../sql/api/90_comments.sql",
    name = "comments",
    requires = [
        "access", block_entries, canonical_json, check_auth, content_hash, event_id_for, ingest_event, ingest_events, missing_events,
        nid_set_decode, nid_set_union, prepare_event, redact, resolve_state, room_id_for_create_event, snapshot_diff, snapshot_entries, snapshot_lookup,
        snapshot_state_arrays, redaction_target, redaction_refusal, redacted_pdu_rest, server_acl_allows
    ]
);
extension_sql_file!("../sql/api/99_finalize.sql", name = "finalize", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod tests;

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    store::block_cache::define_settings();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
