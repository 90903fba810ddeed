//! roomserver-conformance: the oracles the tests compare roomserver-core and the extension
//! against, kept apart from the room generator (`roomgen`) that makes their input.
//!
//! - [`naive_state`]: a room's state replayed naively, full states at every event and state
//!   resolution over whole states at every merge: what the state storage must agree with.
//! - [`auth_oracle`]: the spec's authorization rules written again, independently of
//!   `roomserver_core::auth`, for the kinds of events the generator makes.
//! - [`synapse`]: Synapse's own state resolution (`synapse_state_res.py`, matrix-synapse from
//!   PyPI), an independent implementation, for the differential test and the benchmark.

pub mod auth_oracle;
pub mod naive_state;
pub mod synapse;
