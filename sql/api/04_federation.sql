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
