-- Joining a room part-way through its history and backfilling it, as a homeserver's front end
-- calls the functions, against a full load of the same room from its create event. Two rooms:
-- the sample (room version 12, forks, bans, a soft-failed event) and the first 60 events of a
-- generated forked room (room version 11, 200 members on 10 servers).
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql

-- What the other server holds: the room's PDUs, oldest first.
CREATE TABLE regress.remote (n int, event_id text, pdu jsonb);
-- The events named and their auth chains that are not stored yet, as outliers (/event and
-- /event_auth from the other server), leaving out `skip`.
CREATE FUNCTION regress.fetch_with_auth_chain(ids text[], skip text[] DEFAULT '{}') RETURNS bigint LANGUAGE sql AS $$
    WITH RECURSIVE chain(event_id) AS (
        SELECT unnest(ids)
        UNION
        SELECT a.id FROM chain c JOIN regress.remote r USING (event_id)
        CROSS JOIN LATERAL jsonb_array_elements_text(r.pdu->'auth_events') AS a(id)
    )
    SELECT count(*) FROM roomserver.ingest_events(
        (SELECT COALESCE(jsonb_agg(r.pdu), '[]') FROM chain JOIN regress.remote r USING (event_id)
         WHERE r.event_id <> ALL (skip)
           AND NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.event_id = r.event_id)),
        outlier => true)
$$;
-- Every event's state before it and its outcome, the room's tips: what is compared.
CREATE TABLE regress.reference (event_id text, outlier boolean, rejected boolean, state_before text[]);
CREATE TABLE regress.reference_tips (extremities text[], current_state text);
CREATE FUNCTION regress.outcomes() RETURNS TABLE (event_id text, outlier boolean, rejected boolean, state_before text[]) LANGUAGE sql AS $$
    SELECT r.event_id, e.outlier, e.rejected,
           CASE WHEN NOT e.outlier THEN ARRAY(SELECT s.event_id FROM roomserver.state_at_event(r.event_id) s ORDER BY 1) END
    FROM regress.remote r JOIN roomserver.events e USING (event_id)
$$;
CREATE FUNCTION regress.tips() RETURNS TABLE (extremities text[], current_state text) LANGUAGE sql AS $$
    SELECT ARRAY(SELECT x FROM roomserver.rooms r, roomserver.forward_extremities(r.room_id) x ORDER BY 1),
           (SELECT md5(string_agg(c.type || '|' || c.state_key || '|' || c.event_id, ',' ORDER BY c.type, c.state_key)) FROM roomserver.current_state c)
$$;
CREATE FUNCTION regress.forget_everything() RETURNS void LANGUAGE sql AS $$
    TRUNCATE roomserver.rooms, roomserver.event_state_keys, roomserver.stored_events, roomserver.event_edges,
             roomserver.event_redactions, roomserver.state_blocks, roomserver.state_snapshots, roomserver.extremities RESTART IDENTITY
$$;

-- The test, for the room in regress.remote joined at its event number join_at, backfilled in
-- /backfill responses of `batch` events.
CREATE FUNCTION regress.join_and_backfill(join_at int, batch int) RETURNS TABLE (step text, detail text) LANGUAGE plpgsql AS $$
DECLARE
    room text;
    join_id text;
    join_pdu jsonb;
    response jsonb;
    ev record;
    missing jsonb;
    state text[];
    b int;
BEGIN
    -- 1. The reference: the whole room from its create event.
    PERFORM count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.remote));
    DELETE FROM regress.reference;
    INSERT INTO regress.reference SELECT * FROM regress.outcomes();
    DELETE FROM regress.reference_tips;
    INSERT INTO regress.reference_tips SELECT * FROM regress.tips();
    SELECT r.room_id INTO room FROM roomserver.rooms r;
    SELECT r.event_id, r.pdu INTO join_id, join_pdu FROM regress.remote r WHERE r.n = join_at;
    -- What a send_join response holds: the state before the join point and its auth chain.
    response := roomserver.state(room, join_id);
    PERFORM regress.forget_everything();

    -- 2. Join: the response's state and auth chain as outliers (any order), the join point
    -- with its state supplied; its prev events are not stored.
    PERFORM count(*) FROM roomserver.ingest_events(response->'pdus' || (response->'auth_chain'), outlier => true);
    PERFORM regress.fetch_with_auth_chain(ARRAY(SELECT jsonb_array_elements_text(join_pdu->'auth_events')));
    state := ARRAY(SELECT x.event_id FROM jsonb_array_elements(response->'pdus') p, roomserver.event_id_for(p, (SELECT room_version FROM roomserver.rooms)) x(event_id));
    step := 'joined'; detail := (roomserver.ingest_event(join_pdu, state_event_ids => state) - 'event_nid' - 'event_id' - 'room_id')::text; RETURN NEXT;
    step := 'gap after the join'; detail := (SELECT count(*) || ' backward extremities, ' || sum(cardinality(x.missing_prev_events)) || ' missing prev events'
                                           FROM roomserver.backward_extremities(room) x); RETURN NEXT;

    -- 3. Later events arrive live (/send): auth events fetched first; where prev events are
    -- missing, the state before the event from the other server (/state_ids), as outliers.
    FOR ev IN SELECT * FROM regress.remote r WHERE r.n > join_at ORDER BY r.n LOOP
        missing := roomserver.missing_events(ev.pdu);
        PERFORM regress.fetch_with_auth_chain(ARRAY(SELECT jsonb_array_elements_text(missing->'missing_auth_events')));
        IF jsonb_array_length(missing->'missing_prev_events') = 0 THEN
            PERFORM roomserver.ingest_event(ev.pdu);
        ELSE
            state := (SELECT f.state_before FROM regress.reference f WHERE f.event_id = ev.event_id);
            PERFORM regress.fetch_with_auth_chain(state);
            PERFORM roomserver.ingest_event(ev.pdu, state_event_ids => state);
            step := 'live with supplied state'; detail := 'event ' || ev.n; RETURN NEXT;
        END IF;
    END LOOP;
    step := 'tips before backfill'; detail := ((SELECT t FROM regress.tips() t) = (SELECT t FROM regress.reference_tips t))::text; RETURN NEXT;

    -- 4. Backfill, newest first: each response's auth events fetched first, then the
    -- response as it came, backfilled. The gap shrinks to nothing.
    FOR b IN SELECT DISTINCT (join_at - 1 - r.n) / batch FROM regress.remote r WHERE r.n < join_at ORDER BY 1 LOOP
        response := (SELECT jsonb_agg(r.pdu ORDER BY r.n DESC) FROM regress.remote r WHERE r.n < join_at AND (join_at - 1 - r.n) / batch = b);
        PERFORM regress.fetch_with_auth_chain(ARRAY(SELECT jsonb_array_elements_text(p->'auth_events') FROM jsonb_array_elements(response) p),
                                              ARRAY(SELECT r.event_id FROM regress.remote r WHERE r.n < join_at AND (join_at - 1 - r.n) / batch = b));
        PERFORM count(*) FROM roomserver.ingest_events(response, backfilled => true);
        step := 'backfilled ' || jsonb_array_length(response);
        detail := (SELECT count(*) FILTER (WHERE e.outlier) || ' outliers, ' || (SELECT count(*) FROM roomserver.backward_extremities(room)) || ' backward extremities'
                   FROM roomserver.stored_events e);
        RETURN NEXT;
    END LOOP;

    -- 5. Every event as the full load has it; backfill moved neither extremities nor current state.
    step := 'events that differ from the full load';
    detail := (SELECT count(*) FROM (SELECT * FROM regress.reference EXCEPT SELECT * FROM regress.outcomes()) d)::text; RETURN NEXT;
    step := 'events stored'; detail := (SELECT count(*) FROM regress.outcomes())::text; RETURN NEXT;
    step := 'tips equal the full load''s'; detail := ((SELECT t FROM regress.tips() t) = (SELECT t FROM regress.reference_tips t))::text; RETURN NEXT;
    step := 'integrity problems'; detail := (SELECT count(*) FROM roomserver.check_integrity())::text; RETURN NEXT;
    PERFORM regress.forget_everything();
END
$$;

-- The sample room (v12, 40 events), joined at event 24, backfilled 10 at a time.
INSERT INTO regress.remote SELECT n, roomserver.event_id_for(pdu, '12'), pdu FROM regress.sample;
SELECT * FROM regress.join_and_backfill(24, 10);
-- The generated forked room (v11, 60 events, 200 members), joined at event 41, backfilled 7 at a time.
DELETE FROM regress.remote;
INSERT INTO regress.remote SELECT n, roomserver.event_id_for(pdu, '11'), pdu FROM regress.room5k;
SELECT * FROM regress.join_and_backfill(41, 7);

-- Bad calls: each is refused with its SQLSTATE, and stores nothing.
SELECT count(*) AS loaded FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.remote WHERE n <= 17));
SELECT pdu AS next_pdu FROM regress.remote WHERE n = 18 \gset
SELECT event_id AS create_id FROM regress.remote WHERE n = 1 \gset
SELECT event_id AS message_id FROM regress.remote WHERE n = 17 \gset
SELECT type AS seventeenth FROM roomserver.events WHERE event_id = :'message_id';
SELECT regress.try(format('SELECT roomserver.ingest_event(%L, outlier => true, state_event_ids => ARRAY[%L])', :'next_pdu', :'create_id')) AS outlier_with_state;
SELECT regress.try(format('SELECT roomserver.ingest_event(%L, state_event_ids => ARRAY[%L, %L])', :'next_pdu', :'create_id', '$not-stored')) AS unknown_state_event;
SELECT regress.try(format('SELECT roomserver.ingest_event(%L, state_event_ids => ARRAY[%L, NULL])', :'next_pdu', :'create_id')) AS null_state_event;
SELECT regress.try(format('SELECT roomserver.ingest_event(%L, state_event_ids => ARRAY[%L, %L])', :'next_pdu', :'create_id', :'message_id')) AS message_in_state;
SELECT regress.try(format('SELECT count(*) FROM roomserver.ingest_events(jsonb_build_array(%L::jsonb), outlier => true, backfilled => true)', :'next_pdu')) AS outlier_and_backfilled;
SELECT count(*) AS stored FROM roomserver.stored_events;
