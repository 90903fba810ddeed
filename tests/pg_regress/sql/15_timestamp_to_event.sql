-- timestamp_to_event: the closest event to a time in either direction (federation
-- GET /timestamp_to_event, spec v1.6), Synapse's choice for ties, outliers and rejected events
-- skipped, and one probe of an index.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
SELECT regress.load_demo_room() AS demo_room_events;
SELECT * FROM regress.demo_room() \gset
SELECT roomserver.room_nid('!demo:example.org') AS demo_nid \gset

-- A message of Alice's in the demo room.
CREATE FUNCTION pg_temp.msg(body text, ts bigint, depth int, prevs text[], auth text[]) RETURNS jsonb LANGUAGE sql AS $$
    SELECT regress.sealed(jsonb_build_object('type', 'm.room.message', 'room_id', '!demo:example.org',
        'sender', '@alice:example.org', 'content', jsonb_build_object('msgtype', 'm.text', 'body', body),
        'depth', depth, 'origin_server_ts', ts, 'prev_events', to_jsonb(prevs), 'auth_events', to_jsonb(auth)))
$$;
SELECT event_id AS tampered_id FROM roomserver.events WHERE room_id = '!demo:example.org' AND depth = 6 \gset

-- Three events at one time: two concurrent ones (depth 7) and their merge (depth 8).
SELECT pg_temp.msg('tie 1', 1700000010000, 7, ARRAY[:'tampered_id'], ARRAY[:'create_id', :'alice_join_id']) AS tie1 \gset
SELECT pg_temp.msg('tie 2', 1700000010000, 7, ARRAY[:'tampered_id'], ARRAY[:'create_id', :'alice_join_id']) AS tie2 \gset
SELECT r ->> 'event_id' AS tie1_id FROM roomserver.ingest_event(:'tie1') r \gset
SELECT r ->> 'event_id' AS tie2_id FROM roomserver.ingest_event(:'tie2') r \gset
SELECT pg_temp.msg('tie 3', 1700000010000, 8, ARRAY[:'tie1_id', :'tie2_id'], ARRAY[:'create_id', :'alice_join_id']) AS tie3 \gset
SELECT r ->> 'event_id' AS tie3_id FROM roomserver.ingest_event(:'tie3') r \gset
-- Later: a rejected event (Mallory is not in the room) and an outlier (its prev event unknown).
SELECT r ->> 'rejection' AS rejection FROM roomserver.ingest_event(regress.sealed(jsonb_build_object('type', 'm.room.message',
    'room_id', '!demo:example.org', 'sender', '@mallory:evil.example', 'content', '{"body": "spam"}'::jsonb, 'depth', 9,
    'origin_server_ts', 1700000020000, 'prev_events', jsonb_build_array(:'tie3_id'), 'auth_events', jsonb_build_array(:'create_id')))) r;
SELECT r ->> 'outlier' AS outlier FROM roomserver.ingest_event(
    pg_temp.msg('outlier', 1700000030000, 20, ARRAY['$unknown:example.org'], ARRAY[:'create_id', :'alice_join_id']), outlier => true) r;

-- The room's events by time, with names for the answers below.
CREATE TEMP VIEW named AS
SELECT e.event_id, e.origin_server_ts, e.depth, e.event_nid, e.rejected, e.outlier,
       CASE e.event_id WHEN :'create_id' THEN 'create' WHEN :'alice_join_id' THEN 'alice join' WHEN :'join_rules_id' THEN 'join rules'
                       WHEN :'topic_id' THEN 'topic' WHEN :'message_id' THEN 'message' WHEN :'merge_id' THEN 'merge'
                       WHEN :'tampered_id' THEN 'tampered' WHEN :'tie1_id' THEN 'tie 1' WHEN :'tie2_id' THEN 'tie 2'
                       WHEN :'tie3_id' THEN 'tie 3' ELSE CASE WHEN e.rejected THEN 'rejected' WHEN e.outlier THEN 'outlier' END END AS name
FROM roomserver.events e WHERE e.room_id = '!demo:example.org';
SELECT name, origin_server_ts, depth, rejected, outlier FROM named ORDER BY origin_server_ts, depth, event_nid;

-- Each answer as the event's name; errors as SQLSTATE and message.
CREATE FUNCTION pg_temp.answer(room text, ts bigint, dir text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    body jsonb;
BEGIN
    body := roomserver.timestamp_to_event(room, ts, dir);
    RETURN (SELECT n.name FROM named n WHERE n.event_id = body ->> 'event_id')
        || ' @ ' || (body ->> 'origin_server_ts')
        || CASE WHEN (SELECT n.origin_server_ts FROM named n WHERE n.event_id = body ->> 'event_id') = (body ->> 'origin_server_ts')::bigint
                THEN '' ELSE ' (wrong origin_server_ts)' END;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT what, ts, dir, pg_temp.answer('!demo:example.org', ts, dir) AS answer
FROM (VALUES
    ('exact hit',                          1700000003000, 'f'),
    ('exact hit',                          1700000003000, 'b'),
    ('between topic and message',          1700000003400, 'f'),
    ('between topic and message',          1700000003400, 'b'),
    ('from the beginning of time',         0,             'f'),
    ('just before the create event',       1699999999999, 'b'),
    ('after tampered, before the ties',    1700000006000, 'f'),
    ('after tampered, before the ties',    1700000006000, 'b'),
    ('ties: lowest depth, then arrival',   1700000010000, 'f'),
    ('ties: highest depth',                1700000010000, 'b'),
    ('rejected event skipped',             1700000020000, 'b'),
    ('only a rejected event after',        1700000015000, 'f'),
    ('outlier skipped',                    1700000030000, 'b'),
    ('only an outlier after',              1700000025000, 'f'),
    ('after the last event',               1800000000000, 'f'),
    ('long after the last event',          9223372036854775807, 'b')
) AS c(what, ts, dir);

-- The whole body.
SELECT roomserver.timestamp_to_event('!demo:example.org', 1700000010000, 'f') = jsonb_build_object('event_id', :'tie1_id', 'origin_server_ts', 1700000010000) AS body_is_tie1;

-- Among equal times and depths, arrival decides backwards too: the later of two concurrent events.
SELECT pg_temp.msg('tie 4', 1700000040000, 9, ARRAY[:'tie3_id'], ARRAY[:'create_id', :'alice_join_id']) AS tie4 \gset
SELECT pg_temp.msg('tie 5', 1700000040000, 9, ARRAY[:'tie3_id'], ARRAY[:'create_id', :'alice_join_id']) AS tie5 \gset
SELECT r ->> 'event_id' AS tie4_id FROM roomserver.ingest_event(:'tie4') r \gset
SELECT r ->> 'event_id' AS tie5_id FROM roomserver.ingest_event(:'tie5') r \gset
SELECT roomserver.timestamp_to_event('!demo:example.org', 1700000040000, 'b') ->> 'event_id' = :'tie5_id' AS backwards_is_tie5,
       roomserver.timestamp_to_event('!demo:example.org', 1700000040000, 'f') ->> 'event_id' = :'tie4_id' AS forwards_is_tie4;

-- Another room's events are never the answer: the sample room (room version 12) is older.
SELECT count(*) AS sample_events FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.sample));
SELECT roomserver.timestamp_to_event(r.room_id, 0, 'f') ->> 'event_id' = (SELECT e.event_id FROM roomserver.events e WHERE e.room_id = r.room_id AND e.type = 'm.room.create') AS sample_starts_at_its_create,
       pg_temp.answer('!demo:example.org', 0, 'f') AS demo_from_zero
FROM roomserver.rooms r WHERE r.room_id <> '!demo:example.org';

-- Errors.
SELECT what, regress.try(statement) AS outcome
FROM (VALUES
    ('unknown room', 'SELECT roomserver.timestamp_to_event(''!nowhere:example.org'', 0, ''f'')'),
    ('dir x',        'SELECT roomserver.timestamp_to_event(''!demo:example.org'', 0, ''x'')'),
    ('dir F',        'SELECT roomserver.timestamp_to_event(''!demo:example.org'', 0, ''F'')'),
    ('NULL room',    'SELECT roomserver.timestamp_to_event(NULL, 0, ''f'')'),
    ('NULL ts',      'SELECT roomserver.timestamp_to_event(''!demo:example.org'', NULL, ''f'')'),
    ('NULL dir',     'SELECT roomserver.timestamp_to_event(''!demo:example.org'', 0, NULL)')
) AS c(what, statement);

-- The plan: one index probe, forwards and backwards, stopped by LIMIT 1. The statements are
-- the function's own (sql/api/06_timeline.sql; its source is checked to contain them), with the
-- room and time as constants. Sequential scans and sorts are priced out so that the plan does
-- not depend on the costs of this small table: the index is the only way to the answer without
-- either.
SELECT p.prosrc LIKE '%WHERE e.room_nid = room.room_nid AND e.origin_server_ts >= timestamp_to_event.ts%'
         || '%AND NOT e.outlier AND e.rejection IS NULL%ORDER BY e.origin_server_ts, e.depth, e.event_nid%LIMIT 1%'
       AND p.prosrc LIKE '%WHERE e.room_nid = room.room_nid AND e.origin_server_ts <= timestamp_to_event.ts%'
         || '%AND NOT e.outlier AND e.rejection IS NULL%ORDER BY e.origin_server_ts DESC, e.depth DESC, e.event_nid DESC%LIMIT 1%'
       AS function_runs_these_statements
FROM pg_catalog.pg_proc p WHERE p.oid = 'roomserver.timestamp_to_event(text, bigint, text)'::regprocedure;
ANALYZE roomserver.stored_events;
SET enable_seqscan = off;
SET enable_sort = off;
EXPLAIN (COSTS OFF)
SELECT e.event_id, e.origin_server_ts FROM roomserver.stored_events e
WHERE e.room_nid = :demo_nid AND e.origin_server_ts >= 1700000006000 AND NOT e.outlier AND e.rejection IS NULL
ORDER BY e.origin_server_ts, e.depth, e.event_nid LIMIT 1;
EXPLAIN (COSTS OFF)
SELECT e.event_id, e.origin_server_ts FROM roomserver.stored_events e
WHERE e.room_nid = :demo_nid AND e.origin_server_ts <= 1700000006000 AND NOT e.outlier AND e.rejection IS NULL
ORDER BY e.origin_server_ts DESC, e.depth DESC, e.event_nid DESC LIMIT 1;
RESET enable_seqscan;
RESET enable_sort;
