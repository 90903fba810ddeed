#!/usr/bin/env bash
# Under REPEATABLE READ, several sessions ingest the same events at the same moment: each must
# either succeed (the event stored, or a no-op "duplicate": true) or fail with 40001
# (serialization_failure: retry), never 23505 nor anything else; after retrying the 40001 ones
# (at most MAX_RETRIES times) every event is stored exactly once, exactly one session reports it
# as new, check_integrity() is empty, no event or room names a missing snapshot, and the state
# at every event equals that of the same events ingested serially in another database.
#
# SESSIONS persistent sessions (as a connection pool keeps them: backend caches and kept plans
# live across rounds). Each round, every session runs BEGIN ISOLATION LEVEL REPEATABLE READ,
# takes its snapshot, waits on an advisory-lock barrier, and all are released together into the
# same ingest call; the 40001s are retried at once, in waves. Round 1 is the room's create event
# (a new room), rounds 2-60 one event each (ingest_event), then batches of 8 (ingest_events) up to
# the fixture's 163 events (tests/fixtures/deadlock_prefix.jsonl, room version 11); no new round
# starts after BUDGET seconds.
# Needs PGHOST/PGPORT/PGUSER of a cluster with pg_roomserver installed; creates its own databases.
set -euo pipefail

SESSIONS=${SESSIONS:-8}
BUDGET=${BUDGET:-60}          # seconds after which no new round starts
MAX_RETRIES=${MAX_RETRIES:-5}
WAIT_LIMIT=30                 # seconds any session may take for one step
SINGLE_ROUNDS=60              # events 1-60 one per round, the rest in batches of BATCH
BATCH=8
LOCK_KEY=4243
DB=pg_roomserver_rr_duplicate
REF_DB=pg_roomserver_rr_duplicate_ref
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FIXTURE="$HERE/../fixtures/deadlock_prefix.jsonl"
[ -r "$FIXTURE" ] || { echo "FAIL: fixture $FIXTURE missing" >&2; exit 1; }

WORK="$(mktemp -d /tmp/rr_duplicate.XXXXXX)"
chmod 755 "$WORK"
bg_pids=()
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
    if [ -z "${KEEP_DB:-}" ]; then
        PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres \
            -c "DROP DATABASE IF EXISTS $DB" -c "DROP DATABASE IF EXISTS $REF_DB" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

export PGOPTIONS="-c client_min_messages=warning -c statement_timeout=${WAIT_LIMIT}s"
PSQL=(timeout 90 psql -X -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "DROP DATABASE IF EXISTS $REF_DB" \
    -c "CREATE DATABASE $DB" -c "CREATE DATABASE $REF_DB"

# The rounds, the same in both databases: round, function, the PDUs (a JSON array), their IDs.
setup_db() {
    "${PSQL[@]}" -d "$1" <<SQL
CREATE EXTENSION pg_roomserver;
CREATE TABLE public.rr_staging (n bigserial, pdu jsonb);
\copy public.rr_staging (pdu) FROM '$FIXTURE' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
CREATE TABLE public.rr_rounds (round int PRIMARY KEY, fn text NOT NULL, pdus jsonb NOT NULL, ids text[] NOT NULL);
INSERT INTO public.rr_rounds
SELECT row_number() OVER (ORDER BY min(n)), CASE WHEN min(n) <= $SINGLE_ROUNDS THEN 'ingest_event' ELSE 'ingest_events' END,
       jsonb_agg(pdu ORDER BY n), array_agg(roomserver.event_id_for(pdu, '11') ORDER BY n)
FROM public.rr_staging
GROUP BY CASE WHEN n <= $SINGLE_ROUNDS THEN n ELSE $SINGLE_ROUNDS + (n - $SINGLE_ROUNDS - 1) / $BATCH + 1 END;
SQL
}
setup_db "$DB"
setup_db "$REF_DB"
mapfile -t fns < <("${PSQL[@]}" -A -t -d "$DB" -c "SELECT fn FROM public.rr_rounds ORDER BY round")
total_rounds=${#fns[@]}

# Persistent psql sessions, each reading its commands from a FIFO (errors do not stop them).
# Results go to s-N.out ("round|event_id|duplicate" rows and "done|round|attempt|SQLSTATE"
# markers), messages (verbose: with SQLSTATE) to s-N.err.
declare -a fds=()
open_session() {
    local name=$1 fd
    mkfifo "$WORK/$name.in"
    psql -X -q -A -t -v ON_ERROR_STOP=0 -v VERBOSITY=verbose -d "$DB" -f "$WORK/$name.in" \
        > "$WORK/$name.out" 2> "$WORK/$name.err" &
    bg_pids+=($!)
    exec {fd}<> "$WORK/$name.in"
    fds+=("$fd")
    eval "fd_$name=$fd"
}
send() { local v="fd_$1"; printf '%s\n' "$2" >&"${!v}"; }
# wait_marker NAME PATTERN: waits (at most WAIT_LIMIT+5 s) for a line matching PATTERN.
wait_marker() {
    local i
    for i in $(seq 1 $(( (WAIT_LIMIT + 5) * 100 ))); do
        if grep -q "$2" "$WORK/$1.out" 2>/dev/null; then return 0; fi
        sleep 0.01
    done
    echo "FAIL: session $1 gave no '$2' within $((WAIT_LIMIT + 5))s" >&2
    tail -n 5 "$WORK/$1.err" >&2 || true
    exit 1
}

open_session barrier
open_session ctl
for i in $(seq 1 "$SESSIONS"); do open_session "s$i"; done

# The transaction of a session for a round (attempt 0: at the barrier; retries: without).
transaction() {
    local round=$1 attempt=$2 fn=${fns[$(( $1 - 1 ))]} call
    if [ "$fn" = ingest_event ]; then
        call="SELECT $round, r ->> 'event_id', r ->> 'duplicate' FROM roomserver.ingest_event((SELECT pdus -> 0 FROM public.rr_rounds WHERE round = $round)) AS r;"
    else
        call="SELECT $round, r ->> 'event_id', r ->> 'duplicate' FROM roomserver.ingest_events((SELECT pdus FROM public.rr_rounds WHERE round = $round)) AS r;"
    fi
    local wait_sql=""
    if [ "$attempt" = 0 ]; then
        wait_sql="SELECT pg_advisory_lock_shared($LOCK_KEY) \\g /dev/null
SELECT pg_advisory_unlock_shared($LOCK_KEY) \\g /dev/null"
    fi
    cat <<SQL
\\set state 00000
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM roomserver.rooms \\g /dev/null
$wait_sql
$call
\\set state :SQLSTATE
COMMIT;
SELECT 'done|$round|$attempt|' || :'state';
SQL
}

# The state of a session's attempt: a SQLSTATE (00000: it succeeded).
attempt_state() {
    grep "^done|$2|$3|" "$WORK/$1.out" | tail -n 1 | cut -d'|' -f4
}

declare -A state_count=()     # SQLSTATE -> sessions, first attempts
declare -A retry_count=()     # the same, retries
failures=0
shown=0
bad_rounds=()
start=$SECONDS
rounds_run=0
for round in $(seq 1 "$total_rounds"); do
    if [ $((SECONDS - start)) -ge "$BUDGET" ]; then break; fi
    fn=${fns[$((round - 1))]}
    # The barrier: the exclusive lock first, then the sessions, then release once all wait.
    send barrier "SELECT pg_advisory_lock($LOCK_KEY) \\g /dev/null
SELECT 'locked|$round';"
    wait_marker barrier "^locked|$round\$"
    for i in $(seq 1 "$SESSIONS"); do send "s$i" "$(transaction "$round" 0)"; done
    send barrier "DO \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    WHILE (SELECT count(*) FROM pg_locks
           WHERE locktype = 'advisory' AND objid = $LOCK_KEY AND objsubid = 1 AND NOT granted
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) < $SESSIONS LOOP
        IF clock_timestamp() - t0 > interval '20 seconds' THEN
            RAISE EXCEPTION 'barrier: not all $SESSIONS sessions arrived within 20 s (round $round)';
        END IF;
        PERFORM pg_sleep(0.002);
    END LOOP;
END
\$\$;
SELECT pg_advisory_unlock($LOCK_KEY) \\g /dev/null
SELECT 'released|$round';"
    wait_marker barrier "^released|$round\$"
    if grep -q 'ERROR' "$WORK/barrier.err"; then
        echo "round $round: $(grep -m1 ERROR "$WORK/barrier.err")" >&2
        : > "$WORK/barrier.err"
        failures=$((failures + 1))
    fi
    for i in $(seq 1 "$SESSIONS"); do wait_marker "s$i" "^done|$round|0|"; done

    round_states=()
    retry=()
    for i in $(seq 1 "$SESSIONS"); do
        o=$(attempt_state "s$i" "$round" 0)
        state_count[$o]=$(( ${state_count[$o]:-0} + 1 ))
        round_states+=("$o")
        if [ "$o" = 40001 ]; then retry+=("$i"); continue; fi
        if [ "$o" != 00000 ]; then
            failures=$((failures + 1))
            if [ "$shown" -lt 4 ]; then
                shown=$((shown + 1))
                echo "round $round ($fn), session $i: $o" >&2
                # The last error of that SQLSTATE in the session's messages, and its DETAIL.
                awk -v s="$o" 'index($0, "ERROR:  " s) { last = $0; det = ""; if ((getline d) > 0 && d ~ /DETAIL/) det = d }
                               END { print "    " last; if (det != "") print "    " det }' "$WORK/s$i.err" >&2 || true
            fi
        fi
    done
    # Retry the 40001s as an application would: the same transaction again, at once, in waves.
    attempt=0
    while [ "${#retry[@]}" -gt 0 ] && [ "$attempt" -lt "$MAX_RETRIES" ]; do
        attempt=$((attempt + 1))
        for i in "${retry[@]}"; do send "s$i" "$(transaction "$round" "$attempt")"; done
        again=()
        for i in "${retry[@]}"; do
            wait_marker "s$i" "^done|$round|$attempt|"
            o=$(attempt_state "s$i" "$round" "$attempt")
            retry_count[$o]=$(( ${retry_count[$o]:-0} + 1 ))
            if [ "$o" = 40001 ]; then again+=("$i")
            elif [ "$o" != 00000 ]; then
                failures=$((failures + 1))
                echo "round $round ($fn), session $i: retry $attempt: $o" >&2
            fi
        done
        retry=("${again[@]}")
    done
    if [ "${#retry[@]}" -gt 0 ]; then
        echo "round $round ($fn): sessions ${retry[*]} still 40001 after $MAX_RETRIES retries" >&2
        failures=$((failures + 1))
    fi
    if printf '%s\n' "${round_states[@]}" | grep -qv '^\(00000\|40001\)$'; then bad_rounds+=("$round"); fi

    # Every event of the round stored exactly once, and exactly one session saw it as new.
    send ctl "SELECT 'stored|$round|' || w.id || '|' || (SELECT count(*) FROM roomserver.stored_events e WHERE e.event_id = w.id)
FROM unnest((SELECT ids FROM public.rr_rounds WHERE round = $round)) AS w(id);
SELECT 'checked|$round';"
    wait_marker ctl "^checked|$round\$"
    check=$(awk -F'|' -v r="$round" '
        FILENAME ~ /ctl.out$/ && $1 == "stored" && $2 == r { order[++n] = $3; stored[$3] = $4; next }
        FILENAME !~ /ctl.out$/ && $1 == r && $3 == "false" { fresh[$2]++ }
        END { for (i = 1; i <= n; i++) { id = order[i]
                  if (stored[id] != 1 || fresh[id] != 1)
                      printf "%s: stored %d times, reported new by %d sessions\n", id, stored[id], fresh[id] } }
    ' "$WORK/ctl.out" "$WORK"/s*.out)
    if [ -n "$check" ]; then
        echo "round $round ($fn): not exactly once:" >&2
        awk 'NR <= 5 { print "    " $0 }' <<< "$check" >&2
        failures=$((failures + 1))
        # Store what is missing (READ COMMITTED), so that later rounds test the race, not a gap.
        "${PSQL[@]}" -d "$DB" -o /dev/null -c "SELECT roomserver.ingest_events((SELECT pdus FROM public.rr_rounds WHERE round = $round))" 2>/dev/null || true
    fi
    rounds_run=$round
done
elapsed=$((SECONDS - start))
for fd in "${fds[@]}"; do exec {fd}>&-; done
[ "$rounds_run" -gt 0 ] || { echo "FAIL: no round ran" >&2; exit 1; }
events_raced=$("${PSQL[@]}" -A -t -d "$DB" -c "SELECT sum(cardinality(ids)) FROM public.rr_rounds WHERE round <= $rounds_run")

fmt_counts() {
    local -n m=$1
    local k out=""
    for k in $(printf '%s\n' "${!m[@]}" | sort); do out+="${out:+, }${k/#00000/ok}: ${m[$k]}"; done
    echo "${out:-none}"
}
echo "rr_duplicate: $rounds_run of $total_rounds rounds ($events_raced events) x $SESSIONS sessions in ${elapsed}s"
echo "  first attempts by outcome: $(fmt_counts state_count)"
echo "  retries by outcome:        $(fmt_counts retry_count)"
[ "${#bad_rounds[@]}" -eq 0 ] || echo "  rounds with an outcome other than ok/40001: ${#bad_rounds[@]} (${bad_rounds[*]:0:20})"

# Integrity: references, snapshots named by events and rooms (check_integrity does not look at
# those), and the state against the same rounds ingested serially.
integrity=$("${PSQL[@]}" -A -t -d "$DB" <<'SQL'
SELECT problem || ' ' || room_nid || '/' || event_nid || ' ' || coalesce(detail, '') FROM roomserver.check_integrity()
UNION ALL
SELECT 'event ' || e.event_id || ' names a missing snapshot' FROM roomserver.stored_events e
WHERE NOT e.outlier AND (NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = e.room_nid AND s.snapshot_nid = e.state_before)
                      OR NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = e.room_nid AND s.snapshot_nid = e.state_after))
UNION ALL
SELECT 'room ' || r.room_id || ' names a missing current state' FROM roomserver.rooms r
WHERE r.current_state IS NOT NULL AND NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = r.room_nid AND s.snapshot_nid = r.current_state);
SQL
)
if [ -n "$integrity" ]; then
    echo "  integrity problems:" >&2
    awk 'NR <= 10 { print "    " $0 }' <<< "$integrity" >&2
    failures=$((failures + 1))
fi

"${PSQL[@]}" -d "$REF_DB" -o /dev/null <<SQL
DO \$\$
DECLARE r record;
BEGIN
    FOR r IN SELECT pdus FROM public.rr_rounds WHERE round <= $rounds_run ORDER BY round LOOP
        PERFORM roomserver.ingest_events(r.pdus);
    END LOOP;
END
\$\$;
SQL
STATE_SQL="
SELECT e.event_id, e.rejected, e.soft_failed, e.outlier,
       (SELECT md5(coalesce(string_agg(s.type || '|' || s.state_key || '|' || s.event_id, ',' ORDER BY s.type, s.state_key), ''))
        FROM roomserver.state_at_event(e.event_id) s),
       (SELECT md5(coalesce(string_agg(s.type || '|' || s.state_key || '|' || s.event_id, ',' ORDER BY s.type, s.state_key), ''))
        FROM roomserver.state_at_event(e.event_id, true) s)
FROM roomserver.events e
UNION ALL
SELECT 'current state', NULL, NULL, NULL,
       (SELECT md5(coalesce(string_agg(c.type || '|' || c.state_key || '|' || c.event_id, ',' ORDER BY c.type, c.state_key), '')) FROM roomserver.current_state c),
       (SELECT string_agg(x, ',' ORDER BY x) FROM roomserver.rooms r, roomserver.forward_extremities(r.room_id) x)
ORDER BY 1"
"${PSQL[@]}" -A -t -d "$DB" -c "$STATE_SQL" > "$WORK/state.raced"
"${PSQL[@]}" -A -t -d "$REF_DB" -c "$STATE_SQL" > "$WORK/state.serial"
if ! cmp -s "$WORK/state.raced" "$WORK/state.serial"; then
    echo "  state differs from a serial ingest of the same events (< raced, > serial):" >&2
    { diff "$WORK/state.raced" "$WORK/state.serial" || true; } | awk 'NR <= 10 { print "    " $0 }' >&2
    failures=$((failures + 1))
fi

if [ "$failures" -ne 0 ]; then
    echo "FAIL: rr_duplicate: $failures problems (see above)" >&2
    exit 1
fi
echo "PASS: rr_duplicate: $rounds_run rounds, $events_raced events x $SESSIONS REPEATABLE READ sessions: only ok/40001, each event stored once, integrity and state as serial"
