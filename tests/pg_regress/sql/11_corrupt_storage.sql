-- Storage that does not decode is the server's fault, not the caller's: XX001 (data_corrupted,
-- HTTP 500) naming the table and column, never a silent 0 or "" and never 22000 (400).
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
SELECT regress.load_demo_room() AS demo_room_events;
CREATE TABLE regress.saved_blocks AS SELECT * FROM roomserver.state_blocks;
CREATE TABLE regress.saved_snapshots AS SELECT * FROM roomserver.state_snapshots;
CREATE TABLE regress.saved_chains AS SELECT room_nid, event_nid, auth_chain FROM roomserver.stored_events;
-- Stored rows never change, so a backend keeps what it has read: each case starts in a new
-- session, which reads the damaged rows.

-- State blocks whose entries are not blocks.
UPDATE roomserver.state_blocks SET entries = '\xff'::bytea;
\c
SELECT * FROM regress.demo_room() \gset
SELECT regress.try(format('SELECT * FROM roomserver.state_at_event(%L)', :'merge_id')) AS state_at_event;
SELECT regress.try(format('SELECT roomserver.state_ids(%L, %L)', '!demo:example.org', :'merge_id')) AS state_ids;
UPDATE roomserver.state_blocks b SET entries = s.entries FROM regress.saved_blocks s
WHERE b.room_nid = s.room_nid AND b.block_nid = s.block_nid;

-- Snapshots whose state hash is not 32 bytes.
UPDATE roomserver.state_snapshots SET state_hash = substr(state_hash, 1, 31);
\c
SELECT * FROM regress.demo_room() \gset
SELECT regress.try(format('SELECT * FROM roomserver.state_at_event(%L)', :'merge_id')) AS state_at_event;
UPDATE roomserver.state_snapshots t SET state_hash = s.state_hash FROM regress.saved_snapshots s
WHERE t.room_nid = s.room_nid AND t.snapshot_nid = s.snapshot_nid;

-- Stored auth chains that are not NID sets: admitting an event whose auth events have them.
UPDATE roomserver.stored_events SET auth_chain = '\xffffffffffffffffffffff'::bytea WHERE auth_chain IS NOT NULL;
\c
SELECT * FROM regress.demo_room() \gset
SELECT regress.try(format('SELECT roomserver.ingest_event(%L::jsonb)', regress.sealed(jsonb_build_object(
    'type', 'm.room.message', 'room_id', '!demo:example.org', 'sender', '@alice:example.org',
    'content', '{"body": "after the damage"}'::jsonb, 'depth', 6, 'origin_server_ts', 1700000009000,
    'prev_events', jsonb_build_array(:'merge_id'), 'auth_events', jsonb_build_array(:'create_id', :'alice_join_id'))))) AS ingest_event;
UPDATE roomserver.stored_events e SET auth_chain = s.auth_chain FROM regress.saved_chains s
WHERE e.room_nid = s.room_nid AND e.event_nid = s.event_nid;

-- Repaired, the same calls work again.
\c
SELECT * FROM regress.demo_room() \gset
SELECT count(*) > 0 AS state_rows FROM roomserver.state_at_event(:'merge_id');
SELECT count(*) AS integrity_problems FROM roomserver.check_integrity();
