//! The authorization rules of room versions 1-12 (the room version specifications, "Authorisation
//! rules"), the auth events selection (server-server API), and the three checks made on receipt
//! of a PDU.
//!
//! Not checked here, because they need the origin servers' signing keys, which the front end
//! holds: that events are signed by the sender's server, and (v8+) that a join carrying
//! `join_authorised_via_users_server` is signed by that user's server. Third-party invite
//! signatures are checked: their keys are in the room state.

use std::collections::HashMap;

use crate::event::Pdu;
use crate::room_version::RoomVersion;

pub mod power_levels;
mod rules;
mod selection;
mod third_party_invite;

pub use rules::check_event_auth;
pub use selection::{auth_events_state, auth_types_for_event};

/// A state map: (event type, state key) -> T.
pub type StateMap<T> = HashMap<(String, String), T>;

/// A view of room state: (event type, state key) -> event.
pub trait StateLookup {
    fn lookup(&self, event_type: &str, state_key: &str) -> Option<&Pdu>;
}

impl StateLookup for StateMap<Pdu> {
    fn lookup(&self, event_type: &str, state_key: &str) -> Option<&Pdu> {
        self.get(&(event_type.to_owned(), state_key.to_owned()))
    }
}

impl<'a> StateLookup for StateMap<&'a Pdu> {
    fn lookup(&self, event_type: &str, state_key: &str) -> Option<&Pdu> {
        self.get(&(event_type.to_owned(), state_key.to_owned())).copied()
    }
}

/// Why an event is not allowed: a sentence a human can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Self {
        Rejection { reason: reason.into() }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The outcome of the checks made on receipt of a PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptOutcome {
    Accepted,
    /// Failed against its auth events or the state before it: the event is rejected.
    Rejected(Rejection),
    /// Passed those but fails against the current state: stored, but not used as a prev event.
    SoftFailed(Rejection),
}

/// The spec's checks on receipt (server-server API, "Checks performed on receipt of a PDU"):
/// 1. against the event's own auth events (reject), 2. against the state before the event
/// (reject), 3. against the current state of the room (soft fail).
pub fn check_on_receipt(
    rv: &RoomVersion,
    event: &Pdu,
    auth_state: &dyn StateLookup,
    state_before: &dyn StateLookup,
    current_state: &dyn StateLookup,
) -> ReceiptOutcome {
    if let Err(r) = check_event_auth(rv, event, auth_state) {
        return ReceiptOutcome::Rejected(Rejection::new(format!("against its auth events: {}", r.reason)));
    }
    if let Err(r) = check_event_auth(rv, event, state_before) {
        return ReceiptOutcome::Rejected(Rejection::new(format!("against the state before it: {}", r.reason)));
    }
    match check_event_auth(rv, event, current_state) {
        Ok(()) => ReceiptOutcome::Accepted,
        Err(r) => ReceiptOutcome::SoftFailed(Rejection::new(format!("against the current state: {}", r.reason))),
    }
}

/// The server name of a user or event ID (`@local:server` -> `server`), `""` when it has none;
/// the rule is [`crate::visibility::server_name_of`].
pub(crate) fn server_of(id: &str) -> &str {
    crate::visibility::server_name_of(id).unwrap_or("")
}

/// The spec's user ID grammar as far as the auth rules need it: `@localpart:server`, at most
/// 255 bytes, a non-empty server name.
pub(crate) fn is_valid_user_id(id: &str) -> bool {
    id.len() <= 255
        && id.starts_with('@')
        && matches!(id[1..].split_once(':'), Some((_, server)) if !server.is_empty())
}

#[cfg(test)]
mod tests;
