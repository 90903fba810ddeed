-- Descriptions of the API's Rust functions (#[pg_extern] in src/api/), so that \df+ roomserver.*
-- shows one for every function. SQL-language functions and views carry theirs next to their
-- definition in the other sql/api/*.sql files. Runs after every function exists.

-- Pure functions (src/api/json.rs, src/api/auth.rs): read no tables.
COMMENT ON FUNCTION roomserver.canonical_json(jsonb) IS
    'The Matrix canonical JSON of a value: keys sorted, no insignificant whitespace, UTF-8, integers only. ERROR 22003 for a number that is not an integer.';
COMMENT ON FUNCTION roomserver.redact(jsonb, text) IS
    'A PDU redacted by the redaction algorithm of room_version. ERROR 0A000 for an unknown room version, 22023 when pdu is not a JSON object.';
COMMENT ON FUNCTION roomserver.event_id_for(jsonb, text) IS
    'The event ID of a PDU in room_version: its event_id key in v1-v2, $ + the reference hash from v3 (standard unpadded base64 in v3, URL-safe from v4). ERROR 0A000 for an unknown room version, 22023 for a malformed PDU.';
COMMENT ON FUNCTION roomserver.room_id_for_create_event(jsonb, text) IS
    'The room ID a room version 12 create event defines: ! + its reference hash. ERROR 22000 for a room version whose room IDs are not derived from the create event, 0A000 for an unknown one.';
COMMENT ON FUNCTION roomserver.content_hash(jsonb) IS
    'The sha256 content hash of a PDU (without unsigned, signatures and hashes), unpadded base64: what its hashes.sha256 must be. ERROR 22023 when pdu is not a JSON object.';
COMMENT ON FUNCTION roomserver.check_auth(jsonb, text, jsonb) IS
    'Checks a PDU against the authorization rules of room_version with state, a JSON array of the state events to check against: {"allowed": bool, "reason": text}. ERROR 22023 for a malformed PDU, 22000 when state repeats a key or holds a non-state event.';
COMMENT ON FUNCTION roomserver.resolve_state(text, jsonb, jsonb) IS
    'Resolves state_sets (a JSON array of arrays of event IDs) with the algorithm of room_version, events mapping every event ID it may need (the sets'' events and their auth chains) to its PDU: {"<type>": {"<state_key>": "<event_id>"}}. ERROR P0002 for an event missing from events, 22000 for cycles or malformed state sets.';

-- Ingest (src/api/ingest.rs): SECURITY DEFINER, granted by grant_writer.
COMMENT ON FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) IS
    'Stores one PDU whose signatures the caller has verified; returns {"event_id", "event_nid", "room_id", "duplicate", "content_hash_ok", "outlier", "rejection", "soft_failure"}. With state_event_ids (stored events: the state before it, e.g. from a send_join response) its prev events need not be stored. ERROR 23503 when its auth events (or, unless outlier or given its state, its prev events with state) are not stored, 22000 for a state_event_ids set that is not a state, 25006 on a standby, 40001/40P01 to retry the transaction; the README lists every SQLSTATE.';
COMMENT ON FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) IS
    'Stores a JSON array of PDUs in any order (each after the events of the array it references), all or nothing, returning one ingest_event result per element: the bulk path (batches of about 1,000). With backfilled (a /backfill response) the events never become forward extremities nor change the current state, and those whose prev events are not stored yet are stored as outliers until the history before them arrives. Errors as ingest_event, the message naming pdus[i].';

-- Local events (src/api/local_events.rs): reads the room, builds the PDU in the core.
COMMENT ON FUNCTION roomserver.prepare_event(text, text, text, text, jsonb, bigint) IS
    'The unsigned PDU of a new local event (make_join, make_leave, make_knock, a client''s send), for the caller to sign: prev_events the room''s forward extremities (the 10 deepest), depth one more, auth_events by the auth events selection from the current state, hashes.sha256 set, in the room version''s format (v1-v2: reference pairs and an event_id). ERROR 42501 naming the failed rule when the sender may not send it, P0002 for an unknown room, 55000 for a room with no current state, 22004 on NULL room_id, type, sender or content, 22023 when content is not an object.';

-- State storage through the backend's cache (src/api/state.rs), on NIDs.
COMMENT ON FUNCTION roomserver.snapshot_lookup(bigint, bigint, bigint[], bigint[]) IS
    'The event NID of each (type NID, state key NID) pair in a state snapshot of the room, ord giving the pair''s position (event_nid NULL: not in the state). ERROR P0002 when the snapshot is not one of the room''s, 22000 when the arrays differ in length or hold NULL.';
COMMENT ON FUNCTION roomserver.snapshot_entries(bigint, bigint) IS
    'The full state of a snapshot of the room as NIDs, one row per entry sorted by key. ERROR P0002 when the snapshot is not one of the room''s.';
COMMENT ON FUNCTION roomserver.snapshot_state_arrays(bigint, bigint) IS
    'The full state of a snapshot of the room as one row of three parallel arrays sorted by key (type, state key and event NIDs): cheaper than snapshot_entries for large states. ERROR P0002 when the snapshot is not one of the room''s.';
COMMENT ON FUNCTION roomserver.snapshot_diff(bigint, bigint, bigint) IS
    'The entries of to_snapshot that differ from from_snapshot (event_nid 0: the key is gone), reading only the blocks the two do not share. ERROR P0002 when a snapshot is not one of the room''s.';
COMMENT ON FUNCTION roomserver.block_entries(bigint, bigint) IS
    'The entries of one stored state block, unpacked from state_blocks.entries (event_nid 0: the block removes the key). ERROR P0002 when the block is not one of the room''s, XX001 when it does not decode.';
COMMENT ON FUNCTION roomserver.nid_set_decode(bytea) IS
    'The NIDs of a compact NID set (stored_events.auth_chain), ascending. ERROR 54000 for a set of more than 2^25 NIDs; bytes that are not a NID set are an error, never a wrong answer.';
COMMENT ON FUNCTION roomserver.nid_set_union(bytea[]) IS
    'The union of compact NID sets, ascending, NULL elements skipped: the auth chain of many events in one pass. ERROR 54000 past 2^25 NIDs; bytes that are not a NID set are an error, never a wrong answer.';

-- Federation (src/api/federation.rs).
COMMENT ON FUNCTION roomserver.missing_events(jsonb) IS
    'What to fetch before ingesting a received PDU: {"missing_prev_events", "missing_auth_events"}, its prev events not stored with state (unknown or outliers) and its auth events not stored, in PDU order. ERROR P0002 when its room is unknown, 22023 when the PDU is malformed.';

-- Redactions (src/api/redactions.rs): internal, the rule of core/src/redaction.rs.
COMMENT ON FUNCTION roomserver_internal.redaction_target(jsonb, text) IS
    'The event an m.room.redaction event names, from its PDU or stored remainder: top-level redacts before room version 11, content.redacts from 11; NULL when it names none. ERROR 0A000 for an unknown room version, 22023 when pdu is not a JSON object.';
COMMENT ON FUNCTION roomserver_internal.redaction_refusal(text, boolean, text, text, text, bigint, bigint) IS
    'Why a stored redaction does not apply to its target (rejected; target not stored, when target_type and target_sender are NULL; target is the create event; different server and below the redact level), NULL when it applies. The power check reads the state before the redaction (its auth events for an outlier), only in room version 3+ and for different servers. ERROR 22004 for a NULL room_version, rejected, redaction_sender, room_nid or redaction_nid.';
COMMENT ON FUNCTION roomserver_internal.redacted_pdu_rest(jsonb, text) IS
    'The stored remainder (pdu_rest) of the redacted form of a PDU: what roomserver.purge_redacted_content keeps. ERROR 0A000 for an unknown room version, 22023 for a malformed PDU.';
COMMENT ON FUNCTION roomserver_internal.server_acl_allows(jsonb, text) IS
    'Whether an m.room.server_acl content allows a server name (core/src/server_acl.rs): port stripped, allow_ip_literals, deny before allow, globs * and ? ignoring ASCII case. Use roomserver.server_allowed(room_id, server_name) for a room.';
