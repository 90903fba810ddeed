-- A DBA and a front end looking at room state: the sample room (roomgen --sample: room version
-- 12, 40 events, forks, bans, a soft-failed event) loaded and queried.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
-- Beside it, the room version 10 room 03_ingest builds (!demo:example.org), as 03_ingest leaves
-- it: the storage counts below are of both rooms.
SELECT regress.load_demo_room() AS demo_room_events;

SELECT count(*) AS events,
       count(*) FILTER (WHERE r->>'rejection' IS NOT NULL) AS rejected,
       count(*) FILTER (WHERE r->>'soft_failure' IS NOT NULL) AS soft_failed
FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.sample)) AS r;
SELECT room_id FROM roomserver.rooms WHERE room_version = '12' \gset

-- Who is in the room, and its current state.
SELECT user_id, membership FROM roomserver.room_members WHERE room_id = :'room_id' ORDER BY user_id;
SELECT type, state_key, sender, content FROM roomserver.current_state
WHERE room_id = :'room_id' AND type <> 'm.room.member' ORDER BY type, state_key;
SELECT depth, type, state_key, sender FROM roomserver.events
WHERE room_id = :'room_id' AND event_id IN (SELECT roomserver.forward_extremities(:'room_id'));

-- Events the checks on receipt did not accept.
SELECT depth, type, state_key, sender, rejected, soft_failed, outlier, coalesce(rejection, soft_failure) AS why
FROM roomserver.events WHERE room_id = :'room_id' AND (rejected OR soft_failed OR outlier) ORDER BY depth, event_id;

-- The state at an event: some types, some pairs, a user's membership before and after.
SELECT event_id AS ban_id FROM roomserver.events
WHERE room_id = :'room_id' AND type = 'm.room.member' AND state_key = '@user5:s2.example' AND sender <> state_key
ORDER BY depth LIMIT 1 \gset
SELECT type, state_key FROM roomserver.state_at_event(:'ban_id', types => ARRAY['m.room.member', 'm.room.power_levels']);
SELECT type, state_key, event_id = :'ban_id' AS is_the_ban
FROM roomserver.state_at_event(:'ban_id', after => true, pairs => ARRAY[['m.room.member', '@user5:s2.example'], ['m.room.topic', ''], ['m.room.nothing', '']]);
SELECT roomserver.membership_at_event(:'ban_id', '@user5:s2.example') AS before,
       roomserver.membership_at_event(:'ban_id', '@user5:s2.example', after => true) AS after;

-- /state_ids and /state bodies: the state before the event and its auth chain, in agreement.
SELECT jsonb_array_length(s->'pdu_ids') AS state_events, jsonb_array_length(s->'auth_chain_ids') AS auth_chain_events
FROM roomserver.state_ids(:'room_id', :'ban_id') AS s;
SELECT (SELECT jsonb_agg(roomserver.event_id_for(p, '12') ORDER BY roomserver.event_id_for(p, '12')) FROM jsonb_array_elements(st->'pdus') p)
     = (SELECT jsonb_agg(i ORDER BY i) FROM jsonb_array_elements_text(si->'pdu_ids') i) AS same_state,
       (SELECT jsonb_agg(roomserver.event_id_for(p, '12') ORDER BY roomserver.event_id_for(p, '12')) FROM jsonb_array_elements(st->'auth_chain') p)
     = (SELECT jsonb_agg(i ORDER BY i) FROM jsonb_array_elements_text(si->'auth_chain_ids') i) AS same_auth_chain,
       (SELECT bool_and(NOT p ? 'event_id') FROM jsonb_array_elements(st->'pdus') p) AS federation_format
FROM roomserver.state(:'room_id', :'ban_id') AS st, roomserver.state_ids(:'room_id', :'ban_id') AS si;
-- The state before the ban, from state_ids, equals state_at_event.
SELECT (SELECT array_agg(i ORDER BY i) FROM jsonb_array_elements_text(roomserver.state_ids(:'room_id', :'ban_id')->'pdu_ids') i)
     = (SELECT array_agg(event_id ORDER BY event_id) FROM roomserver.state_at_event(:'ban_id')) AS agree;

-- Storage: equal states share a snapshot; blocks are shared.
SELECT count(DISTINCT state_after) AS distinct_states, count(*) AS events FROM roomserver.stored_events;
SELECT count(*) AS snapshots, max(cardinality(block_nids)) AS max_blocks FROM roomserver.state_snapshots;
SELECT count(*) AS blocks, sum(entry_count) AS entries FROM roomserver.state_blocks;
-- Every snapshot knows its size without being read, and knows it right.
SELECT bool_and(s.state_size = (SELECT count(*) FROM roomserver.snapshot_entries(s.room_nid, s.snapshot_nid))) AS sizes_right,
       max(s.state_size) AS largest_state
FROM roomserver.state_snapshots s;
-- The blocks of the current state, oldest first, and the newest block's entries by name.
SELECT b.pos, b.size
FROM roomserver.rooms r, roomserver.state_snapshots s,
     unnest(s.block_nids, s.block_sizes) WITH ORDINALITY AS b(block_nid, size, pos)
WHERE r.room_id = :'room_id' AND s.room_nid = r.room_nid AND s.snapshot_nid = r.current_state ORDER BY b.pos;
SELECT roomserver.event_type(e.type_nid) AS type, roomserver.state_key(s.room_nid, e.state_key_nid) AS state_key,
       roomserver.event_id(s.room_nid, e.event_nid) IS NOT NULL AS known_event
FROM roomserver.rooms r
JOIN roomserver.state_snapshots s ON s.room_nid = r.room_nid AND s.snapshot_nid = r.current_state
CROSS JOIN LATERAL roomserver.block_entries(s.room_nid, s.block_nids[cardinality(s.block_nids)]) e
WHERE r.room_id = :'room_id' ORDER BY 1, 2;
-- One key at the current state by NIDs (what state_at_event(pairs => ...) uses), and a snapshot
-- of another room: 404.
SELECT l.ord, roomserver.event_id(r.room_nid, l.event_nid) = (SELECT event_id FROM roomserver.current_state WHERE room_id = :'room_id' AND type = 'm.room.create') AS is_create
FROM roomserver.rooms r, roomserver.snapshot_lookup(r.room_nid, r.current_state, ARRAY[roomserver.event_type_nid('m.room.create'), 999], ARRAY[1, 1]) l
WHERE r.room_id = :'room_id';
SELECT regress.try(format('SELECT * FROM roomserver.snapshot_lookup(%s, %s, ARRAY[1], ARRAY[1])', 424242, 1));
SELECT regress.try('SELECT * FROM roomserver.snapshot_lookup(1, 1, ARRAY[1, 2], ARRAY[1])');
-- What the ban changed (the diff of the states before and after it), and the current state as
-- arrays, one per column, as a program reading a whole state takes it.
SELECT roomserver.event_type(d.type_nid) AS type, roomserver.state_key(e.room_nid, d.state_key_nid) AS state_key,
       roomserver.event_id(e.room_nid, d.event_nid) = :'ban_id' AS is_the_ban
FROM roomserver.stored_events e, roomserver.snapshot_diff(e.room_nid, e.state_before, e.state_after) d
WHERE e.event_id = :'ban_id';
SELECT cardinality(a.type_nids) = s.state_size AS whole_state, cardinality(a.event_nids) AS entries
FROM roomserver.rooms r
JOIN roomserver.state_snapshots s ON s.room_nid = r.room_nid AND s.snapshot_nid = r.current_state,
     roomserver.snapshot_state_arrays(r.room_nid, r.current_state) a
WHERE r.room_id = :'room_id';
-- Auth chains are stored per state event as compact NID sets; the union of the chains of the
-- state before the ban is that state's auth chain, as /state_ids lists it.
SELECT (SELECT array_agg(roomserver.event_id(b.room_nid, n) ORDER BY roomserver.event_id(b.room_nid, n))
        FROM unnest(roomserver.nid_set_union(ARRAY(
            SELECT x.auth_chain FROM roomserver.snapshot_entries(b.room_nid, b.state_before) s
            JOIN roomserver.stored_events x ON x.room_nid = b.room_nid AND x.event_nid = s.event_nid))) n)
     = (SELECT array_agg(i ORDER BY i) FROM jsonb_array_elements_text(roomserver.state_ids(:'room_id', :'ban_id')->'auth_chain_ids') i)
       AS union_is_the_auth_chain
FROM roomserver.stored_events b WHERE b.event_id = :'ban_id';
SELECT roomserver.nid_set_union(ARRAY['\x0301'::bytea, NULL, '\x04'::bytea]) AS union_of_3_4_and_4,
       roomserver.nid_set_decode('\x0301') AS decoded;
SELECT regress.try($$SELECT roomserver.nid_set_union(ARRAY['\x05'::bytea, '\x80'::bytea])$$);
SELECT regress.try('SELECT * FROM roomserver.snapshot_diff(424242, 1, 2)');
SELECT regress.try('SELECT * FROM roomserver.snapshot_state_arrays(424242, 1)');

-- Bad input: unknown room, unknown event, an event of another room: 404 (P0002).
SELECT regress.try($$SELECT roomserver.state_ids('!nowhere:example.org', 'x')$$);
SELECT regress.try(format('SELECT roomserver.state_ids(%L, %L)', :'room_id', '$unknown'));
SELECT regress.try(format('SELECT roomserver.state(%L, %L)', '!demo:example.org', :'ban_id'));
SELECT regress.try($$SELECT * FROM roomserver.state_at_event('$unknown')$$);
SELECT regress.try(format('SELECT * FROM roomserver.state_at_event(%L, pairs => ARRAY[''a'', ''b''])', :'ban_id'));
SELECT regress.try($$SELECT roomserver.forward_extremities('!nowhere:example.org')$$);
-- NULL is an error (22004), not an empty answer.
SELECT regress.try($$SELECT roomserver.forward_extremities(NULL)$$);
SELECT regress.try($$SELECT * FROM roomserver.backward_extremities(NULL)$$);
SELECT count(*) AS integrity_problems FROM roomserver.check_integrity();
