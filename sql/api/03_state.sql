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
