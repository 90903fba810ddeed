#!/usr/bin/env bash
# A transaction that makes two ingest calls into one room, racing a single call that introduces
# the same new sender: no deadlock (40P01) and no other error, both transactions commit.
#
# Each round: session A runs BEGIN; ingest_event(e1: a message of a known sender); then waits
# until session B blocks on a lock; then ingest_event(e2: a knock of a new user U); COMMIT.
# Session B, started once A's first call returned, runs ingest_event(e3: another knock of U).
# A holds the room's lock from its first call; if B assigns U's state key NID (an uncommitted
# row) before it waits for the room lock, A's second call waits on B's row: a deadlock.
# Every round uses a new user U (events made from tests/fixtures/deadlock_e*.json with their
# content hashes recomputed), on a room loaded from tests/fixtures/deadlock_prefix.jsonl.
# Needs PGHOST/PGPORT/PGUSER of a cluster with pg_roomserver installed; creates its own database.
set -euo pipefail

ROUNDS=${ROUNDS:-20}
DB=pg_roomserver_deadlock_two_calls
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FIX="$HERE/../fixtures"
for f in deadlock_prefix.jsonl deadlock_e1.json deadlock_e2.json deadlock_e3.json; do
    [ -r "$FIX/$f" ] || { echo "FAIL: fixture $FIX/$f missing" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/deadlock_two_calls.XXXXXX)"
chmod 755 "$WORK"
bg_pids=()
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
    if [ -z "${KEEP_DB:-}" ]; then
        PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# deadlock_timeout only shortens how long a deadlock takes to be detected (superuser setting).
export PGOPTIONS="-c client_min_messages=warning -c statement_timeout=30s -c deadlock_timeout=200ms"
PSQL=(timeout 60 psql -X -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -o /dev/null -v e1="$(cat "$FIX/deadlock_e1.json")" -v e2="$(cat "$FIX/deadlock_e2.json")" \
    -v e3="$(cat "$FIX/deadlock_e3.json")" <<SQL
CREATE EXTENSION pg_roomserver;
CREATE TEMP TABLE staging (n bigserial, pdu jsonb);
\copy staging (pdu) FROM '$FIX/deadlock_prefix.jsonl' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
SELECT count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM staging));
-- The events of each round: e1 a new message, e2/e3 two knocks of a new user whose prev event
-- is e1 (as in the fixtures: different origin_server_ts, so different event IDs).
CREATE FUNCTION pg_temp.rehash(p jsonb) RETURNS jsonb LANGUAGE sql AS
\$\$ SELECT (p - 'hashes') || jsonb_build_object('hashes', jsonb_build_object('sha256', roomserver.content_hash(p - 'hashes'))) \$\$;
CREATE TABLE public.dl_rounds AS
SELECT round, e1,
       pg_temp.rehash(e2 || jsonb_build_object('prev_events', jsonb_build_array(roomserver.event_id_for(e1, '11')))) AS e2,
       pg_temp.rehash(e3 || jsonb_build_object('prev_events', jsonb_build_array(roomserver.event_id_for(e1, '11')))) AS e3
FROM (
    SELECT g AS round,
           pg_temp.rehash(e1 || jsonb_build_object('content', jsonb_build_object('body', 'round ' || g, 'msgtype', 'm.text'),
                                                   'origin_server_ts', (e1 ->> 'origin_server_ts')::bigint + g)) AS e1,
           e2 || jsonb_build_object('sender', u, 'state_key', u,
                                    'content', (e2 -> 'content') || jsonb_build_object('displayname', 'Racer ' || g),
                                    'origin_server_ts', (e2 ->> 'origin_server_ts')::bigint + 10 * g) AS e2,
           e3 || jsonb_build_object('sender', u, 'state_key', u,
                                    'content', (e3 -> 'content') || jsonb_build_object('displayname', 'Racer ' || g),
                                    'origin_server_ts', (e3 ->> 'origin_server_ts')::bigint + 10 * g) AS e3
    FROM (SELECT :'e1'::jsonb AS e1, :'e2'::jsonb AS e2, :'e3'::jsonb AS e3) t,
         generate_series(1, $ROUNDS) g,
         LATERAL (SELECT '@racer' || g || ':s3.example' AS u) x
) r;
SQL

# The ERROR and DETAIL lines of a session's messages (not the backtrace), indented.
show_error() {
    awk -v p="$2" '/ERROR|DETAIL|WARNING/ && n < 4 { print "    " p $0; n++ }' "$1" >&2 || true
}

outcome() {
    local f=$1 state
    state=$(awk 'match($0, /ERROR:  [0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z]/) { print substr($0, RSTART + 8, 5); exit }' "$f.err" 2>/dev/null || true)
    if [ -n "$state" ]; then echo "$state"
    elif [ "$(cat "$f.rc")" != 0 ]; then echo "rc$(cat "$f.rc")"
    else echo ok; fi
}

session_a() {
    local r=$1 rc=0
    PGAPPNAME=deadlock_A "${PSQL[@]}" -A -t -d "$DB" > "$WORK/a.out" 2> "$WORK/a.err" <<SQL || rc=$?
\\set VERBOSITY verbose
BEGIN;
SELECT 'a_first=' || (roomserver.ingest_event((SELECT e1 FROM public.dl_rounds WHERE round = $r)) ->> 'event_nid');
-- B runs now: go on once it waits for a lock (at most 5 s).
DO \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity
                          WHERE application_name = 'deadlock_B' AND datname = current_database() AND wait_event_type = 'Lock');
        IF clock_timestamp() - t0 > interval '5 seconds' THEN
            RAISE WARNING 'deadlock_B did not wait for a lock within 5 s';
            EXIT;
        END IF;
        PERFORM pg_sleep(0.005);
    END LOOP;
END
\$\$;
SELECT 'a_second=' || (roomserver.ingest_event((SELECT e2 FROM public.dl_rounds WHERE round = $r)) ->> 'event_nid');
COMMIT;
SQL
    echo "$rc" > "$WORK/a.rc"
}

session_b() {
    local r=$1 rc=0
    PGAPPNAME=deadlock_B "${PSQL[@]}" -A -t -d "$DB" > "$WORK/b.out" 2> "$WORK/b.err" <<SQL || rc=$?
\\set VERBOSITY verbose
SELECT 'b=' || (roomserver.ingest_event((SELECT e3 FROM public.dl_rounds WHERE round = $r)) ->> 'event_nid');
SQL
    echo "$rc" > "$WORK/b.rc"
}

declare -A count=()
failures=0
b_never_waited=0
start=$SECONDS
for r in $(seq 1 "$ROUNDS"); do
    rm -f "$WORK"/a.* "$WORK"/b.*
    session_a "$r" &
    a=$!
    bg_pids=("$a")
    # B starts once A's first call has returned (A is in its wait loop).
    started=0
    for i in $(seq 1 1000); do
        if [ "$("${PSQL[@]}" -A -t -d "$DB" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'deadlock_A' AND datname = current_database() AND state = 'active' AND query LIKE 'DO%'")" = 1 ]; then
            started=1; break
        fi
        if ! kill -0 "$a" 2>/dev/null; then break; fi
        sleep 0.01
    done
    if [ "$started" = 1 ]; then
        session_b "$r"
    else
        echo 0 > "$WORK/b.rc"; : > "$WORK/b.err"; echo "(not started)" > "$WORK/b.out"
    fi
    wait "$a" || true
    bg_pids=()
    oa=$(outcome "$WORK/a"); ob=$(outcome "$WORK/b")
    grep -q 'did not wait for a lock' "$WORK/a.err" && b_never_waited=$((b_never_waited + 1))
    count["A:$oa"]=$(( ${count["A:$oa"]:-0} + 1 ))
    count["B:$ob"]=$(( ${count["B:$ob"]:-0} + 1 ))
    stored=$("${PSQL[@]}" -A -t -d "$DB" -c "SELECT count(*) FROM public.dl_rounds d, roomserver.stored_events e
        WHERE d.round = $r AND e.event_id IN (roomserver.event_id_for(d.e1, '11'), roomserver.event_id_for(d.e2, '11'), roomserver.event_id_for(d.e3, '11'))")
    if [ "$started" != 1 ]; then
        echo "round $r: session A never reached its wait (A: $oa)" >&2
        show_error "$WORK/a.err" ""
        failures=$((failures + 1))
    elif [ "$oa" != ok ] || [ "$ob" != ok ] || [ "$stored" != 3 ]; then
        echo "round $r: A $oa, B $ob, $stored of 3 events stored" >&2
        if [ "$failures" -lt 2 ]; then
            for s in a b; do show_error "$WORK/$s.err" "$s: "; done
        fi
        failures=$((failures + 1))
    fi
done
elapsed=$((SECONDS - start))

integrity=$("${PSQL[@]}" -A -t -d "$DB" <<'SQL'
SELECT problem || ' ' || room_nid || '/' || event_nid || ' ' || coalesce(detail, '') FROM roomserver.check_integrity()
UNION ALL
SELECT 'event ' || e.event_id || ' names a missing snapshot' FROM roomserver.stored_events e
WHERE NOT e.outlier AND (NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = e.room_nid AND s.snapshot_nid = e.state_before)
                      OR NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = e.room_nid AND s.snapshot_nid = e.state_after));
SQL
)
if [ -n "$integrity" ]; then
    echo "integrity problems:" >&2
    awk 'NR <= 10 { print "    " $0 }' <<< "$integrity" >&2
    failures=$((failures + 1))
fi

summary=""
for k in $(printf '%s\n' "${!count[@]}" | sort); do summary+="${summary:+, }$k ${count[$k]}"; done
echo "deadlock_two_calls: $ROUNDS rounds in ${elapsed}s; outcomes: $summary; B never waited for a lock in $b_never_waited rounds"
if [ "$failures" -ne 0 ]; then
    echo "FAIL: deadlock_two_calls: $failures problems (40P01 = deadlock_detected)" >&2
    exit 1
fi
echo "PASS: deadlock_two_calls: $ROUNDS rounds of a two-call transaction racing a new sender: no deadlock, both committed"
