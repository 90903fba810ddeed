//! The storage adapters: how the core's state store, ingest and the walks read and write the
//! extension's tables through SPI (prepared plans, the per-backend block cache, typed row reads).

pub mod block_cache;
pub mod ingest;
pub mod plans;
pub mod rows;
pub mod state_store;
