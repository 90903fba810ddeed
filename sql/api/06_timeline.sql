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
