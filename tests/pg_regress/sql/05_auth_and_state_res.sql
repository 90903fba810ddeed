-- The authorization rules and state resolution, asked directly: "may this event be sent?" and
-- "why is the state this?". A room version 10 room: Alice (100) and Bob (50).
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
-- ev(): a sealed PDU of this room (regress.sealed: hashes.sha256 set to the content hash).
CREATE FUNCTION pg_temp.ev(type text, state_key text, sender text, content jsonb, depth int, prev text[], auth text[])
RETURNS jsonb LANGUAGE sql AS $$
    SELECT regress.sealed(jsonb_strip_nulls(jsonb_build_object('type', type, 'state_key', state_key,
        'room_id', '!auth:a.example', 'sender', sender, 'content', content, 'depth', depth,
        'origin_server_ts', 1700000000000 + depth, 'prev_events', to_jsonb(prev), 'auth_events', to_jsonb(auth))))
$$;

SELECT pg_temp.ev('m.room.create', '', '@alice:a.example', '{"creator": "@alice:a.example", "room_version": "10"}', 1, '{}', '{}') AS c \gset
SELECT roomserver.event_id_for(:'c', '10') AS c_id \gset
SELECT pg_temp.ev('m.room.member', '@alice:a.example', '@alice:a.example', '{"membership": "join"}', 2, ARRAY[:'c_id'], ARRAY[:'c_id']) AS ma \gset
SELECT roomserver.event_id_for(:'ma', '10') AS ma_id \gset
SELECT pg_temp.ev('m.room.power_levels', '', '@alice:a.example', '{"users": {"@alice:a.example": 100, "@bob:b.example": 50}}', 3, ARRAY[:'ma_id'], ARRAY[:'c_id', :'ma_id']) AS pl \gset
SELECT roomserver.event_id_for(:'pl', '10') AS pl_id \gset
SELECT pg_temp.ev('m.room.join_rules', '', '@alice:a.example', '{"join_rule": "public"}', 4, ARRAY[:'pl_id'], ARRAY[:'c_id', :'ma_id', :'pl_id']) AS jr \gset
SELECT roomserver.event_id_for(:'jr', '10') AS jr_id \gset
SELECT pg_temp.ev('m.room.member', '@bob:b.example', '@bob:b.example', '{"membership": "join"}', 5, ARRAY[:'jr_id'], ARRAY[:'c_id', :'pl_id', :'jr_id']) AS mb \gset
SELECT roomserver.event_id_for(:'mb', '10') AS mb_id \gset

-- check_auth: the state to check against is a JSON array of PDUs.
SELECT jsonb_build_array(:'c'::jsonb, :'ma'::jsonb, :'pl'::jsonb, :'jr'::jsonb, :'mb'::jsonb) AS state \gset
SELECT who, roomserver.check_auth(pg_temp.ev(type, state_key, sender, content, 6, ARRAY[:'mb_id'], '{}'), '10', :'state') AS verdict
FROM (VALUES
    ('Bob sets the topic (needs 50)',    'm.room.topic', '', '@bob:b.example', '{"topic": "x"}'::jsonb),
    ('Bob bans Alice (100 > 50)',        'm.room.member', '@alice:a.example', '@bob:b.example', '{"membership": "ban"}'),
    ('Eve joins (public room)',          'm.room.member', '@eve:e.example', '@eve:e.example', '{"membership": "join"}'),
    ('Eve speaks without joining',       'm.room.message', NULL, '@eve:e.example', '{"body": "hi"}'),
    ('Bob raises himself to 100',        'm.room.power_levels', '', '@bob:b.example', '{"users": {"@alice:a.example": 100, "@bob:b.example": 100}}'),
    ('Alice uses string levels in v10',  'm.room.power_levels', '', '@alice:a.example', '{"users": {"@alice:a.example": "100"}}')
) AS t(who, type, state_key, sender, content);

-- A fork: Alice bans Bob on one branch while Bob changes the topic on the other.
SELECT pg_temp.ev('m.room.member', '@bob:b.example', '@alice:a.example', '{"membership": "ban"}', 6, ARRAY[:'mb_id'], ARRAY[:'c_id', :'ma_id', :'pl_id', :'mb_id']) AS ban \gset
SELECT roomserver.event_id_for(:'ban', '10') AS ban_id \gset
SELECT pg_temp.ev('m.room.topic', '', '@bob:b.example', '{"topic": "Bob was here"}', 6, ARRAY[:'mb_id'], ARRAY[:'c_id', :'pl_id', :'mb_id']) AS topic \gset
SELECT roomserver.event_id_for(:'topic', '10') AS topic_id \gset
SELECT jsonb_build_object(:'c_id', :'c'::jsonb, :'ma_id', :'ma'::jsonb, :'pl_id', :'pl'::jsonb, :'jr_id', :'jr'::jsonb,
                          :'mb_id', :'mb'::jsonb, :'ban_id', :'ban'::jsonb, :'topic_id', :'topic'::jsonb) AS events \gset
SELECT jsonb_build_array(
    jsonb_build_array(:'c_id', :'ma_id', :'pl_id', :'jr_id', :'ban_id'),
    jsonb_build_array(:'c_id', :'ma_id', :'pl_id', :'jr_id', :'mb_id', :'topic_id')) AS sets \gset
SELECT roomserver.resolve_state('10', :'sets', :'events') AS resolved \gset
-- The ban wins Bob's membership, and Bob's topic falls with him.
SELECT (:'resolved'::jsonb) -> 'm.room.member' ->> '@bob:b.example' = :'ban_id' AS ban_wins,
       (:'resolved'::jsonb) ? 'm.room.topic' AS topic_kept,
       (SELECT count(*) FROM jsonb_object_keys(:'resolved'::jsonb)) AS types;

-- Bad input.
SELECT roomserver.resolve_state('13', '[]', '{}');
SELECT roomserver.resolve_state('10', '[["$nowhere"]]', '{}');
SELECT roomserver.resolve_state('10', '{"not": "a list"}', '{}');
SELECT roomserver.resolve_state('10', jsonb_build_array(jsonb_build_array(:'c_id', :'c_id')), :'events');
SELECT roomserver.resolve_state('10', '[]', jsonb_build_object('$wrong-id', :'c'::jsonb));
SELECT roomserver.check_auth(:'mb', '10', '[{"type": "m.room.message"}]');
