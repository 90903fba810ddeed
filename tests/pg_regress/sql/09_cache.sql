-- The backend's cache of snapshots, blocks, auth chains and resolutions never answers with what
-- the tables no longer say, whatever the same backend did: ROLLBACK, ROLLBACK TO SAVEPOINT,
-- TRUNCATE ... RESTART IDENTITY (NIDs reused), DROP / CREATE EXTENSION. In a database of its own.
CREATE DATABASE pg_roomserver_cache;
\c pg_roomserver_cache
-- The setup there: the extension, and the PDUs of the sample room (regress.sample) and of the
-- first 60 events of a generated forked room (regress.room5k), not yet ingested.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
-- The state a fresh backend reads, as one line per room.
CREATE FUNCTION pg_temp.states() RETURNS TABLE (room_id text, entries bigint, digest text) LANGUAGE sql AS $$
    SELECT c.room_id, count(*), md5(string_agg(c.type || '|' || c.state_key || '|' || c.event_id, ',' ORDER BY c.type, c.state_key))
    FROM roomserver.current_state c GROUP BY c.room_id ORDER BY c.room_id
$$;

-- SET ROLE in a backend that has the state cached: a role that may run the function but not
-- read the tables gets the tables' 42501, not the cached rows.
SELECT count(*) AS sample_loaded FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.sample));
SELECT room_nid, current_state AS snap FROM roomserver.rooms \gset
CREATE ROLE regress_cache_nosel;
GRANT USAGE ON SCHEMA roomserver TO regress_cache_nosel;
GRANT EXECUTE ON FUNCTION roomserver.snapshot_entries(bigint, bigint) TO regress_cache_nosel;
SELECT count(*) AS as_owner FROM roomserver.snapshot_entries(:room_nid, :snap);
SET ROLE regress_cache_nosel;
\set ON_ERROR_STOP 0
SELECT count(*) AS as_role_without_select FROM roomserver.snapshot_entries(:room_nid, :snap);
\set ON_ERROR_STOP 1
RESET ROLE;
DROP OWNED BY regress_cache_nosel;
DROP ROLE regress_cache_nosel;
TRUNCATE roomserver.rooms, roomserver.event_state_keys, roomserver.stored_events, roomserver.event_edges, roomserver.event_redactions,
         roomserver.state_blocks, roomserver.state_snapshots, roomserver.extremities RESTART IDENTITY;

-- A whole transaction rolled back: its events and states are gone, and the cache forgets them.
BEGIN;
SELECT count(*) AS sample_loaded FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.sample));
SELECT count(*) AS rooms_inside FROM pg_temp.states();
ROLLBACK;
SELECT count(*) AS rooms_after_rollback FROM pg_temp.states();

-- Room A, read (cached), then a savepoint that adds the sample room and is rolled back.
SELECT count(*) AS room_loaded FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.room5k));
CREATE TEMP TABLE a_state AS SELECT * FROM pg_temp.states();
BEGIN;
SAVEPOINT s;
SELECT count(*) AS sample_loaded FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.sample));
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT (SELECT string_agg(digest, ',' ORDER BY room_id) FROM pg_temp.states()) = (SELECT string_agg(digest, ',' ORDER BY room_id) FROM a_state) AS same_after_savepoint;

-- TRUNCATE with RESTART IDENTITY: the sample room now gets the NIDs room A had. The cache must
-- not hand out room A's blocks for them.
TRUNCATE roomserver.rooms, roomserver.event_state_keys, roomserver.stored_events, roomserver.event_edges, roomserver.event_redactions,
         roomserver.state_blocks, roomserver.state_snapshots, roomserver.extremities RESTART IDENTITY;
SELECT count(*) AS sample_loaded FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.sample));
CREATE TEMP TABLE sample_state AS SELECT * FROM pg_temp.states();
SELECT room_id LIKE '!%' AS sample_room, entries FROM sample_state;
SELECT count(*) AS problems FROM roomserver.check_integrity();

-- DROP and CREATE EXTENSION in the same backend: the same again from nothing.
DROP EXTENSION pg_roomserver;
CREATE EXTENSION pg_roomserver;
SELECT count(*) AS sample_loaded FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.sample));
SELECT (SELECT string_agg(digest, ',' ORDER BY room_id) FROM pg_temp.states()) = (SELECT string_agg(digest, ',' ORDER BY room_id) FROM sample_state) AS same_as_before;
\c
-- A new backend agrees with what the old one read.
SELECT c.room_id LIKE '!%' AS sample_room, count(*) AS entries FROM roomserver.current_state c GROUP BY c.room_id;
\c pg_roomserver_regress
DROP DATABASE pg_roomserver_cache;
