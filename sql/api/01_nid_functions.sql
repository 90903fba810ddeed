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
