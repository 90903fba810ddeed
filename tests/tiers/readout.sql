-- The canonical read-out of a pg_roomserver database: every read function and view over every
-- room, as text two databases (a dump and its restore, a primary and its standby) must print
-- identically. Writes nothing, so it runs on a hot standby too.
--
-- psql -X -q -A -t -v k=10 [-v with_sequences=1] -f readout.sql
--   k: the heavier endpoints (state, event_auth, event, state_at_event) run on events whose
--      NID is a multiple of k.
--   ids_k: state_ids runs on events whose NID is a multiple of ids_k (default 1: every event).
--   with_sequences: also print the sequences' last values (a standby's differ: it sees them
--      as WAL-logged, up to 32 ahead of the primary).
-- Each section starts with a line "== name". JSON bodies are printed as md5 plus their sizes,
-- origin_server_ts (the time of the call) removed.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only on
\pset null '<null>'
\pset fieldsep ' '
\if :{?ids_k}
\else
\set ids_k 1
\endif
SET roomserver.server_name = 'readout.example';

\echo == check_integrity (must be empty)
SELECT * FROM roomserver.check_integrity() ORDER BY 1, 2, 3, 4;

\echo == tables
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = 'roomserver'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1;

\echo == row counts
SELECT format('SELECT %L, count(*) FROM roomserver.%I', c.relname, c.relname) FROM pg_class c
WHERE c.relnamespace = 'roomserver'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY c.relname \gexec

\if :{?with_sequences}
\echo == sequences (last_value, is_called)
SELECT format('SELECT %L, last_value, is_called FROM roomserver.%I', c.relname, c.relname) FROM pg_class c
WHERE c.relnamespace = 'roomserver'::regnamespace AND c.relkind = 'S' ORDER BY c.relname \gexec
\endif

\echo == rooms
SELECT * FROM roomserver.rooms ORDER BY room_nid;

\echo == event_types
SELECT * FROM roomserver.event_types ORDER BY event_type_nid;

\echo == event_state_keys
SELECT * FROM roomserver.event_state_keys ORDER BY room_nid, state_key_nid;

\echo == events (view)
SELECT * FROM roomserver.events ORDER BY room_nid, event_nid;

\echo == stored_events state columns and auth chains
SELECT room_nid, event_nid, state_before, state_after, md5(auth_chain), md5(pdu_rest::text)
FROM roomserver.stored_events ORDER BY room_nid, event_nid;

\echo == event_references (view)
SELECT room_id, event_id, kind, position, referenced_event_id, known
FROM roomserver.event_references ORDER BY room_id, event_id, kind, position;

\echo == extremities and forward_extremities
SELECT * FROM roomserver.extremities ORDER BY 1, 2;
SELECT r.room_id, f FROM roomserver.rooms r, LATERAL roomserver.forward_extremities(r.room_id) f ORDER BY r.room_nid;

\echo == state_snapshots
SELECT room_nid, snapshot_nid, md5(state_hash), block_nids, block_sizes, state_size
FROM roomserver.state_snapshots ORDER BY room_nid, snapshot_nid;

\echo == state_blocks
SELECT room_nid, block_nid, md5(block_hash), entry_count, max_event_nid, md5(entries)
FROM roomserver.state_blocks ORDER BY room_nid, block_nid;

\echo == snapshot_entries of every snapshot
SELECT s.room_nid, s.snapshot_nid, x.n, x.h
FROM roomserver.state_snapshots s,
     LATERAL (SELECT count(*) AS n, md5(string_agg(concat_ws(',', e.type_nid, e.state_key_nid, e.event_nid), ';'
                                                    ORDER BY e.type_nid, e.state_key_nid)) AS h
              FROM roomserver.snapshot_entries(s.room_nid, s.snapshot_nid) e) x
ORDER BY s.room_nid, s.snapshot_nid;

\echo == pdu of every event
SELECT e.event_id, md5(roomserver.pdu(e.event_id)::text)
FROM roomserver.stored_events e ORDER BY e.room_nid, e.event_nid;

\echo == state_ids of every event with state (every ids_k-th)
SELECT e.event_id, jsonb_array_length(s -> 'pdu_ids'), jsonb_array_length(s -> 'auth_chain_ids'), md5(s::text)
FROM roomserver.events e, LATERAL roomserver.state_ids(e.room_id, e.event_id) s
WHERE NOT e.outlier AND e.event_nid % :ids_k = 0 ORDER BY e.room_nid, e.event_nid;

\echo == state_at_event before and after, every k-th event
SELECT e.event_id, a.after, x.n, x.h
FROM roomserver.events e, (VALUES (false), (true)) a(after),
     LATERAL (SELECT count(*) AS n, md5(string_agg(concat_ws(',', s.type, s.state_key, s.event_id), ';'
                                                    ORDER BY s.type, s.state_key)) AS h
              FROM roomserver.state_at_event(e.event_id, a.after) s) x
WHERE NOT e.outlier AND e.event_nid % :k = 0 ORDER BY e.room_nid, e.event_nid, a.after;

\echo == membership_at_event and state_at_event with types and pairs, every k-th event
SELECT e.event_id, roomserver.membership_at_event(e.event_id, e.sender, true),
       (SELECT string_agg(s.event_id, ',' ORDER BY s.type, s.state_key)
        FROM roomserver.state_at_event(e.event_id, false, ARRAY['m.room.power_levels', 'm.room.join_rules']) s),
       (SELECT string_agg(s.event_id, ',')
        FROM roomserver.state_at_event(e.event_id, true, NULL, ARRAY[['m.room.member', e.sender], ['m.room.create', '']]) s)
FROM roomserver.events e
WHERE NOT e.outlier AND e.event_nid % :k = 0 ORDER BY e.room_nid, e.event_nid;

\echo == state (federation /state), every 5k-th event
SELECT e.event_id, jsonb_array_length(s -> 'pdus'), jsonb_array_length(s -> 'auth_chain'), md5(s::text)
FROM roomserver.events e, LATERAL roomserver.state(e.room_id, e.event_id) s
WHERE NOT e.outlier AND e.event_nid % (5 * :k) = 0 ORDER BY e.room_nid, e.event_nid;

\echo == event_auth, every k-th event
SELECT e.event_id, jsonb_array_length(a -> 'auth_chain'), md5(a::text)
FROM roomserver.events e, LATERAL roomserver.event_auth(e.room_id, e.event_id) a
WHERE e.event_nid % :k = 0 ORDER BY e.room_nid, e.event_nid;

\echo == event (federation /event), every k-th event, internal and as seen by s1.example
SELECT e.event_id, md5((roomserver.event(e.event_id) - 'origin_server_ts')::text),
       md5((roomserver.event(e.event_id, 's1.example') - 'origin_server_ts')::text)
FROM roomserver.events e
WHERE e.event_nid % :k = 0 ORDER BY e.room_nid, e.event_nid;

\echo == backfill from the forward extremities (limit 100), internal and as seen by s3.example
SELECT r.room_id, jsonb_array_length(b -> 'pdus'), b ->> 'origin', md5((b - 'origin_server_ts')::text), md5((b3 - 'origin_server_ts')::text)
FROM roomserver.rooms r,
     LATERAL roomserver.backfill(r.room_id, ARRAY(SELECT roomserver.forward_extremities(r.room_id)), 100) b,
     LATERAL roomserver.backfill(r.room_id, ARRAY(SELECT roomserver.forward_extremities(r.room_id)), 100, 's3.example') b3
ORDER BY r.room_nid;

-- Points spread over each room's events with state: the event at 10%, 35%, 60%, 85% of the room
-- and the one 150 events later (or the room's last).
\echo == backfill, get_missing_events and forwards_fill at 4 points of each room
WITH ev AS (
    SELECT e.room_id, e.room_nid, e.event_id,
           row_number() OVER (PARTITION BY e.room_nid ORDER BY e.event_nid) AS rn,
           count(*) OVER (PARTITION BY e.room_nid) AS cnt
    FROM roomserver.events e WHERE NOT e.outlier
), pts AS (
    SELECT a.room_id, a.room_nid, f.f, a.event_id AS early, b.event_id AS late
    FROM (VALUES (0.10), (0.35), (0.60), (0.85)) f(f)
    JOIN ev a ON a.rn = greatest(1, round(a.cnt * f.f))
    JOIN ev b ON b.room_nid = a.room_nid AND b.rn = least(a.cnt, a.rn + 150)
)
SELECT p.room_id, p.f, p.early, p.late,
       jsonb_array_length(bf -> 'pdus'), md5((bf - 'origin_server_ts')::text),
       jsonb_array_length(gm -> 'events'), md5(gm::text),
       md5(gm2::text),
       jsonb_array_length(ff -> 'pdus'), md5((ff - 'origin_server_ts')::text),
       md5((ff2 - 'origin_server_ts')::text)
FROM pts p,
     LATERAL roomserver.backfill(p.room_id, ARRAY[p.late], 100) bf,
     LATERAL roomserver.get_missing_events(p.room_id, ARRAY[p.early], ARRAY[p.late], 50) gm,
     LATERAL roomserver.get_missing_events(p.room_id, ARRAY[p.early], ARRAY[p.late], 20, 10, 's2.example') gm2,
     LATERAL roomserver.forwards_fill(p.room_id, ARRAY[p.early], 100) ff,
     LATERAL roomserver.forwards_fill(p.room_id, ARRAY[p.early, p.late], 30, 's4.example') ff2
ORDER BY p.room_nid, p.f;

\echo == backward_extremities
SELECT r.room_id, b.* FROM roomserver.rooms r, LATERAL roomserver.backward_extremities(r.room_id) b
ORDER BY r.room_nid, b.depth, b.event_id;

\echo == missing_events of stored PDUs (every k-th) and of the probe PDUs (if public.probe_pdus exists)
SELECT e.event_id, roomserver.missing_events(roomserver.pdu(e.event_id))
FROM roomserver.events e WHERE e.event_nid % :k = 0 ORDER BY e.room_nid, e.event_nid;
SELECT to_regclass('public.probe_pdus') IS NOT NULL AS has_probe_pdus \gset
\if :has_probe_pdus
SELECT p.n, CASE WHEN EXISTS (SELECT 1 FROM roomserver.rooms r WHERE r.room_id = p.pdu ->> 'room_id')
                 THEN roomserver.missing_events(p.pdu)::text ELSE 'room not stored' END
FROM public.probe_pdus p ORDER BY p.n;
\endif

\echo == current_state (view)
SELECT room_id, type, state_key, event_id, sender, content FROM roomserver.current_state
ORDER BY room_id, type, state_key;

\echo == room_members (view)
SELECT * FROM roomserver.room_members ORDER BY room_id, user_id;

\echo == end
