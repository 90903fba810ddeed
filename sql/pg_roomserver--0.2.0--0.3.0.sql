-- pg_roomserver 0.2.0 -> 0.3.0. Written by scripts/upgrade-script.sh from sql/upgrades/0.2.0--0.3.0.sql
-- and sql/api/*.sql; do not edit by hand.
\echo Use "ALTER EXTENSION pg_roomserver UPDATE" to load this file. \quit

-- sql/upgrades/0.2.0--0.3.0.sql
-- Schema changes from 0.2.0 to 0.3.0 (tables, sequences, indexes; objects that are renamed or
-- dropped). The API (sql/api/*.sql) is replayed after this file by scripts/upgrade-script.sh.

-- Renamed or replaced internals (the API replay creates what replaces them).
-- state_at_nids took an event ID: it is the body of roomserver.state_at_event, and named so.
DROP FUNCTION roomserver_internal.state_at_nids(text, boolean, text[], text[]);
-- event_refs rebuilt one reference list of one event: roomserver_internal.stored_pdus builds
-- whole PDUs, references included, for event_pdu and federation_pdus alike.
DROP FUNCTION roomserver_internal.event_refs(bigint, bigint, "char");

-- Rust functions new in 0.3.0, as the install script creates them (cargo pgrx schema).
CREATE  FUNCTION roomserver_internal."server_name_of"(
	"user_id" TEXT /* & str */
) RETURNS TEXT /* Option < String > */
IMMUTABLE STRICT PARALLEL SAFE COST 10
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'server_name_of_wrapper';
-- The m.room.server_acl rule (core/src/server_acl.rs) for roomserver.server_allowed (issue 16).
CREATE  FUNCTION roomserver_internal."server_acl_allows"(
	"acl" jsonb, /* JsonInput */
	"server_name" TEXT /* & str */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'server_acl_allows_wrapper';

-- missing_events was PL/pgSQL with its own reading of prev_events and auth_events; it is Rust
-- now and reads them as ingest does. Replaced in place (same signature, same attributes), so
-- the grants to readers stay.
CREATE OR REPLACE FUNCTION roomserver."missing_events"(
	"pdu" jsonb /* Option < JsonInput > */
) RETURNS jsonb /* JsonB */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'missing_events_wrapper';

-- ---------------------------------------------------------------------------------------------
-- Local events and timestamp_to_event (issue 15, items 5 and 6).
-- The index of roomserver.timestamp_to_event, as sql/schema/02_events.sql creates it.
CREATE INDEX stored_events_room_ts ON roomserver.stored_events (room_nid, origin_server_ts, depth, event_nid)
    WHERE NOT outlier AND rejection IS NULL;
-- roomserver.prepare_event (src/api/local_events.rs), as the install script creates it.
CREATE  FUNCTION roomserver."prepare_event"(
	"room_id" TEXT, /* Option < & str > */
	"type" TEXT, /* Option < & str > */
	"state_key" TEXT, /* Option < & str > */
	"sender" TEXT, /* Option < & str > */
	"content" jsonb, /* Option < JsonInput > */
	"origin_server_ts" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS jsonb /* JsonB */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'prepare_event_wrapper';

-- ---------------------------------------------------------------------------------------------
-- Joining part-way through a room's history and backfilling it (issue 15, items 3 and 4):
-- ingest_event gains state_event_ids and ingest_events backfilled. New signatures, so the old
-- functions are dropped and the new ones created as the install script creates them. Their
-- grantees (the writers) are granted the new ones, so that the writer loop of 99_finalize finds
-- them again and grant_writer gives them whatever else 0.3.0 adds.
SELECT pg_catalog.set_config('pg_roomserver_upgrade.writers',
       COALESCE((SELECT pg_catalog.array_agg(DISTINCT a.grantee::regrole)::text
                 FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                 WHERE p.oid = 'roomserver.ingest_event(jsonb, text, boolean)'::pg_catalog.regprocedure
                   AND a.grantee <> p.proowner AND a.grantee <> 0), '{}'), true);
DROP FUNCTION roomserver.ingest_event(jsonb, text, boolean);
DROP FUNCTION roomserver.ingest_events(jsonb, text, boolean);
CREATE  FUNCTION roomserver."ingest_event"(
	"pdu" jsonb, /* Option < JsonInput > */
	"room_version" TEXT DEFAULT NULL, /* Option < & str > */
	"outlier" bool DEFAULT false, /* bool */
	"state_event_ids" TEXT[] DEFAULT NULL /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_event_wrapper';
CREATE  FUNCTION roomserver."ingest_events"(
	"pdus" jsonb, /* Option < JsonInput > */
	"room_version" TEXT DEFAULT NULL, /* Option < & str > */
	"outlier" bool DEFAULT false, /* bool */
	"backfilled" bool DEFAULT false /* bool */
) RETURNS SETOF jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_events_wrapper';
-- Nothing to PUBLIC (99_finalize revokes it too; the grants below must not be the only ones).
REVOKE ALL ON FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) FROM PUBLIC;
DO $$
DECLARE
    w regrole;
BEGIN
    FOR w IN SELECT pg_catalog.unnest(pg_catalog.current_setting('pg_roomserver_upgrade.writers')::regrole[])
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) TO %s', w);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Redactions applied and what is served to other servers (issue 15, items 1 and 2).
-- As sql/schema/02_events.sql and 04_redactions.sql create them: the purge mark (the last column
-- of stored_events) and the table of redaction targets.
ALTER TABLE roomserver.stored_events ADD COLUMN content_purged_at timestamptz;
CREATE TABLE roomserver.event_redactions (
    room_nid        bigint      NOT NULL,
    redaction_nid   bigint      NOT NULL,
    target_event_id text        NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_nid, redaction_nid)
);
CREATE INDEX event_redactions_target ON roomserver.event_redactions (room_nid, target_event_id);
COMMENT ON TABLE roomserver.event_redactions IS 'The target of every stored m.room.redaction event; whether it applies is decided at read time. Use roomserver.redactions (view) to read.';
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_redactions', '');
-- visibility_inputs returns the sender and whether the event is a state event too (the outlier
-- rule): a new result type, so it is dropped and the API replay creates it.
DROP FUNCTION roomserver_internal.visibility_inputs(bigint, bigint[], text);
-- The Rust functions of src/api/redactions.rs, as the install script creates them.
CREATE  FUNCTION roomserver_internal."redaction_target"(
	"pdu" jsonb, /* JsonInput */
	"room_version" TEXT /* & str */
) RETURNS TEXT /* Option < String > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'redaction_target_wrapper';
CREATE  FUNCTION roomserver_internal."redaction_refusal"(
	"room_version" TEXT, /* Option < & str > */
	"rejected" bool, /* Option < bool > */
	"redaction_sender" TEXT, /* Option < & str > */
	"target_type" TEXT, /* Option < & str > */
	"target_sender" TEXT, /* Option < & str > */
	"room_nid" bigint, /* Option < i64 > */
	"redaction_nid" bigint /* Option < i64 > */
) RETURNS TEXT /* Option < & '_ str > */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'redaction_refusal_wrapper';
CREATE  FUNCTION roomserver_internal."redacted_pdu_rest"(
	"pdu" jsonb, /* JsonInput */
	"room_version" TEXT /* & str */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'redacted_pdu_rest_wrapper';
-- The redactions a 0.2.0 database already stores, as ingest would have recorded them (any
-- outcome; the target read from the stored remainder by core's rule), stored_at the upgrade.
INSERT INTO roomserver.event_redactions (room_nid, redaction_nid, target_event_id, stored_at)
SELECT x.room_nid, x.event_nid, x.target, pg_catalog.now()
FROM (SELECT e.room_nid, e.event_nid, roomserver_internal.redaction_target(e.pdu_rest, r.room_version) AS target
      FROM roomserver.stored_events e
      JOIN roomserver.rooms r ON r.room_nid = e.room_nid
      JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
      WHERE t.event_type = 'm.room.redaction') x
WHERE x.target IS NOT NULL;

-- sql/api/01_nid_functions.sql
-- NID assignment and lookup.
--
-- The statements here are written so that any plan the planner picks probes indexes per string
-- (OFFSET 0 keeps NOT EXISTS a per-row probe instead of an anti-join over the whole table;
-- `= ANY` on an index's leading column): they run with generic plans inside ingest.
--
-- Assignment is safe under concurrency at READ COMMITTED (the default): INSERT .. ON CONFLICT DO
-- NOTHING waits for a concurrent session inserting the same string and then skips it; the SELECT
-- that follows is a new statement whose snapshot sees that session's committed row. So sessions
-- that introduce the same string at the same moment all get the same NID and none sees an error.
-- Under REPEATABLE READ or SERIALIZABLE the row may be invisible: that raises 40001
-- (serialization_failure), which the caller retries.

-- Under READ COMMITTED every row asked for is visible after the INSERT .. ON CONFLICT; fewer means
-- a concurrent session's row is invisible to this snapshot (REPEATABLE READ or SERIALIZABLE).
CREATE OR REPLACE FUNCTION roomserver_internal.raise_if_invisible(what text, wanted bigint, got bigint) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF got < wanted THEN
        RAISE EXCEPTION '% were assigned concurrently and are not visible to this snapshot', what
            USING ERRCODE = 'serialization_failure', HINT = 'retry the transaction';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION roomserver.assign_event_type_nids(event_types text[])
RETURNS TABLE (event_type text, event_type_nid bigint)
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted bigint;
    got bigint;
BEGIN
    INSERT INTO roomserver.event_types AS t (event_type)
    SELECT DISTINCT u.s FROM unnest(event_types) AS u(s)
    WHERE u.s IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.event_types x WHERE x.event_type = u.s OFFSET 0)
    ON CONFLICT ON CONSTRAINT event_types_event_type_key DO NOTHING;

    SELECT count(DISTINCT u.s) INTO wanted FROM unnest(event_types) AS u(s) WHERE u.s IS NOT NULL;
    RETURN QUERY SELECT t.event_type, t.event_type_nid FROM roomserver.event_types t WHERE t.event_type = ANY (event_types);
    GET DIAGNOSTICS got = ROW_COUNT;
    PERFORM roomserver_internal.raise_if_invisible('event type NIDs', wanted, got);
END
$$;
COMMENT ON FUNCTION roomserver.assign_event_type_nids(text[]) IS 'Returns the NID of each event type, assigning new NIDs to unseen types (concurrency-safe).';

CREATE OR REPLACE FUNCTION roomserver.assign_state_key_nids(room_nids bigint[], state_keys text[])
RETURNS TABLE (room_nid bigint, state_key text, state_key_nid bigint)
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted bigint;
    got bigint;
    unknown_room bigint;
BEGIN
    IF cardinality(room_nids) <> cardinality(state_keys) THEN
        RAISE EXCEPTION 'room_nids and state_keys must have the same length (% vs %)', cardinality(room_nids), cardinality(state_keys)
            USING ERRCODE = 'array_subscript_error';
    END IF;
    INSERT INTO roomserver.event_state_keys AS k (room_nid, state_key)
    SELECT DISTINCT u.r, u.s FROM unnest(room_nids, state_keys) AS u(r, s)
    WHERE u.s IS NOT NULL AND u.s <> ''
      AND NOT EXISTS (SELECT 1 FROM roomserver.event_state_keys x WHERE x.state_key = u.s AND x.room_nid = u.r OFFSET 0)
    ON CONFLICT ON CONSTRAINT event_state_keys_room_state_key_key DO NOTHING;

    SELECT count(*) INTO wanted FROM (SELECT DISTINCT u.r, u.s FROM unnest(room_nids, state_keys) AS u(r, s) WHERE u.s IS NOT NULL) d;
    RETURN QUERY
        SELECT k.room_nid, k.state_key, k.state_key_nid
        FROM (SELECT DISTINCT u.r, u.s FROM unnest(room_nids, state_keys) AS u(r, s) WHERE u.s IS NOT NULL) d
        -- One unique-index probe per key: the generic plan of `state_key = ANY (..) AND
        -- room_nid = ANY (..)` was seen to read a 100,000-key room and compare every key with
        -- the whole array (a third of the time of loading a large room).
        CROSS JOIN LATERAL (SELECT x.room_nid, x.state_key, x.state_key_nid FROM roomserver.event_state_keys x
                            WHERE x.state_key = d.s AND x.room_nid = d.r OFFSET 0) k;
    GET DIAGNOSTICS got = ROW_COUNT;
    IF got < wanted THEN
        -- A room that does not exist is the caller's mistake, not a race to retry (the empty
        -- state key of an unknown room is never inserted, so no foreign key reports it).
        SELECT min(u.r) INTO unknown_room FROM unnest(room_nids) AS u(r)
        WHERE u.r IS NOT NULL AND NOT EXISTS (SELECT 1 FROM roomserver.rooms x WHERE x.room_nid = u.r);
        IF unknown_room IS NOT NULL THEN
            RAISE EXCEPTION 'room NID % is not known', unknown_room USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    PERFORM roomserver_internal.raise_if_invisible('state key NIDs', wanted, got);
END
$$;
COMMENT ON FUNCTION roomserver.assign_state_key_nids(bigint[], text[]) IS 'Returns the NID of each (room, state key), assigning new NIDs to unseen ones (concurrency-safe). The empty state key is NID 1.';

-- Creates the rooms that do not exist yet; returns every room's NID and version.
CREATE OR REPLACE FUNCTION roomserver.assign_room_nids(room_ids text[], room_versions text[])
RETURNS TABLE (room_id text, room_nid bigint, room_version text)
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted bigint;
    got bigint;
BEGIN
    WITH inserted AS (
        INSERT INTO roomserver.rooms AS r (room_id, room_version)
        SELECT DISTINCT ON (u.i) u.i, u.v FROM unnest(room_ids, room_versions) AS u(i, v)
        WHERE NOT EXISTS (SELECT 1 FROM roomserver.rooms x WHERE x.room_id = u.i OFFSET 0)
        ON CONFLICT ON CONSTRAINT rooms_room_id_key DO NOTHING
        RETURNING r.room_nid
    )
    INSERT INTO roomserver.event_state_keys (room_nid, state_key_nid, state_key)
    SELECT inserted.room_nid, 1, '' FROM inserted;

    SELECT count(DISTINCT u.i) INTO wanted FROM unnest(room_ids) AS u(i);
    RETURN QUERY SELECT r.room_id, r.room_nid, r.room_version FROM roomserver.rooms r WHERE r.room_id = ANY (room_ids);
    GET DIAGNOSTICS got = ROW_COUNT;
    PERFORM roomserver_internal.raise_if_invisible('rooms', wanted, got);
END
$$;
COMMENT ON FUNCTION roomserver.assign_room_nids(text[], text[]) IS
    'Returns the NID and room version of each room ID, creating the rooms not stored yet with the given room versions (admin only: ingest calls it). Concurrency-safe at READ COMMITTED; 40001 (retry) under REPEATABLE READ when a concurrently created room is invisible.';

-- Lookups in both directions, for DBAs and front ends. NULL when unknown.
CREATE OR REPLACE FUNCTION roomserver.room_nid(room_id text) RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT r.room_nid FROM roomserver.rooms r WHERE r.room_id = $1 $$;
COMMENT ON FUNCTION roomserver.room_nid(text) IS
    'The NID of a room ID, or NULL when the room is unknown.';

CREATE OR REPLACE FUNCTION roomserver.room_id(room_nid bigint) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT r.room_id FROM roomserver.rooms r WHERE r.room_nid = $1 $$;
COMMENT ON FUNCTION roomserver.room_id(bigint) IS
    'The room ID of a room NID, or NULL when unknown.';

CREATE OR REPLACE FUNCTION roomserver.event_type_nid(event_type text) RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT t.event_type_nid FROM roomserver.event_types t WHERE t.event_type = $1 $$;
COMMENT ON FUNCTION roomserver.event_type_nid(text) IS
    'The NID of an event type, or NULL when unknown (well-known types have fixed NIDs below 65536).';

CREATE OR REPLACE FUNCTION roomserver.event_type(event_type_nid bigint) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT t.event_type FROM roomserver.event_types t WHERE t.event_type_nid = $1 $$;
COMMENT ON FUNCTION roomserver.event_type(bigint) IS
    'The event type of an event type NID, or NULL when unknown.';

CREATE OR REPLACE FUNCTION roomserver.state_key_nid(room_id text, state_key text) RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT k.state_key_nid FROM roomserver.event_state_keys k
    JOIN roomserver.rooms r USING (room_nid)
    WHERE r.room_id = $1 AND k.state_key = $2
$$;
COMMENT ON FUNCTION roomserver.state_key_nid(text, text) IS
    'The NID of a state key (or sender user ID) in a room, or NULL when unknown; the empty state key is NID 1 in every room.';

CREATE OR REPLACE FUNCTION roomserver.state_key(room_nid bigint, state_key_nid bigint) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT k.state_key FROM roomserver.event_state_keys k WHERE k.room_nid = $1 AND k.state_key_nid = $2 $$;
COMMENT ON FUNCTION roomserver.state_key(bigint, bigint) IS
    'The state key (or sender user ID) of a state key NID of a room, or NULL when unknown.';

CREATE OR REPLACE FUNCTION roomserver.event_nid(event_id text) RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT e.event_nid FROM roomserver.stored_events e WHERE e.event_id = $1 ORDER BY e.room_nid LIMIT 1 $$;
COMMENT ON FUNCTION roomserver.event_nid(text) IS
    'The NID of an event by its event ID, or NULL when unknown (a room version 1-2 event ID stored in several rooms: the one of the room with the smallest NID).';

CREATE OR REPLACE FUNCTION roomserver.event_id(room_nid bigint, event_nid bigint) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT e.event_id FROM roomserver.stored_events e WHERE e.room_nid = $1 AND e.event_nid = $2 $$;
COMMENT ON FUNCTION roomserver.event_id(bigint, bigint) IS
    'The event ID of an event NID of a room, or NULL when unknown.';

-- sql/api/02_event_reads.sql
-- Reading events back as PDUs, and the DBA views over events and references.

-- The stored PDUs of events of a room, rebuilt, each with its position in event_nids (ord), the
-- room version, the NID of the redaction that applies to it (redacted_by; NULL: none) and
-- whether it is rejected; events not stored are left out. A PDU equals the ingested one under
-- canonical JSON, or its redacted form (the room version's algorithm) when a redaction applies
-- or its content hash did not match. The one SQL owner of stored row -> PDU (core/src/stored_form.rs
-- is its Rust twin): event_pdu, pdu and federation_pdus read through it, so every function that
-- returns an event returns it redacted.
-- Set-based, for a whole response in one call (event_pdu per event cost about 0.3 ms each, most
-- of a 100-event backfill), and every event read by index probes whatever the batch size.
-- Whether an event is redacted is one probe of event_redactions_target; the rule
-- (roomserver_internal.redaction_refusal, core/src/redaction.rs) is called only for the
-- redactions found, so an event nothing redacts costs the probe alone.
-- PL/pgSQL so that the statement is planned once per session: a SQL function called from another
-- plans its body on every call (about 1 ms, four times the rest of an event_pdu call). The plan is
-- generic, as a SQL function's would be: a custom plan for a large batch could trade the probes
-- for a scan of the room.
CREATE OR REPLACE FUNCTION roomserver_internal.stored_pdus(room_nid bigint, event_nids bigint[])
RETURNS TABLE (ord bigint, pdu jsonb, room_version text, redacted_by bigint, rejected boolean)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT b.ord,
           CASE WHEN b.redacted_by IS NULL THEN b.pdu ELSE roomserver.redact(b.pdu, b.room_version) END,
           b.room_version, b.redacted_by, b.rejected
    FROM (
        SELECT u.ord,
               e.pdu_rest
            || jsonb_build_object(
                   'type', t.event_type,
                   'sender', s.state_key,
                   'depth', e.depth,
                   'origin_server_ts', e.origin_server_ts,
                   'prev_events', refs.prev_events,
                   'auth_events', refs.auth_events)
            || CASE WHEN e.room_id_implied THEN '{}'::jsonb ELSE jsonb_build_object('room_id', r.room_id) END
            || CASE WHEN e.state_key_nid IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('state_key', k.state_key) END
            -- Room versions 1 and 2 carry the event ID inside the PDU.
            || CASE WHEN r.room_version IN ('1', '2') THEN jsonb_build_object('event_id', e.event_id) ELSE '{}'::jsonb END AS pdu,
               r.room_version,
               ar.redaction_nid AS redacted_by,
               e.rejection IS NOT NULL AS rejected
        FROM unnest(event_nids) WITH ORDINALITY AS u(nid, ord)
        JOIN roomserver.stored_events e ON e.room_nid = stored_pdus.room_nid AND e.event_nid = u.nid
        JOIN roomserver.rooms r ON r.room_nid = e.room_nid
        JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
        JOIN roomserver.event_state_keys s ON s.room_nid = e.room_nid AND s.state_key_nid = e.sender_nid
        LEFT JOIN roomserver.event_state_keys k ON k.room_nid = e.room_nid AND k.state_key_nid = e.state_key_nid
        -- The prev_events and auth_events lists as they were in the PDU (event IDs, or [event_id,
        -- hashes] pairs in room versions 1 and 2), both in one index probe per event. (As a grouped
        -- CTE joined back, the planner, taking the unnested array for 10 rows, scanned the CTE once
        -- per event: quadratic, over a second for 2,000 events and hours for a /state of 60,000.)
        CROSS JOIN LATERAL (
            SELECT COALESCE(jsonb_agg(x.ref ORDER BY x.position) FILTER (WHERE x.kind = 'p'), '[]'::jsonb) AS prev_events,
                   COALESCE(jsonb_agg(x.ref ORDER BY x.position) FILTER (WHERE x.kind = 'a'), '[]'::jsonb) AS auth_events
            FROM (SELECT ed.kind, ed.position,
                         CASE WHEN ed.ref_hashes IS NULL THEN to_jsonb(COALESCE(rt.event_id, ed.target_event_id))
                              ELSE jsonb_build_array(COALESCE(rt.event_id, ed.target_event_id), ed.ref_hashes) END AS ref
                  FROM roomserver.event_edges ed
                  LEFT JOIN roomserver.stored_events rt ON rt.room_nid = ed.room_nid AND rt.event_nid = ed.target_nid
                  WHERE ed.room_nid = e.room_nid AND ed.event_nid = e.event_nid) x
        ) refs
        -- The first stored redaction of the event that applies to it (same room by the key).
        LEFT JOIN LATERAL (
            SELECT rd.redaction_nid
            FROM roomserver.event_redactions rd
            JOIN roomserver.stored_events x ON x.room_nid = rd.room_nid AND x.event_nid = rd.redaction_nid
            JOIN roomserver.event_state_keys xs ON xs.room_nid = x.room_nid AND xs.state_key_nid = x.sender_nid
            WHERE rd.room_nid = e.room_nid AND rd.target_event_id = e.event_id
              AND roomserver_internal.redaction_refusal(r.room_version, x.rejection IS NOT NULL, xs.state_key,
                                                        t.event_type, s.state_key, rd.room_nid, rd.redaction_nid) IS NULL
            ORDER BY rd.redaction_nid
            LIMIT 1
        ) ar ON true
    ) b;
END
$$;

-- The stored PDU, rebuilt (roomserver_internal.stored_pdus); NULL when the event is not stored.
CREATE OR REPLACE FUNCTION roomserver.event_pdu(room_nid bigint, event_nid bigint) RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT p.pdu FROM roomserver_internal.stored_pdus($1, ARRAY[$2]) p
$$;
COMMENT ON FUNCTION roomserver.event_pdu(bigint, bigint) IS
    'The stored PDU of an event by room and event NID, rebuilt from its columns, edges and pdu_rest: equal to the ingested PDU under canonical JSON (redacted if a redaction applies or its content hash did not match). NULL when unknown.';

-- The PDU of an event by its ID, for the homeserver itself; ERROR P0002 (404 M_NOT_FOUND) when
-- unknown. Rejected events too (the homeserver may need to look at them). When a redaction
-- applies, the PDU is redacted and unsigned.redacted_because holds the redaction's PDU, as
-- Synapse gives clients; the federation bodies do not carry it (Synapse's get_pdu_json drops it).
CREATE OR REPLACE FUNCTION roomserver.pdu(event_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found record;
BEGIN
    SELECT e.room_nid, p.pdu, p.redacted_by INTO found
    FROM roomserver.stored_events e CROSS JOIN LATERAL roomserver_internal.stored_pdus(e.room_nid, ARRAY[e.event_nid]) p
    WHERE e.event_id = pdu.event_id ORDER BY e.room_nid LIMIT 1;
    IF found.pdu IS NULL THEN
        RAISE EXCEPTION 'event % not found', pdu.event_id USING ERRCODE = 'no_data_found';
    END IF;
    IF found.redacted_by IS NULL THEN
        RETURN found.pdu;
    END IF;
    -- The redacted form has no unsigned (the algorithm drops it).
    RETURN found.pdu || jsonb_build_object('unsigned', jsonb_build_object(
        'redacted_because', roomserver.event_pdu(found.room_nid, found.redacted_by)));
END
$$;
COMMENT ON FUNCTION roomserver.pdu(text) IS
    'The stored PDU of an event by its event ID, rebuilt: equal to the ingested PDU under canonical JSON; redacted if a redaction applies (then unsigned.redacted_because is the redaction''s PDU) or its content hash did not match. ERROR P0002 when the event is unknown.';

CREATE OR REPLACE VIEW roomserver.events AS
SELECT r.room_id,
       e.event_id,
       t.event_type AS type,
       k.state_key,
       s.state_key AS sender,
       e.depth,
       e.origin_server_ts,
       e.content_hash_ok,
       e.rejection IS NOT NULL AS rejected,
       e.rejection,
       e.soft_failure IS NOT NULL AS soft_failed,
       e.soft_failure,
       e.outlier,
       e.room_nid,
       e.event_nid,
       e.content_purged_at
FROM roomserver.stored_events e
JOIN roomserver.rooms r ON r.room_nid = e.room_nid
JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
JOIN roomserver.event_state_keys s ON s.room_nid = e.room_nid AND s.state_key_nid = e.sender_nid
LEFT JOIN roomserver.event_state_keys k ON k.room_nid = e.room_nid AND k.state_key_nid = e.state_key_nid;
COMMENT ON VIEW roomserver.events IS 'Every stored event with readable strings instead of NIDs; content_purged_at: when purge_redacted_content erased its content (why its content hash no longer matches).';

-- Every stored redaction with its target and whether it applies, by the rule stored_pdus applies
-- (roomserver_internal.redaction_refusal): for DBAs, and to explain why an event is or is not
-- served redacted.
CREATE OR REPLACE VIEW roomserver.redactions AS
SELECT r.room_id,
       x.event_id AS redaction,
       rd.target_event_id AS target,
       v.refusal IS NULL AS applied,
       v.refusal AS not_applied_because,
       xs.state_key AS redaction_sender,
       ts.state_key AS target_sender,
       x.outlier AS redaction_outlier,
       rd.stored_at,
       t.content_purged_at,
       rd.room_nid,
       rd.redaction_nid,
       t.event_nid AS target_nid
FROM roomserver.event_redactions rd
JOIN roomserver.rooms r ON r.room_nid = rd.room_nid
JOIN roomserver.stored_events x ON x.room_nid = rd.room_nid AND x.event_nid = rd.redaction_nid
JOIN roomserver.event_state_keys xs ON xs.room_nid = x.room_nid AND xs.state_key_nid = x.sender_nid
LEFT JOIN roomserver.stored_events t ON t.room_nid = rd.room_nid AND t.event_id = rd.target_event_id
LEFT JOIN roomserver.event_types tt ON tt.event_type_nid = t.event_type_nid
LEFT JOIN roomserver.event_state_keys ts ON ts.room_nid = t.room_nid AND ts.state_key_nid = t.sender_nid
CROSS JOIN LATERAL (
    SELECT roomserver_internal.redaction_refusal(r.room_version, x.rejection IS NOT NULL, xs.state_key,
                                                 tt.event_type, ts.state_key, rd.room_nid, rd.redaction_nid) AS refusal
) v;
COMMENT ON VIEW roomserver.redactions IS 'Every stored m.room.redaction event with the event it names: applied (the target is served redacted) or why not (rejected, target not stored, target is the create event, different server and below the redact level), when it was stored, and when purge_redacted_content erased the target''s content.';

-- Synapse's redaction_retention_period: the original content of events redacted longer ago than
-- older_than is erased from storage, so that a redacted message is gone from disk too. Each
-- target's pdu_rest becomes that of its redacted form (roomserver_internal.redacted_pdu_rest) and
-- content_purged_at is set, which explains why its content hash no longer matches. What is served
-- does not change: the target was served redacted already, and redaction is idempotent.
-- Only targets of redactions that apply and are stored with state (an outlier redaction is
-- judged again when it gets its state), and only non-state events: the auth rules and state
-- resolution read the stored content of state events, and would decide differently than on an
-- unpurged copy of the room. Returns the number of events purged.
CREATE OR REPLACE FUNCTION roomserver.purge_redacted_content(older_than interval) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    purged bigint;
BEGIN
    IF older_than IS NULL THEN
        RAISE EXCEPTION 'older_than must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF pg_catalog.pg_is_in_recovery() OR pg_catalog.current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'purge_redacted_content: cannot purge %',
            CASE WHEN pg_catalog.pg_is_in_recovery() THEN 'on a hot standby' ELSE 'in a read-only transaction' END
            USING ERRCODE = 'read_only_sql_transaction', HINT = 'purge on the primary';
    END IF;
    WITH due AS (
        SELECT DISTINCT t.room_nid, t.event_nid
        FROM roomserver.event_redactions rd
        JOIN roomserver.rooms r ON r.room_nid = rd.room_nid
        JOIN roomserver.stored_events x ON x.room_nid = rd.room_nid AND x.event_nid = rd.redaction_nid
        JOIN roomserver.event_state_keys xs ON xs.room_nid = x.room_nid AND xs.state_key_nid = x.sender_nid
        JOIN roomserver.stored_events t ON t.room_nid = rd.room_nid AND t.event_id = rd.target_event_id
        JOIN roomserver.event_types tt ON tt.event_type_nid = t.event_type_nid
        JOIN roomserver.event_state_keys ts ON ts.room_nid = t.room_nid AND ts.state_key_nid = t.sender_nid
        WHERE rd.stored_at < pg_catalog.now() - older_than
          AND NOT x.outlier
          AND t.state_key_nid IS NULL
          AND t.content_purged_at IS NULL
          AND roomserver_internal.redaction_refusal(r.room_version, x.rejection IS NOT NULL, xs.state_key,
                                                    tt.event_type, ts.state_key, rd.room_nid, rd.redaction_nid) IS NULL
    ), by_room AS (
        SELECT d.room_nid, pg_catalog.array_agg(d.event_nid) AS nids FROM due d GROUP BY d.room_nid
    ), served AS (
        -- The served (redacted) PDU, which is what is kept.
        SELECT b.room_nid, b.nids[p.ord::integer] AS event_nid, p.pdu, p.room_version
        FROM by_room b
        CROSS JOIN LATERAL roomserver_internal.stored_pdus(b.room_nid, b.nids) p
        WHERE p.redacted_by IS NOT NULL
    )
    UPDATE roomserver.stored_events e
    SET pdu_rest = roomserver_internal.redacted_pdu_rest(s.pdu, s.room_version),
        content_purged_at = pg_catalog.now()
    FROM served s
    WHERE e.room_nid = s.room_nid AND e.event_nid = s.event_nid;
    GET DIAGNOSTICS purged = ROW_COUNT;
    RETURN purged;
END
$$;
COMMENT ON FUNCTION roomserver.purge_redacted_content(interval) IS
    'Erases from storage the original content of every non-state event that a redaction stored more than older_than ago applies to (Synapse''s redaction_retention_period): its stored remainder becomes the redacted form and events.content_purged_at is set. Served output does not change. Returns the number of events purged. Writers only; ERROR 25006 on a standby or in a read-only transaction, 22004 for NULL.';

CREATE OR REPLACE VIEW roomserver.event_references AS
SELECT r.room_id,
       e.event_id,
       CASE ed.kind WHEN 'p' THEN 'prev' ELSE 'auth' END AS kind,
       ed.position,
       COALESCE(t.event_id, ed.target_event_id) AS referenced_event_id,
       ed.target_nid IS NOT NULL AS known
FROM roomserver.event_edges ed
JOIN roomserver.stored_events e ON e.room_nid = ed.room_nid AND e.event_nid = ed.event_nid
JOIN roomserver.rooms r ON r.room_nid = ed.room_nid
LEFT JOIN roomserver.stored_events t ON t.room_nid = ed.room_nid AND t.event_nid = ed.target_nid;
COMMENT ON VIEW roomserver.event_references IS 'prev_events and auth_events of every event, and whether the referenced event is known yet.';

-- The references the hot tables do not declare as foreign keys, checked on demand: one row per
-- broken reference (none on a healthy database).
CREATE OR REPLACE FUNCTION roomserver.check_integrity()
RETURNS TABLE (problem text, room_nid bigint, event_nid bigint, detail text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT 'event of an unknown room', e.room_nid, e.event_nid, e.event_id
    FROM roomserver.stored_events e
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.rooms r WHERE r.room_nid = e.room_nid)
    UNION ALL
    SELECT 'unknown event type NID', e.room_nid, e.event_nid, e.event_type_nid::text
    FROM roomserver.stored_events e
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.event_types t WHERE t.event_type_nid = e.event_type_nid)
    UNION ALL
    SELECT 'unknown sender NID', e.room_nid, e.event_nid, e.sender_nid::text
    FROM roomserver.stored_events e
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.event_state_keys k WHERE k.room_nid = e.room_nid AND k.state_key_nid = e.sender_nid)
    UNION ALL
    SELECT 'unknown state key NID', e.room_nid, e.event_nid, e.state_key_nid::text
    FROM roomserver.stored_events e
    WHERE e.state_key_nid IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.event_state_keys k WHERE k.room_nid = e.room_nid AND k.state_key_nid = e.state_key_nid)
    UNION ALL
    SELECT 'edge of an unknown event', ed.room_nid, ed.event_nid, ed.kind || ed.position
    FROM roomserver.event_edges ed
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = ed.room_nid AND e.event_nid = ed.event_nid)
    UNION ALL
    SELECT 'edge to an unknown event', ed.room_nid, ed.event_nid, ed.target_nid::text
    FROM roomserver.event_edges ed
    WHERE ed.target_nid IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = ed.room_nid AND e.event_nid = ed.target_nid)
    UNION ALL
    -- A reference left pending although its event is stored: the resolution missed it.
    SELECT 'pending edge to a stored event', ed.room_nid, ed.event_nid, ed.target_event_id
    FROM roomserver.event_edges ed
    WHERE ed.target_nid IS NULL
      AND EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = ed.room_nid AND e.event_id = ed.target_event_id)
    UNION ALL
    -- The state tables: every snapshot an event or a room names, every block a snapshot lists,
    -- every extremity's event.
    SELECT 'state_before of an unknown snapshot', e.room_nid, e.event_nid, e.state_before::text
    FROM roomserver.stored_events e
    WHERE e.state_before IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = e.room_nid AND s.snapshot_nid = e.state_before)
    UNION ALL
    SELECT 'state_after of an unknown snapshot', e.room_nid, e.event_nid, e.state_after::text
    FROM roomserver.stored_events e
    WHERE e.state_after IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = e.room_nid AND s.snapshot_nid = e.state_after)
    UNION ALL
    SELECT 'current state of an unknown snapshot', r.room_nid, NULL::bigint, r.current_state::text
    FROM roomserver.rooms r
    WHERE r.current_state IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = r.room_nid AND s.snapshot_nid = r.current_state)
    UNION ALL
    SELECT 'snapshot of an unknown block', s.room_nid, NULL::bigint, s.snapshot_nid || ': block ' || b.nid
    FROM roomserver.state_snapshots s
    CROSS JOIN LATERAL pg_catalog.unnest(s.block_nids) AS b(nid)
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.state_blocks x WHERE x.room_nid = s.room_nid AND x.block_nid = b.nid)
    UNION ALL
    SELECT 'extremity of an unknown event', x.room_nid, x.event_nid, NULL::text
    FROM roomserver.extremities x
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = x.room_nid AND e.event_nid = x.event_nid)
    UNION ALL
    -- event_redactions: every row names a stored m.room.redaction event (its target may be unknown).
    SELECT 'redaction of an unknown event', rd.room_nid, rd.redaction_nid, rd.target_event_id
    FROM roomserver.event_redactions rd
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = rd.room_nid AND e.event_nid = rd.redaction_nid)
    UNION ALL
    SELECT 'redaction row of an event that is not m.room.redaction', rd.room_nid, rd.redaction_nid, t.event_type
    FROM roomserver.event_redactions rd
    JOIN roomserver.stored_events e ON e.room_nid = rd.room_nid AND e.event_nid = rd.redaction_nid
    JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
    WHERE t.event_type <> 'm.room.redaction'
$$;
COMMENT ON FUNCTION roomserver.check_integrity() IS 'Lists broken references in the event and state tables (which declare no foreign keys, for ingest speed); empty when healthy.';

-- sql/api/03_state.sql
-- Room state: storing snapshots, reading the state at an event, the /state_ids and /state
-- bodies, the current state. The tables are in sql/schema/03_state.sql.

-- Stores a snapshot unless one with the same state exists; returns its NID. The new block
-- (packed entries, sorted by key) is stored unless an equal block exists.
CREATE OR REPLACE FUNCTION roomserver_internal.store_snapshot(room_nid bigint, state_hash bytea, kept_blocks bigint[], kept_sizes integer[],
                                          block_hash bytea, entries bytea, entry_count integer, max_event_nid bigint,
                                          state_size integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    snap bigint;
    block bigint;
BEGIN
    SELECT s.snapshot_nid INTO snap FROM roomserver.state_snapshots s
    WHERE s.state_hash = store_snapshot.state_hash AND s.room_nid = store_snapshot.room_nid;
    IF FOUND THEN
        RETURN snap;
    END IF;
    IF entry_count > 0 THEN
        SELECT b.block_nid INTO block FROM roomserver.state_blocks b
        WHERE b.block_hash = store_snapshot.block_hash AND b.room_nid = store_snapshot.room_nid;
        IF NOT FOUND THEN
            INSERT INTO roomserver.state_blocks (room_nid, block_hash, entry_count, max_event_nid, entries)
            VALUES (store_snapshot.room_nid, store_snapshot.block_hash, entry_count, max_event_nid, entries)
            RETURNING state_blocks.block_nid INTO block;
        END IF;
        kept_blocks := kept_blocks || block;
        kept_sizes := kept_sizes || entry_count;
    END IF;
    INSERT INTO roomserver.state_snapshots (room_nid, state_hash, block_nids, block_sizes, state_size)
    VALUES (store_snapshot.room_nid, store_snapshot.state_hash, kept_blocks, kept_sizes, store_snapshot.state_size)
    RETURNING state_snapshots.snapshot_nid INTO snap;
    RETURN snap;
END
$$;

-- roomserver.snapshot_lookup(room_nid, snapshot_nid, type_nids, state_key_nids) and
-- roomserver.block_entries(room_nid, block_nid) are in Rust (src/state_functions.rs).

-- roomserver.snapshot_entries(room_nid, snapshot_nid), the full state of a snapshot as NIDs,
-- is in Rust too: the k-way merge of its blocks.

-- The event of a room by its ID, or ERROR P0002 (404 M_NOT_FOUND).
CREATE OR REPLACE FUNCTION roomserver_internal.find_event(room_id text, event_id text, OUT room_nid bigint, OUT event_nid bigint,
                                      OUT state_before bigint, OUT state_after bigint, OUT outlier boolean)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT r.room_nid INTO room_nid FROM roomserver.rooms r WHERE r.room_id = find_event.room_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'room % not found', find_event.room_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT e.event_nid, e.state_before, e.state_after, e.outlier INTO event_nid, state_before, state_after, outlier
    FROM roomserver.stored_events e WHERE e.event_id = find_event.event_id AND e.room_nid = find_event.room_nid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % not found in room %', find_event.event_id, find_event.room_id USING ERRCODE = 'no_data_found';
    END IF;
END
$$;

-- The event by ID alone (event IDs are unique across rooms from room version 3 on; for older
-- rooms the first room that has it), or ERROR P0002.
CREATE OR REPLACE FUNCTION roomserver_internal.find_event(event_id text, OUT room_nid bigint, OUT event_nid bigint,
                                      OUT state_before bigint, OUT state_after bigint, OUT outlier boolean)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT e.room_nid, e.event_nid, e.state_before, e.state_after, e.outlier
    INTO room_nid, event_nid, state_before, state_after, outlier
    FROM roomserver.stored_events e WHERE e.event_id = find_event.event_id ORDER BY e.room_nid LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % not found', find_event.event_id USING ERRCODE = 'no_data_found';
    END IF;
END
$$;

-- The state before (or after) an event: all of it, only some types, or only some
-- (type, state_key) pairs (a two-column array: ARRAY[['m.room.member', '@a:x'], ...]).
-- roomserver_internal.state_at_event is the body of roomserver.state_at_event (a PL/pgSQL
-- function cannot name an input and an output column alike, as the API's does: event_id).
CREATE OR REPLACE FUNCTION roomserver_internal.state_at_event(the_event_id text, after boolean, types text[], pairs text[])
RETURNS TABLE (event_type text, state_key text, state_event_id text)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev record;
    snap bigint;
BEGIN
    IF the_event_id IS NULL THEN
        RAISE EXCEPTION 'event_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF pairs IS NOT NULL AND array_ndims(pairs) IS NOT NULL AND (array_ndims(pairs) <> 2 OR array_length(pairs, 2) <> 2) THEN
        RAISE EXCEPTION 'pairs must be a two-dimensional array of (type, state_key) pairs, like ARRAY[[''m.room.member'', ''@a:example.org'']]'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    ev := roomserver_internal.find_event(the_event_id);
    IF ev.outlier THEN
        RAISE EXCEPTION 'event % is an outlier: its state is not known', the_event_id
            USING ERRCODE = 'no_data_found', HINT = 'Ingest it again with its prev events once they are known.';
    END IF;
    snap := CASE WHEN COALESCE(after, false) THEN ev.state_after ELSE ev.state_before END;
    IF pairs IS NOT NULL THEN
        RETURN QUERY
        SELECT p.t, p.k, x.event_id
        FROM (SELECT pairs[i][1] AS t, pairs[i][2] AS k, i FROM generate_subscripts(pairs, 1) AS i) p
        JOIN roomserver.event_types et ON et.event_type = p.t
        JOIN roomserver.event_state_keys ek ON ek.state_key = p.k AND ek.room_nid = ev.room_nid
        CROSS JOIN LATERAL roomserver.snapshot_lookup(ev.room_nid, snap, ARRAY[et.event_type_nid], ARRAY[ek.state_key_nid]) l
        JOIN roomserver.stored_events x ON x.room_nid = ev.room_nid AND x.event_nid = l.event_nid
        ORDER BY p.i;
    ELSE
        RETURN QUERY
        SELECT et.event_type, ek.state_key, x.event_id
        FROM roomserver.snapshot_entries(ev.room_nid, snap) s
        JOIN roomserver.event_types et ON et.event_type_nid = s.type_nid
        JOIN roomserver.event_state_keys ek ON ek.room_nid = ev.room_nid AND ek.state_key_nid = s.state_key_nid
        JOIN roomserver.stored_events x ON x.room_nid = ev.room_nid AND x.event_nid = s.event_nid
        WHERE types IS NULL OR et.event_type = ANY (types)
        ORDER BY et.event_type, ek.state_key;
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION roomserver.state_at_event(event_id text, after boolean DEFAULT false, types text[] DEFAULT NULL, pairs text[] DEFAULT NULL)
RETURNS TABLE (type text, state_key text, event_id text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT * FROM roomserver_internal.state_at_event($1, $2, $3, $4) $$;
COMMENT ON FUNCTION roomserver.state_at_event(text, boolean, text[], text[]) IS 'The room state before (after => true: after) an event: all of it, some types, or some (type, state_key) pairs.';

-- The auth chain of events as event NIDs: their auth events and the stored chains of those
-- (every auth event is a state event, which keeps its chain in stored_events.auth_chain).
CREATE OR REPLACE FUNCTION roomserver.auth_chain_nids(room_nid bigint, event_nids bigint[])
RETURNS TABLE (event_nid bigint)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT DISTINCT x.n
    FROM roomserver.event_edges ed
    JOIN roomserver.stored_events a ON a.room_nid = ed.room_nid AND a.event_nid = ed.target_nid
    CROSS JOIN LATERAL (SELECT a.event_nid UNION ALL SELECT unnest(roomserver.nid_set_decode(a.auth_chain))) AS x(n)
    WHERE ed.room_nid = auth_chain_nids.room_nid AND ed.event_nid = ANY (event_nids) AND ed.kind = 'a'
$$;
COMMENT ON FUNCTION roomserver.auth_chain_nids(bigint, bigint[]) IS
    'The auth chain of events of a room as event NIDs, in no particular order: their auth events and those events'' stored chains (stored_events.auth_chain). Unknown events contribute nothing.';

-- The auth chain of a whole state: the stored chains of its events (not the events themselves,
-- unless one is in another's chain), as the state_ids and state responses list it.
CREATE OR REPLACE FUNCTION roomserver.state_auth_chain(room_nid bigint, snapshot_nid bigint)
RETURNS TABLE (event_nid bigint)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    -- One union of the stored chains in Rust (a DISTINCT over the unnested chains was 0.46 s
    -- for a 50,000-entry state: 50 million rows for 17,000 distinct NIDs).
    SELECT unnest(roomserver.nid_set_union(array_agg(e.auth_chain)))
    FROM roomserver.snapshot_entries(room_nid, snapshot_nid) s
    JOIN roomserver.stored_events e ON e.room_nid = state_auth_chain.room_nid AND e.event_nid = s.event_nid
$$;
COMMENT ON FUNCTION roomserver.state_auth_chain(bigint, bigint) IS
    'The auth chain of a whole state as event NIDs (the union of the stored chains of its events), as /state_ids and /state list it. ERROR P0002 when the snapshot is not one of the room''s.';

-- The event whose state a federation response serves: ERROR 22004 on NULLs, P0002 when the room
-- or the event (in that room) is unknown or the event is an outlier (its state is not known).
CREATE OR REPLACE FUNCTION roomserver_internal.event_with_state(room_id text, event_id text, OUT room_nid bigint, OUT state_before bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev record;
BEGIN
    IF event_with_state.room_id IS NULL OR event_with_state.event_id IS NULL THEN
        RAISE EXCEPTION 'room_id and event_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    ev := roomserver_internal.find_event(event_with_state.room_id, event_with_state.event_id);
    IF ev.outlier THEN
        RAISE EXCEPTION 'the state at event % is not known (outlier)', event_with_state.event_id USING ERRCODE = 'no_data_found';
    END IF;
    room_nid := ev.room_nid;
    state_before := ev.state_before;
END
$$;

-- The federation body of GET /_matrix/federation/v1/state_ids/{room_id}?event_id=...: the state
-- before the event and the auth chain of that state.
CREATE OR REPLACE FUNCTION roomserver.state_ids(room_id text, event_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev record;
    pdu_ids jsonb;
    chain_ids jsonb;
BEGIN
    ev := roomserver_internal.event_with_state(state_ids.room_id, state_ids.event_id);
    SELECT COALESCE(jsonb_agg(x.event_id ORDER BY x.event_nid), '[]') INTO pdu_ids
    FROM roomserver.snapshot_entries(ev.room_nid, ev.state_before) s
    JOIN roomserver.stored_events x ON x.room_nid = ev.room_nid AND x.event_nid = s.event_nid;
    SELECT COALESCE(jsonb_agg(x.event_id ORDER BY x.event_nid), '[]') INTO chain_ids
    FROM roomserver.state_auth_chain(ev.room_nid, ev.state_before) c
    JOIN roomserver.stored_events x ON x.room_nid = ev.room_nid AND x.event_nid = c.event_nid;
    RETURN jsonb_build_object('pdu_ids', pdu_ids, 'auth_chain_ids', chain_ids);
END
$$;
COMMENT ON FUNCTION roomserver.state_ids(text, text) IS
    'Body of GET /_matrix/federation/v1/state_ids: {"pdu_ids", "auth_chain_ids"} of the state before the event. ERROR P0002 for an unknown room, an event not in that room, or an outlier; 22004 on NULL arguments.';

-- The federation body of GET /_matrix/federation/v1/state/{room_id}?event_id=...: the same as
-- state_ids with the PDUs themselves, in the room version's federation format.
CREATE OR REPLACE FUNCTION roomserver.state(room_id text, event_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev record;
    pdus jsonb;
    chain jsonb;
BEGIN
    ev := roomserver_internal.event_with_state(state.room_id, state.event_id);
    -- All PDUs built in one set-based statement each (roomserver_internal.federation_pdus): one
    -- event_pdu call per event made a 67,000-event response take 18 s.
    SELECT roomserver_internal.federation_pdus(ev.room_nid, COALESCE(array_agg(s.event_nid ORDER BY s.event_nid), '{}')) INTO pdus
    FROM roomserver.snapshot_entries(ev.room_nid, ev.state_before) s;
    SELECT roomserver_internal.federation_pdus(ev.room_nid, COALESCE(array_agg(c.event_nid ORDER BY c.event_nid), '{}')) INTO chain
    FROM roomserver.state_auth_chain(ev.room_nid, ev.state_before) c;
    RETURN jsonb_build_object('pdus', pdus, 'auth_chain', chain);
END
$$;
COMMENT ON FUNCTION roomserver.state(text, text) IS
    'Body of GET /_matrix/federation/v1/state: {"pdus", "auth_chain"} of the state before the event, PDUs in the room version''s federation format. ERROR P0002 for an unknown room, an event not in that room, or an outlier; 22004 on NULL arguments.';

-- The room of a room ID, or ERROR P0002 (404 M_NOT_FOUND).
CREATE OR REPLACE FUNCTION roomserver_internal.find_room(room_id text, OUT room_nid bigint, OUT current_state bigint, OUT room_version text)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF find_room.room_id IS NULL THEN
        RAISE EXCEPTION 'room_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT r.room_nid, r.current_state, r.room_version INTO room_nid, current_state, room_version
    FROM roomserver.rooms r WHERE r.room_id = find_room.room_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'room % not found', find_room.room_id USING ERRCODE = 'no_data_found';
    END IF;
END
$$;

-- The forward extremities of a room: the event IDs a new event would reference as prev_events.
CREATE OR REPLACE FUNCTION roomserver.forward_extremities(room_id text) RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT e.event_id
    FROM roomserver_internal.find_room(room_id) r
    JOIN roomserver.extremities x ON x.room_nid = r.room_nid
    JOIN roomserver.stored_events e ON e.room_nid = x.room_nid AND e.event_nid = x.event_nid
    ORDER BY e.depth, e.event_id
$$;
COMMENT ON FUNCTION roomserver.forward_extremities(text) IS
    'The forward extremities of a room, by depth: the event IDs a new local event would reference as prev_events. ERROR P0002 when the room is unknown, 22004 for NULL.';

-- The membership of a user in the state before (or after) an event: join, invite, leave, ban,
-- knock, or NULL when the user has no member event there.
CREATE OR REPLACE FUNCTION roomserver.membership_at_event(event_id text, user_id text, after boolean DEFAULT false) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT roomserver.event_pdu(x.room_nid, x.event_nid) -> 'content' ->> 'membership'
    FROM roomserver.state_at_event(event_id, after, NULL, ARRAY[['m.room.member', user_id]]) s
    JOIN roomserver.stored_events x ON x.event_id = s.event_id
    ORDER BY x.room_nid LIMIT 1
$$;
COMMENT ON FUNCTION roomserver.membership_at_event(text, text, boolean) IS
    'The membership (join, invite, leave, ban, knock) of a user in the state before (after => true: after) an event, or NULL when the user has no member event there. ERROR P0002 when the event is unknown or an outlier.';

-- The current state of every room, readable.
CREATE OR REPLACE VIEW roomserver.current_state AS
SELECT r.room_id,
       t.event_type AS type,
       k.state_key,
       e.event_id,
       sk.state_key AS sender,
       e.pdu_rest -> 'content' AS content
FROM roomserver.rooms r
CROSS JOIN LATERAL roomserver.snapshot_entries(r.room_nid, r.current_state) s
JOIN roomserver.event_types t ON t.event_type_nid = s.type_nid
JOIN roomserver.event_state_keys k ON k.room_nid = r.room_nid AND k.state_key_nid = s.state_key_nid
JOIN roomserver.stored_events e ON e.room_nid = r.room_nid AND e.event_nid = s.event_nid
JOIN roomserver.event_state_keys sk ON sk.room_nid = r.room_nid AND sk.state_key_nid = e.sender_nid
WHERE r.current_state IS NOT NULL;
COMMENT ON VIEW roomserver.current_state IS 'The current state of every room: the resolved state after its forward extremities.';

-- Members of every room in its current state.
CREATE OR REPLACE VIEW roomserver.room_members AS
SELECT c.room_id, c.state_key AS user_id, c.content ->> 'membership' AS membership
FROM roomserver.current_state c
WHERE c.type = 'm.room.member';
COMMENT ON VIEW roomserver.room_members IS 'Every user with a member event in the current state of a room, and their membership.';

-- sql/api/04_federation.sql
-- The federation endpoints as single SQL calls: each returns the endpoint's JSON response body.
-- The walks (backfill_walk, forwards_fill_walk, get_missing_events_walk) are Rust
-- (src/federation_functions.rs over core/src/traversal.rs); these functions shape their result.
-- All of them only read.

-- This server's name (setting roomserver.server_name), for the origin of transactions; ERROR
-- 55000 when it is not set.
CREATE OR REPLACE FUNCTION roomserver_internal.origin() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := current_setting('roomserver.server_name', true);
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'roomserver.server_name is not set: it is the origin of federation responses'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'ALTER DATABASE ... SET roomserver.server_name = ''example.org'' (or SET it in the session).';
    END IF;
    RETURN name;
END
$$;

-- What history visibility needs of each event (in the order given): whether it is an outlier
-- (then only its sender and whether it is a state event, core/src/visibility.rs
-- outlier_visible_to_server), the content of m.room.history_visibility in the state after it
-- and, only where that says invited or joined, the memberships there of the users of
-- server_name (by roomserver_internal.server_name_of, the core's rule). Each distinct state is
-- looked up once.
CREATE OR REPLACE FUNCTION roomserver_internal.visibility_inputs(room_nid bigint, event_nids bigint[], server_name text)
RETURNS TABLE (ord bigint, outlier boolean, history_visibility jsonb, memberships text[], sender text, is_state boolean)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    WITH ev AS (
        SELECT u.ord, x.outlier, x.state_after, x.sender_nid, x.state_key_nid IS NOT NULL AS is_state
        FROM unnest(event_nids) WITH ORDINALITY AS u(nid, ord)
        JOIN roomserver.stored_events x ON x.room_nid = visibility_inputs.room_nid AND x.event_nid = u.nid
    ), key_nids AS MATERIALIZED (
        -- The preassigned NIDs of the keys read, by name (sql/schema/01_nids.sql assigns them;
        -- the empty state key is created with every room): one index probe each.
        SELECT (SELECT t.event_type_nid FROM roomserver.event_types t WHERE t.event_type = 'm.room.history_visibility') AS history_visibility,
               (SELECT t.event_type_nid FROM roomserver.event_types t WHERE t.event_type = 'm.room.member') AS member,
               (SELECT k.state_key_nid FROM roomserver.event_state_keys k
                WHERE k.state_key = '' AND k.room_nid = visibility_inputs.room_nid) AS empty_state_key
    ), snaps AS MATERIALIZED (
        -- The events found are read by primary key (= and = ANY): joined to the lookup, which
        -- the planner takes for 1,000 rows, they were read by hashing the whole room's events,
        -- once for each distinct state (12 ms a call in a 30,000-event room, for one event).
        SELECT s.snap,
               (SELECT h.pdu_rest -> 'content' FROM roomserver.stored_events h
                WHERE h.room_nid = visibility_inputs.room_nid
                  AND h.event_nid = (SELECT l.event_nid FROM roomserver.snapshot_lookup(visibility_inputs.room_nid, s.snap,
                                                                ARRAY[n.history_visibility], ARRAY[n.empty_state_key]) l)) AS hv
        FROM key_nids n, (SELECT DISTINCT ev.state_after AS snap FROM ev WHERE ev.state_after IS NOT NULL) s
    ), users AS MATERIALIZED (
        -- Read only if some state restricts visibility (a CTE is evaluated when first read).
        -- The rule is server_name_of's (what follows the first ':'); ending in ':' || server_name,
        -- which it implies, is only a cheap filter, tested first (server_name_of is COST 10), so
        -- that the Rust call (1 us) is made for the server's users and not for every user of a
        -- 20,000-member room (22 ms more).
        SELECT COALESCE(array_agg(k.state_key_nid), '{}') AS nids
        FROM roomserver.event_state_keys k
        WHERE k.room_nid = visibility_inputs.room_nid AND k.state_key LIKE '@%'
          AND right(k.state_key, length(server_name) + 1) = ':' || server_name
          AND roomserver_internal.server_name_of(k.state_key) = server_name
    ), members AS MATERIALIZED (
        -- Once per distinct state, not once per event row of the join below (inlined, it was
        -- re-evaluated per event: 8 s instead of 51 ms for 1,000 events over 309 states).
        SELECT sn.snap, sn.hv,
               CASE WHEN sn.hv ->> 'history_visibility' IN ('invited', 'joined') THEN
                   (SELECT COALESCE(array_agg(m.pdu_rest -> 'content' ->> 'membership'), '{}')
                    FROM roomserver.stored_events m
                    WHERE m.room_nid = visibility_inputs.room_nid
                      AND m.event_nid = ANY (ARRAY(SELECT l.event_nid FROM users CROSS JOIN key_nids n
                                                   CROSS JOIN LATERAL roomserver.snapshot_lookup(visibility_inputs.room_nid, sn.snap,
                                                       array_fill(n.member, ARRAY[cardinality(users.nids)]), users.nids) l)))
               END AS memberships
        FROM snaps sn
    )
    SELECT ev.ord, ev.outlier, mb.hv, mb.memberships,
           -- Read for outliers only (the rule for the others does not need it).
           CASE WHEN ev.outlier THEN (SELECT k.state_key FROM roomserver.event_state_keys k
                                      WHERE k.room_nid = visibility_inputs.room_nid AND k.state_key_nid = ev.sender_nid) END,
           ev.is_state
    FROM ev LEFT JOIN members mb ON mb.snap = ev.state_after
$$;

-- The bodies of the walks (backfill, get_missing_events, forwards fill) and /event: the PDUs of
-- events in the order given, in the room version's federation format, redacted where a
-- redaction applies (stored_pdus); those the requesting server may not see (visible[i] false)
-- redacted too, so that the DAG stays connected. Rejected events are left out: the walks go
-- through them (they are part of the DAG) but never return one, as Synapse does (it fetches
-- the walked events without allow_rejected). Built for the whole batch by
-- roomserver_internal.stored_pdus. visible is read by subscript, not joined by position: a join
-- could be planned as a nested loop over the array (the planner takes an unnested array for 10
-- rows), quadratic in the batch.
CREATE OR REPLACE FUNCTION roomserver_internal.federation_pdus(room_nid bigint, event_nids bigint[], visible boolean[]) RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT COALESCE(jsonb_agg(CASE WHEN visible[p.ord::integer] OR p.redacted_by IS NOT NULL THEN p.pdu
                                   ELSE roomserver.redact(p.pdu, p.room_version) END
                              ORDER BY p.ord), '[]'::jsonb)
    FROM roomserver_internal.stored_pdus(room_nid, event_nids) p
    WHERE NOT p.rejected
$$;

-- Every event given, visible (the state and auth chain bodies, which are not filtered), redacted
-- where a redaction applies.
CREATE OR REPLACE FUNCTION roomserver_internal.federation_pdus(room_nid bigint, event_nids bigint[]) RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT COALESCE(jsonb_agg(p.pdu ORDER BY p.ord), '[]'::jsonb)
    FROM roomserver_internal.stored_pdus(room_nid, event_nids) p
$$;

-- A transaction-shaped body: {"origin", "origin_server_ts" (the time of the call), "pdus"}.
CREATE OR REPLACE FUNCTION roomserver_internal.transaction_body(pdus jsonb) RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('origin', roomserver_internal.origin(),
                              'origin_server_ts', (extract(epoch FROM statement_timestamp()) * 1000)::bigint,
                              'pdus', pdus)
$$;

-- GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=...
CREATE OR REPLACE FUNCTION roomserver.backfill(room_id text, v text[], "limit" integer, requesting_server text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT roomserver_internal.transaction_body(roomserver_internal.federation_pdus(w.room_nid, w.event_nids, w.visible))
    FROM roomserver_internal.backfill_walk($1, $2, $3, $4) w
$$;
COMMENT ON FUNCTION roomserver.backfill(text, text[], integer, text) IS
    'Body of GET /_matrix/federation/v1/backfill: the v events and their ancestors, newest first, at most limit (clamped to 1000) walked; rejected events are walked through but left out, redactions applied, events requesting_server may not see redacted.';

-- GET /_matrix/federation/v1/forwards_fill/{roomId}?from_event_id=...&limit=... (MSC4000)
CREATE OR REPLACE FUNCTION roomserver.forwards_fill(room_id text, from_event_id text[], "limit" integer, requesting_server text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT roomserver_internal.transaction_body(roomserver_internal.federation_pdus(w.room_nid, w.event_nids, w.visible))
    FROM roomserver_internal.forwards_fill_walk($1, $2, $3, $4) w
$$;
COMMENT ON FUNCTION roomserver.forwards_fill(text, text[], integer, text) IS
    'Body of MSC4000 GET /_matrix/federation/v1/forwards_fill: the given events and their successors, oldest first, at most limit (clamped to 1000) walked; rejected events are walked through but left out, redactions applied, events requesting_server may not see redacted.';

-- POST /_matrix/federation/v1/get_missing_events/{roomId}
CREATE OR REPLACE FUNCTION roomserver.get_missing_events(room_id text, earliest_events text[], latest_events text[],
                                              "limit" integer DEFAULT 10, min_depth bigint DEFAULT 0,
                                              requesting_server text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('events', roomserver_internal.federation_pdus(w.room_nid, w.event_nids, w.visible))
    FROM roomserver_internal.get_missing_events_walk($1, $2, $3, $4, $5, $6) w
$$;
COMMENT ON FUNCTION roomserver.get_missing_events(text, text[], text[], integer, bigint, text) IS
    'Body of POST /_matrix/federation/v1/get_missing_events: events after earliest_events and before latest_events, oldest first, at most limit (clamped to 1000) walked; rejected events are walked through but left out, redactions applied, events requesting_server may not see redacted.';

-- GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}: the event's whole auth chain (its
-- auth events and theirs, transitively), in NID order (auth events are always stored first).
CREATE OR REPLACE FUNCTION roomserver.event_auth(room_id text, event_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev record;
    chain jsonb;
BEGIN
    IF event_auth.room_id IS NULL OR event_auth.event_id IS NULL THEN
        RAISE EXCEPTION 'room_id and event_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    ev := roomserver_internal.find_event(event_auth.room_id, event_auth.event_id);
    SELECT roomserver_internal.federation_pdus(ev.room_nid, COALESCE(array_agg(c.event_nid ORDER BY c.event_nid), '{}')) INTO chain
    FROM roomserver.auth_chain_nids(ev.room_nid, ARRAY[ev.event_nid]) c;
    RETURN jsonb_build_object('auth_chain', chain);
END
$$;
COMMENT ON FUNCTION roomserver.event_auth(text, text) IS
    'Body of GET /_matrix/federation/v1/event_auth: {"auth_chain"}, the event''s whole auth chain as PDUs in NID order. ERROR P0002 for an unknown room or an event not in that room; 22004 on NULL arguments.';

-- GET /_matrix/federation/v1/event/{eventId}: a transaction with the one PDU; redacted when
-- requesting_server may not see it.
CREATE OR REPLACE FUNCTION roomserver.event(event_id text, requesting_server text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev record;
    visible boolean := true;
BEGIN
    IF event.event_id IS NULL THEN
        RAISE EXCEPTION 'event_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    ev := roomserver_internal.find_event(event.event_id);
    -- A rejected event is not served (Synapse answers 404 for it too).
    IF EXISTS (SELECT 1 FROM roomserver.stored_events e
               WHERE e.room_nid = ev.room_nid AND e.event_nid = ev.event_nid AND e.rejection IS NOT NULL) THEN
        RAISE EXCEPTION 'event % not found', event.event_id USING ERRCODE = 'no_data_found',
            DETAIL = 'The event is stored rejected: it is not served.';
    END IF;
    IF requesting_server IS NOT NULL THEN
        visible := (roomserver_internal.server_may_see_events(ev.room_nid, ARRAY[ev.event_nid], requesting_server))[1];
    END IF;
    RETURN roomserver_internal.transaction_body(roomserver_internal.federation_pdus(ev.room_nid, ARRAY[ev.event_nid], ARRAY[visible]));
END
$$;
COMMENT ON FUNCTION roomserver.event(text, text) IS
    'Body of GET /_matrix/federation/v1/event: {"origin", "origin_server_ts", "pdus": [pdu]}, the PDU redacted when a redaction applies to it or requesting_server may not see it (NULL: no check; an outlier is visible only if its sender is of requesting_server or it is a state event). ERROR P0002 when the event is unknown or stored rejected, 55000 when roomserver.server_name is not set.';

-- roomserver.missing_events(pdu jsonb), the prev and auth events an incoming PDU references
-- that this server lacks (Dendrite's QueryMissingAuthPrevEvents), is in Rust
-- (src/api/federation.rs): it reads the references as ingest does (core/src/event.rs).

-- The backward extremities of a room (MSC3871 gappy timelines): the stored events with prev
-- events that are not stored, and those missing prev events: what /backfill or
-- /get_missing_events must fetch. Read through the partial index of pending edges.
CREATE OR REPLACE FUNCTION roomserver.backward_extremities(room_id text)
RETURNS TABLE (event_id text, depth bigint, outlier boolean, missing_prev_events text[])
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT e.event_id, e.depth, e.outlier, array_agg(ed.target_event_id ORDER BY ed.position)
    FROM roomserver_internal.find_room(room_id) r
    JOIN roomserver.event_edges ed ON ed.room_nid = r.room_nid AND ed.target_nid IS NULL AND ed.kind = 'p'
    JOIN roomserver.stored_events e ON e.room_nid = ed.room_nid AND e.event_nid = ed.event_nid
    GROUP BY e.event_id, e.depth, e.outlier
    ORDER BY e.depth DESC, e.event_id COLLATE "C" DESC
$$;
COMMENT ON FUNCTION roomserver.backward_extremities(text) IS
    'The gaps of a room (MSC3871): stored events whose prev events are not stored, with the missing prev event IDs, deepest first; what /backfill or /get_missing_events must fetch. ERROR P0002 when the room is unknown, 22004 for NULL.';

-- ---------------------------------------------------------------------------------------------
-- Which servers take part in a room (issue 16): the checks of the federation front end and the
-- destinations of its outbox, each over the room's current state.

-- Whether a room's m.room.server_acl lets server_name take part (the rule is the core's,
-- roomserver_internal.server_acl_allows): true when the room has no ACL, NULL when the room is
-- unknown or has no current state yet (nothing to apply: a caller that must refuse only on a
-- denial tests IS NOT FALSE). The ACL is read as served (event_pdu: a redacted ACL has empty
-- content and so, as the spec's rule says, allows no server).
CREATE OR REPLACE FUNCTION roomserver.server_allowed(room_id text, server_name text) RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    WITH room AS (
        SELECT r.room_nid, r.current_state FROM roomserver.rooms r
        WHERE r.room_id = server_allowed.room_id AND r.current_state IS NOT NULL
    ), acl AS (
        SELECT roomserver.event_pdu(room.room_nid, l.event_nid) -> 'content' AS content
        FROM room,
             (SELECT t.event_type_nid FROM roomserver.event_types t WHERE t.event_type = 'm.room.server_acl') t,
             roomserver.event_state_keys k,
             LATERAL roomserver.snapshot_lookup(room.room_nid, room.current_state, ARRAY[t.event_type_nid], ARRAY[k.state_key_nid]) l
        WHERE k.room_nid = room.room_nid AND k.state_key = '' AND l.event_nid IS NOT NULL
    )
    SELECT CASE WHEN EXISTS (SELECT 1 FROM room)
                THEN COALESCE((SELECT roomserver_internal.server_acl_allows(COALESCE(acl.content, '{}'), server_allowed.server_name) FROM acl), true)
           END
$$;
COMMENT ON FUNCTION roomserver.server_allowed(text, text) IS
    'Whether the m.room.server_acl of a room''s current state allows server_name (port stripped; the spec''s rule): true when the room has no ACL, NULL when the room is unknown or has no current state. What the front end checks before serving a request that names a room, ingesting a PDU of it, or sending to a server.';

-- Whether server_name has a joined member in a room's current state (by server_name_of, the
-- core's rule); false for an unknown room. Only the room's state keys of that server are looked
-- up (the suffix test first, as in visibility_inputs), not the room's whole state.
CREATE OR REPLACE FUNCTION roomserver.server_in_room(room_id text, server_name text) RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    WITH room AS (
        SELECT r.room_nid, r.current_state FROM roomserver.rooms r
        WHERE r.room_id = server_in_room.room_id AND r.current_state IS NOT NULL
    ), users AS MATERIALIZED (
        SELECT k.state_key_nid
        FROM room JOIN roomserver.event_state_keys k ON k.room_nid = room.room_nid
        WHERE k.state_key LIKE '@%'
          AND right(k.state_key, length(server_in_room.server_name) + 1) = ':' || server_in_room.server_name
          AND roomserver_internal.server_name_of(k.state_key) = server_in_room.server_name
    )
    SELECT EXISTS (
        SELECT 1
        FROM room,
             (SELECT t.event_type_nid FROM roomserver.event_types t WHERE t.event_type = 'm.room.member') t,
             LATERAL roomserver.snapshot_lookup(room.room_nid, room.current_state,
                 array_fill(t.event_type_nid, ARRAY[(SELECT count(*) FROM users)::integer]),
                 ARRAY(SELECT users.state_key_nid FROM users)) l,
             roomserver.stored_events m
        WHERE m.room_nid = room.room_nid AND m.event_nid = l.event_nid
          AND m.pdu_rest -> 'content' ->> 'membership' = 'join'
    )
$$;
COMMENT ON FUNCTION roomserver.server_in_room(text, text) IS
    'Whether server_name has a user whose membership is join in a room''s current state (the server of a user ID: what follows its first colon); false for an unknown room. The "in the room" check of the federation reads.';

-- The servers with a joined member in a room's current state, sorted (bytewise, whatever the
-- database's collation); none for an unknown room.
-- What the outbox sends a room's new events to (after leaving out this server and those the
-- room's ACL denies: roomserver.server_allowed).
CREATE OR REPLACE FUNCTION roomserver.joined_servers(room_id text) RETURNS SETOF text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT s.server_name
    FROM roomserver.room_members m
    CROSS JOIN LATERAL (SELECT roomserver_internal.server_name_of(m.user_id) AS server_name) s
    WHERE m.room_id = joined_servers.room_id AND m.membership = 'join' AND s.server_name IS NOT NULL
    GROUP BY s.server_name
    ORDER BY s.server_name COLLATE "C"
$$;
COMMENT ON FUNCTION roomserver.joined_servers(text) IS
    'The servers with a user whose membership is join in a room''s current state, sorted; no rows for an unknown room. ACL-denied servers are included: filter with roomserver.server_allowed.';

-- sql/api/05_access.sql
-- Who may do what. Nothing in the schema is granted to PUBLIC (sql/api/99_finalize.sql); a DBA
-- makes roles readers or writers with these functions, which only the extension's owner (or a
-- role holding the grant option) can run:
--   reader: USAGE on the schema, SELECT on every table and view, EXECUTE on every function that
--           cannot write (STABLE or IMMUTABLE: state, federation reads, NID lookups, ...);
--   writer: a reader that may also call ingest_event and ingest_events (and
--           purge_redacted_content). Those run as SECURITY DEFINER (owner's rights, pinned
--           search_path), so a writer needs no write privilege on any table: what it stores
--           always goes through ingest's checks.
--   admin:  the extension's owner (the superuser who ran CREATE EXTENSION): everything else,
--           DDL, the write functions (assign_*_nids, roomserver_internal.store_snapshot), these
--           grants.
-- Re-running them is harmless; every upgrade re-grants what a new release adds to existing
-- readers and writers (99_finalize.sql).

CREATE OR REPLACE FUNCTION roomserver.grant_reader(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
DECLARE
    f regprocedure;
BEGIN
    -- The read functions run with the caller's rights and call the internal ones.
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA roomserver, roomserver_internal TO %s', role);
    EXECUTE pg_catalog.format('GRANT SELECT ON ALL TABLES IN SCHEMA roomserver TO %s', role);
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
             WHERE p.pronamespace IN ('roomserver'::pg_catalog.regnamespace, 'roomserver_internal'::pg_catalog.regnamespace)
               AND p.provolatile <> 'v'
             ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', f, role);
    END LOOP;
END
$$;
COMMENT ON FUNCTION roomserver.grant_reader(regrole) IS 'Makes a role a reader: SELECT on every table and view, EXECUTE on every read function.';

CREATE OR REPLACE FUNCTION roomserver.grant_writer(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    PERFORM roomserver.grant_reader(role);
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) TO %s', role);
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) TO %s', role);
    -- SECURITY DEFINER like ingest: it rewrites stored_events only as its rule says.
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION roomserver.purge_redacted_content(interval) TO %s', role);
END
$$;
COMMENT ON FUNCTION roomserver.grant_writer(regrole) IS 'Makes a role a writer: a reader that may also call ingest_event and ingest_events (no table write privileges).';

CREATE OR REPLACE FUNCTION roomserver.revoke_access(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA roomserver, roomserver_internal FROM %s', role);
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA roomserver FROM %s', role);
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA roomserver FROM %s', role);
    EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA roomserver, roomserver_internal FROM %s', role);
END
$$;
COMMENT ON FUNCTION roomserver.revoke_access(regrole) IS 'Takes every privilege on the extension''s schema, tables and functions from a role.';

-- sql/api/06_timeline.sql
-- Finding events by time.

-- The federation body of GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=…&dir=…
-- (spec v1.6): the closest event to ts in direction dir, 'f' the first at or after it, 'b' the
-- last at or before it. As Synapse's get_event_id_for_timestamp: outliers (no place in the DAG
-- to continue from) and rejected events are never the answer, soft-failed events may be; ties
-- on origin_server_ts go to the event that comes next in that direction by depth, then by
-- arrival (the event NID, Synapse's stream_ordering). One probe of the partial index
-- stored_events_room_ts (sql/schema/02_events.sql): its predicate is this query's, its key
-- this ORDER BY, read forwards for 'f' and backwards for 'b', so LIMIT 1 stops at the first entry.
CREATE OR REPLACE FUNCTION roomserver.timestamp_to_event(room_id text, ts bigint, dir text) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    room record;
    hit record;
BEGIN
    IF timestamp_to_event.room_id IS NULL OR timestamp_to_event.ts IS NULL OR timestamp_to_event.dir IS NULL THEN
        RAISE EXCEPTION 'room_id, ts and dir must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF timestamp_to_event.dir NOT IN ('f', 'b') THEN
        RAISE EXCEPTION 'dir must be ''f'' (forwards) or ''b'' (backwards), not %', pg_catalog.quote_literal(timestamp_to_event.dir)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    room := roomserver_internal.find_room(timestamp_to_event.room_id);
    IF timestamp_to_event.dir = 'f' THEN
        SELECT e.event_id, e.origin_server_ts INTO hit
        FROM roomserver.stored_events e
        WHERE e.room_nid = room.room_nid AND e.origin_server_ts >= timestamp_to_event.ts
          AND NOT e.outlier AND e.rejection IS NULL
        ORDER BY e.origin_server_ts, e.depth, e.event_nid
        LIMIT 1;
    ELSE
        SELECT e.event_id, e.origin_server_ts INTO hit
        FROM roomserver.stored_events e
        WHERE e.room_nid = room.room_nid AND e.origin_server_ts <= timestamp_to_event.ts
          AND NOT e.outlier AND e.rejection IS NULL
        ORDER BY e.origin_server_ts DESC, e.depth DESC, e.event_nid DESC
        LIMIT 1;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no event in room % % %', timestamp_to_event.room_id,
            CASE timestamp_to_event.dir WHEN 'f' THEN 'at or after' ELSE 'at or before' END, timestamp_to_event.ts
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN pg_catalog.jsonb_build_object('event_id', hit.event_id, 'origin_server_ts', hit.origin_server_ts);
END
$$;
COMMENT ON FUNCTION roomserver.timestamp_to_event(text, bigint, text) IS
    'Body of GET /_matrix/federation/v1/timestamp_to_event: {"event_id", "origin_server_ts"} of the closest event to ts (ms) in direction dir, ''f'' the first at or after it, ''b'' the last at or before it (outliers and rejected events skipped; ties by depth, then arrival). ERROR P0002 for an unknown room or when no event is in that direction, 22023 for another dir, 22004 on NULL arguments.';

-- sql/api/90_comments.sql
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

-- sql/api/99_finalize.sql
-- Runs last, once the Rust functions exist.

-- Ingest's statements are written to be index probes whatever the batch size, so they run with
-- generic plans: re-planning them on every call was a quarter of the time of single-event ingest
-- (perf on the backend: GetCachedPlan -> pg_plan_queries). A generic plan is costed with the
-- statistics of the moment it is made, and a plan made while the tables were still empty chose
-- sequential scans that then ran on every call as the room grew (measured: 784 instead of 4,000+
-- events/s after 70,000 events). enable_seqscan = off keeps those plans on the indexes; it applies
-- only while these functions run.
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) SET enable_seqscan = off;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) SET enable_seqscan = off;

-- Writers ingest with the owner's rights (see 05_access.sql): they need no table privileges.
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) SECURITY DEFINER;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) SECURITY DEFINER;

-- Every function runs with a pinned search_path, so no function or operator a caller's
-- search_path could supply (public.unnest(bigint[]) is a better match than pg_catalog's
-- unnest(anyarray)) ever runs inside ours, whoever calls. pg_temp comes last so that not even
-- a temporary object can shadow anything.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
             WHERE p.pronamespace IN ('roomserver'::pg_catalog.regnamespace, 'roomserver_internal'::pg_catalog.regnamespace)
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, roomserver, pg_temp', f);
    END LOOP;
END
$$;

-- Nothing is granted to PUBLIC; roomserver.grant_reader / grant_writer grant what a role needs.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA roomserver, roomserver_internal FROM PUBLIC;

-- An upgrade gives existing readers and writers what the new release adds (a fresh install
-- has none). A reader is a role that may call state_ids, a writer one that may call ingest_event.
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::regrole FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid = 'roomserver.state_ids(text, text)'::pg_catalog.regprocedure AND a.grantee <> p.proowner AND a.grantee <> 0
    LOOP
        PERFORM roomserver.grant_reader(r);
    END LOOP;
    FOR r IN SELECT DISTINCT a.grantee::regrole FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid = 'roomserver.ingest_event(jsonb, text, boolean, text[])'::pg_catalog.regprocedure AND a.grantee <> p.proowner AND a.grantee <> 0
    LOOP
        PERFORM roomserver.grant_writer(r);
    END LOOP;
END
$$;

-- Grants to roles are never initial privileges. PostgreSQL records what an extension script
-- (CREATE or ALTER EXTENSION) grants in pg_init_privs, and pg_dump dumps only the privileges that
-- differ from those: the grants above, made by ALTER EXTENSION UPDATE, would count as the
-- extension's own, be left out of every dump, and be lost on restore (whose CREATE EXTENSION
-- grants nobody anything). So the initial privileges of the extension's objects keep only what
-- their owner holds, as after a fresh install. (A fresh install grants nothing: nothing changes.)
UPDATE pg_catalog.pg_init_privs i
SET initprivs = ARRAY(SELECT a FROM pg_catalog.unnest(i.initprivs) AS a
                      WHERE (SELECT x.grantee = x.grantor FROM pg_catalog.aclexplode(ARRAY[a]) AS x LIMIT 1))
WHERE i.privtype = 'e'
  AND (EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
               WHERE d.classid = i.classoid AND d.objid = i.objoid AND d.deptype = 'e'
                 AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                 AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_roomserver'))
       -- Schema roomserver is the extension's schema, not a member of it.
       OR (i.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
           AND i.objoid IN ('roomserver'::pg_catalog.regnamespace, 'roomserver_internal'::pg_catalog.regnamespace)))
  AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(i.initprivs) AS x WHERE x.grantee <> x.grantor);
