-- Benchmark: state storage on a generated room (roomgen), side by side with baselines built from
-- the same events in the same run. Run by scripts/bench-state.sh.
-- psql variables: :file (roomgen --format copy output), :samples (random events per read test).
--
-- Baselines:
--   flat        a (room, type, state_key) -> event table of one state, primary key on all three:
--               the fastest possible single-key probe and full scan, but one state only;
--   full state  one row per (event, type, state_key) for every event: what "state at every
--               event" costs without sharing (computed from each snapshot's state_size, since
--               materialising it would take 10^10 rows);
--   delta chain Synapse's layout: a state group per distinct state, storing its delta to a
--               parent group, or the full state when the chain to the last full one reaches 100
--               hops (MAX_STATE_DELTA_HOPS), read back with a WITH RECURSIVE walk up the chain.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_roomserver;

CREATE TABLE results (what text, method text, value numeric, unit text);

-- 1. Load the room: batches of 1,000 PDUs, each batch its own transaction.
CREATE TABLE room_pdus (n bigserial PRIMARY KEY, pdu jsonb NOT NULL);
-- (psql does not expand variables in \copy itself: the command is built in a variable.)
\set load_room '\\copy room_pdus (pdu) FROM ' :'file'
:load_room
SELECT count(*) AS pdus, count(*) FILTER (WHERE pdu ? 'state_key') AS state_pdus FROM room_pdus \gset
SELECT clock_timestamp() AS t0 \gset
DO $$
DECLARE
    lo bigint := 1;
    total bigint := (SELECT max(n) FROM room_pdus);
BEGIN
    WHILE lo <= total LOOP
        PERFORM count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM room_pdus WHERE n BETWEEN lo AND lo + 999));
        COMMIT;
        lo := lo + 1000;
    END LOOP;
END $$;
SELECT clock_timestamp() AS t1 \gset
INSERT INTO results VALUES
  ('load the generated room', 'roomserver.ingest_events, batches of 1000', round(:pdus / extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz)), 'events/s'),
  ('load the generated room', 'the same, state events only (state events / total time)', round(:state_pdus / extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz)), 'state events/s');
VACUUM ANALYZE;

SELECT room_nid, current_state FROM roomserver.rooms LIMIT 1 \gset
SELECT count(*) AS events, count(*) FILTER (WHERE rejection IS NOT NULL) AS rejected, count(DISTINCT state_after) AS distinct_states,
       (SELECT state_size FROM roomserver.state_snapshots WHERE room_nid = :room_nid AND snapshot_nid = :current_state) AS current_state_size,
       (SELECT count(*) FROM roomserver.room_members WHERE membership = 'join') AS joined
FROM roomserver.stored_events;

-- 2. Ingest of state events into the loaded room: a chain of custom state events by the creator
--    over 20,000 state keys, on top of the forward extremities (its first event merges them).
SELECT e.sender AS creator, e.event_id AS create_id FROM roomserver.events e WHERE e.type = 'm.room.create' \gset
SELECT event_id AS pl_id FROM roomserver.current_state WHERE type = 'm.room.power_levels' \gset
SELECT event_id AS creator_member_id FROM roomserver.current_state WHERE type = 'm.room.member' AND state_key = :'creator' \gset
SELECT room_id, room_version FROM roomserver.rooms \gset
SELECT max(depth) AS max_depth FROM roomserver.stored_events \gset
SELECT set_config('bench.room_id', :'room_id', false), set_config('bench.room_version', :'room_version', false),
       set_config('bench.creator', :'creator', false), set_config('bench.create_id', :'create_id', false),
       set_config('bench.pl_id', :'pl_id', false), set_config('bench.creator_member_id', :'creator_member_id', false),
       set_config('bench.max_depth', :'max_depth', false) \g /dev/null
CREATE TABLE state_chain (n int PRIMARY KEY, pdu jsonb NOT NULL);
DO $$
DECLARE
    prev jsonb := (SELECT jsonb_agg(x ORDER BY x) FROM roomserver.forward_extremities(current_setting('bench.room_id')) x);
    p jsonb;
    rv text := current_setting('bench.room_version');
BEGIN
    FOR i IN 1..20000 LOOP
        p := jsonb_build_object('type', 'org.example.status', 'state_key', 'status-' || (i * 7919 % 20000),
            'room_id', current_setting('bench.room_id'), 'sender', current_setting('bench.creator'),
            'content', jsonb_build_object('status', 'status number ' || i),
            'depth', current_setting('bench.max_depth')::bigint + i, 'origin_server_ts', 1800000000000 + i,
            'prev_events', prev,
            'auth_events', jsonb_build_array(current_setting('bench.create_id'), current_setting('bench.pl_id'), current_setting('bench.creator_member_id')));
        IF rv IN ('1', '2') THEN
            RAISE EXCEPTION 'the benchmark room must be version 3 or later';
        END IF;
        p := p || jsonb_build_object('hashes', jsonb_build_object('sha256', roomserver.content_hash(p)));
        INSERT INTO state_chain VALUES (i, p);
        prev := jsonb_build_array(roomserver.event_id_for(p, rv));
    END LOOP;
END $$;
SELECT clock_timestamp() AS t0 \gset
DO $$
BEGIN
    FOR lo IN 1..20000 BY 1000 LOOP
        PERFORM count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM state_chain WHERE n BETWEEN lo AND lo + 999));
        COMMIT;
    END LOOP;
END $$;
SELECT clock_timestamp() AS t1 \gset
INSERT INTO results VALUES
  ('ingest of state events into the loaded room', 'roomserver.ingest_events, batches of 1000 (20,000 events)', round(20000 / extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz)), 'state events/s');
SELECT count(*) FILTER (WHERE rejection IS NULL AND soft_failure IS NULL) AS chain_accepted FROM roomserver.stored_events e
WHERE e.event_type_nid = roomserver.event_type_nid('org.example.status');
VACUUM ANALYZE;
SELECT room_nid, current_state FROM roomserver.rooms LIMIT 1 \gset

-- 3. Storage.
-- The flat table: the current state, one row per entry, with its primary key.
CREATE TABLE flat_state (room_nid bigint, type_nid bigint, state_key_nid bigint, event_nid bigint,
                         PRIMARY KEY (room_nid, type_nid, state_key_nid));
INSERT INTO flat_state SELECT :room_nid, s.* FROM roomserver.snapshot_entries(:room_nid, :current_state) s;
-- A row of "full state per event" (the event's NID added to the flat row and its key), measured
-- on the same entries.
CREATE TABLE full_state_rows (room_nid bigint, event_nid bigint, type_nid bigint, state_key_nid bigint, state_event_nid bigint,
                              PRIMARY KEY (room_nid, event_nid, type_nid, state_key_nid));
INSERT INTO full_state_rows SELECT room_nid, 1, type_nid, state_key_nid, event_nid FROM flat_state;
VACUUM ANALYZE flat_state, full_state_rows;
SELECT pg_total_relation_size('full_state_rows')::numeric / count(*) AS full_row_bytes FROM full_state_rows \gset

-- The delta chain: each distinct state (snapshot) is a group; its parent is the state it was
-- made from (the state before a state event, or the first prev event's state at a merge) and its
-- delta what differs from it (roomserver.snapshot_diff).
CREATE TABLE group_edges (group_id bigint PRIMARY KEY, prev_group bigint);
INSERT INTO group_edges
SELECT DISTINCT ON (child) child, parent FROM (
    SELECT e.event_nid AS at, e.state_after AS child, e.state_before AS parent
    FROM roomserver.stored_events e WHERE e.state_after <> e.state_before
    UNION ALL
    SELECT e.event_nid, e.state_before, p.state_after
    FROM roomserver.stored_events e
    JOIN roomserver.event_edges ed ON ed.room_nid = e.room_nid AND ed.event_nid = e.event_nid AND ed.kind = 'p' AND ed.position = 0
    JOIN roomserver.stored_events p ON p.room_nid = ed.room_nid AND p.event_nid = ed.target_nid
    WHERE e.state_before <> p.state_after AND NOT p.outlier
) x ORDER BY child, at;
-- Roots: the room's first (empty) state, and parents made by no event (a current-state
-- resolution whose result a later merge reproduced).
INSERT INTO group_edges
SELECT DISTINCT x FROM (SELECT prev_group FROM group_edges UNION ALL SELECT state_before FROM roomserver.stored_events WHERE NOT outlier) AS r(x)
WHERE x IS NOT NULL AND NOT EXISTS (SELECT 1 FROM group_edges g WHERE g.group_id = r.x);
CREATE INDEX ON group_edges (prev_group);
ANALYZE group_edges;
-- One index probe per step of the walk (a hash join would rebuild a hash per step).
SET enable_hashjoin = off;
SET enable_mergejoin = off;
-- Hops from the last full group: Synapse stores a full group once the chain reaches 100.
CREATE TABLE group_hops AS
WITH RECURSIVE walk(group_id, hops) AS (
    SELECT group_id, 0 FROM group_edges WHERE prev_group IS NULL
    UNION ALL
    SELECT g.group_id, CASE WHEN w.hops >= 100 THEN 0 ELSE w.hops + 1 END
    FROM walk w JOIN group_edges g ON g.prev_group = w.group_id
)
SELECT * FROM walk;
CREATE UNIQUE INDEX ON group_hops (group_id);
RESET enable_hashjoin;
RESET enable_mergejoin;
SELECT count(*) AS groups, (SELECT count(*) FROM group_hops) AS reached FROM group_edges;
CREATE TABLE state_groups_state (state_group bigint, type_nid bigint, state_key_nid bigint, event_nid bigint);
INSERT INTO state_groups_state
SELECT g.group_id, d.type_nid, d.state_key_nid, d.event_nid
FROM group_edges g JOIN group_hops h USING (group_id)
CROSS JOIN LATERAL roomserver.snapshot_diff(:room_nid, g.prev_group, g.group_id) d
WHERE g.prev_group IS NOT NULL AND h.hops > 0;
CREATE INDEX ON state_groups_state (state_group, type_nid, state_key_nid);
-- Full groups: their rows are counted (state_size each); only the ones the sampled reads below
-- reach are materialised.
SELECT count(*) AS delta_rows FROM state_groups_state \gset
SELECT sum(s.state_size) AS full_group_rows, count(*) AS full_groups
FROM group_hops h JOIN roomserver.state_snapshots s ON s.room_nid = :room_nid AND s.snapshot_nid = h.group_id WHERE h.hops = 0 \gset
SELECT pg_total_relation_size('state_groups_state')::numeric / greatest(count(*), 1) AS delta_row_bytes FROM state_groups_state \gset

INSERT INTO results
SELECT 'state storage, bytes', 'pg_roomserver: state_blocks + state_snapshots + 16 bytes/event of snapshot columns',
       pg_total_relation_size('roomserver.state_blocks') + pg_total_relation_size('roomserver.state_snapshots') + 16 * (SELECT count(*) FROM roomserver.stored_events), 'bytes'
UNION ALL
SELECT 'state storage, bytes', 'full state per event (sum of state sizes x ' || round(:full_row_bytes) || ' bytes/row, measured)',
       round((SELECT sum(s.state_size) FROM roomserver.stored_events e JOIN roomserver.state_snapshots s ON s.room_nid = e.room_nid AND s.snapshot_nid = e.state_after) * :full_row_bytes), 'bytes'
UNION ALL
SELECT 'state storage, bytes', 'delta chain, 100 hops (' || :delta_rows || ' delta rows + ' || :full_groups || ' full groups of ' || :full_group_rows || ' rows, x ' || round(:delta_row_bytes) || ' bytes/row)',
       round((:delta_rows + :full_group_rows) * :delta_row_bytes) + pg_total_relation_size('group_edges'), 'bytes'
UNION ALL
-- Not state, but kept on ingest beside it: stored auth chains of the state events.
SELECT 'auth chain index, bytes', 'stored_events.auth_chain (' || count(auth_chain) || ' chains, mean ' || round(avg(pg_column_size(auth_chain))) || ' bytes stored)',
       sum(pg_column_size(auth_chain)), 'bytes' FROM roomserver.stored_events;

-- 4. Reads at random events (the same sample for every method).
SELECT setseed(0.42);
CREATE TABLE sample AS
SELECT e.event_nid, e.state_before AS snap, s.state_size, e.event_id
FROM roomserver.stored_events e JOIN roomserver.state_snapshots s ON s.room_nid = e.room_nid AND s.snapshot_nid = e.state_before
WHERE NOT e.outlier ORDER BY random() LIMIT :samples;
-- A key per sampled event: a member of the state at that event (looked up by every method).
ALTER TABLE sample ADD COLUMN type_nid bigint, ADD COLUMN state_key_nid bigint;
UPDATE sample SET (type_nid, state_key_nid) = (SELECT f.type_nid, f.state_key_nid FROM flat_state f
    WHERE f.type_nid = roomserver.event_type_nid('m.room.member') OFFSET (sample.event_nid % 1000) LIMIT 1);
-- The full groups the sampled chains start from, materialised for the walk.
INSERT INTO state_groups_state
WITH RECURSIVE chain(start, g) AS (
    SELECT snap, snap FROM sample
    UNION ALL
    SELECT c.start, e.prev_group FROM chain c JOIN group_edges e ON e.group_id = c.g
    JOIN group_hops h ON h.group_id = c.g WHERE h.hops > 0
)
SELECT DISTINCT ON (c.g, x.type_nid, x.state_key_nid) c.g, x.type_nid, x.state_key_nid, x.event_nid
FROM (SELECT DISTINCT g FROM chain) c JOIN group_hops h ON h.group_id = c.g AND h.hops = 0
CROSS JOIN LATERAL roomserver.snapshot_entries(:room_nid, c.g) x;
ANALYZE state_groups_state;

-- Runs `statement` (with $1 = the sampled snapshot, $2/$3 = the key, $4 = the state size,
-- $5 = the event ID) for every sampled event, or for the first `max_events` of them; returns
-- the mean milliseconds per call.
CREATE FUNCTION pg_temp.timed(statement text, max_events int DEFAULT NULL) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    r record;
    started timestamptz;
    spent interval := interval '0';
    calls int := 0;
    k bigint;
BEGIN
    FOR r IN SELECT * FROM sample ORDER BY event_nid LIMIT max_events LOOP
        started := clock_timestamp();
        EXECUTE statement INTO k USING r.snap, r.type_nid, r.state_key_nid, r.state_size, r.event_id;
        spent := spent + (clock_timestamp() - started);
        calls := calls + 1;
    END LOOP;
    RETURN round(extract(epoch FROM spent) * 1000 / calls, 4);
END $$;

-- Single key. Run once to warm the buffers (and the backend's block cache) for every method,
-- then measured.
SELECT pg_temp.timed(format('SELECT event_nid FROM flat_state WHERE room_nid = %s AND type_nid = $2 AND state_key_nid = $3', :room_nid)) \g /dev/null
SELECT pg_temp.timed(format('SELECT l.event_nid FROM roomserver.snapshot_lookup(%s, $1, ARRAY[$2], ARRAY[$3]) l', :room_nid)) AS cold_lookup_ms \gset
INSERT INTO results VALUES
  ('single key at a random event', 'flat table: one primary key probe (current state only)',
   pg_temp.timed(format('SELECT event_nid FROM flat_state WHERE room_nid = %s AND type_nid = $2 AND state_key_nid = $3', :room_nid)), 'ms/call'),
  ('single key at a random event', 'roomserver.snapshot_lookup (first pass, blocks read and cached)', :cold_lookup_ms, 'ms/call'),
  ('single key at a random event', 'roomserver.snapshot_lookup',
   pg_temp.timed(format('SELECT l.event_nid FROM roomserver.snapshot_lookup(%s, $1, ARRAY[$2], ARRAY[$3]) l', :room_nid)), 'ms/call'),
  ('single key at a random event', 'delta chain: WITH RECURSIVE walk, then the key',
   pg_temp.timed($q$WITH RECURSIVE chain(g) AS (SELECT $1 UNION ALL SELECT e.prev_group FROM chain c JOIN group_edges e ON e.group_id = c.g
                                                JOIN group_hops h ON h.group_id = c.g WHERE h.hops > 0)
                  SELECT s.event_nid FROM state_groups_state s WHERE s.state_group IN (SELECT g FROM chain) AND s.type_nid = $2 AND s.state_key_nid = $3
                  ORDER BY s.state_group DESC LIMIT 1$q$), 'ms/call');

-- Full state.
SELECT pg_temp.timed(format('SELECT count(*) FROM roomserver.snapshot_entries(%s, $1)', :room_nid)) AS cold_full_ms \gset
INSERT INTO results VALUES
  ('full state at a random event', 'flat table: scan of as many rows as the state has',
   pg_temp.timed(format('SELECT count(*) FROM (SELECT type_nid, state_key_nid, event_nid FROM flat_state WHERE room_nid = %s LIMIT $4) s', :room_nid)), 'ms/call'),
  ('full state at a random event', 'roomserver.snapshot_entries (one row per entry, first pass)', :cold_full_ms, 'ms/call'),
  ('full state at a random event', 'roomserver.snapshot_entries (one row per entry)',
   pg_temp.timed(format('SELECT count(*) FROM roomserver.snapshot_entries(%s, $1)', :room_nid)), 'ms/call'),
  ('full state at a random event', 'roomserver.snapshot_state_arrays (the state as three arrays)',
   pg_temp.timed(format('SELECT cardinality(type_nids) FROM roomserver.snapshot_state_arrays(%s, $1)', :room_nid)), 'ms/call'),
  ('full state at a random event', 'delta chain: WITH RECURSIVE walk (Synapse''s query)',
   pg_temp.timed($q$WITH RECURSIVE chain(g) AS (SELECT $1 UNION ALL SELECT e.prev_group FROM chain c JOIN group_edges e ON e.group_id = c.g
                                                JOIN group_hops h ON h.group_id = c.g WHERE h.hops > 0)
                  SELECT count(*) FROM (SELECT DISTINCT ON (type_nid, state_key_nid) event_nid FROM state_groups_state
                                        WHERE state_group IN (SELECT g FROM chain) ORDER BY type_nid, state_key_nid, state_group DESC) s
                  WHERE s.event_nid <> 0$q$), 'ms/call');

-- Sanity: every method read the same state for the sampled events.
SELECT count(*) FILTER (WHERE ours <> chain) AS full_state_disagreements, count(*) AS compared FROM (
    SELECT (SELECT count(*) FROM roomserver.snapshot_entries(:room_nid, s.snap)) AS ours,
           (WITH RECURSIVE chain(g) AS (SELECT s.snap UNION ALL SELECT e.prev_group FROM chain c JOIN group_edges e ON e.group_id = c.g
                                        JOIN group_hops h ON h.group_id = c.g WHERE h.hops > 0)
            SELECT count(*) FROM (SELECT DISTINCT ON (type_nid, state_key_nid) event_nid FROM state_groups_state
                                  WHERE state_group IN (SELECT g FROM chain) ORDER BY type_nid, state_key_nid, state_group DESC) x
            WHERE x.event_nid <> 0) AS chain
    FROM (SELECT * FROM sample LIMIT 20) s) c;

-- 5. The federation bodies /state_ids and /state at a few random events (each builds a response
--    of the whole state plus its auth chain: tens of MB of JSON for /state), against the same
--    bodies built the straightforward way: the chain as a DISTINCT over every state event's
--    unnested chain, and one event_pdu call per PDU.
SELECT room_id AS bench_room FROM roomserver.rooms WHERE room_nid = :room_nid \gset
SELECT pg_temp.timed(format('SELECT length(roomserver.state_ids(%L, $5)::text)', :'bench_room'), 5) \g /dev/null
INSERT INTO results VALUES
  ('/state_ids body at a random event', 'roomserver.state_ids',
   pg_temp.timed(format('SELECT length(roomserver.state_ids(%L, $5)::text)', :'bench_room'), 5), 'ms/call'),
  ('/state_ids body at a random event', 'the same body, auth chain as DISTINCT over the unnested stored chains',
   pg_temp.timed(format($q$SELECT length(jsonb_build_object(
        'pdu_ids', (SELECT jsonb_agg(x.event_id ORDER BY x.event_nid) FROM roomserver.snapshot_entries(%1$s, $1) s
                    JOIN roomserver.stored_events x ON x.room_nid = %1$s AND x.event_nid = s.event_nid),
        'auth_chain_ids', (SELECT jsonb_agg(x.event_id ORDER BY x.event_nid) FROM (
                    SELECT DISTINCT c.n FROM roomserver.snapshot_entries(%1$s, $1) s
                    JOIN roomserver.stored_events e ON e.room_nid = %1$s AND e.event_nid = s.event_nid
                    CROSS JOIN LATERAL unnest(roomserver.nid_set_decode(e.auth_chain)) AS c(n)) c
                    JOIN roomserver.stored_events x ON x.room_nid = %1$s AND x.event_nid = c.n))::text)$q$, :room_nid), 5), 'ms/call'),
  ('/state body at a random event', 'roomserver.state',
   pg_temp.timed(format('SELECT length(roomserver.state(%L, $5)::text)', :'bench_room'), 5), 'ms/call'),
  ('/state body at a random event', 'the same body, one roomserver.event_pdu call per PDU',
   pg_temp.timed(format($q$SELECT length(jsonb_build_object(
        'pdus', (SELECT jsonb_agg(roomserver.event_pdu(%1$s, s.event_nid) ORDER BY s.event_nid) FROM roomserver.snapshot_entries(%1$s, $1) s),
        'auth_chain', (SELECT jsonb_agg(roomserver.event_pdu(%1$s, c.event_nid) ORDER BY c.event_nid) FROM roomserver.state_auth_chain(%1$s, $1) c))::text)$q$, :room_nid), 5), 'ms/call');

SELECT what, method, value, unit,
       CASE WHEN what LIKE 'state storage%' THEN round(value / min(value) FILTER (WHERE method LIKE 'pg_roomserver%') OVER (PARTITION BY what), 1)
            WHEN unit = 'ms/call' THEN round(value / min(value) FILTER (WHERE method LIKE 'roomserver.%' AND method NOT LIKE '%first pass%' AND method NOT LIKE 'the same body%') OVER (PARTITION BY what), 2)
       END AS vs_ours
FROM results ORDER BY what, value;
SELECT pg_size_pretty(pg_database_size(current_database())) AS database_size;
