-- Which servers take part in a room: roomserver.server_allowed (the room's m.room.server_acl,
-- core/src/server_acl.rs), roomserver.server_in_room and roomserver.joined_servers, over the
-- demo room (Alice of example.org) joined by users of other.example, an IPv4 and an IPv6
-- literal server, then given ACLs.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
\set VERBOSITY default
SELECT regress.load_demo_room() AS demo_room_events;

-- A local event of the demo room as prepare_event builds it, ingested: its rejection, if any.
CREATE FUNCTION pg_temp.send(type text, state_key text, sender text, content jsonb, ts bigint) RETURNS text LANGUAGE sql AS $$
    SELECT roomserver.ingest_event(roomserver.prepare_event('!demo:example.org', type, state_key, sender, content, ts)) ->> 'rejection'
$$;
SELECT pg_temp.send('m.room.member', '@bob:other.example', '@bob:other.example', '{"membership": "join"}', 1700000100000) AS bob_joins,
       pg_temp.send('m.room.member', '@v4:192.0.2.1:8448', '@v4:192.0.2.1:8448', '{"membership": "join"}', 1700000101000) AS v4_joins,
       pg_temp.send('m.room.member', '@v6:[2001:db8::1]', '@v6:[2001:db8::1]', '{"membership": "join"}', 1700000102000) AS v6_joins;

-- 1. No ACL: every server is allowed; the joined servers are those of the members.
SELECT s AS server_name, roomserver.server_allowed('!demo:example.org', s) AS allowed,
       roomserver.server_in_room('!demo:example.org', s) AS in_room
FROM unnest(ARRAY['example.org', 'other.example', 'other.example:8448', '192.0.2.1:8448', '192.0.2.1',
                  '[2001:db8::1]', 'elsewhere.example', 'ample.org', 'example.or', 'xample.org']) s;
SELECT roomserver.joined_servers('!demo:example.org') AS joined_server;

-- 2. An ACL: everyone but other.example and *.evil.example, no IP literals. The ACL decides who
-- may take part, not who is a member: in_room is unchanged.
SELECT pg_temp.send('m.room.server_acl', '', '@alice:example.org',
                    '{"allow": ["*"], "deny": ["other.example", "*.evil.example"], "allow_ip_literals": false}', 1700000103000) AS acl_rejection;
SELECT s AS server_name, roomserver.server_allowed('!demo:example.org', s) AS allowed,
       roomserver.server_in_room('!demo:example.org', s) AS in_room
FROM unnest(ARRAY['example.org', 'example.org:8448', 'other.example', 'OTHER.Example:443', 'sub.other.example',
                  'x.evil.example', 'evil.example', '192.0.2.1:8448', '[2001:db8::1]', '[::1]:8448', 'elsewhere.example']) s;
-- What the outbox sends to: the joined servers the ACL allows (this server left out by the caller).
SELECT j AS joined_server, roomserver.server_allowed('!demo:example.org', j) AS allowed
FROM roomserver.joined_servers('!demo:example.org') j;

-- 3. A newer ACL replaces it: only example.org and servers of one letter and .example; deny wins
-- over allow; IP literals allowed by default.
SELECT pg_temp.send('m.room.server_acl', '', '@alice:example.org',
                    '{"allow": ["example.org", "?.example", "192.0.2.*", 7, null], "deny": ["b.example", {"x": 1}]}', 1700000104000) AS acl_rejection;
SELECT s AS server_name, roomserver.server_allowed('!demo:example.org', s) AS allowed
FROM unnest(ARRAY['example.org', 'a.example', 'b.example', 'ab.example', 'other.example', '192.0.2.1:8448', '[2001:db8::1]']) s;

-- 4. An ACL that allows no one (no allow list): the room's own server too.
SELECT pg_temp.send('m.room.server_acl', '', '@alice:example.org', '{"deny": []}', 1700000105000) AS acl_rejection;
SELECT roomserver.server_allowed('!demo:example.org', 'example.org') AS own_server_allowed;
SELECT pg_temp.send('m.room.server_acl', '', '@alice:example.org', '{"allow": ["*"]}', 1700000106000) AS acl_rejection;

-- 5. Leaving takes a server out of the room; a banned or invited user does not make one in.
SELECT pg_temp.send('m.room.member', '@bob:other.example', '@bob:other.example', '{"membership": "leave"}', 1700000107000) AS bob_leaves,
       pg_temp.send('m.room.member', '@v4:192.0.2.1:8448', '@alice:example.org', '{"membership": "ban"}', 1700000108000) AS v4_banned,
       pg_temp.send('m.room.member', '@carol:invited.example', '@alice:example.org', '{"membership": "invite"}', 1700000109000) AS carol_invited;
SELECT s AS server_name, roomserver.server_in_room('!demo:example.org', s) AS in_room
FROM unnest(ARRAY['example.org', 'other.example', '192.0.2.1:8448', 'invited.example', '[2001:db8::1]']) s;
SELECT roomserver.joined_servers('!demo:example.org') AS joined_server;

-- 6. An unknown room: allowed is NULL (no state to apply; callers that refuse on a denial only
-- test IS NOT FALSE), in the room false, no joined servers. NULL arguments: NULL (STRICT).
SELECT roomserver.server_allowed('!unknown:example.org', 'example.org') AS allowed,
       roomserver.server_in_room('!unknown:example.org', 'example.org') AS in_room,
       (SELECT count(*) FROM roomserver.joined_servers('!unknown:example.org')) AS joined_servers;
SELECT roomserver.server_allowed(NULL, 'example.org') IS NULL AS allowed_null,
       roomserver.server_allowed('!demo:example.org', NULL) IS NULL AS allowed_null_server,
       roomserver.server_in_room(NULL, 'example.org') IS NULL AS in_room_null,
       (SELECT count(*) FROM roomserver.joined_servers(NULL)) AS joined_null;

-- 7. The rule alone (roomserver_internal.server_acl_allows), on contents as they come.
SELECT c AS acl, s AS server_name, roomserver_internal.server_acl_allows(c::jsonb, s) AS allowed
FROM (VALUES ('{}', 'example.org'),
             ('{"allow": "*"}', 'example.org'),
             ('{"allow": ["*"], "allow_ip_literals": "no"}', '[::1]'),
             ('{"allow": ["[2001:db8::*]"]}', '[2001:db8::5]:8448'),
             ('{"allow": ["[2001:db8::*]"]}', '[2001:db9::5]'),
             ('{"allow": ["*"], "deny": ["*.com"]}', 'example.COM:80'),
             ('{"allow": ["exam?le.org"]}', 'example.org'),
             ('{"allow": ["exam?le.org"]}', 'exammmle.org')) v(c, s);

-- 8. The catalog: what was declared.
SELECT p.oid::regprocedure AS function, p.provolatile AS volatility, p.proisstrict AS strict, p.proparallel AS parallel,
       p.proretset AS returns_set, p.prorettype::regtype AS returns
FROM pg_proc p
WHERE p.oid IN ('roomserver.server_allowed(text, text)'::regprocedure, 'roomserver.server_in_room(text, text)'::regprocedure,
                'roomserver.joined_servers(text)'::regprocedure, 'roomserver_internal.server_acl_allows(jsonb, text)'::regprocedure)
ORDER BY 1::text;
