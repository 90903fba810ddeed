-- Benchmark: backfill, get_missing_events and forwards_fill with limit 100 from random points of
-- one loaded room, side by side in the same run with the same walk written as a naive
-- WITH RECURSIVE over prev_events (the whole ancestry, or descendancy, then sort and cut), both
-- building the PDUs with the same roomserver_internal.federation_pdus.
-- Then timestamp_to_event at the same points against a ranking of the room's events by distance.
-- Run by scripts/bench-federation.sh. psql variables: :size, :samples, :naive_samples.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET roomserver.server_name = 'bench.example';
SELECT setseed(0.42);

SELECT r.room_id, r.room_nid, max(e.depth) AS max_depth
FROM roomserver.rooms r JOIN roomserver.stored_events e ON e.room_nid = r.room_nid
GROUP BY r.room_id, r.room_nid \gset
SELECT set_config('bench.room_id', :'room_id', false) \g /dev/null

-- Random points at least 300 deep on either side, so that each walk can return 100 events.
CREATE TEMP TABLE points AS
SELECT x.event_id, row_number() OVER () AS i
FROM (SELECT e.event_id FROM roomserver.stored_events e
      WHERE e.room_nid = :room_nid AND e.depth BETWEEN 300 AND :max_depth - 300
      ORDER BY random() LIMIT :samples) x;

-- The naive walks: the transitive closure by WITH RECURSIVE, sorted and cut at the limit.
CREATE FUNCTION pg_temp.naive_backfill(room_id text, v text[], lim int) RETURNS jsonb LANGUAGE sql STABLE AS $$
    WITH RECURSIVE r AS (SELECT room_nid FROM roomserver.rooms WHERE rooms.room_id = $1),
    anc(nid) AS (
        SELECT e.event_nid FROM r JOIN roomserver.stored_events e ON e.room_nid = r.room_nid AND e.event_id = ANY ($2)
      UNION
        SELECT ed.target_nid FROM anc, r, roomserver.event_edges ed
        WHERE ed.room_nid = r.room_nid AND ed.event_nid = anc.nid AND ed.kind = 'p' AND ed.target_nid IS NOT NULL)
    SELECT roomserver_internal.transaction_body(roomserver_internal.federation_pdus(min(t.room_nid), COALESCE(array_agg(t.event_nid ORDER BY t.depth DESC, t.event_id COLLATE "C" DESC), '{}'), array_fill(true, ARRAY[count(*)::int])))
    FROM (SELECT e.room_nid, e.event_nid, e.depth, e.event_id
          FROM anc, r, roomserver.stored_events e WHERE e.room_nid = r.room_nid AND e.event_nid = anc.nid
          ORDER BY e.depth DESC, e.event_id COLLATE "C" DESC LIMIT $3) t
$$;
CREATE FUNCTION pg_temp.naive_forwards_fill(room_id text, v text[], lim int) RETURNS jsonb LANGUAGE sql STABLE AS $$
    WITH RECURSIVE r AS (SELECT room_nid FROM roomserver.rooms WHERE rooms.room_id = $1),
    des(nid) AS (
        SELECT e.event_nid FROM r JOIN roomserver.stored_events e ON e.room_nid = r.room_nid AND e.event_id = ANY ($2)
      UNION
        SELECT ed.event_nid FROM des, r, roomserver.event_edges ed
        WHERE ed.room_nid = r.room_nid AND ed.target_nid = des.nid AND ed.kind = 'p')
    SELECT roomserver_internal.transaction_body(roomserver_internal.federation_pdus(min(t.room_nid), COALESCE(array_agg(t.event_nid ORDER BY t.depth, t.event_id COLLATE "C"), '{}'), array_fill(true, ARRAY[count(*)::int])))
    FROM (SELECT e.room_nid, e.event_nid, e.depth, e.event_id
          FROM des, r, roomserver.stored_events e WHERE e.room_nid = r.room_nid AND e.event_nid = des.nid
          ORDER BY e.depth, e.event_id COLLATE "C" LIMIT $3) t
$$;
-- get_missing_events with nothing known (earliest empty): the ancestors minus the latest event.
CREATE FUNCTION pg_temp.naive_get_missing_events(room_id text, latest text[], lim int) RETURNS jsonb LANGUAGE sql STABLE AS $$
    WITH RECURSIVE r AS (SELECT room_nid FROM roomserver.rooms WHERE rooms.room_id = $1),
    start AS (SELECT e.event_nid FROM r JOIN roomserver.stored_events e ON e.room_nid = r.room_nid AND e.event_id = ANY ($2)),
    anc(nid) AS (
        SELECT ed.target_nid FROM start, r, roomserver.event_edges ed
        WHERE ed.room_nid = r.room_nid AND ed.event_nid = start.event_nid AND ed.kind = 'p' AND ed.target_nid IS NOT NULL
      UNION
        SELECT ed.target_nid FROM anc, r, roomserver.event_edges ed
        WHERE ed.room_nid = r.room_nid AND ed.event_nid = anc.nid AND ed.kind = 'p' AND ed.target_nid IS NOT NULL)
    SELECT jsonb_build_object('events', roomserver_internal.federation_pdus(min(t.room_nid), COALESCE(array_agg(t.event_nid ORDER BY t.depth, t.event_id COLLATE "C"), '{}'), array_fill(true, ARRAY[count(*)::int])))
    FROM (SELECT e.room_nid, e.event_nid, e.depth, e.event_id
          FROM anc, r, roomserver.stored_events e
          WHERE e.room_nid = r.room_nid AND e.event_nid = anc.nid AND e.event_nid NOT IN (SELECT event_nid FROM start)
          ORDER BY e.depth DESC, e.event_id COLLATE "C" DESC LIMIT $3) t
$$;

-- Runs `call` (with $1 = room_id, $2 = ARRAY[point]) for the first n points; returns the
-- milliseconds of each call, and a hash of the bodies without origin_server_ts (to compare).
CREATE FUNCTION pg_temp.timed(call text, n int, OUT ms float8[], OUT bodies text[]) LANGUAGE plpgsql AS $$
DECLARE
    p record;
    t0 timestamptz;
    body jsonb;
BEGIN
    ms := '{}'; bodies := '{}';
    FOR p IN SELECT event_id FROM points WHERE i <= n ORDER BY i LOOP
        t0 := clock_timestamp();
        EXECUTE call INTO body USING current_setting('bench.room_id'), ARRAY[p.event_id];
        ms := ms || (extract(epoch FROM clock_timestamp() - t0) * 1000)::float8;
        bodies := bodies || md5((body - 'origin_server_ts')::text);
    END LOOP;
END $$;

CREATE FUNCTION pg_temp.pct(xs float8[], q float8) RETURNS numeric LANGUAGE sql AS $$
    SELECT round(percentile_cont(q) WITHIN GROUP (ORDER BY x)::numeric, 2) FROM unnest(xs) x $$;

CREATE TEMP TABLE results (walk text, method text, calls int, median_ms numeric, p90_ms numeric, bodies text[]);
CREATE FUNCTION pg_temp.run(walk text, ours text, naive text, n int, naive_n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a record;
    b record;
BEGIN
    PERFORM pg_temp.timed(ours, n);            -- warm the cache for both
    PERFORM pg_temp.timed(naive, naive_n);
    a := pg_temp.timed(ours, n);
    b := pg_temp.timed(naive, naive_n);
    INSERT INTO results VALUES (walk, 'roomserver', n, pg_temp.pct(a.ms, 0.5), pg_temp.pct(a.ms, 0.9), a.bodies),
                               (walk, 'naive WITH RECURSIVE', naive_n, pg_temp.pct(b.ms, 0.5), pg_temp.pct(b.ms, 0.9), b.bodies);
END $$;

SELECT pg_temp.run('backfill', 'SELECT roomserver.backfill($1, $2, 100)', 'SELECT pg_temp.naive_backfill($1, $2, 100)', :samples, :naive_samples);
SELECT pg_temp.run('get_missing_events', 'SELECT roomserver.get_missing_events($1, ''{}'', $2, 100)', 'SELECT pg_temp.naive_get_missing_events($1, $2, 100)', :samples, :naive_samples);
SELECT pg_temp.run('forwards_fill', 'SELECT roomserver.forwards_fill($1, $2, 100)', 'SELECT pg_temp.naive_forwards_fill($1, $2, 100)', :samples, :naive_samples);
-- The same walks for a requesting server (history visibility read for every returned event).
SELECT pg_temp.run('backfill, requesting_server set', 'SELECT roomserver.backfill($1, $2, 100, ''s1.example'')', 'SELECT pg_temp.naive_backfill($1, $2, 100)', :samples, 0);

-- timestamp_to_event (one probe of stored_events_room_ts) against the naive query: the room's
-- events on that side of the time ranked by their distance from it, which no index orders.
-- The time is each point's origin_server_ts, moved off it by 1 ms.
SELECT pg_temp.run('timestamp_to_event, dir f',
    'SELECT roomserver.timestamp_to_event($1, (SELECT p.origin_server_ts FROM roomserver.stored_events p WHERE p.event_id = $2[1]) - 1, ''f'')',
    'SELECT jsonb_build_object(''event_id'', e.event_id, ''origin_server_ts'', e.origin_server_ts)
     FROM (SELECT p.room_nid, p.origin_server_ts - 1 AS ts FROM roomserver.stored_events p WHERE p.event_id = $2[1]) x
     JOIN roomserver.rooms r ON r.room_id = $1
     JOIN roomserver.stored_events e ON e.room_nid = r.room_nid
     WHERE e.origin_server_ts >= x.ts AND NOT e.outlier AND e.rejection IS NULL
     ORDER BY abs(e.origin_server_ts - x.ts), e.depth, e.event_nid LIMIT 1', :samples, :samples);
SELECT pg_temp.run('timestamp_to_event, dir b',
    'SELECT roomserver.timestamp_to_event($1, (SELECT p.origin_server_ts FROM roomserver.stored_events p WHERE p.event_id = $2[1]) + 1, ''b'')',
    'SELECT jsonb_build_object(''event_id'', e.event_id, ''origin_server_ts'', e.origin_server_ts)
     FROM (SELECT p.room_nid, p.origin_server_ts + 1 AS ts FROM roomserver.stored_events p WHERE p.event_id = $2[1]) x
     JOIN roomserver.rooms r ON r.room_id = $1
     JOIN roomserver.stored_events e ON e.room_nid = r.room_nid
     WHERE e.origin_server_ts <= x.ts AND NOT e.outlier AND e.rejection IS NULL
     ORDER BY abs(e.origin_server_ts - x.ts), e.depth DESC, e.event_nid DESC LIMIT 1', :samples, :samples);

\pset footer off
SELECT :size AS events, o.walk, o.median_ms AS ours_median_ms, o.p90_ms AS ours_p90_ms,
       n.median_ms AS naive_median_ms, round(n.median_ms / NULLIF(o.median_ms, 0), 1) AS speedup,
       o.bodies[1:n.calls] = n.bodies AS same_result
FROM results o JOIN results n ON n.walk = o.walk AND n.method <> o.method
WHERE o.method = 'roomserver' ORDER BY o.walk;
