-- Bad input gets a clear ERROR with a SQLSTATE, and nothing is written.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
\set VERBOSITY default
-- The room version 10 room 03_ingest builds (!demo:example.org), as 03_ingest leaves it.
SELECT regress.load_demo_room() AS demo_room_events;

CREATE FUNCTION pg_temp.pdu(patch jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_strip_nulls('{"type": "m.room.message", "room_id": "!demo:example.org", "sender": "@alice:example.org",
        "content": {"body": "x"}, "depth": 9, "origin_server_ts": 1700000009000, "prev_events": [],
        "auth_events": [], "hashes": {"sha256": "x"}}'::jsonb || patch)
$$;

SELECT count(*) AS events_before FROM roomserver.stored_events \gset

-- One ERROR as psql shows it.
SELECT roomserver.ingest_event(pg_temp.pdu('{"sender": null}'));

SELECT case_name, regress.try(format('SELECT roomserver.ingest_event(%L::jsonb)', pdu)) AS outcome
FROM (VALUES
    ('not an object',          '[1, 2, 3]'::jsonb),
    ('missing sender',         pg_temp.pdu('{"sender": null}')),
    ('sender not a user id',   pg_temp.pdu('{"sender": "alice"}')),
    ('depth is a string',      pg_temp.pdu('{"depth": "9"}')),
    ('negative depth',         pg_temp.pdu('{"depth": -1}')),
    ('content is a list',      pg_temp.pdu('{"content": []}')),
    ('prev_events not a list', pg_temp.pdu('{"prev_events": "$x"}')),
    ('auth event not an id',   pg_temp.pdu('{"auth_events": [42]}')),
    ('integer beyond 2^53-1',  pg_temp.pdu('{"content": {"n": 9007199254740992}}')),
    ('float in content',       pg_temp.pdu('{"content": {"n": 1.5}}')),
    ('room id over 255 bytes', pg_temp.pdu(jsonb_build_object('room_id', '!' || repeat('r', 255) || ':x'))),
    ('state key over 255',     pg_temp.pdu(jsonb_build_object('state_key', repeat('k', 256)))),
    ('PDU over 64 KiB',        pg_temp.pdu(jsonb_build_object('content', jsonb_build_object('body', repeat('x', 70000))))),
    ('no hashes',              pg_temp.pdu('{"hashes": null}')),
    ('room id without !',      pg_temp.pdu('{"room_id": "demo:example.org"}')),
    ('unknown room',           pg_temp.pdu('{"room_id": "!nowhere:example.org"}'))
) AS t(case_name, pdu);

SELECT regress.try($$SELECT roomserver.ingest_event('{"type": "m.room.create", "state_key": "", "room_id": "!v:x", "sender": "@a:x", "content": {"room_version": "99"}, "depth": 1, "origin_server_ts": 1, "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"}}')$$) AS unknown_room_version;
SELECT regress.try($$SELECT roomserver.ingest_event('{"type": "m.room.message", "room_id": "!new:x", "sender": "@a:x", "content": {}, "depth": 1, "origin_server_ts": 1, "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"}}', 'v99')$$) AS unknown_version_argument;
SELECT regress.try($$SELECT roomserver.ingest_event('{"type": "m.room.message", "room_id": "!demo:example.org", "sender": "@a:x", "content": {}, "depth": 1, "origin_server_ts": 1, "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"}}', '11')$$) AS version_mismatch;
SELECT regress.try($$SELECT roomserver.ingest_event(NULL)$$) AS null_pdu;
SELECT regress.try($$SELECT roomserver.ingest_events('{"not": "an array"}')$$) AS batch_not_array;
SELECT regress.try('SELECT roomserver.ingest_event(''{"type": oops}'')') AS malformed_json_text;

-- A batch whose third PDU is bad writes none of the batch, not even the good ones before it.
SELECT count(*) FROM roomserver.ingest_events(
    jsonb_build_array(pg_temp.pdu('{"content": {"body": "good 1"}}'),
                      pg_temp.pdu('{"content": {"body": "good 2"}}'),
                      pg_temp.pdu('{"depth": "bad"}')));

SELECT count(*) - :events_before AS events_written_by_bad_input FROM roomserver.stored_events;
SELECT count(*) AS rooms FROM roomserver.rooms;

-- Unknown events are an error (404 for a front end).
SELECT roomserver.pdu('$does-not-exist');

-- An event ID names one event. Room versions 1-2 carry their event IDs in the PDU, so a second
-- room can claim an ID already stored: refused (22000), and the first room's event still
-- answers for it.
SELECT r->>'event_id' AS stored, r->>'duplicate' AS duplicate
FROM roomserver.ingest_events(jsonb_build_array(regress.sealed('{"type": "m.room.create", "state_key": "", "room_id": "!first:v1.example",
    "event_id": "$create:v1.example", "sender": "@a:v1.example", "content": {"creator": "@a:v1.example"},
    "depth": 1, "origin_server_ts": 1, "origin": "v1.example", "prev_events": [], "auth_events": []}'))) AS r;
SELECT regress.try(format('SELECT roomserver.ingest_event(%L::jsonb)', regress.sealed('{"type": "m.room.create", "state_key": "",
    "room_id": "!second:v1.example", "event_id": "$create:v1.example", "sender": "@b:v1.example",
    "content": {"creator": "@b:v1.example"}, "depth": 1, "origin_server_ts": 2, "origin": "v1.example",
    "prev_events": [], "auth_events": []}'))) AS second_room;
SELECT count(*) AS rooms_named_second FROM roomserver.rooms WHERE room_id = '!second:v1.example';
SELECT roomserver.pdu('$create:v1.example')->>'room_id' AS answers_for;

-- An auth event stored in another room: the event is stored, rejected (Synapse's behaviour),
-- not refused as if its auth events were unknown.
SELECT * FROM regress.demo_room() \gset
SELECT r->>'duplicate' AS duplicate, r->>'outlier' AS outlier, r->>'rejection' AS rejection
FROM roomserver.ingest_events(jsonb_build_array(regress.sealed(jsonb_build_object('type', 'm.room.message',
    'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"body": "crossed"}'::jsonb,
    'depth', 6, 'origin_server_ts', 1700000009000, 'prev_events', jsonb_build_array(:'merge_id'),
    'auth_events', jsonb_build_array(:'create_id', :'alice_join_id', '$create:v1.example'))))) AS r;
-- Rejected, it is no forward extremity.
SELECT count(*) AS rejected_extremities
FROM roomserver.forward_extremities('!demo:example.org') x JOIN roomserver.events e ON e.event_id = x AND e.rejected;
