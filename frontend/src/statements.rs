//! SQL statements more than one module issues, written once.

/// Which of the event IDs `$1` no room has stored.
pub const UNKNOWN_EVENTS: &str =
    "SELECT array(SELECT x FROM unnest($1::text[]) x WHERE NOT EXISTS (SELECT 1 FROM roomserver.events e WHERE e.event_id = x))";
/// Stores the PDUs `$1` (a JSON array) of room version `$2` as outliers: how many were given.
pub const INGEST_OUTLIERS: &str = "SELECT count(*) FROM roomserver.ingest_events($1::text::jsonb, $2, true)";
