-- Benchmark: ingest throughput in one session, message events and member events, side by side
-- with the floor: a plain INSERT of the same PDUs into a jsonb table. Run by scripts/bench.sh.
-- psql variables: :messages, :members, :batch.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_roomserver;

CREATE FUNCTION pg_temp.sealed(pdu jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT pdu || jsonb_build_object('hashes', jsonb_build_object('sha256', roomserver.content_hash(pdu))) $$;

-- The room: create, creator join, power levels, public join rules.
SELECT pg_temp.sealed('{"type": "m.room.create", "state_key": "", "room_id": "!bench:example.org",
  "sender": "@alice:example.org", "content": {"creator": "@alice:example.org", "room_version": "10"},
  "depth": 1, "origin_server_ts": 1700000000000, "prev_events": [], "auth_events": []}') AS create_pdu \gset
SELECT roomserver.event_id_for(:'create_pdu', '10') AS c \gset
SELECT pg_temp.sealed(jsonb_build_object('type', 'm.room.member', 'state_key', '@alice:example.org',
  'room_id', '!bench:example.org', 'sender', '@alice:example.org', 'content', '{"membership": "join"}'::jsonb,
  'depth', 2, 'origin_server_ts', 1700000000001, 'prev_events', jsonb_build_array(:'c'),
  'auth_events', jsonb_build_array(:'c'))) AS join_pdu \gset
SELECT roomserver.event_id_for(:'join_pdu', '10') AS j \gset
SELECT pg_temp.sealed(jsonb_build_object('type', 'm.room.join_rules', 'state_key', '',
  'room_id', '!bench:example.org', 'sender', '@alice:example.org', 'content', '{"join_rule": "public"}'::jsonb,
  'depth', 3, 'origin_server_ts', 1700000000002, 'prev_events', jsonb_build_array(:'j'),
  'auth_events', jsonb_build_array(:'c', :'j'))) AS jr_pdu \gset
SELECT roomserver.event_id_for(:'jr_pdu', '10') AS jr \gset
SELECT count(*) FROM roomserver.ingest_events(jsonb_build_array(:'create_pdu'::jsonb, :'join_pdu'::jsonb, :'jr_pdu'::jsonb)) \g /dev/null

-- Realistic PDUs, each after the previous one (prev_events is the real previous event ID):
-- messages by the creator, then joins of new users spread over 50 servers, with origin,
-- signatures and unsigned as they arrive over federation.
CREATE TEMP TABLE msg_pdus AS
WITH RECURSIVE chain (n, pdu, id) AS (
    SELECT 0, NULL::jsonb, :'jr'::text
    UNION ALL
    SELECT c.n + 1, p.pdu, roomserver.event_id_for(p.pdu, '10')
    FROM chain c, LATERAL (SELECT pg_temp.sealed(jsonb_build_object(
        'type', 'm.room.message', 'room_id', '!bench:example.org', 'sender', '@alice:example.org',
        'origin', 'example.org',
        'content', jsonb_build_object('msgtype', 'm.text', 'body', 'message number ' || c.n || ' with some ordinary chat text in it'),
        'depth', 4 + c.n, 'origin_server_ts', 1700000000003 + c.n,
        'prev_events', jsonb_build_array(c.id),
        'auth_events', jsonb_build_array(:'c', :'j'),
        'signatures', jsonb_build_object('example.org', jsonb_build_object('ed25519:a_key', encode(sha512(c.n::text::bytea), 'base64'))),
        'unsigned', jsonb_build_object('age_ts', 1700000000003 + c.n))) AS pdu) p
    WHERE c.n < :messages
)
SELECT n, pdu, id FROM chain WHERE n > 0;

SELECT id AS last_msg FROM msg_pdus ORDER BY n DESC LIMIT 1 \gset
CREATE TEMP TABLE member_pdus AS
WITH RECURSIVE chain (n, pdu, id) AS (
    SELECT 0, NULL::jsonb, :'last_msg'::text
    UNION ALL
    SELECT c.n + 1, p.pdu, roomserver.event_id_for(p.pdu, '10')
    FROM chain c, LATERAL (SELECT pg_temp.sealed(jsonb_build_object(
        'type', 'm.room.member', 'state_key', '@user' || c.n || ':server' || (c.n % 50) || '.example.org',
        'room_id', '!bench:example.org', 'sender', '@user' || c.n || ':server' || (c.n % 50) || '.example.org',
        'origin', 'server' || (c.n % 50) || '.example.org',
        'content', jsonb_build_object('membership', 'join', 'displayname', 'User ' || c.n),
        'depth', 4 + :messages + c.n, 'origin_server_ts', 1700001000000 + c.n,
        'prev_events', jsonb_build_array(c.id),
        'auth_events', jsonb_build_array(:'c', :'jr'),
        'signatures', jsonb_build_object('server' || (c.n % 50) || '.example.org', jsonb_build_object('ed25519:a_key', encode(sha512(c.n::text::bytea), 'base64'))),
        'unsigned', jsonb_build_object('age_ts', 1700001000000 + c.n))) AS pdu) p
    WHERE c.n < :members
)
SELECT n, pdu, id FROM chain WHERE n > 0;
SELECT id AS last_member FROM member_pdus ORDER BY n DESC LIMIT 1 \gset

-- The source tables are read by n in every step of every method alike.
CREATE INDEX ON msg_pdus (n);
CREATE INDEX ON member_pdus (n);
ANALYZE msg_pdus;
ANALYZE member_pdus;

-- The floor: the same PDUs, same batches, into a plain jsonb table.
CREATE TABLE floor_pdus (id bigserial PRIMARY KEY, pdu jsonb NOT NULL);

-- Runs `statement` once per batch of :batch PDUs from `source`; returns events/s.
CREATE FUNCTION pg_temp.rate(source text, statement text, batch int) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
    started timestamptz;
    lo bigint := 1;
BEGIN
    EXECUTE format('SELECT count(*) FROM %I', source) INTO total;
    started := clock_timestamp();
    WHILE lo <= total LOOP
        EXECUTE format(statement, source) USING lo, lo + batch - 1;
        lo := lo + batch;
    END LOOP;
    RETURN round(total / extract(epoch FROM clock_timestamp() - started));
END $$;

CREATE TEMP TABLE results (kind text, method text, events_per_s numeric);
INSERT INTO results
SELECT 'm.room.message', 'plain INSERT into a jsonb table (floor)',
       pg_temp.rate('msg_pdus', 'INSERT INTO floor_pdus (pdu) SELECT pdu FROM %I WHERE n BETWEEN $1 AND $2 ORDER BY n', :batch);
INSERT INTO results
SELECT 'm.room.message', 'roomserver.ingest_events, batches of ' || :batch,
       pg_temp.rate('msg_pdus', 'SELECT count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM %I WHERE n BETWEEN $1 AND $2))', :batch);
TRUNCATE floor_pdus;
INSERT INTO results
SELECT 'm.room.member', 'plain INSERT into a jsonb table (floor)',
       pg_temp.rate('member_pdus', 'INSERT INTO floor_pdus (pdu) SELECT pdu FROM %I WHERE n BETWEEN $1 AND $2 ORDER BY n', :batch);
INSERT INTO results
SELECT 'm.room.member', 'roomserver.ingest_events, batches of ' || :batch,
       pg_temp.rate('member_pdus', 'SELECT count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM %I WHERE n BETWEEN $1 AND $2))', :batch);

-- One call per event, as a front end ingesting live traffic does.
CREATE TEMP TABLE single_pdus AS
WITH RECURSIVE chain (n, pdu, id) AS (
    SELECT 0, NULL::jsonb, :'last_member'::text
    UNION ALL
    SELECT c.n + 1, p.pdu, roomserver.event_id_for(p.pdu, '10')
    FROM chain c, LATERAL (SELECT pg_temp.sealed(jsonb_build_object(
        'type', 'm.room.message', 'room_id', '!bench:example.org', 'sender', '@alice:example.org',
        'origin', 'example.org',
        'content', jsonb_build_object('msgtype', 'm.text', 'body', 'live message ' || c.n || ' with some ordinary chat text in it'),
        'depth', 4 + :messages + :members + c.n, 'origin_server_ts', 1700002000000 + c.n,
        'prev_events', jsonb_build_array(c.id),
        'auth_events', jsonb_build_array(:'c', :'j'),
        'signatures', jsonb_build_object('example.org', jsonb_build_object('ed25519:a_key', encode(sha512(c.n::text::bytea), 'base64'))),
        'unsigned', jsonb_build_object('age_ts', 1700002000000 + c.n))) AS pdu) p
    WHERE c.n < :messages / 5
)
SELECT n, pdu, id FROM chain WHERE n > 0;
CREATE INDEX ON single_pdus (n);
ANALYZE single_pdus;
TRUNCATE floor_pdus;
INSERT INTO results
SELECT 'm.room.message', 'plain INSERT, one statement per event (floor)',
       pg_temp.rate('single_pdus', 'INSERT INTO floor_pdus (pdu) SELECT pdu FROM %I WHERE n BETWEEN $1 AND $2', 1);
INSERT INTO results
SELECT 'm.room.message', 'roomserver.ingest_event, one call per event',
       pg_temp.rate('single_pdus', 'SELECT roomserver.ingest_event(pdu) FROM %I WHERE n BETWEEN $1 AND $2', 1);

SELECT kind, method, events_per_s,
       round(events_per_s / max(events_per_s) FILTER (WHERE method LIKE '%floor%') OVER (PARTITION BY kind, method LIKE '%one %'), 2) AS share_of_floor
FROM results ORDER BY kind DESC, method LIKE '%one %', method LIKE '%floor%' DESC;
SELECT count(*) AS events_stored, pg_size_pretty(pg_total_relation_size('roomserver.stored_events') + pg_total_relation_size('roomserver.event_edges')) AS roomserver_size
FROM roomserver.stored_events;
