-- What a DBA relies on: a rolled-back savepoint leaves nothing behind, the backend's cache never
-- answers a role the tables would refuse, functions planted on the search_path never run
-- inside ours, bad input of any shape is a documented SQLSTATE (never XX000), and
-- check_integrity() looks at the state tables too.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
\set VERBOSITY default

-- The room version 10 room 03_ingest builds (!demo:example.org), as 03_ingest leaves it: room
-- NID 1, whose state the cache and search_path checks below read.
SELECT regress.load_demo_room() AS demo_room_events;
-- The first 60 events of a generated forked room (roomgen --seed 7 --version 11 --members 200
-- --servers 10 --events 5000 --fork-every 50 --fork-width 3 --fork-depth 4 --churn 0.2), and a
-- message whose prev events are the forward extremity and an older event: its state before is a
-- new resolution of two committed states (regress.room5k and regress.mprime: setup/setup.sql
-- reads tests/fixtures/room5k_first60.jsonl and savepoint_mprime.json).
SELECT count(*) AS loaded FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM regress.room5k));
SELECT pdu AS mprime FROM regress.mprime \gset

-- Ingest inside a savepoint and roll back to it, then inside a PL/pgSQL block whose EXCEPTION
-- clause undoes it, then for real: the last ingest must not reuse the snapshot the rolled-back
-- ones created (the backend had memoised the resolution).
BEGIN;
SAVEPOINT s;
SELECT (roomserver.ingest_event(:'mprime') ->> 'duplicate')::boolean AS savepoint_try_duplicate;
ROLLBACK TO SAVEPOINT s;
DO $$
BEGIN
    BEGIN
        PERFORM roomserver.ingest_event(pdu) FROM regress.mprime;
        RAISE EXCEPTION 'undo' USING ERRCODE = 'P0001';
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
END $$;
SELECT (roomserver.ingest_event(:'mprime') ->> 'duplicate')::boolean AS stored_duplicate;
COMMIT;
SELECT count(*) AS problems FROM roomserver.check_integrity();
SELECT roomserver.event_id_for(:'mprime', '11') AS mprime_id \gset
\c
-- A new backend (nothing cached) reads the state the event was stored with.
SELECT count(*) > 0 AS has_state FROM roomserver.state_at_event(:'mprime_id');
SELECT count(*) > 0 AS has_current_state FROM roomserver.current_state;

-- check_integrity() covers the state tables: rows removed behind their users' backs, one at a time.
BEGIN;
SAVEPOINT s;
DELETE FROM roomserver.state_snapshots s USING roomserver.stored_events e
WHERE e.event_id = :'mprime_id' AND s.room_nid = e.room_nid AND s.snapshot_nid = e.state_before;
SELECT DISTINCT problem FROM roomserver.check_integrity() ORDER BY problem;
ROLLBACK TO SAVEPOINT s;
DELETE FROM roomserver.state_blocks b USING roomserver.rooms r, roomserver.state_snapshots s
WHERE s.room_nid = r.room_nid AND s.snapshot_nid = r.current_state AND b.room_nid = r.room_nid AND b.block_nid = s.block_nids[1];
SELECT DISTINCT problem FROM roomserver.check_integrity() ORDER BY problem;
ROLLBACK TO SAVEPOINT s;
DELETE FROM roomserver.event_edges x USING roomserver.stored_events e WHERE e.event_id = :'mprime_id' AND x.room_nid = e.room_nid AND x.event_nid = e.event_nid;
DELETE FROM roomserver.stored_events WHERE event_id = :'mprime_id';
SELECT DISTINCT problem FROM roomserver.check_integrity() ORDER BY problem;
ROLLBACK;

-- The cache answers without SQL, yet a role that may run the function but not read the
-- tables gets what the tables say (42501), in a backend that has the state cached.
SELECT room_nid, current_state AS snap FROM roomserver.rooms ORDER BY room_nid LIMIT 1 \gset
CREATE ROLE regress_nosel;
GRANT USAGE ON SCHEMA roomserver, regress TO regress_nosel;
GRANT EXECUTE ON FUNCTION roomserver.snapshot_entries(bigint, bigint), roomserver.snapshot_lookup(bigint, bigint, bigint[], bigint[]) TO regress_nosel;
SELECT count(*) > 0 AS cached FROM roomserver.snapshot_entries(:room_nid, :snap);
SET ROLE regress_nosel;
SELECT regress.try(format('SELECT roomserver.snapshot_entries(%s, %s)', :room_nid, :snap)) AS from_cache;
SELECT regress.try(format('SELECT roomserver.snapshot_lookup(%s, %s, ARRAY[1::bigint], ARRAY[1::bigint])', :room_nid, :snap)) AS lookup;
RESET ROLE;
-- Granted SELECT, the same role reads it.
GRANT SELECT ON roomserver.state_snapshots, roomserver.state_blocks, roomserver.stored_events TO regress_nosel;
SET ROLE regress_nosel;
SELECT count(*) > 0 AS with_select FROM roomserver.snapshot_entries(:room_nid, :snap);
RESET ROLE;
DROP OWNED BY regress_nosel;
DROP ROLE regress_nosel;

-- Functions planted on the caller's search_path (better matches than pg_catalog's polymorphic
-- ones) never run inside the extension's functions: every function pins its search_path.
CREATE SCHEMA regress_planted;
CREATE TABLE regress_planted.calls (fn text);
CREATE FUNCTION regress_planted.unnest(a bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress_planted.calls VALUES ('unnest(bigint[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION regress_planted.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress_planted.calls VALUES ('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION regress_planted.nextval(s text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress_planted.calls VALUES ('nextval(text)'); RETURN pg_catalog.nextval(s::regclass); END $$;
CREATE FUNCTION regress_planted.to_jsonb(t text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress_planted.calls VALUES ('to_jsonb(text)'); RETURN pg_catalog.to_jsonb(t); END $$;
CREATE FUNCTION regress_planted.cardinality(a bigint[]) RETURNS int LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress_planted.calls VALUES ('cardinality(bigint[])'); RETURN pg_catalog.cardinality(a); END $$;
\c
-- A new backend: the extension prepares its kept plans at first use, under this search_path.
SET search_path = regress_planted, public;
SET roomserver.server_name = 'regress.test';
SELECT r.room_nid, r.room_id, x.tip FROM roomserver.rooms r, roomserver.forward_extremities(r.room_id) AS x(tip)
ORDER BY r.room_nid, x.tip LIMIT 1 \gset
SELECT jsonb_array_length(roomserver.backfill(:'room_id', ARRAY[:'tip'], 10) -> 'pdus') AS backfill,
       jsonb_array_length(roomserver.forwards_fill(:'room_id', ARRAY[:'tip'], 10) -> 'pdus') AS forwards_fill,
       jsonb_typeof(roomserver.get_missing_events(:'room_id', ARRAY[]::text[], ARRAY[:'tip'], 10) -> 'events') AS get_missing_events,
       jsonb_typeof(roomserver.state_ids(:'room_id', :'tip') -> 'pdu_ids') AS state_ids,
       jsonb_typeof(roomserver.event_auth(:'room_id', :'tip') -> 'auth_chain') AS event_auth,
       (SELECT count(*) > 0 FROM roomserver.current_state) AS current_state;
SELECT count(*) > 0 AS auth_chain_nids FROM roomserver.auth_chain_nids(:room_nid, ARRAY[(SELECT max(event_nid) FROM roomserver.extremities)]);
SELECT (roomserver.ingest_event(roomserver.pdu(:'tip')) ->> 'duplicate')::boolean AS reingested;
SELECT (r ->> 'duplicate')::boolean AS new_message_duplicate
FROM roomserver.ingest_events(jsonb_build_array(jsonb_set(:'mprime'::jsonb, '{content,body}', '"planted"'))) AS r;
SELECT count(*) AS planted_calls FROM regress_planted.calls;
RESET search_path;
DROP SCHEMA regress_planted CASCADE;

-- Input no conversion can take is a documented SQLSTATE, never XX000: numbers beyond a
-- double (22003), nesting deeper than 128 levels (54000), for every function taking jsonb.
SELECT fn, regress.try(format(sql, '{"type":"m.room.message","content":{"n":1e400}}')) AS huge_number,
       regress.try(format(sql, '{"content":{"a":' || repeat('[', 129) || repeat(']', 129) || '}}')) AS deep_nesting
FROM (VALUES
    ('ingest_event',  'SELECT roomserver.ingest_event(%L::jsonb)'),
    ('ingest_events', 'SELECT roomserver.ingest_events(jsonb_build_array(%L::jsonb))'),
    ('canonical_json','SELECT roomserver.canonical_json(%L::jsonb)'),
    ('redact',        'SELECT roomserver.redact(%L::jsonb, ''11'')'),
    ('event_id_for',  'SELECT roomserver.event_id_for(%L::jsonb, ''11'')'),
    ('content_hash',  'SELECT roomserver.content_hash(%L::jsonb)'),
    ('check_auth',    'SELECT roomserver.check_auth(%L::jsonb, ''11'', ''[]'')'),
    ('resolve_state', 'SELECT roomserver.resolve_state(''11'', ''[]'', %L::jsonb)')
) AS f(fn, sql) ORDER BY fn;
-- 127 levels are fine.
SELECT length(roomserver.canonical_json(('{"a":' || repeat('[', 126) || repeat(']', 126) || '}')::jsonb)) AS depth_127;
-- A NID set that would decode to more than 2^25 NIDs is refused before it is decoded.
SELECT regress.try('SELECT cardinality(roomserver.nid_set_decode(decode(repeat(''01'', 33554433), ''hex'')))') AS huge_nid_set;
SELECT regress.try('SELECT cardinality(roomserver.nid_set_union(ARRAY[decode(repeat(''01'', 33554433), ''hex'')]))') AS huge_union;

-- One PDU cannot name more than 20 prev events or 10 auth events (Synapse's limits).
SELECT regress.try(format('SELECT roomserver.ingest_event(%L::jsonb)',
    jsonb_set(:'mprime'::jsonb, '{prev_events}', (SELECT jsonb_agg('$e' || g) FROM generate_series(1, 21) g)))) AS prev_21;
SELECT regress.try(format('SELECT roomserver.ingest_event(%L::jsonb)',
    jsonb_set(:'mprime'::jsonb, '{auth_events}', (SELECT jsonb_agg('$e' || g) FROM generate_series(1, 11) g)))) AS auth_11;

-- Nothing can be ingested where nothing can be written (on a hot standby too): 25006.
BEGIN READ ONLY;
SELECT regress.try(format('SELECT roomserver.ingest_event(%L::jsonb)', :'mprime')) AS read_only;
COMMIT;

-- The admin function that assigns state key NIDs: an unknown room is 23503, not a 40001 that
-- asks for a retry that can never help (the empty key of an unknown room is never inserted).
SELECT regress.try('SELECT * FROM roomserver.assign_state_key_nids(ARRAY[999999]::bigint[], ARRAY[''''])') AS empty_key_unknown_room;
SELECT regress.try('SELECT * FROM roomserver.assign_state_key_nids(ARRAY[999999]::bigint[], ARRAY[''@a:x''])') AS user_key_unknown_room;

-- The cache's size is a setting (superuser), in memory units.
SHOW roomserver.cache_size;
SET roomserver.cache_size = '1MB';
SELECT count(*) > 0 AS with_small_cache FROM roomserver.state_at_event(:'mprime_id');
RESET roomserver.cache_size;
