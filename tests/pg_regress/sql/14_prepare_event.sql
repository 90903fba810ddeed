-- prepare_event: the unsigned PDU of a local event, as make_join / make_leave / make_knock and a
-- client's send need it. Each prepared event is ingested as a remote server would receive it
-- and must be accepted (no rejection, no soft failure) and become the only forward extremity.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
\set VERBOSITY default
SELECT regress.load_demo_room() AS demo_room_events;
SELECT * FROM regress.demo_room() \gset
SELECT event_id AS tampered_id FROM roomserver.events WHERE room_id = '!demo:example.org' AND depth = 6 \gset

-- Ingests a prepared PDU: its outcome, and whether it is now the room's only forward extremity.
CREATE FUNCTION pg_temp.ingest(pdu jsonb, OUT rejection text, OUT soft_failure text, OUT only_extremity boolean) LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
BEGIN
    r := roomserver.ingest_event(pdu);
    rejection := r ->> 'rejection';
    soft_failure := r ->> 'soft_failure';
    only_extremity := ARRAY(SELECT roomserver.forward_extremities(r ->> 'room_id')) = ARRAY[r ->> 'event_id'];
END $$;

-- 1. A message from Alice, at a given time. prev_events: the room's forward extremities, deepest
-- first (the deepest is the tampered message, depth 6); auth_events the create event and
-- Alice's join (no power levels in this room); hashes.sha256 set; no signatures, no event_id
-- (room version 10), no origin.
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@alice:example.org',
                                '{"msgtype": "m.text", "body": "hello from here"}', 1700000100000) AS msg \gset
SELECT jsonb_pretty(:'msg'::jsonb - 'hashes' - 'prev_events');
SELECT ARRAY(SELECT jsonb_array_elements_text(p -> 'prev_events'))
         = ARRAY(SELECT e.event_id FROM roomserver.events e
                 WHERE e.event_id IN (SELECT roomserver.forward_extremities('!demo:example.org'))
                 ORDER BY e.depth DESC, e.event_id COLLATE "C") AS prev_are_the_extremities,
       p -> 'prev_events' ->> 0 = :'tampered_id' AS deepest_is_tampered,
       p -> 'auth_events' = jsonb_build_array(:'create_id', :'alice_join_id') AS auth_is_create_and_join,
       (p ->> 'depth')::int AS depth,
       p -> 'hashes' ->> 'sha256' = roomserver.content_hash(p) AS content_hash_set,
       p ? 'signatures' AS has_signatures, p ? 'event_id' AS has_event_id, p ? 'origin' AS has_origin,
       p ? 'state_key' AS has_state_key
FROM (SELECT :'msg'::jsonb AS p) s;
SELECT * FROM pg_temp.ingest(:'msg');

-- 2. A state event: Alice's topic (she created the room: power 100 without power levels).
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.topic', '', '@alice:example.org', '{"topic": "local"}', 1700000101000) AS topic \gset
SELECT p ->> 'state_key' AS state_key, (p ->> 'depth')::int AS depth,
       p -> 'prev_events' = jsonb_build_array(roomserver.event_id_for(:'msg', '10')) AS prev_is_the_message
FROM (SELECT :'topic'::jsonb AS p) s;
SELECT * FROM pg_temp.ingest(:'topic');

-- 3. Bob of another server joins (public join rules): auth_events the create event and the
-- join rules (Bob has no member event yet); what make_join returns.
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.member', '@bob:other.example', '@bob:other.example',
                                '{"membership": "join"}', 1700000102000) AS bob_join \gset
SELECT p -> 'auth_events' = jsonb_build_array(:'create_id', :'join_rules_id') AS auth_is_create_and_join_rules
FROM (SELECT :'bob_join'::jsonb AS p) s;
SELECT * FROM pg_temp.ingest(:'bob_join');
SELECT user_id, membership FROM roomserver.room_members WHERE room_id = '!demo:example.org' ORDER BY user_id;
-- Bob's message is authorised by his join.
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@bob:other.example', '{"body": "hi"}', 1700000103000) AS bob_msg \gset
SELECT :'bob_msg'::jsonb -> 'auth_events' = jsonb_build_array(:'create_id', roomserver.event_id_for(:'bob_join', '10')) AS auth_is_create_and_bob_join;
SELECT * FROM pg_temp.ingest(:'bob_msg');

-- 4. Refused: the rule that fails is named, SQLSTATE 42501.
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@carol:third.example', '{"body": "let me in"}');
SELECT what, regress.try(statement) AS outcome
FROM (VALUES
    ('not in the room',        'SELECT roomserver.prepare_event(''!demo:example.org'', ''m.room.message'', NULL, ''@carol:third.example'', ''{"body": "x"}'')'),
    ('below the state level',  'SELECT roomserver.prepare_event(''!demo:example.org'', ''m.room.topic'', '''', ''@bob:other.example'', ''{"topic": "mine"}'')'),
    ('joining for another',    'SELECT roomserver.prepare_event(''!demo:example.org'', ''m.room.member'', ''@carol:third.example'', ''@bob:other.example'', ''{"membership": "join"}'')'),
    ('a second create event',  'SELECT roomserver.prepare_event(''!demo:example.org'', ''m.room.create'', '''', ''@alice:example.org'', ''{"creator": "@alice:example.org"}'')')
) AS c(what, statement);

-- 5. A fork: two events prepared on the same extremity, both ingested; the next event names
-- both as prev_events, one deeper than them, and merges the fork.
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@alice:example.org', '{"body": "fork a"}', 1700000104000) AS fork_a \gset
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@bob:other.example', '{"body": "fork b"}', 1700000104000) AS fork_b \gset
SELECT (SELECT r ->> 'rejection' FROM roomserver.ingest_event(:'fork_a') r) AS a_rejection,
       (SELECT r ->> 'rejection' FROM roomserver.ingest_event(:'fork_b') r) AS b_rejection;
SELECT count(*) AS extremities FROM roomserver.forward_extremities('!demo:example.org');
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@alice:example.org', '{"body": "merge"}', 1700000105000) AS merge \gset
SELECT ARRAY(SELECT jsonb_array_elements_text(p -> 'prev_events') ORDER BY 1) = ARRAY(SELECT roomserver.forward_extremities('!demo:example.org') ORDER BY 1) AS prev_are_both_extremities,
       jsonb_array_length(p -> 'prev_events') AS prev_events, (p ->> 'depth')::int AS depth
FROM (SELECT :'merge'::jsonb AS p) s;
SELECT * FROM pg_temp.ingest(:'merge');

-- 6. Twelve extremities (twelve concurrent messages, given depths 20 to 31 by their sender):
-- prev_events are the ten deepest, deepest first; depth one more than the deepest.
CREATE TEMP TABLE forks AS
SELECT i, regress.sealed(roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@alice:example.org',
                                                  jsonb_build_object('body', 'fork ' || i), 1700000106000 + i) || jsonb_build_object('depth', 19 + i)) AS pdu
FROM generate_series(1, 12) i;
SELECT count(*) FILTER (WHERE r ->> 'rejection' IS NULL AND r ->> 'soft_failure' IS NULL) AS accepted
FROM forks, roomserver.ingest_event(forks.pdu) r;
SELECT count(*) AS extremities FROM roomserver.forward_extremities('!demo:example.org');
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@alice:example.org', '{"body": "merge 12"}', 1700000107000) AS merge12 \gset
SELECT (SELECT array_agg(f.i ORDER BY o) FROM jsonb_array_elements_text(:'merge12'::jsonb -> 'prev_events') WITH ORDINALITY AS x(id, o)
        JOIN forks f ON roomserver.event_id_for(f.pdu, '10') = x.id) AS prev_event_forks,
       (:'merge12'::jsonb ->> 'depth')::int AS depth;
SELECT * FROM pg_temp.ingest(:'merge12');
-- The two shallowest forks are still extremities: the next event names them.
SELECT (SELECT array_agg(f.i ORDER BY f.i) FROM jsonb_array_elements_text(roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL,
            '@alice:example.org', '{"body": "rest"}', 1700000108000) -> 'prev_events') AS x(id)
        JOIN forks f ON roomserver.event_id_for(f.pdu, '10') = x.id) AS then_prev_event_forks,
       (SELECT count(*) FROM jsonb_array_elements_text(roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL,
            '@alice:example.org', '{"body": "rest"}', 1700000108000) -> 'prev_events')) AS then_prev_events;

-- 7. Room versions 1 and 2: references are [event_id, {"sha256": reference hash}] pairs and the
-- PDU has an event_id ($ + hash : the sender's server); room version 3 for contrast. The
-- reference hash is checked against room version 3's event ID of the same PDU, which is $ +
-- that hash (the redaction algorithms of v1 and v3 agree, event_id kept).
CREATE FUNCTION pg_temp.old_room(v text) RETURNS TABLE (version text, step text, prev_events jsonb, event_id_ok boolean, ref_hash_ok boolean,
                                                      rejection text, soft_failure text, only_extremity boolean)
LANGUAGE plpgsql AS $$
DECLARE
    room text := '!v' || v || ':old.example';
    create_pdu jsonb;
    create_id text;
    join_pdu jsonb;
    msg jsonb;
    o record;
BEGIN
    create_pdu := jsonb_build_object('type', 'm.room.create', 'state_key', '', 'room_id', room, 'sender', '@alice:old.example',
        'content', jsonb_build_object('creator', '@alice:old.example', 'room_version', v), 'depth', 1,
        'origin_server_ts', 1600000000000, 'prev_events', '[]'::jsonb, 'auth_events', '[]'::jsonb);
    IF v IN ('1', '2') THEN
        create_pdu := create_pdu || jsonb_build_object('event_id', '$create' || v || ':old.example');
    END IF;
    create_pdu := regress.sealed(create_pdu);
    create_id := roomserver.event_id_for(create_pdu, v);
    PERFORM roomserver.ingest_event(create_pdu);
    join_pdu := roomserver.prepare_event(room, 'm.room.member', '@alice:old.example', '@alice:old.example', '{"membership": "join"}', 1600000001000);
    o := pg_temp.ingest(join_pdu);
    RETURN QUERY SELECT v, 'creator join', join_pdu -> 'prev_events',
        CASE WHEN v IN ('1', '2') THEN join_pdu ->> 'event_id' ~ '^\$[A-Za-z0-9_-]{43}:old\.example$' ELSE NOT join_pdu ? 'event_id' END,
        CASE WHEN v IN ('1', '2') THEN '$' || (join_pdu -> 'prev_events' -> 0 -> 1 ->> 'sha256') = roomserver.event_id_for(create_pdu, '3')
             ELSE join_pdu -> 'prev_events' -> 0 = to_jsonb(create_id) END,
        o.rejection, o.soft_failure, o.only_extremity;
    msg := roomserver.prepare_event(room, 'm.room.message', NULL, '@alice:old.example', '{"body": "old"}', 1600000002000);
    o := pg_temp.ingest(msg);
    RETURN QUERY SELECT v, 'message auth_events', msg -> 'auth_events',
        CASE WHEN v IN ('1', '2') THEN msg ->> 'event_id' <> join_pdu ->> 'event_id' ELSE NOT msg ? 'event_id' END,
        CASE WHEN v IN ('1', '2') THEN '$' || (msg -> 'auth_events' -> 1 -> 1 ->> 'sha256') = roomserver.event_id_for(join_pdu, '3')
             ELSE msg -> 'auth_events' = jsonb_build_array(create_id, roomserver.event_id_for(join_pdu, v)) END,
        o.rejection, o.soft_failure, o.only_extremity;
END $$;
SELECT version, step, jsonb_typeof(prev_events -> 0) AS reference_is, jsonb_array_length(prev_events) AS n,
       event_id_ok, ref_hash_ok, rejection, soft_failure, only_extremity
FROM (SELECT * FROM pg_temp.old_room('1') UNION ALL SELECT * FROM pg_temp.old_room('2') UNION ALL SELECT * FROM pg_temp.old_room('3')) x
ORDER BY version, step;
-- The pairs in full (v1: the join's prev event is the create event).
SELECT jsonb_pretty(roomserver.prepare_event('!v1:old.example', 'm.room.topic', '', '@alice:old.example', '{"topic": "old"}', 1600000003000)
                    - 'hashes' - 'content' - 'event_id' - 'origin_server_ts' - 'prev_events');

-- 8. Room version 12 (the sample room): the create event is not among the auth_events (the room
-- ID stands for it); the power levels and the sender's join are.
SELECT count(*) AS sample_events FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.sample));
SELECT r.room_id AS v12_room, '$' || substr(r.room_id, 2) AS v12_create_id FROM roomserver.rooms r WHERE r.room_version = '12' \gset
SELECT user_id AS v12_member FROM roomserver.room_members WHERE room_id = :'v12_room' AND membership = 'join' ORDER BY user_id LIMIT 1 \gset
SELECT roomserver.prepare_event(:'v12_room', 'm.room.message', NULL, :'v12_member', '{"body": "v12"}', 1700000200000) AS v12_msg \gset
SELECT :'v12_msg'::jsonb -> 'auth_events' ? :'v12_create_id' AS lists_create,
       ARRAY(SELECT jsonb_array_elements_text(:'v12_msg'::jsonb -> 'auth_events') ORDER BY 1)
         = ARRAY(SELECT c.event_id FROM roomserver.current_state c WHERE c.room_id = :'v12_room'
                 AND (c.type, c.state_key) IN (('m.room.power_levels', ''), ('m.room.member', :'v12_member')) ORDER BY 1) AS auth_is_power_levels_and_join;
SELECT * FROM pg_temp.ingest(:'v12_msg');

-- 9. Errors: unknown room, NULLs, content not an object, a room known only through outliers.
SELECT roomserver.ingest_event(regress.sealed('{"type": "m.room.create", "state_key": "", "room_id": "!outliers:example.org",
    "sender": "@alice:example.org", "content": {"creator": "@alice:example.org", "room_version": "10"}, "depth": 1,
    "origin_server_ts": 1700000000000, "prev_events": [], "auth_events": []}'), '10', outlier => true) ->> 'outlier' AS stored_as_outlier;
SELECT what, regress.try(statement) AS outcome
FROM (VALUES
    ('unknown room',       'SELECT roomserver.prepare_event(''!nowhere:example.org'', ''m.room.message'', NULL, ''@alice:example.org'', ''{}'')'),
    ('only outliers',      'SELECT roomserver.prepare_event(''!outliers:example.org'', ''m.room.message'', NULL, ''@alice:example.org'', ''{}'')'),
    ('NULL room_id',       'SELECT roomserver.prepare_event(NULL, ''m.room.message'', NULL, ''@alice:example.org'', ''{}'')'),
    ('NULL type',          'SELECT roomserver.prepare_event(''!demo:example.org'', NULL, NULL, ''@alice:example.org'', ''{}'')'),
    ('NULL sender',        'SELECT roomserver.prepare_event(''!demo:example.org'', ''m.room.message'', NULL, NULL, ''{}'')'),
    ('NULL content',       'SELECT roomserver.prepare_event(''!demo:example.org'', ''m.room.message'', NULL, ''@alice:example.org'', NULL)'),
    ('content a list',     'SELECT roomserver.prepare_event(''!demo:example.org'', ''m.room.message'', NULL, ''@alice:example.org'', ''[1]'')'),
    ('sender not a user',  'SELECT roomserver.prepare_event(''!demo:example.org'', ''m.room.message'', NULL, ''alice'', ''{}'')'),
    ('state key too long', 'SELECT roomserver.prepare_event(''!demo:example.org'', ''m.room.topic'', repeat(''k'', 256), ''@alice:example.org'', ''{}'')')
) AS c(what, statement);

-- The default origin_server_ts is the statement's start, in milliseconds.
SELECT (p ->> 'origin_server_ts')::bigint = floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint AS ts_is_statement_time
FROM (SELECT roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@alice:example.org', '{}') AS p) s;
-- Nothing was written by any of these calls: the same request twice gives the same event.
SELECT roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@alice:example.org', '{"body": "again"}', 1700000300000)
     = roomserver.prepare_event('!demo:example.org', 'm.room.message', NULL, '@alice:example.org', '{"body": "again"}', 1700000300000) AS deterministic;
SELECT count(*) AS problems FROM roomserver.check_integrity();
