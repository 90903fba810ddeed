//! `#[pg_test]`s: the SQL layer, run inside PostgreSQL by `cargo pgrx test`.

mod federation_tests;
mod generated_room_tests;
mod ingest_tests;
mod json_function_tests;
