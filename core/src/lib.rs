//! roomserver-core: the Matrix logic of pg_roomserver in plain Rust, with no PostgreSQL types.
//! The extension (`src/` at the repository root) only adapts these functions to SQL. The room
//! generator and the conformance oracles build on it too, and share its `prng` and `varint`.

pub mod auth;
pub mod auth_chain;
pub mod canonical_json;
pub mod error;
pub mod event;
pub mod hashes;
pub mod local_event;
pub mod nid_set;
pub mod prng;
pub mod redaction;
pub mod room_state;
pub mod room_version;
pub mod server_acl;
pub mod server_keys;
pub mod server_name;
pub mod signing;
pub mod state_res;
pub mod state_blocks;
pub mod stored_form;
pub mod traversal;
pub mod varint;
pub mod visibility;

pub use error::{Error, ErrorKind, Result};
pub use event::Pdu;
pub use room_version::RoomVersion;
