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

-- What history visibility needs of each event (in the order given): whether it is an outlier,
-- the content of m.room.history_visibility in the state after it and, only where that says
-- invited or joined, the memberships there of the users of server_name (after the first ':'
-- of the user ID). Each distinct state is looked up once.
CREATE OR REPLACE FUNCTION roomserver_internal.visibility_inputs(room_nid bigint, event_nids bigint[], server_name text)
RETURNS TABLE (ord bigint, outlier boolean, history_visibility jsonb, memberships text[])
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    WITH ev AS (
        SELECT u.ord, x.outlier, x.state_after
        FROM unnest(event_nids) WITH ORDINALITY AS u(nid, ord)
        JOIN roomserver.stored_events x ON x.room_nid = visibility_inputs.room_nid AND x.event_nid = u.nid
    ), snaps AS MATERIALIZED (
        SELECT s.snap,
               (SELECT h.pdu_rest -> 'content'
                FROM roomserver.snapshot_lookup(visibility_inputs.room_nid, s.snap, ARRAY[7::bigint], ARRAY[1::bigint]) l
                JOIN roomserver.stored_events h ON h.room_nid = visibility_inputs.room_nid AND h.event_nid = l.event_nid) AS hv
        FROM (SELECT DISTINCT ev.state_after AS snap FROM ev WHERE ev.state_after IS NOT NULL) s
    ), users AS MATERIALIZED (
        -- Read only if some state restricts visibility (a CTE is evaluated when first read).
        SELECT COALESCE(array_agg(k.state_key_nid), '{}') AS nids
        FROM roomserver.event_state_keys k
        WHERE k.room_nid = visibility_inputs.room_nid AND k.state_key LIKE '@%'
          AND substr(k.state_key, strpos(k.state_key, ':') + 1) = server_name
    ), members AS MATERIALIZED (
        -- Once per distinct state, not once per event row of the join below (inlined, it was
        -- re-evaluated per event: 8 s instead of 51 ms for 1,000 events over 309 states).
        SELECT sn.snap, sn.hv,
               CASE WHEN sn.hv ->> 'history_visibility' IN ('invited', 'joined') THEN
                   (SELECT COALESCE(array_agg(m.pdu_rest -> 'content' ->> 'membership'), '{}')
                    FROM users
                    CROSS JOIN LATERAL roomserver.snapshot_lookup(visibility_inputs.room_nid, sn.snap,
                                            array_fill(5::bigint, ARRAY[cardinality(users.nids)]), users.nids) l
                    JOIN roomserver.stored_events m ON m.room_nid = visibility_inputs.room_nid AND m.event_nid = l.event_nid)
               END AS memberships
        FROM snaps sn
    )
    SELECT ev.ord, ev.outlier, mb.hv, mb.memberships
    FROM ev LEFT JOIN members mb ON mb.snap = ev.state_after
$$;

-- The PDUs of events in the order given, in the room version's federation format; those the
-- requesting server may not see (visible[i] false) redacted, so that the DAG stays connected.
-- The same JSON as roomserver.event_pdu, built for the whole batch in one set-based query:
-- calling event_pdu per event cost about 0.3 ms each (three SQL function calls), which was most
-- of a 100-event backfill.
CREATE OR REPLACE FUNCTION roomserver_internal.federation_pdus(room_nid bigint, event_nids bigint[], visible boolean[]) RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    WITH u AS (
        SELECT x.nid, x.visible, x.ord FROM unnest(event_nids, visible) WITH ORDINALITY AS x(nid, visible, ord)
    ), pdus AS (
        SELECT u.ord, u.visible, r.room_version,
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
            || CASE WHEN r.room_version IN ('1', '2') THEN jsonb_build_object('event_id', e.event_id) ELSE '{}'::jsonb END AS pdu
        FROM u
        JOIN roomserver.stored_events e ON e.room_nid = federation_pdus.room_nid AND e.event_nid = u.nid
        JOIN roomserver.rooms r ON r.room_nid = e.room_nid
        JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
        JOIN roomserver.event_state_keys s ON s.room_nid = e.room_nid AND s.state_key_nid = e.sender_nid
        LEFT JOIN roomserver.event_state_keys k ON k.room_nid = e.room_nid AND k.state_key_nid = e.state_key_nid
        -- Both reference lists in one index probe per event. (As a grouped CTE joined back, the
        -- planner, taking the unnested array for 10 rows, scanned the CTE once per event:
        -- quadratic, over a second for 2,000 events and hours for a /state of 60,000.)
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
    )
    SELECT COALESCE(jsonb_agg(CASE WHEN pdus.visible THEN pdus.pdu ELSE roomserver.redact(pdus.pdu, pdus.room_version) END
                              ORDER BY pdus.ord), '[]'::jsonb)
    FROM pdus
$$;

-- The same, every event visible (the state and auth chain bodies, which are not filtered).
CREATE OR REPLACE FUNCTION roomserver_internal.federation_pdus(room_nid bigint, event_nids bigint[]) RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT roomserver_internal.federation_pdus(room_nid, event_nids, array_fill(true, ARRAY[cardinality(event_nids)]))
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
    'Body of GET /_matrix/federation/v1/backfill: the v events and their ancestors, newest first, at most limit (clamped to 1000).';

-- GET /_matrix/federation/v1/forwards_fill/{roomId}?from_event_id=...&limit=... (MSC4000)
CREATE OR REPLACE FUNCTION roomserver.forwards_fill(room_id text, from_event_id text[], "limit" integer, requesting_server text DEFAULT NULL) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT roomserver_internal.transaction_body(roomserver_internal.federation_pdus(w.room_nid, w.event_nids, w.visible))
    FROM roomserver_internal.forwards_fill_walk($1, $2, $3, $4) w
$$;
COMMENT ON FUNCTION roomserver.forwards_fill(text, text[], integer, text) IS
    'Body of MSC4000 GET /_matrix/federation/v1/forwards_fill: the given events and their successors, oldest first, at most limit (clamped to 1000).';

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
    'Body of POST /_matrix/federation/v1/get_missing_events: events after earliest_events and before latest_events, oldest first, at most limit (clamped to 1000).';

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
    IF requesting_server IS NOT NULL THEN
        visible := (roomserver_internal.server_may_see_events(ev.room_nid, ARRAY[ev.event_nid], requesting_server))[1];
    END IF;
    RETURN roomserver_internal.transaction_body(roomserver_internal.federation_pdus(ev.room_nid, ARRAY[ev.event_nid], ARRAY[visible]));
END
$$;

-- The prev and auth events an incoming PDU references that this server lacks (Dendrite's
-- QueryMissingAuthPrevEvents): prev events not stored with state (unknown, or outliers: ingest
-- needs their state) and auth events not stored at all; each list in PDU order, no repeats.
CREATE OR REPLACE FUNCTION roomserver.missing_events(pdu jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    room bigint;
    prevs jsonb;
    auths jsonb;
BEGIN
    IF pdu IS NULL THEN
        RAISE EXCEPTION 'pdu must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(pdu) <> 'object' THEN
        RAISE EXCEPTION 'missing_events: a PDU must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(pdu -> 'prev_events') IS DISTINCT FROM 'array' OR jsonb_typeof(pdu -> 'auth_events') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'missing_events: prev_events and auth_events must be arrays' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A room version 12 create event has no room_id, but references nothing either.
    IF jsonb_array_length(pdu -> 'prev_events') = 0 AND jsonb_array_length(pdu -> 'auth_events') = 0 THEN
        RETURN jsonb_build_object('missing_prev_events', '[]'::jsonb, 'missing_auth_events', '[]'::jsonb);
    END IF;
    IF jsonb_typeof(pdu -> 'room_id') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'missing_events: room_id must be a string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    room := (roomserver_internal.find_room(pdu ->> 'room_id')).room_nid;
    -- References are event IDs, or [event_id, hashes] pairs in room versions 1 and 2.
    WITH refs AS (
        SELECT r.kind, r.pos, CASE jsonb_typeof(r.ref) WHEN 'string' THEN r.ref #>> '{}' WHEN 'array' THEN r.ref ->> 0 END AS id
        FROM (SELECT 'p' AS kind, x.ref, x.pos FROM jsonb_array_elements(pdu -> 'prev_events') WITH ORDINALITY AS x(ref, pos)
              UNION ALL
              SELECT 'a', x.ref, x.pos FROM jsonb_array_elements(pdu -> 'auth_events') WITH ORDINALITY AS x(ref, pos)) r
    ), missing AS (
        SELECT refs.kind, refs.id, min(refs.pos) AS pos
        FROM refs
        LEFT JOIN roomserver.stored_events e ON e.event_id = refs.id AND e.room_nid = room
        WHERE e.event_nid IS NULL OR (refs.kind = 'p' AND e.outlier)
        GROUP BY refs.kind, refs.id
    )
    SELECT COALESCE(jsonb_agg(m.id ORDER BY m.pos) FILTER (WHERE m.kind = 'p'), '[]'),
           COALESCE(jsonb_agg(m.id ORDER BY m.pos) FILTER (WHERE m.kind = 'a'), '[]')
    INTO prevs, auths FROM missing m;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(pdu -> 'prev_events') x(ref) WHERE jsonb_typeof(x.ref) NOT IN ('string', 'array'))
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(pdu -> 'auth_events') x(ref) WHERE jsonb_typeof(x.ref) NOT IN ('string', 'array'))
       OR prevs @> '[null]' OR auths @> '[null]' THEN
        RAISE EXCEPTION 'missing_events: prev_events and auth_events must hold event IDs' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN jsonb_build_object('missing_prev_events', prevs, 'missing_auth_events', auths);
END
$$;

-- The backward extremities of a room (MSC3871 gappy timelines): the stored events with prev
-- events that are not stored, and those missing prev events: what /backfill or
-- /get_missing_events must fetch. Read through the partial index of pending edges.
CREATE OR REPLACE FUNCTION roomserver.backward_extremities(room_id text)
RETURNS TABLE (event_id text, depth bigint, outlier boolean, missing_prev_events text[])
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT e.event_id, e.depth, e.outlier, array_agg(ed.target_event_id ORDER BY ed.position)
    FROM roomserver_internal.find_room(room_id) r
    JOIN roomserver.event_edges ed ON ed.room_nid = r.room_nid AND ed.target_nid IS NULL AND ed.kind = 'p'
    JOIN roomserver.stored_events e ON e.room_nid = ed.room_nid AND e.event_nid = ed.event_nid
    GROUP BY e.event_id, e.depth, e.outlier
    ORDER BY e.depth DESC, e.event_id COLLATE "C" DESC
$$;
