-- Events and their DAG edges.

CREATE SEQUENCE roomserver.event_nid_seq AS bigint START 1;

-- No foreign keys on the two hot tables: each would cost a trigger and an index probe per row on
-- every ingest (measured: most of the ingest time), and ingest is their only writer and resolves
-- every NID before it writes. roomserver.check_integrity() verifies the references on demand.
--
-- The PDU is stored compactly: the fields held in columns (type, state_key, sender, depth,
-- origin_server_ts, room_id, and event_id for room versions 1-2) and the prev/auth references
-- (held in event_edges) are removed from `pdu_rest`; roomserver_internal.stored_pdus() puts them back, giving
-- JSON equal to the original under canonical JSON.
CREATE TABLE roomserver.stored_events (
    room_nid         bigint  NOT NULL,
    event_nid        bigint  NOT NULL DEFAULT nextval('roomserver.event_nid_seq'),
    event_id         text    NOT NULL,
    event_type_nid   bigint  NOT NULL,
    state_key_nid    bigint,             -- NULL for non-state events
    sender_nid       bigint  NOT NULL,   -- an event_state_keys NID of the room
    depth            bigint  NOT NULL,
    origin_server_ts bigint  NOT NULL,
    -- false: hashes.sha256 did not match the content, so the event was stored redacted (spec:
    -- "Checks performed on receipt of a PDU", step 5).
    content_hash_ok  boolean NOT NULL,
    -- true only for a room version 12 create event, which has no room_id key.
    room_id_implied  boolean NOT NULL DEFAULT false,
    pdu_rest         jsonb   NOT NULL,
    -- Stored without state: its prev events were not known (e.g. an auth event fetched alone).
    outlier          boolean NOT NULL DEFAULT false,
    -- Why the checks on receipt rejected the event (it never changes state); NULL if accepted.
    rejection        text,
    -- Why the event failed against the room's current state: stored with state, but never a
    -- forward extremity; NULL if it did not.
    soft_failure     text,
    -- Snapshot NIDs (roomserver.state_snapshots) of the state before and after the event;
    -- NULL for outliers. Equal for non-state and rejected events.
    state_before     bigint,
    state_after      bigint,
    -- For state events: the auth chain (every event reachable through auth_events) as a compact
    -- NID set (core/src/nid_set.rs); roomserver.auth_chain_nids() reads it.
    auth_chain       bytea,
    -- When roomserver.purge_redacted_content() replaced pdu_rest with the redacted form (the
    -- event is the target of an applied redaction): why the content no longer matches
    -- hashes.sha256. NULL unless purged.
    content_purged_at timestamptz,
    PRIMARY KEY (room_nid, event_nid),
    -- Leading event_id so that lookups by event ID alone (GET /event/{id}) use it too.
    CONSTRAINT stored_events_event_id_room_key UNIQUE (event_id, room_nid),
    CONSTRAINT stored_events_nid_positive CHECK (event_nid > 0),
    CONSTRAINT stored_events_state_unless_outlier CHECK (outlier = (state_before IS NULL) AND outlier = (state_after IS NULL))
);
ALTER SEQUENCE roomserver.event_nid_seq OWNED BY roomserver.stored_events.event_nid;
CREATE INDEX stored_events_room_depth ON roomserver.stored_events (room_nid, depth, event_nid);
-- roomserver.timestamp_to_event: the closest event to a time in one probe, read forwards or
-- backwards. Only the events it may answer with (not outliers, not rejected), in its order:
-- origin_server_ts, then depth, then arrival (Synapse's get_event_id_for_timestamp).
CREATE INDEX stored_events_room_ts ON roomserver.stored_events (room_nid, origin_server_ts, depth, event_nid)
    WHERE NOT outlier AND rejection IS NULL;
COMMENT ON TABLE roomserver.stored_events IS 'One row per PDU, strings as NIDs; the PDU minus the columns is pdu_rest. Use roomserver.events (view) or roomserver.pdu(event_id) to read.';

-- prev_events ('p') and auth_events ('a') of each event, in PDU order. A reference to an event
-- not yet stored keeps its event ID in target_event_id; when that event arrives, ingest sets
-- target_nid and clears the text (so the edge costs 8 bytes, not 44).
CREATE TABLE roomserver.event_edges (
    room_nid        bigint   NOT NULL,
    event_nid       bigint   NOT NULL,
    kind            "char"   NOT NULL,
    position        smallint NOT NULL,
    target_nid      bigint,
    target_event_id text,
    -- Room versions 1-2 reference events as [event_id, {"sha256": ...}]: the hashes object.
    ref_hashes      jsonb,
    PRIMARY KEY (room_nid, event_nid, kind, position),
    CONSTRAINT event_edges_kind CHECK (kind IN ('p', 'a')),
    CONSTRAINT event_edges_known_xor_pending CHECK ((target_nid IS NULL) <> (target_event_id IS NULL))
);
-- Successors of an event (forwards fill, extremities).
CREATE INDEX event_edges_target ON roomserver.event_edges (room_nid, target_nid, kind) WHERE target_nid IS NOT NULL;
-- References still waiting for their event.
CREATE INDEX event_edges_pending ON roomserver.event_edges (target_event_id, room_nid) WHERE target_nid IS NULL;
COMMENT ON TABLE roomserver.event_edges IS 'prev_events (kind p) and auth_events (kind a) references; target_event_id is set only while the referenced event is not yet known.';
-- The gaps of a room (events whose prev events are not stored) without scanning the room.
CREATE INDEX event_edges_pending_prev ON roomserver.event_edges (room_nid, event_nid) WHERE target_nid IS NULL AND kind = 'p';

-- Dumped by pg_dump (see sql/schema/01_nids.sql).
SELECT pg_catalog.pg_extension_config_dump('roomserver.stored_events', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_edges', '');
