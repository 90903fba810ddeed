-- A DBA builds a small room version 10 room by hand, ingests it, and looks at it.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
-- The room, built in setup/setup.sql (regress.demo_room(), shared with the files that need it
-- next to other rooms): the create event, alice's join, the join rules; two events on
-- concurrent branches (a fork: a topic and a message), then a merge; and a tampered message.
-- Each PDU and its event ID as a psql variable: create_pdu, create_id, alice_join,
-- alice_join_id, join_rules(_id), topic(_id), message(_id), merge(_id), tampered.
SELECT * FROM regress.demo_room() \gset

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
-- Its prev events arrived, so the outlier got its state with them (the gap before it is
-- filled) and is the room's forward extremity; sent again, it is a duplicate.
SELECT event_id = :'merge_id' AS is_merge, outlier, rejected FROM roomserver.events WHERE event_id = :'merge_id';
SELECT array_agg(e) = ARRAY[:'merge_id'] AS merge_is_the_extremity FROM roomserver.forward_extremities('!demo:example.org') e;
SELECT r->'outlier' AS outlier, r->'duplicate' AS duplicate FROM roomserver.ingest_event(:'merge') AS r;

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

-- A PDU whose content does not match its hash (tampered) is stored redacted and flagged.
SELECT r->'content_hash_ok' AS content_hash_ok, r->>'event_id' AS tampered_id
FROM roomserver.ingest_event(:'tampered') AS r \gset
\echo content_hash_ok: :content_hash_ok
SELECT roomserver.pdu(:'tampered_id') ->> 'content' AS stored_content;
SELECT event_nid, type, content_hash_ok FROM roomserver.events WHERE NOT content_hash_ok;
SELECT count(*) AS integrity_problems FROM roomserver.check_integrity();
