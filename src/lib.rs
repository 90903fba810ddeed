//! pg_roomserver: the storage half of a Matrix roomserver as a PostgreSQL extension.
//!
//! The Matrix logic lives in the `roomserver-core` crate (no PostgreSQL types). This crate only
//! adapts it: SQL functions (`#[pg_extern]`), SPI, type conversion and error reporting. Tables,
//! indexes, views and SQL-language functions are hand-written in `sql/`.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod auth_functions;
mod block_cache;
mod errors;
mod federation_functions;
mod ingest;
mod json_functions;
mod spi_plans;
mod state_functions;
mod state_store;

extension_sql_file!("../sql/01_nids.sql", name = "nids", bootstrap);
extension_sql_file!("../sql/02_events.sql", name = "events", requires = ["nids"]);
extension_sql_file!("../sql/03_nid_functions.sql", name = "nid_functions", requires = ["events"]);
extension_sql_file!("../sql/04_event_reads.sql", name = "event_reads", requires = ["nid_functions"]);
extension_sql_file!("../sql/06_state.sql", name = "state", requires = ["event_reads", nid_set_decode, nid_set_union, snapshot_lookup, snapshot_state_arrays, snapshot_entries, block_entries]);
extension_sql_file!(
    "../sql/07_federation.sql",
    name = "federation",
    requires = ["state", redact, backfill_walk, forwards_fill_walk, get_missing_events_walk, server_may_see_events]
);
extension_sql_file!("../sql/99_finalize.sql", name = "finalize", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
