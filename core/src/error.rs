//! One error type for the whole core. Each error says *which* field or input is at fault and
//! carries a [`ErrorKind`] that the SQL shell maps to a SQLSTATE (and a front end to an HTTP
//! status / Matrix errcode, see README "Errors").

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is not the JSON shape the spec requires (wrong type, missing key, bad ID syntax).
    BadJson,
    /// A JSON number that is not an integer in the canonical range [-(2^53)+1, 2^53-1].
    IntegerOutOfRange,
    /// A string (an ID, a type, a state key) longer than the spec allows.
    StringTooLong,
    /// A room version this implementation does not know.
    UnsupportedRoomVersion,
    /// Something the call refers to (an event, a room) is not known.
    NotFound,
    /// An event refers to events (prev or auth events) that are not stored, or have no state,
    /// so it cannot be admitted as it was asked to be.
    MissingReferences,
    /// The input is well-formed but violates a structural rule (a cycle in auth_events,
    /// duplicate auth events, an absurd limit).
    InvalidParameter,
    /// The input is well-formed but the answer would be larger than this implementation builds
    /// (a NID set of more than `nid_set::MAX_DECODED` NIDs).
    TooLarge,
    /// What the database holds does not decode (a column of the wrong type, a NULL where the
    /// schema promises a value, a NID set or state block that does not parse): the fault is in
    /// this server's storage, never in the caller's input.
    CorruptStorage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// The offending field as a JSON path (`content.membership`, `prev_events[2]`), when one applies.
    pub field: Option<String>,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, field: Option<&str>, message: impl Into<String>) -> Self {
        Error { kind, field: field.map(str::to_owned), message: message.into() }
    }
    pub fn bad_json(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadJson, Some(field), message)
    }
    pub fn missing(field: &str) -> Self {
        Self::bad_json(field, format!("required key \"{field}\" is missing"))
    }
    pub fn wrong_type(field: &str, expected: &str) -> Self {
        Self::bad_json(field, format!("\"{field}\" must be {expected}"))
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, None, message)
    }
    pub fn missing_references(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MissingReferences, None, message)
    }
    pub fn invalid(field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, field, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, None, message)
    }
    /// Storage that does not decode; `what` names the table and column.
    pub fn corrupt(what: &str, message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::CorruptStorage, Some(what), format!("corrupt storage in {what}: {message}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
