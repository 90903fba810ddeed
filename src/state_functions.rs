//! SQL helpers over stored state that need Rust: decoding the compact auth chain sets.

use pgrx::prelude::*;
use roomserver_core::nid_set;

use crate::errors::OrRaise;

/// The NIDs of a compact NID set (stored_events.auth_chain), ascending.
#[pg_extern(immutable, strict, parallel_safe)]
fn nid_set_decode(bytes: &[u8]) -> Vec<i64> {
    nid_set::decode(bytes).or_raise("nid_set_decode")
}
