-- A DBA builds a small room version 10 room by hand, ingests it, and looks at it.
-- sealed(): sets hashes.sha256 to the content hash, as the sending server does.
CREATE FUNCTION pg_temp.sealed(pdu jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT pdu || jsonb_build_object('hashes', jsonb_build_object('sha256', roomserver.content_hash(pdu))) $$;

SELECT pg_temp.sealed('{"type": "m.room.create", "state_key": "", "room_id": "!demo:example.org",
  "sender": "@alice:example.org", "content": {"creator": "@alice:example.org", "room_version": "10"},
  "depth": 1, "origin_server_ts": 1700000000000, "prev_events": [], "auth_events": []}') AS create_pdu \gset
SELECT roomserver.event_id_for(:'create_pdu', '10') AS create_id \gset

SELECT pg_temp.sealed(jsonb_build_object('type', 'm.room.member', 'state_key', '@alice:example.org',
  'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"membership": "join"}'::jsonb,
  'depth', 2, 'origin_server_ts', 1700000001000, 'prev_events', jsonb_build_array(:'create_id'),
  'auth_events', jsonb_build_array(:'create_id'))) AS alice_join \gset
SELECT roomserver.event_id_for(:'alice_join', '10') AS alice_join_id \gset

SELECT pg_temp.sealed(jsonb_build_object('type', 'm.room.join_rules', 'state_key', '',
  'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"join_rule": "public"}'::jsonb,
  'depth', 3, 'origin_server_ts', 1700000002000, 'prev_events', jsonb_build_array(:'alice_join_id'),
  'auth_events', jsonb_build_array(:'create_id', :'alice_join_id'))) AS join_rules \gset
SELECT roomserver.event_id_for(:'join_rules', '10') AS join_rules_id \gset

-- Two events on concurrent branches (a fork), then a merge.
SELECT pg_temp.sealed(jsonb_build_object('type', 'm.room.topic', 'state_key', '',
  'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"topic": "Fork A"}'::jsonb,
  'depth', 4, 'origin_server_ts', 1700000003000, 'prev_events', jsonb_build_array(:'join_rules_id'),
  'auth_events', jsonb_build_array(:'create_id', :'alice_join_id'))) AS topic \gset
SELECT roomserver.event_id_for(:'topic', '10') AS topic_id \gset

SELECT pg_temp.sealed(jsonb_build_object('type', 'm.room.message',
  'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"msgtype": "m.text", "body": "Fork B"}'::jsonb,
  'depth', 4, 'origin_server_ts', 1700000003500, 'prev_events', jsonb_build_array(:'join_rules_id'),
  'auth_events', jsonb_build_array(:'create_id', :'alice_join_id'))) AS message \gset
SELECT roomserver.event_id_for(:'message', '10') AS message_id \gset

SELECT pg_temp.sealed(jsonb_build_object('type', 'm.room.message',
  'room_id', '!demo:example.org', 'sender', '@alice:example.org', 'content', '{"msgtype": "m.text", "body": "merged"}'::jsonb,
  'depth', 5, 'origin_server_ts', 1700000004000, 'prev_events', jsonb_build_array(:'topic_id', :'message_id'),
  'auth_events', jsonb_build_array(:'create_id', :'alice_join_id'))) AS merge \gset
SELECT roomserver.event_id_for(:'merge', '10') AS merge_id \gset

-- An event of an unknown room needs its create event first (or a room version).
SELECT roomserver.ingest_event(:'alice_join');

-- Ingest: the create event first, then alice's join. The merge event arrives before its prev
-- events: with state it is refused (naming what is missing); as an outlier it is stored without
-- state, its references waiting until they are known.
SELECT roomserver.ingest_event(:'create_pdu');
SELECT roomserver.ingest_event(:'alice_join') ->> 'outlier' AS outlier;
SELECT roomserver.ingest_event(:'merge');
SELECT roomserver.ingest_event(:'merge', outlier => true) - 'event_nid' - 'event_id';
SELECT kind, position, known FROM roomserver.event_references
WHERE event_id = :'merge_id' ORDER BY kind DESC, position;
SELECT r->>'event_id' = id AS id_ok, (r->>'event_nid')::bigint AS event_nid, r->'duplicate' AS duplicate
FROM roomserver.ingest_events(jsonb_build_array(:'join_rules'::jsonb, :'topic'::jsonb, :'message'::jsonb))
     WITH ORDINALITY AS t(r, n)
JOIN unnest(ARRAY[:'join_rules_id', :'topic_id', :'message_id']) WITH ORDINALITY AS u(id, n) USING (n)
ORDER BY n;
SELECT kind, position, known FROM roomserver.event_references
WHERE event_id = :'merge_id' ORDER BY kind DESC, position;
-- Its prev events known, the outlier is ingested again and gets its state.
SELECT r->'outlier' AS outlier, r->'duplicate' AS duplicate FROM roomserver.ingest_event(:'merge') AS r;
SELECT event_id = :'merge_id' AS is_merge, outlier, rejected FROM roomserver.events WHERE event_id = :'merge_id';

-- Ingesting the same PDU again changes nothing and returns the same NID.
SELECT (roomserver.ingest_event(:'topic')->>'event_nid')::bigint = roomserver.event_nid(:'topic_id') AS same_nid,
       roomserver.ingest_event(:'topic')->'duplicate' AS duplicate;
SELECT count(*) AS stored_events FROM roomserver.stored_events;

-- What a DBA sees.
SELECT room_nid, room_id, room_version FROM roomserver.rooms;
SELECT event_nid, depth, type, state_key, sender, content_hash_ok FROM roomserver.events ORDER BY depth, event_nid;
SELECT room_nid, state_key_nid, state_key FROM roomserver.event_state_keys ORDER BY state_key_nid;

-- Every stored PDU comes back equal to what was ingested, under canonical JSON.
SELECT name, roomserver.canonical_json(roomserver.pdu(id)) = roomserver.canonical_json(pdu) AS round_trip
FROM (VALUES ('create', :'create_id', :'create_pdu'::jsonb), ('alice_join', :'alice_join_id', :'alice_join'::jsonb),
             ('join_rules', :'join_rules_id', :'join_rules'::jsonb), ('topic', :'topic_id', :'topic'::jsonb),
             ('message', :'message_id', :'message'::jsonb), ('merge', :'merge_id', :'merge'::jsonb)) AS v(name, id, pdu);

-- Compact storage: the columns and edges are not repeated in the stored JSON.
SELECT jsonb_object_keys(pdu_rest) AS kept_in_json FROM roomserver.stored_events
WHERE event_id = :'merge_id' ORDER BY 1;

-- NIDs map to strings and back.
SELECT roomserver.room_nid('!demo:example.org') AS room_nid,
       roomserver.room_id(roomserver.room_nid('!demo:example.org')) AS room_id,
       roomserver.event_type_nid('m.room.topic') AS topic_nid,
       roomserver.event_type(9) AS type_9,
       roomserver.state_key(roomserver.room_nid('!demo:example.org'),
                            roomserver.state_key_nid('!demo:example.org', '@alice:example.org')) AS alice,
       roomserver.event_id(roomserver.room_nid('!demo:example.org'), roomserver.event_nid(:'topic_id')) = :'topic_id' AS topic_id_ok;

-- A PDU whose content does not match its hash is stored redacted and flagged.
SELECT jsonb_build_object('type', 'm.room.message', 'room_id', '!demo:example.org', 'sender', '@alice:example.org',
  'content', '{"msgtype": "m.text", "body": "tampered in transit"}'::jsonb, 'hashes', '{"sha256": "bm90IHRoZSBoYXNo"}'::jsonb,
  'depth', 6, 'origin_server_ts', 1700000005000, 'prev_events', jsonb_build_array(:'merge_id'),
  'auth_events', jsonb_build_array(:'create_id', :'alice_join_id')) AS tampered \gset
SELECT r->'content_hash_ok' AS content_hash_ok, r->>'event_id' AS tampered_id
FROM roomserver.ingest_event(:'tampered') AS r \gset
\echo content_hash_ok: :content_hash_ok
SELECT roomserver.pdu(:'tampered_id') ->> 'content' AS stored_content;
SELECT event_nid, type, content_hash_ok FROM roomserver.events WHERE NOT content_hash_ok;
SELECT count(*) AS integrity_problems FROM roomserver.check_integrity();
