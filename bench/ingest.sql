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

-- Realistic PDUs, each after the previous one (prev_events is the real previous event ID), with
-- origin, signatures and unsigned as they arrive over federation. kind 'message': messages by
-- the creator; kind 'member': joins of new users spread over 50 servers.
CREATE FUNCTION pg_temp.chain(kind text, count int, start_id text, first_depth bigint, first_ts bigint, auth jsonb)
RETURNS TABLE (n int, pdu jsonb, id text) LANGUAGE plpgsql AS $$
DECLARE
    prev text := start_id;
    sender text;
    server text;
    p jsonb;
BEGIN
    FOR i IN 1..count LOOP
        server := CASE kind WHEN 'member' THEN 'server' || (i % 50) || '.example.org' ELSE 'example.org' END;
        sender := CASE kind WHEN 'member' THEN '@user' || i || ':' || server ELSE '@alice:example.org' END;
        p := jsonb_build_object(
            'type', CASE kind WHEN 'member' THEN 'm.room.member' ELSE 'm.room.message' END,
            'room_id', '!bench:example.org', 'sender', sender, 'origin', server,
            'content', CASE kind
                WHEN 'member' THEN jsonb_build_object('membership', 'join', 'displayname', 'User ' || i)
                ELSE jsonb_build_object('msgtype', 'm.text', 'body', kind || ' number ' || i || ' with some ordinary chat text in it') END,
            'depth', first_depth + i, 'origin_server_ts', first_ts + i,
            'prev_events', jsonb_build_array(prev), 'auth_events', auth,
            'signatures', jsonb_build_object(server, jsonb_build_object('ed25519:a_key', encode(sha512(i::text::bytea), 'base64'))),
            'unsigned', jsonb_build_object('age_ts', first_ts + i));
        IF kind = 'member' THEN
            p := p || jsonb_build_object('state_key', sender);
        END IF;
        p := pg_temp.sealed(p);
        n := i;
        pdu := p;
        id := roomserver.event_id_for(p, '10');
        prev := id;
        RETURN NEXT;
    END LOOP;
END $$;

CREATE TEMP TABLE msg_pdus AS
SELECT * FROM pg_temp.chain('message', :messages, :'jr', 3, 1700000000003, jsonb_build_array(:'c', :'j'));
SELECT id AS last_msg FROM msg_pdus ORDER BY n DESC LIMIT 1 \gset
CREATE TEMP TABLE member_pdus AS
SELECT * FROM pg_temp.chain('member', :members, :'last_msg', 3 + :messages, 1700001000000, jsonb_build_array(:'c', :'jr'));
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

-- One call per event, as a front end ingesting live traffic does: each statement sent by the
-- client (\gexec) and committed on its own, so that the cost of the commit and of the rows the
-- earlier calls left behind is counted as it is in production.
CREATE TEMP TABLE single_pdus AS
SELECT * FROM pg_temp.chain('live message', :messages / 5, :'last_member', 3 + :messages + :members, 1700002000000, jsonb_build_array(:'c', :'j'));
TRUNCATE floor_pdus;
\o /dev/null
SELECT clock_timestamp() AS t0 \gset
SELECT format('INSERT INTO floor_pdus (pdu) VALUES (%L)', pdu) FROM single_pdus ORDER BY n \gexec
SELECT clock_timestamp() AS t1 \gset
SELECT format('SELECT roomserver.ingest_event(%L)', pdu) FROM single_pdus ORDER BY n \gexec
SELECT clock_timestamp() AS t2 \gset
\o
INSERT INTO results
SELECT 'm.room.message', 'plain INSERT, one statement per event (floor)',
       round(count(*) / extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz)) FROM single_pdus;
INSERT INTO results
SELECT 'm.room.message', 'roomserver.ingest_event, one call per event',
       round(count(*) / extract(epoch FROM :'t2'::timestamptz - :'t1'::timestamptz)) FROM single_pdus;

SELECT kind, method, events_per_s,
       round(events_per_s / max(events_per_s) FILTER (WHERE method LIKE '%floor%') OVER (PARTITION BY kind, method LIKE '%one %'), 2) AS share_of_floor
FROM results ORDER BY kind DESC, method LIKE '%one %', method LIKE '%floor%' DESC;
SELECT count(*) AS events_stored, pg_size_pretty(pg_total_relation_size('roomserver.stored_events') + pg_total_relation_size('roomserver.event_edges')) AS roomserver_size
FROM roomserver.stored_events;
