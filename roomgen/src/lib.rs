//! roomgen: deterministic generator of realistic Matrix rooms as valid PDUs (correct content
//! hashes, event IDs, prev_events, depths and auth_events) for room versions 1-12, the input of
//! the tests and benchmarks. What the rooms are checked against (full-state replays, an
//! independent auth rules check, Synapse) is in the conformance crate, not here.
//!
//! The same `RoomConfig` always yields byte-identical output: the PRNG is the core's own
//! (`roomserver_core::prng`), and every collection whose order reaches the output is ordered.

mod auth_select;
mod generator;
mod merge;
pub mod power_levels;
pub mod state;

use std::collections::BTreeMap;

use serde_json::Value;

pub use roomserver_core::{Error, Result};

#[derive(Clone, Debug)]
pub struct RoomConfig {
    pub seed: u64,
    /// "1" .. "12".
    pub room_version: String,
    /// Users that will arrive over the room's life (at least 2). User n is `@user{n}:s{n % servers}.example`.
    pub members: usize,
    pub servers: usize,
    /// Total number of PDUs, the creation events included.
    pub events: usize,
    /// Linear events between forks; 0 = never fork.
    pub fork_every: usize,
    /// Concurrent branches per fork (2 or more to fork).
    pub fork_width: usize,
    /// Events on each branch before the merge event.
    pub fork_depth: usize,
    /// Share of the ordinary (non-arrival) events that are state changes, 0..=1.
    pub state_churn: f64,
    /// Share of the power-level changes that happen, 0..=1: the others are replaced by a change
    /// of another kind (topic, display name). 1 (the default) keeps every one; fork conflicts
    /// then change power levels at nearly every merge, far more often than real rooms do.
    pub power_share: f64,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            seed: 1,
            room_version: "11".to_owned(),
            members: 50,
            servers: 3,
            events: 1000,
            fork_every: 50,
            fork_width: 3,
            fork_depth: 4,
            state_churn: 0.2,
            power_share: 1.0,
        }
    }
}

impl RoomConfig {
    /// The bundled demo room: ~40 events, v12, 8 members on 3 servers, a fork and merge, a ban,
    /// topic changes and messages.
    pub fn sample() -> RoomConfig {
        RoomConfig {
            seed: 9,
            room_version: "12".to_owned(),
            members: 8,
            servers: 3,
            events: 40,
            fork_every: 18,
            fork_width: 3,
            fork_depth: 3,
            state_churn: 0.3,
            power_share: 1.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RoomSummary {
    pub room_id: String,
    pub room_version: String,
    pub events: usize,
    pub state_events: usize,
    pub forks: usize,
    pub merges: usize,
    pub max_depth: i64,
    pub final_joined_members: usize,
    /// Events per kind: create, join, leave, kick, ban, unban, invite, knock, displayname,
    /// power_levels, join_rules, history_visibility, name, topic, message, redaction.
    pub kinds: BTreeMap<String, usize>,
}

/// Streams the room's PDUs in a valid topological order (each event after its prev and auth
/// events).
pub fn generate(config: &RoomConfig, sink: impl FnMut(&Value)) -> Result<RoomSummary> {
    generator::Generator::new(config, sink)?.run()
}

/// How the binary writes a PDU per line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// JSON Lines: compact JSON, one PDU per line.
    Jsonl,
    /// PostgreSQL `COPY ... FROM` text format for a single jsonb column: backslash is COPY's
    /// escape character, so it is doubled. Compact JSON has no raw tab or newline to escape.
    Copy,
}

/// One output line (with its trailing newline) for `event`.
pub fn format_line(event: &Value, format: OutputFormat) -> String {
    let json = event.to_string();
    let mut line = match format {
        OutputFormat::Jsonl => json,
        OutputFormat::Copy => json.replace('\\', "\\\\"),
    };
    line.push('\n');
    line
}

/// The whole room in memory (tests, small rooms).
pub fn generate_vec(config: &RoomConfig) -> Result<(Vec<Value>, RoomSummary)> {
    let mut out = Vec::new();
    let summary = generate(config, |e| out.push(e.clone()))?;
    Ok((out, summary))
}
