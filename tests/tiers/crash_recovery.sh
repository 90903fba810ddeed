#!/usr/bin/env bash
# Crash recovery with fsync on: a client loads a generated room (room version 11, 3,000 events)
# in batches of 500 with ingest_events, each batch its own committed transaction, and logs a
# batch's number only after its COMMIT returned. The server is killed with SIGKILL twice while
# batches run:
#   crash 1: the postmaster and all its processes at once, while a batch's ingest_events runs;
#   crash 2: the postmaster alone (its backends die when they notice), right after a COMMIT.
# After each restart (crash recovery): every batch logged as committed is fully stored; every
# batch is all or nothing, and the stored batches are the first ones; check_integrity() is empty;
# the current state is readable; and the client, started again from the first missing batch,
# goes on. At the end the room must read the same (state at every event, current state,
# backfill, by event IDs: NIDs have gaps after a crash) as the same room loaded without crashes.
# Usage: tests/tiers/crash_recovery.sh (root or a user that can run initdb; the extension
# installed into the system PostgreSQL 15). KEEP=1 keeps the work directory.
. "$(dirname "$0")/lib_rooms.sh"

BATCH=500
BATCHES=6
WORK="$(mktemp -d /tmp/crash_recovery.XXXXXX)"
chmod 755 "$WORK"
LOADER_PID=
cleanup() {
    if [ -n "$LOADER_PID" ]; then kill "$LOADER_PID" 2>/dev/null || true; fi
    stop_cluster
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

wait_for_extension
gen_room "$WORK/room.jsonl"
chmod 644 "$WORK/room.jsonl"

# A cluster like start_cluster's, but durable: fsync on (start_cluster turns it off).
CLUSTER_DIR="$WORK/cluster"
mkdir -p "$CLUSTER_DIR"
chmod 755 "$CLUSTER_DIR"
if [ "$(id -u)" = 0 ]; then chown postgres: "$CLUSTER_DIR"; fi
PORT=$(free_port)
as_cluster_user "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
start_server() {
    as_cluster_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w -t 120 \
        -o "-p $PORT -k $CLUSTER_DIR -c listen_addresses=localhost -c fsync=on -c synchronous_commit=on -c full_page_writes=on" \
        start > /dev/null 2> "$CLUSTER_DIR/pg_ctl.err" ||
        { cat "$CLUSTER_DIR/pg_ctl.err" >&2; tail -20 "$CLUSTER_DIR/server.log" >&2; fail "the server did not start"; }
}
start_server
export PGHOST="$CLUSTER_DIR" PGPORT="$PORT" PGUSER=postgres
[ "$(q -d postgres -c "SHOW fsync")" = on ] || fail "fsync is not on"
q -d postgres -c "CREATE DATABASE crash" -c "CREATE DATABASE reference"
q -d crash -c "CREATE EXTENSION pg_roomserver"
q -d reference -c "CREATE EXTENSION pg_roomserver"
log "crash_recovery: cluster on port $PORT, fsync=on"

# The client: batches FROM..BATCHES, each committed, its number logged after COMMIT returned.
loader_sql() {
    local b
    echo '\set ON_ERROR_STOP 1'
    echo 'CREATE TEMP TABLE staging (n bigserial, pdu jsonb);'
    echo "\\copy staging (pdu) FROM '$WORK/room.jsonl' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
    for b in $(seq "$1" "$BATCHES"); do
        echo "BEGIN;"
        echo "SELECT count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM staging WHERE n BETWEEN $(((b - 1) * BATCH + 1)) AND $((b * BATCH))));"
        echo "COMMIT;"
        echo "\\! echo $b >> '$WORK/committed.log'"
    done
}
start_loader() {
    loader_sql "$1" | q -d crash -o /dev/null -f - > "$WORK/loader-$1.log" 2>&1 &
    LOADER_PID=$!
}
touch "$WORK/committed.log"
logged() { wc -l < "$WORK/committed.log"; }

# kill_server MODE: SIGKILL to the postmaster (MODE=postmaster) or to it and all its processes
# (MODE=all); then waits (at most 30 s) for the old processes to be gone, and restarts.
kill_server() {
    local pm kids p i
    pm=$(head -1 "$CLUSTER_DIR/data/postmaster.pid")
    kids=$(ps -o pid= --ppid "$pm" | tr -d ' ' | tr '\n' ' ')
    if [ "$1" = all ]; then
        # shellcheck disable=SC2086
        kill -9 "$pm" $kids
    else
        kill -9 "$pm"
    fi
    # Until every old process is gone (a backend notices the postmaster's death when it next
    # waits), at most 30 s; then SIGKILL what is left (the new postmaster would refuse to start
    # while one of them still holds the shared memory).
    local alive
    for i in $(seq 1 300); do
        alive=
        for p in $pm $kids; do if kill -0 "$p" 2>/dev/null; then alive="$alive $p"; fi; done
        if [ -z "$alive" ]; then break; fi
        sleep 0.1
    done
    if [ -n "$alive" ]; then
        log "crash_recovery: processes$alive of the killed server still run after 30 s: SIGKILL"
        # shellcheck disable=SC2086
        kill -9 $alive 2>/dev/null || true
        sleep 1
    fi
    # The client has lost its connection (or finished); at most 30 s.
    for i in $(seq 1 300); do kill -0 "$LOADER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$LOADER_PID" 2>/dev/null && fail "the client still runs 30 s after the server was killed"
    wait "$LOADER_PID" 2>/dev/null || true
    LOADER_PID=
    local before; before=$(grep -c 'automatic recovery in progress' "$CLUSTER_DIR/server.log" || true)
    start_server
    [ "$(grep -c 'automatic recovery in progress' "$CLUSTER_DIR/server.log" || true)" -gt "$before" ] ||
        fail "the restart after the kill did not run crash recovery (server.log)"
}

# verify WHEN: the invariants after a restart; sets STORED to the number of stored batches.
verify() {
    local rows b n last_logged bad
    last_logged=$(tail -1 "$WORK/committed.log"); last_logged=${last_logged:-0}
    rows=$(q -d crash <<SQL
CREATE TEMP TABLE staging (n bigserial, pdu jsonb);
\\copy staging (pdu) FROM '$WORK/room.jsonl' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')
SELECT b || ' ' || count(e.event_nid)
FROM (SELECT (n - 1) / $BATCH + 1 AS b, roomserver.event_id_for(pdu, '11') AS id FROM staging) s
LEFT JOIN roomserver.stored_events e ON e.event_id = s.id
GROUP BY b ORDER BY b;
SQL
) || fail "$1: reading the stored batches failed"
    STORED=0
    local gap=0
    while read -r b n; do
        if [ "$n" = "$BATCH" ]; then
            [ "$gap" = 0 ] || fail "$1: batch $b is stored but an earlier one is not (batches: $(echo "$rows" | tr '\n' ','))"
            STORED=$b
        elif [ "$n" = 0 ]; then
            gap=1
        else
            fail "$1: batch $b is partially stored: $n of $BATCH events (all or nothing; batches: $(echo "$rows" | tr '\n' ','))"
        fi
    done <<< "$rows"
    [ "$STORED" -ge "$last_logged" ] || fail "$1: batch $last_logged was logged as committed but only $STORED batches are stored"
    [ "$STORED" -le $((last_logged + 1)) ] || fail "$1: $STORED batches stored but only $last_logged logged: more than the one in flight"
    local events; events=$(q -d crash -c "SELECT count(*) FROM roomserver.stored_events")
    [ "$events" = $((STORED * BATCH)) ] || fail "$1: $events events stored, expected $((STORED * BATCH)) ($STORED whole batches)"
    bad=$(q -d crash -c "SELECT count(*) FROM roomserver.check_integrity()") || fail "$1: check_integrity() failed"
    [ "$bad" = 0 ] || fail "$1: check_integrity() reports $bad problems: $(q -d crash -c "SELECT * FROM roomserver.check_integrity() LIMIT 3" | tr '\n' ' ')"
    local cs; cs=$(q -d crash -c "SELECT count(*) FROM roomserver.current_state") || fail "$1: the current state is not readable"
    if [ "$STORED" -gt 0 ]; then [ "$cs" -gt 0 ] || fail "$1: the current state is empty with $STORED batches stored"; fi
    # The state after the last stored event and a state_ids response read back.
    if [ "$STORED" -gt 0 ]; then
        q -d crash -o /dev/null -c "SELECT roomserver.state_ids(room_id, event_id) FROM roomserver.events ORDER BY event_nid DESC LIMIT 1" \
            || fail "$1: state_ids at the last stored event failed"
    fi
    log "crash_recovery: $1: $last_logged batches logged, $STORED stored whole, none partial, check_integrity() empty, current state $cs entries ($(elapsed))"
}

# Crash 1: all processes at once, while the ingest_events of batch 3 or later runs.
start_loader 1
active_sql="SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE '%roomserver.ingest_events%'"
killed=0
for i in $(seq 1 1500); do
    if [ "$(logged)" -ge 2 ] && [ "$(q -d postgres -c "$active_sql" 2>/dev/null || echo 0)" = 1 ]; then
        kill_server all; killed=1; break
    fi
    kill -0 "$LOADER_PID" 2>/dev/null || break
    sleep 0.02
done
[ "$killed" = 1 ] || fail "crash 1: the client finished (or failed: $(tail -2 "$WORK/loader-1.log")) before a batch could be caught running"
verify "crash 1 (every process, during ingest_events)"
[ "$STORED" -lt "$BATCHES" ] || fail "crash 1: every batch was stored: the kill came too late"

# Crash 2: the postmaster alone, right after the next batch's COMMIT was logged.
next=$((STORED + 1))
start_loader "$next"
seen=$(logged)
killed=0
for i in $(seq 1 3000); do
    if [ "$(logged)" -gt "$seen" ]; then kill_server postmaster; killed=1; break; fi
    kill -0 "$LOADER_PID" 2>/dev/null || break
    sleep 0.01
done
[ "$killed" = 1 ] || fail "crash 2: the client ended before it committed a batch: $(tail -2 "$WORK/loader-$next.log")"
verify "crash 2 (the postmaster, after a COMMIT)"

# The rest, without crashes.
if [ "$STORED" -lt "$BATCHES" ]; then
    next=$((STORED + 1))
    start_loader "$next"
    for i in $(seq 1 1200); do kill -0 "$LOADER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$LOADER_PID" 2>/dev/null && fail "the final load did not finish within 120 s"
    wait "$LOADER_PID" || fail "the final load (batches $next-$BATCHES) failed after the crashes: $(grep -m2 ERROR "$WORK/loader-$next.log")"
    LOADER_PID=
fi
verify "after the remaining batches"
[ "$STORED" = "$BATCHES" ] || fail "only $STORED of $BATCHES batches stored at the end"

# The same room loaded without crashes must read the same (by event IDs: NIDs have gaps).
load_range reference "$WORK/room.jsonl" 1 3000
digest_sql=$(cat <<'SQL'
SELECT event_id, type, state_key, sender, depth, rejection, soft_failure, outlier, content_hash_ok FROM roomserver.events ORDER BY event_id;
SELECT event_id, md5(roomserver.pdu(event_id)::text) FROM roomserver.events ORDER BY event_id;
SELECT e.event_id, md5(roomserver.state_ids(e.room_id, e.event_id)::text) FROM roomserver.events e ORDER BY e.event_id;
SELECT room_id, type, state_key, event_id FROM roomserver.current_state ORDER BY 1, 2, 3;
SELECT r.room_id, f FROM roomserver.rooms r, LATERAL roomserver.forward_extremities(r.room_id) f ORDER BY 1, 2;
SELECT md5((roomserver.backfill(r.room_id, ARRAY(SELECT roomserver.forward_extremities(r.room_id)), 100) - 'origin_server_ts')::text) FROM roomserver.rooms r;
SQL
)
# One statement at a time (psql -c with several prints only the last result).
: > "$WORK/crash.txt"; : > "$WORK/reference.txt"
while IFS= read -r stmt; do
    q -d crash -c "SET roomserver.server_name = 'crash.example'" -c "$stmt" >> "$WORK/crash.txt" || fail "on the recovered database: $stmt"
    q -d reference -c "SET roomserver.server_name = 'crash.example'" -c "$stmt" >> "$WORK/reference.txt" || fail "on the reference database: $stmt"
done <<< "$digest_sql"
if ! cmp -s "$WORK/crash.txt" "$WORK/reference.txt"; then
    diff "$WORK/reference.txt" "$WORK/crash.txt" | head -20 | cut -c1-200 >&2 || true
    fail "the recovered room reads differently from the same room loaded without crashes"
fi
echo "PASS crash_recovery: 2 SIGKILLs (all processes during ingest_events; the postmaster after a COMMIT) with fsync on: every logged batch stored, no partial batch, check_integrity() empty, the load resumed, and the $((BATCHES * BATCH))-event room reads as one loaded without crashes ($(elapsed))"
