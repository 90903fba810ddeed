\set ECHO none
-- The shared setup of every file in tests/pg_regress/sql, so that each runs alone on a fresh
-- database, in any order, and all of them in sequence. A file includes it with
--     \getenv abs_srcdir PG_ABS_SRCDIR
--     \i :abs_srcdir/setup/setup.sql
-- (pg_regress exports PG_ABS_SRCDIR: its --inputdir, made absolute). Nothing here is echoed or
-- printed unless it fails (ON_ERROR_STOP: psql stops and the diff shows the error).
--
-- It leaves:
--   * pg_roomserver freshly created: dropped first, so no file sees what an earlier one stored
--     (\set setup_without_extension before the \i: dropped and not created again, for
--     01_extension, which creates it itself);
--   * schema regress, made again each time: the helpers below and the fixture PDUs read from
--     the repository's files (regress.sample, regress.room5k, regress.mprime), not ingested;
--   * psql's working directory at the repository root.
\set ON_ERROR_STOP 1
\o /dev/null
SET client_min_messages = warning;
-- The helpers call the extension, which 01_extension creates only after this.
SET check_function_bodies = off;

DROP EXTENSION IF EXISTS pg_roomserver CASCADE;
\if :{?setup_without_extension}
\else
CREATE EXTENSION pg_roomserver;
\endif

DROP SCHEMA IF EXISTS regress CASCADE;
CREATE SCHEMA regress;
COMMENT ON SCHEMA regress IS 'pg_regress helpers and fixtures (tests/pg_regress/setup/setup.sql)';

-- try(): runs a statement and shows its SQLSTATE and message instead of aborting ('ok' if it
-- succeeds). In a schema, not pg_temp, so it outlives a \c.
CREATE FUNCTION regress.try(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- sealed(): sets hashes.sha256 to the content hash, as the sending server does.
CREATE FUNCTION regress.sealed(pdu jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT pdu || jsonb_build_object('hashes', jsonb_build_object('sha256', roomserver.content_hash(pdu))) $$;

-- The room 03_ingest builds by hand: room version 10, !demo:example.org, Alice alone. The
-- create event, her join, the join rules; two events on concurrent branches (a fork: a topic
-- and a message, both after the join rules), then a merge; and a message whose content does
-- not match its hash (tampered in transit, hashes given, not sealed). One row: each PDU and
-- its event ID, named as 03_ingest's psql variables (SELECT * FROM regress.demo_room() \gset).
CREATE FUNCTION regress.demo_room(
    OUT create_pdu jsonb, OUT create_id text, OUT alice_join jsonb, OUT alice_join_id text,
    OUT join_rules jsonb, OUT join_rules_id text, OUT topic jsonb, OUT topic_id text,
    OUT message jsonb, OUT message_id text, OUT merge jsonb, OUT merge_id text, OUT tampered jsonb)
LANGUAGE sql AS $$
    WITH c AS (
        SELECT regress.sealed('{"type": "m.room.create", "state_key": "", "room_id": "!demo:example.org",
          "sender": "@alice:example.org", "content": {"creator": "@alice:example.org", "room_version": "10"},
          "depth": 1, "origin_server_ts": 1700000000000, "prev_events": [], "auth_events": []}') AS pdu
    ), c_id AS (SELECT pdu, roomserver.event_id_for(pdu, '10') AS id FROM c),
    a AS (
        SELECT regress.sealed(jsonb_build_object('type', 'm.room.member', 'state_key', '@alice:example.org',
          'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"membership": "join"}'::jsonb,
          'depth', 2, 'origin_server_ts', 1700000001000, 'prev_events', jsonb_build_array(c_id.id),
          'auth_events', jsonb_build_array(c_id.id))) AS pdu FROM c_id
    ), a_id AS (SELECT pdu, roomserver.event_id_for(pdu, '10') AS id FROM a),
    jr AS (
        SELECT regress.sealed(jsonb_build_object('type', 'm.room.join_rules', 'state_key', '',
          'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"join_rule": "public"}'::jsonb,
          'depth', 3, 'origin_server_ts', 1700000002000, 'prev_events', jsonb_build_array(a_id.id),
          'auth_events', jsonb_build_array(c_id.id, a_id.id))) AS pdu FROM c_id, a_id
    ), jr_id AS (SELECT pdu, roomserver.event_id_for(pdu, '10') AS id FROM jr),
    t AS (
        SELECT regress.sealed(jsonb_build_object('type', 'm.room.topic', 'state_key', '',
          'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"topic": "Fork A"}'::jsonb,
          'depth', 4, 'origin_server_ts', 1700000003000, 'prev_events', jsonb_build_array(jr_id.id),
          'auth_events', jsonb_build_array(c_id.id, a_id.id))) AS pdu FROM c_id, a_id, jr_id
    ), t_id AS (SELECT pdu, roomserver.event_id_for(pdu, '10') AS id FROM t),
    m AS (
        SELECT regress.sealed(jsonb_build_object('type', 'm.room.message',
          'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"msgtype": "m.text", "body": "Fork B"}'::jsonb,
          'depth', 4, 'origin_server_ts', 1700000003500, 'prev_events', jsonb_build_array(jr_id.id),
          'auth_events', jsonb_build_array(c_id.id, a_id.id))) AS pdu FROM c_id, a_id, jr_id
    ), m_id AS (SELECT pdu, roomserver.event_id_for(pdu, '10') AS id FROM m),
    mg AS (
        SELECT regress.sealed(jsonb_build_object('type', 'm.room.message',
          'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"msgtype": "m.text", "body": "merged"}'::jsonb,
          'depth', 5, 'origin_server_ts', 1700000004000, 'prev_events', jsonb_build_array(t_id.id, m_id.id),
          'auth_events', jsonb_build_array(c_id.id, a_id.id))) AS pdu FROM c_id, a_id, t_id, m_id
    ), mg_id AS (SELECT pdu, roomserver.event_id_for(pdu, '10') AS id FROM mg)
    SELECT c_id.pdu, c_id.id, a_id.pdu, a_id.id, jr_id.pdu, jr_id.id, t_id.pdu, t_id.id, m_id.pdu, m_id.id,
           mg_id.pdu, mg_id.id,
           jsonb_build_object('type', 'm.room.message', 'room_id', '!demo:example.org', 'sender', '@alice:example.org',
             'content', '{"msgtype": "m.text", "body": "tampered in transit"}'::jsonb, 'hashes', '{"sha256": "bm90IHRoZSBoYXNo"}'::jsonb,
             'depth', 6, 'origin_server_ts', 1700000005000, 'prev_events', jsonb_build_array(mg_id.id),
             'auth_events', jsonb_build_array(c_id.id, a_id.id))
    FROM c_id, a_id, jr_id, t_id, m_id, mg_id
$$;

-- load_demo_room(): the demo room as 03_ingest leaves it, for the files that look at it next to
-- other rooms. It makes 03_ingest's ingest calls in 03_ingest's order, the refused ones
-- included (they use NIDs too), so NIDs, snapshots and blocks come out the same. Returns the
-- number of events stored in the room.
CREATE FUNCTION regress.load_demo_room() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    d record;
BEGIN
    SELECT * INTO STRICT d FROM regress.demo_room();
    PERFORM regress.try(format('SELECT roomserver.ingest_event(%L::jsonb)', d.alice_join));  -- refused: unknown room
    PERFORM roomserver.ingest_event(d.create_pdu);
    PERFORM roomserver.ingest_event(d.alice_join);
    PERFORM regress.try(format('SELECT roomserver.ingest_event(%L::jsonb)', d.merge));       -- refused: prev events unknown
    PERFORM roomserver.ingest_event(d.merge, outlier => true);
    PERFORM roomserver.ingest_events(jsonb_build_array(d.join_rules, d.topic, d.message));
    PERFORM roomserver.ingest_event(d.merge);                                                -- no longer an outlier
    PERFORM roomserver.ingest_event(d.topic);                                                -- duplicates
    PERFORM roomserver.ingest_event(d.topic);
    PERFORM roomserver.ingest_event(d.tampered);
    RETURN (SELECT count(*) FROM roomserver.events WHERE room_id = '!demo:example.org');
END $$;

-- Events built by the tests that need hand-made rooms (12_redactions, 13_served_events).
-- The events of a test's rooms, by version and label, built (not ingested) by regress.add_event:
-- depth from the prev events, room_id (v12: derived from the create event, which the other
-- events do not list as an auth event), sealed content hash.
CREATE TABLE regress.evs (rv text, label text, pdu jsonb, id text, n serial, PRIMARY KEY (rv, label));
CREATE FUNCTION regress.add_event(rv text, label text, type text, sk text, sender text, content jsonb,
                            prevs text[], auths text[], extra jsonb DEFAULT '{}') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    room text;
    p jsonb;
BEGIN
    IF type <> 'm.room.create' THEN
        SELECT CASE WHEN add_event.rv = '12' THEN roomserver.room_id_for_create_event(c.pdu, '12') ELSE '!r' || add_event.rv || ':a.org' END
        INTO room FROM regress.evs c WHERE c.rv = add_event.rv AND c.label = 'create';
    ELSIF add_event.rv <> '12' THEN
        room := '!r' || add_event.rv || ':a.org';
    END IF;
    p := jsonb_build_object('type', type, 'sender', sender, 'content', content,
             'depth', (SELECT COALESCE(max((e.pdu->>'depth')::bigint), 0) + 1 FROM regress.evs e WHERE e.rv = add_event.rv AND e.label = ANY (prevs)),
             'origin_server_ts', 1700000000000 + (SELECT count(*) FROM regress.evs) * 1000,
             'prev_events', (SELECT COALESCE(jsonb_agg(e.id ORDER BY array_position(prevs, e.label)), '[]') FROM regress.evs e
                             WHERE e.rv = add_event.rv AND e.label = ANY (prevs)),
             'auth_events', (SELECT COALESCE(jsonb_agg(e.id ORDER BY array_position(auths, e.label)), '[]') FROM regress.evs e
                             WHERE e.rv = add_event.rv AND e.label = ANY (auths) AND NOT (add_event.rv = '12' AND e.label = 'create')))
         || extra;
    IF room IS NOT NULL THEN p := p || jsonb_build_object('room_id', room); END IF;
    IF sk IS NOT NULL THEN p := p || jsonb_build_object('state_key', sk); END IF;
    p := regress.sealed(p);
    INSERT INTO regress.evs (rv, label, pdu, id) VALUES (add_event.rv, add_event.label, p, roomserver.event_id_for(p, add_event.rv));
    RETURN label;
END $$;

-- The fixture files, one PDU a line (n: the line), read as text (no CSV quoting or delimiter
-- occurs in them). Relative paths: from the repository root.
CREATE TABLE regress.sample (n serial, pdu jsonb);
COMMENT ON TABLE regress.sample IS 'roomgen/sample/room-v12.jsonl (roomgen --sample): room version 12, 40 events, forks and merges, bans, a soft-failed event';
CREATE TABLE regress.room5k (n serial, pdu jsonb);
COMMENT ON TABLE regress.room5k IS 'tests/fixtures/room5k_first60.jsonl: the first 60 events of a generated forked room (roomgen --seed 7 --version 11 --members 200 --servers 10 --events 5000 --fork-every 50 --fork-width 3 --fork-depth 4 --churn 0.2)';
CREATE TABLE regress.mprime (pdu jsonb);
COMMENT ON TABLE regress.mprime IS 'tests/fixtures/savepoint_mprime.json: a message of the room5k room whose prev events are its forward extremity and an older event (its state before is a new resolution of two committed states)';
\cd :abs_srcdir/../..
\copy regress.sample (pdu) FROM 'roomgen/sample/room-v12.jsonl' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
\copy regress.room5k (pdu) FROM 'tests/fixtures/room5k_first60.jsonl' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
\copy regress.mprime (pdu) FROM 'tests/fixtures/savepoint_mprime.json' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')

RESET client_min_messages;
RESET check_function_bodies;
\o
\unset ON_ERROR_STOP
\unset setup_without_extension
\set ECHO all
