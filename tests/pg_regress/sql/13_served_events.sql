-- What is served to other servers: rejected events are walked through but never returned by
-- backfill, get_missing_events, forwards fill or /event (Synapse's behaviour); outliers, which
-- have no state of their own, are returned unredacted to a named requesting server only where
-- their visibility does not depend on that state (its own users' events, state events).
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
SET roomserver.server_name = 'a.org';

CREATE FUNCTION pg_temp.id(rv text, label text) RETURNS text LANGUAGE sql AS $$ SELECT id FROM regress.evs WHERE regress.evs.rv = $1 AND regress.evs.label = $2 $$;
CREATE FUNCTION pg_temp.label(rv text, event_id text) RETURNS text LANGUAGE sql AS $$ SELECT label FROM regress.evs WHERE regress.evs.rv = $1 AND regress.evs.id = $2 $$;

-- A room version 10 room, history visibility joined: alice@a.org and bob@b.org are joined.
-- dave@c.org, not in the room, sends bad after m1: rejected; m2 builds on it (its sender's
-- server did not know), m3 follows. Then three outliers (prev events unknown): a message of
-- alice's, a message of bob's and a topic of alice's.
DO $$
BEGIN
    PERFORM regress.add_event('10', 'create', 'm.room.create', '', '@alice:a.org', '{"room_version": "10", "creator": "@alice:a.org"}', '{}', '{}');
    PERFORM regress.add_event('10', 'a_join', 'm.room.member', '@alice:a.org', '@alice:a.org', '{"membership": "join"}', '{create}', '{create}');
    PERFORM regress.add_event('10', 'pl', 'm.room.power_levels', '', '@alice:a.org', '{"users": {"@alice:a.org": 100}}', '{a_join}', '{create,a_join}');
    PERFORM regress.add_event('10', 'jr', 'm.room.join_rules', '', '@alice:a.org', '{"join_rule": "public"}', '{pl}', '{create,a_join,pl}');
    PERFORM regress.add_event('10', 'hv', 'm.room.history_visibility', '', '@alice:a.org', '{"history_visibility": "joined"}', '{jr}', '{create,a_join,pl}');
    PERFORM regress.add_event('10', 'b_join', 'm.room.member', '@bob:b.org', '@bob:b.org', '{"membership": "join"}', '{hv}', '{create,jr,pl}');
    PERFORM regress.add_event('10', 'm1', 'm.room.message', NULL, '@alice:a.org', '{"body": "m1"}', '{b_join}', '{create,a_join,pl}');
    PERFORM regress.add_event('10', 'bad', 'm.room.message', NULL, '@dave:c.org', '{"body": "bad"}', '{m1}', '{create,pl}');
    PERFORM regress.add_event('10', 'm2', 'm.room.message', NULL, '@alice:a.org', '{"body": "m2"}', '{bad}', '{create,a_join,pl}');
    PERFORM regress.add_event('10', 'm3', 'm.room.message', NULL, '@bob:b.org', '{"body": "m3"}', '{m2}', '{create,b_join,pl}');
    PERFORM regress.add_event('10', 'o_alice', 'm.room.message', NULL, '@alice:a.org', '{"body": "outlier of a.org"}', '{}', '{create,a_join,pl}',
                   '{"prev_events": ["$unknown-1"]}');
    PERFORM regress.add_event('10', 'o_bob', 'm.room.message', NULL, '@bob:b.org', '{"body": "outlier of b.org"}', '{}', '{create,b_join,pl}',
                   '{"prev_events": ["$unknown-2"]}');
    PERFORM regress.add_event('10', 'o_topic', 'm.room.topic', '', '@alice:a.org', '{"topic": "outlier topic"}', '{}', '{create,a_join,pl}',
                   '{"prev_events": ["$unknown-3"]}');
END $$;
CREATE TEMP TABLE ingested AS
SELECT e.label, roomserver.ingest_event(e.pdu, outlier => e.label LIKE 'o\_%') AS r FROM (SELECT * FROM regress.evs ORDER BY n) e;
SELECT label, r->>'rejection' AS rejection, (r->>'outlier')::boolean AS outlier FROM ingested
WHERE r->>'rejection' IS NOT NULL OR (r->>'outlier')::boolean;
SELECT room_id FROM roomserver.rooms \gset

-- Each body as the labels of its events, a * after those served redacted.
CREATE FUNCTION pg_temp.labels(pdus jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(e.label || CASE WHEN p->'content' = e.pdu->'content' THEN '' ELSE '*' END, ' ' ORDER BY x.i)
    FROM jsonb_array_elements(pdus) WITH ORDINALITY AS x(p, i) JOIN regress.evs e ON e.id = roomserver.event_id_for(p, '10') $$;

-- Rejected: walked through (m2's prev event is bad), never returned.
SELECT s AS server,
       pg_temp.labels(roomserver.backfill(:'room_id', ARRAY[pg_temp.id('10', 'm3')], 100, s)->'pdus') AS backfill,
       pg_temp.labels(roomserver.get_missing_events(:'room_id', ARRAY[pg_temp.id('10', 'b_join')], ARRAY[pg_temp.id('10', 'm3')], 100,
                                                    requesting_server => s)->'events') AS get_missing_events,
       pg_temp.labels(roomserver.forwards_fill(:'room_id', ARRAY[pg_temp.id('10', 'm1')], 100, s)->'pdus') AS forwards_fill
FROM unnest(ARRAY[NULL, 'b.org', 'c.org']) s;
-- Asked for by name, too: backfill from bad itself, and /event (404, as Synapse).
SELECT pg_temp.labels(roomserver.backfill(:'room_id', ARRAY[pg_temp.id('10', 'bad')], 3)->'pdus') AS backfill_from_bad;
SELECT regress.try(format('SELECT roomserver.event(%L)', pg_temp.id('10', 'bad'))) LIKE 'P0002: event % not found' AS event_404;
SELECT regress.try(format('SELECT roomserver.event(%L, %L)', pg_temp.id('10', 'bad'), 'b.org')) LIKE 'P0002: event % not found' AS event_404_for_b_org;
-- The homeserver's own read still has it.
SELECT p->'content' AS pdu_of_rejected FROM roomserver.pdu(pg_temp.id('10', 'bad')) p;
-- The limit bounds what is walked, as in Synapse (which drops rejected events after fetching
-- them): limit 2 from m2 walks m2 and bad, and returns m2 alone.
SELECT pg_temp.labels(roomserver.backfill(:'room_id', ARRAY[pg_temp.id('10', 'm2')], 2)->'pdus') AS backfill_limit_2;

-- Outliers through /event and backfill: unredacted to their sender's server and for state
-- events; other servers' messages redacted; no requesting server: nothing redacted.
SELECT e.label, s AS server,
       pg_temp.labels(roomserver.event(e.id, s)->'pdus') AS event,
       pg_temp.labels(roomserver.backfill(:'room_id', ARRAY[e.id], 1, s)->'pdus') AS backfill
FROM regress.evs e CROSS JOIN unnest(ARRAY[NULL, 'a.org', 'b.org', 'c.org']) s
WHERE e.label LIKE 'o\_%' ORDER BY e.n, s NULLS FIRST;
-- Events with state are judged as before (history visibility joined: c.org has no member).
SELECT s AS server, pg_temp.labels(roomserver.event(pg_temp.id('10', 'm1'), s)->'pdus') AS m1
FROM unnest(ARRAY['b.org', 'c.org']) s;
