#!/usr/bin/env bash
# What pg_roomserver does, on a throwaway PostgreSQL 15 cluster: a small room that forks and
# merges, built by hand and ingested; the room state before and after the fork and how state
# resolution merged it; the federation reads a homeserver serves from it (backfill, forwards
# fill, state_ids), one SQL call each; then the bundled sample room (40 events). Exits non-zero
# if a call fails or an answer is not the one the demo explains.
# Usage: scripts/demo.sh [--keep] [--installed]
#   --keep       leave the cluster running and print how to connect
#   --installed  use the pg_roomserver already installed in PostgreSQL 15 (no build; what
#                scripts/test.sh runs after installing the build it tests)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEEP=0
INSTALLED=0
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=1 ;;
        --installed) INSTALLED=1 ;;
        *) echo "usage: scripts/demo.sh [--keep] [--installed]" >&2; exit 2 ;;
    esac
done

cd "$REPO"
if [ "$INSTALLED" = 1 ]; then
    [ -f "$("$PG_CONFIG" --sharedir)/extension/pg_roomserver.control" ] \
        || { echo "pg_roomserver is not installed in PostgreSQL $PG_VERSION (run scripts/demo.sh without --installed)" >&2; exit 1; }
else
    ensure_prerequisites
    install_extension --release
fi

DIR="$(mktemp -d /tmp/pg_roomserver-demo.XXXXXX)"
start_cluster "$DIR"
if [ "$KEEP" = 0 ]; then trap stop_cluster EXIT; fi

log "a room that forks and merges, its state, and the federation reads"
# One session (the helpers and psql variables live in it), run from the repository root.
psql -X -q -v ON_ERROR_STOP=1 -P pager=off -d postgres <<'SQL'
CREATE EXTENSION pg_roomserver;
-- The origin of the federation responses (backfill, forwards_fill): this server's name.
SET roomserver.server_name = 'demo.example';

-- The room, built by hand the way a sending server builds PDUs: room version 10, Alice
-- (a.example) and Bob (b.example). room holds each event under a short name.
CREATE TEMP TABLE room (n serial, name text UNIQUE, event_id text, pdu jsonb);
-- add(): one PDU: its prev and auth events named, depth one more than its deepest prev event,
-- hashes.sha256 the content hash (the front end checks signatures: none here), the event ID
-- the room version's reference hash.
CREATE FUNCTION pg_temp.add(name text, type text, state_key text, sender text, content jsonb, prev text[], auth text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    pdu jsonb;
BEGIN
    pdu := jsonb_strip_nulls(jsonb_build_object(
        'type', type, 'state_key', state_key, 'room_id', '!lunch:a.example', 'sender', sender, 'content', content,
        'depth', 1 + coalesce((SELECT max((r.pdu->>'depth')::int) FROM room r WHERE r.name = ANY (prev)), 0),
        'origin_server_ts', 1700000000000 + 1000 * (SELECT count(*) FROM room),
        'prev_events', coalesce((SELECT jsonb_agg(r.event_id ORDER BY array_position(prev, r.name)) FROM room r WHERE r.name = ANY (prev)), '[]'),
        'auth_events', coalesce((SELECT jsonb_agg(r.event_id ORDER BY array_position(auth, r.name)) FROM room r WHERE r.name = ANY (auth)), '[]')));
    pdu := pdu || jsonb_build_object('hashes', jsonb_build_object('sha256', roomserver.content_hash(pdu)));
    INSERT INTO room (name, event_id, pdu) VALUES (name, roomserver.event_id_for(pdu, '10'), pdu);
END $$;
DO $$ BEGIN
    PERFORM pg_temp.add('create', 'm.room.create', '', '@alice:a.example', '{"creator": "@alice:a.example", "room_version": "10"}', '{}', '{}');
    PERFORM pg_temp.add('alice_joins', 'm.room.member', '@alice:a.example', '@alice:a.example', '{"membership": "join"}', '{create}', '{create}');
    -- Alice's power levels: hers 100, and the topic open to everyone (a state event needs 50
    -- by default, with or without a power levels event).
    PERFORM pg_temp.add('power_levels', 'm.room.power_levels', '', '@alice:a.example', '{"users": {"@alice:a.example": 100}, "events": {"m.room.topic": 0}}', '{alice_joins}', '{create,alice_joins}');
    PERFORM pg_temp.add('join_rules', 'm.room.join_rules', '', '@alice:a.example', '{"join_rule": "public"}', '{power_levels}', '{create,alice_joins,power_levels}');
    PERFORM pg_temp.add('bob_joins', 'm.room.member', '@bob:b.example', '@bob:b.example', '{"membership": "join"}', '{join_rules}', '{create,join_rules,power_levels}');
    -- The fork: Alice and Bob set the topic at the same time, both right after Bob's join.
    PERFORM pg_temp.add('topic_alice', 'm.room.topic', '', '@alice:a.example', '{"topic": "Lunch at noon"}', '{bob_joins}', '{create,alice_joins,power_levels}');
    PERFORM pg_temp.add('topic_bob', 'm.room.topic', '', '@bob:b.example', '{"topic": "Lunch at one"}', '{bob_joins}', '{create,bob_joins,power_levels}');
    -- The merge: Alice's next message has seen both, so both are its prev events.
    PERFORM pg_temp.add('merge', 'm.room.message', NULL, '@alice:a.example', '{"msgtype": "m.text", "body": "See you there"}', '{topic_alice,topic_bob}', '{create,alice_joins,power_levels}');
END $$;
SELECT event_id AS merge_id FROM room WHERE name = 'merge' \gset
SELECT event_id AS fork_point FROM room WHERE name = 'bob_joins' \gset
-- short(): an event ID as the demo names it.
CREATE FUNCTION pg_temp.short(id text) RETURNS text LANGUAGE sql AS $$ SELECT coalesce((SELECT name FROM room WHERE event_id = id), id) $$;

\echo
\echo '== 1. The room: 8 PDUs, a fork after bob_joins (topic_alice, topic_bob) and a merge'
SELECT n, name, pdu->>'depth' AS depth, pdu->>'type' AS type, pdu->>'sender' AS sender,
       (SELECT string_agg(pg_temp.short(p), ', ') FROM jsonb_array_elements_text(pdu->'prev_events') p) AS prev_events,
       left(event_id, 16) || '…' AS event_id
FROM room ORDER BY n;

\echo '== 2. Ingest, oldest first, in one call: roomserver.ingest_events(jsonb array of PDUs)'
\echo '   (each event is checked against the auth rules and gets its state before and after)'
SELECT r.name, (i->>'event_nid')::bigint AS event_nid, i->>'event_id' = r.event_id AS same_event_id,
       i->'duplicate' AS duplicate, i->>'rejection' AS rejection, i->>'soft_failure' AS soft_failure
FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM room)) WITH ORDINALITY AS x(i, n)
JOIN room r USING (n) ORDER BY n;

\echo '== 3. The state at each event (roomserver.state_at_event): before it and after it'
\echo '   Before the fork there is no topic; each branch has its own; the state before the merge,'
\echo '   which follows both branches, is the resolution of the two states after them.'
SELECT r.name AS event,
       (SELECT count(*) FROM roomserver.state_at_event(r.event_id)) AS entries_before,
       (SELECT roomserver.pdu(s.event_id)->'content'->>'topic' FROM roomserver.state_at_event(r.event_id, types => ARRAY['m.room.topic']) s) AS topic_before,
       (SELECT count(*) FROM roomserver.state_at_event(r.event_id, after => true)) AS entries_after,
       (SELECT roomserver.pdu(s.event_id)->'content'->>'topic' FROM roomserver.state_at_event(r.event_id, after => true, types => ARRAY['m.room.topic']) s) AS topic_after
FROM room r ORDER BY r.n;

\echo '== 4. The state before the merge: the branches disagree on m.room.topic and state resolution'
\echo '   decides (v2, as room version 10 uses: a topic is ordered by the power-levels history it saw,'
\echo '   the same on both branches here, then by origin_server_ts: the later one, topic_bob, wins).'
\echo '   SELECT type, state_key, event_id FROM roomserver.state_at_event(merge_id):'
SELECT s.type, s.state_key, pg_temp.short(s.event_id) AS event
FROM roomserver.state_at_event(:'merge_id') s ORDER BY s.type, s.state_key;
\echo '   The room''s current state (view roomserver.current_state) is the same: the merge is a message.'
SELECT type, state_key, pg_temp.short(event_id) AS event, content
FROM roomserver.current_state WHERE room_id = '!lunch:a.example' ORDER BY type, state_key;

\echo '== 5. Backfill from the newest event: roomserver.backfill(room_id, ARRAY[merge_id], 10)'
\echo '   (GET /_matrix/federation/v1/backfill: newest first, the two branches side by side)'
SELECT b->>'origin' AS origin, jsonb_array_length(b->'pdus') AS pdus
FROM roomserver.backfill('!lunch:a.example', ARRAY[:'merge_id'], 10) b;
SELECT n, pg_temp.short(roomserver.event_id_for(p, '10')) AS event, p->>'depth' AS depth, p->>'type' AS type, p->>'sender' AS sender
FROM jsonb_array_elements(roomserver.backfill('!lunch:a.example', ARRAY[:'merge_id'], 10)->'pdus') WITH ORDINALITY AS x(p, n)
ORDER BY n;

\echo '== 6. Forwards fill from the fork point: roomserver.forwards_fill(room_id, ARRAY[bob_joins], 10)'
\echo '   (MSC4000 GET /_matrix/federation/v1/forwards_fill: the event and what follows it, oldest first)'
SELECT n, pg_temp.short(roomserver.event_id_for(p, '10')) AS event, p->>'depth' AS depth, p->>'type' AS type, p->>'sender' AS sender
FROM jsonb_array_elements(roomserver.forwards_fill('!lunch:a.example', ARRAY[:'fork_point'], 10)->'pdus') WITH ORDINALITY AS x(p, n)
ORDER BY n;

\echo '== 7. /state_ids at the merge: roomserver.state_ids(room_id, merge_id)'
\echo '   (GET /_matrix/federation/v1/state_ids: the state before the event and its auth chain)'
SELECT key, jsonb_array_length(ids) AS count,
       (SELECT string_agg(pg_temp.short(i), ', ' ORDER BY pg_temp.short(i)) FROM jsonb_array_elements_text(ids) i) AS events
FROM jsonb_each(roomserver.state_ids('!lunch:a.example', :'merge_id')) AS s(key, ids) ORDER BY key DESC;

\echo '== 8. A bigger room: the bundled sample (roomgen --sample: room version 12, 40 events from'
\echo '   three servers, forks and merges, a ban, a soft-failed event), bulk-loaded from JSON lines'
CREATE TEMP TABLE sample_pdus (n bigserial, pdu jsonb);
\copy sample_pdus (pdu) FROM 'roomgen/sample/room-v12.jsonl' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
SELECT count(*) AS ingested,
       count(*) FILTER (WHERE r->>'rejection' IS NOT NULL) AS rejected,
       count(*) FILTER (WHERE r->>'soft_failure' IS NOT NULL) AS soft_failed,
       count(*) FILTER (WHERE (r->>'content_hash_ok')::boolean) AS hashes_ok
FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM sample_pdus)) AS r;
SELECT room_id AS sample_room FROM roomserver.rooms WHERE room_version = '12' \gset
SELECT (SELECT count(*) FROM roomserver.events WHERE room_id = :'sample_room') AS events,
       (SELECT count(*) FROM (SELECT FROM roomserver.event_references WHERE room_id = :'sample_room' AND kind = 'prev'
                              GROUP BY referenced_event_id HAVING count(*) > 1) f) AS forks,
       (SELECT count(*) FROM (SELECT FROM roomserver.event_references WHERE room_id = :'sample_room' AND kind = 'prev'
                              GROUP BY event_id HAVING count(*) > 1) m) AS merges,
       (SELECT count(*) FROM roomserver.forward_extremities(:'sample_room')) AS forward_extremities,
       (SELECT count(*) FROM roomserver.current_state WHERE room_id = :'sample_room') AS current_state_entries;
\echo '   Its members now (view roomserver.room_members):'
SELECT user_id, membership FROM roomserver.room_members WHERE room_id = :'sample_room' ORDER BY user_id;
\echo '== 9. Every stored row is consistent: roomserver.check_integrity() lists no problem'
SELECT count(*) AS integrity_problems FROM roomserver.check_integrity();

-- The answers the demo explains; a wrong one fails the demo (psql stops, the script exits 3).
DO $$
DECLARE
    merge_id text := (SELECT event_id FROM room WHERE name = 'merge');
    backfill jsonb := roomserver.backfill('!lunch:a.example', ARRAY[merge_id], 10) -> 'pdus';
    forwards jsonb := roomserver.forwards_fill('!lunch:a.example', ARRAY[(SELECT event_id FROM room WHERE name = 'bob_joins')], 10) -> 'pdus';
    ids jsonb := roomserver.state_ids('!lunch:a.example', merge_id);
BEGIN
    IF (SELECT count(*) FROM roomserver.events WHERE room_id = '!lunch:a.example' AND NOT (rejected OR soft_failed OR outlier)) <> 8 THEN
        RAISE EXCEPTION 'demo: not all 8 events were accepted with state';
    END IF;
    IF EXISTS (SELECT 1 FROM room r, roomserver.state_at_event(r.event_id, after => true, types => ARRAY['m.room.topic'])
               WHERE r.name IN ('create', 'alice_joins', 'power_levels', 'join_rules', 'bob_joins')) THEN
        RAISE EXCEPTION 'demo: a topic before the fork';
    END IF;
    IF (SELECT array_agg(pg_temp.short(event_id)) FROM roomserver.state_at_event(merge_id, types => ARRAY['m.room.topic']))
       IS DISTINCT FROM ARRAY['topic_bob'] THEN
        RAISE EXCEPTION 'demo: the state before the merge should have topic_bob, the later of the two topics';
    END IF;
    IF jsonb_array_length(backfill) <> 8 OR pg_temp.short(roomserver.event_id_for(backfill->0, '10')) <> 'merge' THEN
        RAISE EXCEPTION 'demo: backfill should return all 8 events, the merge first';
    END IF;
    IF (SELECT array_agg(pg_temp.short(roomserver.event_id_for(p, '10')) ORDER BY n) FROM jsonb_array_elements(forwards) WITH ORDINALITY AS x(p, n))
       NOT IN (ARRAY['bob_joins', 'topic_alice', 'topic_bob', 'merge'], ARRAY['bob_joins', 'topic_bob', 'topic_alice', 'merge']) THEN
        RAISE EXCEPTION 'demo: forwards fill should return bob_joins, the two topics, then the merge';
    END IF;
    IF (SELECT array_agg(i ORDER BY i) FROM jsonb_array_elements_text(ids->'pdu_ids') i)
       IS DISTINCT FROM (SELECT array_agg(event_id ORDER BY event_id) FROM roomserver.state_at_event(merge_id)) THEN
        RAISE EXCEPTION 'demo: state_ids should list the state before the merge';
    END IF;
    IF (SELECT count(*) FROM roomserver.events e, roomserver.rooms r WHERE r.room_version = '12' AND e.room_id = r.room_id) <> 40 THEN
        RAISE EXCEPTION 'demo: the sample room should have 40 events';
    END IF;
    IF EXISTS (SELECT FROM roomserver.check_integrity()) THEN
        RAISE EXCEPTION 'demo: check_integrity() found problems';
    END IF;
END $$;
SQL

if [ "$KEEP" = 1 ]; then
    log "the cluster keeps running. Connect with:"
    echo "    psql -h $PGHOST -p $PGPORT -U postgres postgres"
    echo "Stop and remove it with:"
    if [ "$(id -u)" = 0 ]; then
        echo "    runuser -u postgres -- $PG_BIN/pg_ctl -D $DIR/data stop && rm -rf $DIR"
    else
        echo "    $PG_BIN/pg_ctl -D $DIR/data stop && rm -rf $DIR"
    fi
else
    log "done; the cluster is removed (use --keep to keep it)"
fi
