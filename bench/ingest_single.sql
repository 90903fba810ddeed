-- Benchmark: 3,000 message events ingested one call each, every call its own transaction (as
-- live /send traffic arrives), into a fresh room. Used to compare two builds of the extension
-- in the same conditions (bench/README.md, "0.1.0 against 0.2.0"): prints events per second.
-- Run in a fresh database with the extension: psql -X -q -A -t -d DB -f bench/ingest_single.sql
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE FUNCTION pg_temp.sealed(pdu jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT pdu || jsonb_build_object('hashes', jsonb_build_object('sha256', roomserver.content_hash(pdu))) $$;
SELECT pg_temp.sealed('{"type": "m.room.create", "state_key": "", "room_id": "!single:example.org",
  "sender": "@alice:example.org", "content": {"creator": "@alice:example.org", "room_version": "10"},
  "depth": 1, "origin_server_ts": 1700000000000, "prev_events": [], "auth_events": []}') AS create_pdu \gset
SELECT roomserver.event_id_for(:'create_pdu', '10') AS c \gset
SELECT pg_temp.sealed(jsonb_build_object('type', 'm.room.member', 'state_key', '@alice:example.org',
  'room_id', '!single:example.org', 'sender', '@alice:example.org', 'content', '{"membership": "join"}'::jsonb,
  'depth', 2, 'origin_server_ts', 1700000000001, 'prev_events', jsonb_build_array(:'c'),
  'auth_events', jsonb_build_array(:'c'))) AS join_pdu \gset
SELECT roomserver.event_id_for(:'join_pdu', '10') AS j \gset
SELECT count(*) FROM roomserver.ingest_events(jsonb_build_array(:'create_pdu'::jsonb, :'join_pdu'::jsonb)) \g /dev/null
SELECT set_config('bench.j', :'j', false), set_config('bench.c', :'c', false) \g /dev/null
CREATE TEMP TABLE msgs (n int, pdu jsonb);
DO $$
DECLARE prev text := current_setting('bench.j'); p jsonb;
BEGIN
  FOR i IN 1..3000 LOOP
    p := pg_temp.sealed(jsonb_build_object('type','m.room.message','room_id','!single:example.org','sender','@alice:example.org',
        'content', jsonb_build_object('body','m'||i,'msgtype','m.text'),'depth',2+i,'origin_server_ts',1700000000001+i,
        'prev_events', jsonb_build_array(prev), 'auth_events', jsonb_build_array(current_setting('bench.c'), current_setting('bench.j'))));
    INSERT INTO msgs VALUES (i, p);
    prev := roomserver.event_id_for(p, '10');
  END LOOP;
END $$;
SELECT clock_timestamp() AS t0 \gset
SELECT format('SELECT 1 FROM roomserver.ingest_event(%L)', pdu) FROM msgs ORDER BY n \gexec
SELECT round(3000 / extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)) AS per_s;
