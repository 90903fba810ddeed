-- A front end serving the federation endpoints, one SQL call each, on the sample room
-- (roomgen --sample: room version 12, 40 events, forks and merges).
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
-- Each PDU of a response as (depth, type, sender), the event ID shortened.
CREATE FUNCTION pg_temp.show(pdus jsonb) RETURNS TABLE (n bigint, depth int, type text, sender text, event text, redacted boolean)
LANGUAGE sql AS $$
    SELECT i, (p->>'depth')::int, p->>'type', p->>'sender', left(roomserver.event_id_for(p, '12'), 8), NOT p ? 'hashes' OR p->'content' = '{}'
    FROM jsonb_array_elements(pdus) WITH ORDINALITY AS x(p, i) ORDER BY i $$;

-- The sample room (regress.sample: setup/setup.sql reads roomgen/sample/room-v12.jsonl).
SELECT count(*) AS events FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.sample));
SELECT room_id FROM roomserver.rooms WHERE room_version = '12' \gset
SELECT event_id AS latest FROM roomserver.events WHERE room_id = :'room_id' ORDER BY depth DESC, event_id COLLATE "C" DESC LIMIT 1 \gset
SELECT event_id AS fork FROM roomserver.events e WHERE room_id = :'room_id'
   AND (SELECT count(*) FROM roomserver.event_references r WHERE r.referenced_event_id = e.event_id AND r.kind = 'prev') > 1
ORDER BY depth LIMIT 1 \gset
SELECT event_id AS early FROM roomserver.events WHERE room_id = :'room_id' AND depth = 8 ORDER BY event_id COLLATE "C" LIMIT 1 \gset

-- The origin of transactions is this server's name; without it, a clear error (55000).
SELECT regress.try(format('SELECT roomserver.backfill(%L, ARRAY[%L], 5)', :'room_id', :'latest'));
SET roomserver.server_name = 'here.example';

-- GET /_matrix/federation/v1/backfill/{roomId}?v={latest}&limit=8: newest first, branches side by side.
SELECT b->'origin' AS origin, (b->>'origin_server_ts')::bigint > 1700000000000 AS has_ts, jsonb_array_length(b->'pdus') AS pdus
FROM roomserver.backfill(:'room_id', ARRAY[:'latest'], 8) b;
SELECT * FROM pg_temp.show((roomserver.backfill(:'room_id', ARRAY[:'latest'], 8))->'pdus');
-- Federation format of room version 12: no event_id key, room_id present (except on the create event).
SELECT bool_and(NOT p ? 'event_id') AS no_event_id, bool_and(p ? 'room_id') AS room_id
FROM jsonb_array_elements((roomserver.backfill(:'room_id', ARRAY[:'latest'], 8))->'pdus') p;

-- MSC4000 GET /_matrix/federation/v1/forwards_fill/{roomId}?from_event_id={fork}&limit=8: oldest first.
SELECT * FROM pg_temp.show((roomserver.forwards_fill(:'room_id', ARRAY[:'fork'], 8))->'pdus');

-- POST /_matrix/federation/v1/get_missing_events/{roomId}
-- {"earliest_events": [early], "latest_events": [latest], "limit": 6, "min_depth": 0}: oldest first.
SELECT * FROM pg_temp.show((roomserver.get_missing_events(:'room_id', ARRAY[:'early'], ARRAY[:'latest'], 6))->'events');
-- min_depth cuts the walk.
SELECT jsonb_array_length(g->'events') AS events FROM roomserver.get_missing_events(:'room_id', ARRAY[]::text[], ARRAY[:'latest'], 100, 30) g;

-- GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
SELECT * FROM pg_temp.show((roomserver.event_auth(:'room_id', :'latest'))->'auth_chain');

-- GET /_matrix/federation/v1/event/{eventId}
SELECT e->'origin' AS origin, jsonb_array_length(e->'pdus') AS pdus, e->'pdus'->0 = roomserver.pdu(:'latest') AS same_pdu
FROM roomserver.event(:'latest') e;

-- An incoming PDU: which of its prev and auth events must be fetched first?
SELECT roomserver.missing_events(roomserver.pdu(:'latest') || jsonb_build_object('prev_events', jsonb_build_array(:'latest', '$not-here')));
SELECT roomserver.missing_events(roomserver.pdu(:'latest'));

-- The room has no gaps: every stored event's prev events are stored.
SELECT * FROM roomserver.backward_extremities(:'room_id');

-- History visibility per requesting server: the sample room is 'shared', so every server sees
-- everything (redacted: only the events its three redactions apply to, for every server alike).
-- Switch to 'joined' in a copy of the state (a new event) and ask again.
SELECT jsonb_agg(DISTINCT r) AS redacted FROM pg_temp.show((roomserver.backfill(:'room_id', ARRAY[:'latest'], 100, 'stranger.example'))->'pdus') s, LATERAL (SELECT s.redacted) x(r);
SELECT sender AS creator FROM roomserver.events WHERE room_id = :'room_id' AND type = 'm.room.create' \gset
SELECT jsonb_agg(event_id) AS auth FROM roomserver.current_state WHERE room_id = :'room_id'
   AND (type, state_key) IN (('m.room.power_levels', ''), ('m.room.member', :'creator')) \gset
SELECT (roomserver.ingest_event(regress.sealed(jsonb_build_object('type', 'm.room.history_visibility', 'state_key', '',
         'room_id', :'room_id', 'sender', :'creator', 'content', '{"history_visibility": "joined"}'::jsonb,
         'depth', 35, 'origin_server_ts', 1700000099000, 'auth_events', :'auth'::jsonb,
         'prev_events', (SELECT jsonb_agg(e) FROM roomserver.forward_extremities(:'room_id') e)))))->>'event_id' AS hv_id \gset
SELECT (roomserver.ingest_event(regress.sealed(jsonb_build_object('type', 'm.room.message',
         'room_id', :'room_id', 'sender', :'creator', 'content', '{"msgtype": "m.text", "body": "members only"}'::jsonb,
         'depth', 36, 'origin_server_ts', 1700000099001, 'auth_events', :'auth'::jsonb,
         'prev_events', jsonb_build_array(:'hv_id')))))->>'event_id' AS msg_id \gset
SELECT depth, type, rejected, soft_failed FROM roomserver.events WHERE event_id IN (:'hv_id', :'msg_id') ORDER BY depth;
-- s1 has joined users; s2's user5 is banned but user2 is joined; stranger.example has none.
SELECT user_id, membership FROM roomserver.room_members WHERE room_id = :'room_id' ORDER BY user_id;
-- After the change, a server without a joined user gets the redacted form (the message's
-- content is gone; the visibility event keeps its content, as redaction does); before it,
-- 'shared' history is visible to all.
SELECT * FROM pg_temp.show((roomserver.backfill(:'room_id', ARRAY[:'msg_id'], 3, 'stranger.example'))->'pdus');
SELECT * FROM pg_temp.show((roomserver.backfill(:'room_id', ARRAY[:'msg_id'], 3, 's1.example'))->'pdus');
SELECT (roomserver.event(:'msg_id', 'stranger.example'))->'pdus'->0->'content' AS stranger_sees,
       (roomserver.event(:'msg_id', 's2.example'))->'pdus'->0->'content' AS member_sees;
SELECT (roomserver.forwards_fill(:'room_id', ARRAY[:'hv_id'], 2, 'stranger.example'))->'pdus'->1 = roomserver.redact(roomserver.pdu(:'msg_id'), '12') AS redacted_form;
-- Internal calls (no requesting server) are not filtered.
SELECT (roomserver.backfill(:'room_id', ARRAY[:'msg_id'], 1))->'pdus'->0->'content' AS internal_sees;

-- Bad input: unknown room 404 (P0002); limit <= 0 (22023); NULL arguments (22004); unknown
-- event IDs skipped; a limit over 1000 clamped; another room's events are never returned.
SELECT regress.try($$SELECT roomserver.backfill('!nowhere:example.org', ARRAY['$x'], 5)$$);
SELECT regress.try(format('SELECT roomserver.backfill(%L, ARRAY[%L], 0)', :'room_id', :'latest'));
SELECT regress.try(format('SELECT roomserver.forwards_fill(%L, ARRAY[%L], -1)', :'room_id', :'latest'));
SELECT regress.try(format('SELECT roomserver.get_missing_events(%L, NULL, ARRAY[%L])', :'room_id', :'latest'));
SELECT regress.try(format('SELECT roomserver.backfill(%L, ARRAY[%L], NULL)', :'room_id', :'latest'));
SELECT regress.try(format('SELECT roomserver.event_auth(%L, %L)', :'room_id', '$unknown'));
SELECT regress.try($$SELECT roomserver.event('$unknown')$$);
SELECT regress.try($$SELECT roomserver.missing_events('{"prev_events": "x", "auth_events": []}')$$);
SELECT regress.try($$SELECT roomserver.missing_events('{"room_id": "!nowhere:example.org", "prev_events": ["$a"], "auth_events": []}')$$);
SELECT jsonb_array_length(b->'pdus') AS pdus FROM roomserver.backfill(:'room_id', ARRAY['$unknown', NULL, :'latest'], 2) b;
SELECT jsonb_array_length(b->'pdus') AS pdus FROM roomserver.backfill(:'room_id', ARRAY[:'latest'], 1000000) b;
SELECT jsonb_array_length(b->'pdus') AS pdus FROM roomserver.forwards_fill(:'room_id', ARRAY['$unknown'], 10) b;
-- Nothing is written: the functions are STABLE.
SELECT proname, provolatile FROM pg_proc WHERE pronamespace = 'roomserver'::regnamespace
  AND proname IN ('backfill', 'forwards_fill', 'get_missing_events', 'event_auth', 'event', 'missing_events', 'backward_extremities')
ORDER BY proname;
