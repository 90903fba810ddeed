#!/usr/bin/env bash
# A streaming-replication hot standby of a database holding rooms:
#   1. every read function and view (tests/tiers/readout.sql: state_ids, state, state_at_event,
#      backfill, get_missing_events, forwards_fill, event_auth, event, pdu, current_state,
#      room_members, events, missing_events, backward_extremities, snapshot_entries, ...)
#      returns on the standby exactly what it returns on the primary;
#   2. ingest_event / ingest_events on the standby fail with SQLSTATE 25006
#      (read_only_sql_transaction), as they do in a READ ONLY transaction on the primary;
#   3. one long-lived standby session, which has read (and so cached) every state, sees what the
#      primary does after each change is replayed: more events; TRUNCATE ... RESTART IDENTITY of
#      every table (the empty state); a different room ingested with the same, reused NIDs; DROP
#      EXTENSION + CREATE EXTENSION and another load. Never stale cached state.
# Usage: tests/tiers/standby.sh (root or a user that can run initdb; the extension installed into
# the system PostgreSQL 15). KEEP=1 keeps the work directory.
. "$(dirname "$0")/lib_rooms.sh"

WORK="$(mktemp -d /tmp/standby.XXXXXX)"
chmod 755 "$WORK"
REPLICA="$WORK/replica"
LL_PID=
cleanup() {
    exec 7>&- 2>/dev/null || true
    if [ -n "$LL_PID" ]; then kill "$LL_PID" 2>/dev/null || true; fi
    if [ -d "$REPLICA/data" ]; then as_cluster_user "$PG_BIN/pg_ctl" -D "$REPLICA/data" -m immediate stop >/dev/null 2>&1 || true; fi
    stop_cluster
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

failures=()
problem() { echo "FAIL: $*" >&2; failures+=("$*"); }

wait_for_extension
gen_room "$WORK/room.jsonl"
ensure_roomgen
# The room loaded after the TRUNCATE: other events, other states, under the same (reused) NIDs.
"$ROOMGEN" --seed 8 --version 10 --members 30 --servers 4 --events 800 --fork-every 40 --fork-width 3 \
    --fork-depth 3 --churn 0.3 --quiet --out "$WORK/other.jsonl"
chmod 644 "$WORK"/*.jsonl

# The primary; streaming replication from localhost needs a replication line in pg_hba.conf.
start_cluster "$WORK/primary"
PRIMARY_PORT=$PGPORT
hba="$WORK/primary/data/pg_hba.conf"
for addr in 127.0.0.1/32 ::1/128; do
    if ! grep -Eq "^host[[:space:]]+replication[[:space:]]+all[[:space:]]+${addr//./\\.}[[:space:]]+trust" "$hba"; then
        echo "host    replication     all             $addr            trust" >> "$hba"
        log "standby: added a replication trust line for $addr to pg_hba.conf"
    fi
done
q -d postgres -o /dev/null -c "SELECT pg_reload_conf()"
[ "$(q -d postgres -c "SHOW wal_level")" != minimal ] || fail "wal_level is minimal on the primary"

q -d postgres -c "CREATE DATABASE rs"
q -d rs -c "CREATE EXTENSION pg_roomserver"
load_range rs "$WORK/room.jsonl" 1 2000
load_range rs "$SAMPLE_ROOM" 1 40
outliers=$(ingest_outliers rs "$WORK/room.jsonl" 2005 2100 5)
probe_pdus rs "$WORK/room.jsonl" 2001 2020
log "standby: primary on port $PRIMARY_PORT holds $(q -d rs -c "SELECT count(*) FROM roomserver.stored_events") events ($outliers outliers) ($(elapsed))"

# The standby.
mkdir -p "$REPLICA"
chmod 755 "$REPLICA"
if [ "$(id -u)" = 0 ]; then chown postgres: "$REPLICA"; fi
as_cluster_user "$PG_BIN/pg_basebackup" -h localhost -p "$PRIMARY_PORT" -U postgres -D "$REPLICA/data" -R -X stream -c fast \
    || fail "pg_basebackup from the primary failed"
REPLICA_PORT=$(free_port)
as_cluster_user "$PG_BIN/pg_ctl" -D "$REPLICA/data" -l "$REPLICA/server.log" -w -t 60 \
    -o "-p $REPLICA_PORT -k $REPLICA -c listen_addresses=localhost -c hot_standby=on -c fsync=off" start >/dev/null \
    || { tail -20 "$REPLICA/server.log" >&2; fail "the standby did not start"; }
RQ=(-h "$REPLICA" -p "$REPLICA_PORT")
[ "$(q "${RQ[@]}" -d postgres -c "SELECT pg_is_in_recovery()")" = t ] || fail "the replica is not in recovery"

# Waits (at most 60 s) until the standby has replayed everything the primary has written.
wait_replay() {
    local lsn i
    lsn=$(q -d postgres -c "SELECT pg_current_wal_lsn()")
    for i in $(seq 1 300); do
        if [ "$(q "${RQ[@]}" -d postgres -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" = t ]; then return 0; fi
        sleep 0.2
    done
    fail "the standby did not replay up to $lsn within 60 s (it is at $(q "${RQ[@]}" -d postgres -c "SELECT pg_last_wal_replay_lsn()"))"
}
wait_replay
log "standby: replica on port $REPLICA_PORT caught up ($(elapsed))"

# 1. Every read function, primary vs standby.
readout rs "$WORK/primary.txt" 10
readout rs "$WORK/replica.txt" 10 "${RQ[@]}"
[ "$(sed -n 2p "$WORK/primary.txt")" = "== tables" ] || problem "check_integrity() on the primary is not empty"
if cmp -s "$WORK/primary.txt" "$WORK/replica.txt"; then
    log "standby: read-out identical on the standby ($(wc -l < "$WORK/primary.txt") lines) ($(elapsed))"
else
    ( diff_or_fail "$WORK/primary.txt" "$WORK/replica.txt" x ) 2>&1 | grep -v '^FAIL: x$' >&2 || true
    problem "the read functions answer differently on the standby"
fi

# 2. Writes on the standby: 25006. The same calls in a READ ONLY transaction on the primary too.
write_attempts() {
    cat <<'SQL'
\set ON_ERROR_STOP 0
\set VERBOSITY verbose
SELECT roomserver.ingest_event((SELECT pdu FROM public.probe_pdus ORDER BY n LIMIT 1));
\echo ingest_event(new PDU) :SQLSTATE
SELECT count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM public.probe_pdus));
\echo ingest_events(20 new PDUs) :SQLSTATE
SELECT roomserver.ingest_event((SELECT pdu FROM public.probe_pdus ORDER BY n DESC LIMIT 1), NULL, true);
\echo ingest_event(new PDU, outlier) :SQLSTATE
SELECT roomserver.ingest_event(roomserver.pdu((SELECT event_id FROM roomserver.stored_events WHERE NOT outlier ORDER BY event_nid DESC LIMIT 1))) ->> 'duplicate' AS duplicate;
\echo ingest_event(stored PDU) :SQLSTATE
SELECT count(*) FROM roomserver.ingest_events('[]'::jsonb);
\echo ingest_events(empty array) :SQLSTATE
SQL
}
write_attempts | q "${RQ[@]}" -d rs -f - > "$WORK/writes-replica.txt" 2>&1 || true
write_attempts | PGOPTIONS="-c default_transaction_read_only=on" q -d rs -f - > "$WORK/writes-readonly.txt" 2>&1 || true
check_writes() {  # check_writes FILE WHERE
    local line what state
    while IFS= read -r line; do
        what=${line% *}; state=${line##* }
        case "$what" in
            "ingest_event(stored PDU)"|"ingest_events(empty array)")
                # Writes nothing: either refused or answered; never an internal error.
                if [ "$state" != 25006 ] && [ "$state" != 00000 ]; then
                    problem "$2: $what gave SQLSTATE $state (expected 25006, or success since it writes nothing)"
                fi ;;
            *)
                [ "$state" = 25006 ] || problem "$2: $what gave SQLSTATE $state, expected 25006 (read_only_sql_transaction): $(grep -m1 -E '^(psql:.*)?ERROR' "$1" | cut -c1-200)" ;;
        esac
    done < <(grep -E '^ingest_event' "$1")
    [ "$(grep -c -E '^ingest_event' "$1")" = 5 ] || problem "$2: expected 5 write attempts in $1, got: $(head -5 "$1")"
}
check_writes "$WORK/writes-replica.txt" "on the standby"
check_writes "$WORK/writes-readonly.txt" "in a READ ONLY transaction on the primary"
log "standby: write attempts: standby $(grep -E '^ingest_event' "$WORK/writes-replica.txt" | awk '{print $NF}' | tr '\n' ' ')/ read-only primary $(grep -E '^ingest_event' "$WORK/writes-readonly.txt" | awk '{print $NF}' | tr '\n' ' ')"
stored_probes=$(q -d rs -c "SELECT count(*) FILTER (WHERE NOT e.outlier) FROM public.probe_pdus p JOIN roomserver.stored_events e ON e.event_id = roomserver.event_id_for(p.pdu, '11')")
[ "$stored_probes" = 0 ] || problem "a write attempt in a READ ONLY transaction on the primary stored $stored_probes events"

# 3. One long-lived standby session, fed through a FIFO; each request ends with a marker line.
mkfifo "$WORK/ll.in"
psql -X -q -A -t -v ON_ERROR_STOP=0 "${RQ[@]}" -d rs < "$WORK/ll.in" > "$WORK/ll.out" 2>&1 &
LL_PID=$!
exec 7> "$WORK/ll.in"
LL_SEQ=0
# ll SQL...: runs the SQL in the long-lived session and prints its output (waits at most 120 s).
ll() {
    LL_SEQ=$((LL_SEQ + 1))
    local start end i
    start=$(wc -l < "$WORK/ll.out")
    printf '%s\n\\echo @@done %s@@\n' "$*" "$LL_SEQ" >&7
    for i in $(seq 1 1200); do
        if grep -q "^@@done $LL_SEQ@@\$" "$WORK/ll.out"; then break; fi
        kill -0 "$LL_PID" 2>/dev/null || fail "the long-lived standby session exited: $(tail -5 "$WORK/ll.out")"
        sleep 0.1
    done
    end=$(grep -n "^@@done $LL_SEQ@@\$" "$WORK/ll.out" | cut -d: -f1) || fail "the long-lived standby session did not answer request $LL_SEQ within 120 s"
    sed -n "$((start + 1)),$((end - 1))p" "$WORK/ll.out"
}
# What the session reads after each change: enough to fill the backend's cache with every
# snapshot and block, and to show any of them stale.
DIGEST_SQL=$(cat <<'SQL'
SELECT 'events ' || count(*) || ' outliers ' || count(*) FILTER (WHERE outlier) || ' max ' || coalesce(max(event_nid), 0) FROM roomserver.stored_events;
SELECT 'rooms ' || coalesce(string_agg(room_nid || ':' || room_id || ':' || coalesce(current_state::text, '-'), ',' ORDER BY room_nid), '') FROM roomserver.rooms;
SELECT 'current_state ' || count(*) || ' ' || md5(coalesce(string_agg(concat_ws(',', room_id, type, state_key, event_id), ';' ORDER BY room_id, type, state_key), '')) FROM roomserver.current_state;
SELECT 'room_members ' || count(*) || ' ' || md5(coalesce(string_agg(concat_ws(',', room_id, user_id, membership), ';' ORDER BY room_id, user_id), '')) FROM roomserver.room_members;
SELECT 'snapshot_entries ' || count(*) || ' ' || md5(coalesce(string_agg(x.h, ';' ORDER BY s.room_nid, s.snapshot_nid), '')) FROM roomserver.state_snapshots s, LATERAL (SELECT s.room_nid || '/' || s.snapshot_nid || '=' || coalesce(string_agg(concat_ws(',', e.type_nid, e.state_key_nid, e.event_nid), ' ' ORDER BY e.type_nid, e.state_key_nid), '') AS h FROM roomserver.snapshot_entries(s.room_nid, s.snapshot_nid) e) x;
SELECT 'state_ids ' || count(*) || ' ' || md5(coalesce(string_agg(e.event_id || roomserver.state_ids(e.room_id, e.event_id)::text, ';' ORDER BY e.room_nid, e.event_nid), '')) FROM roomserver.events e WHERE NOT e.outlier AND e.event_nid % 5 = 0;
SELECT 'state_at_event ' || count(*) || ' ' || md5(coalesce(string_agg(concat_ws(',', e.event_id, s.type, s.state_key, s.event_id), ';' ORDER BY e.room_nid, e.event_nid, s.type, s.state_key), '')) FROM roomserver.events e, LATERAL roomserver.state_at_event(e.event_id, true) s WHERE NOT e.outlier AND e.event_nid % 13 = 0;
SELECT 'membership_at_event ' || md5(coalesce(string_agg(coalesce(roomserver.membership_at_event(e.event_id, e.sender, true), '-'), ',' ORDER BY e.room_nid, e.event_nid), '')) FROM roomserver.events e WHERE NOT e.outlier AND e.event_nid % 11 = 0;
SELECT 'backfill ' || coalesce(string_agg(md5((roomserver.backfill(r.room_id, ARRAY(SELECT roomserver.forward_extremities(r.room_id)), 100) - 'origin_server_ts')::text), ',' ORDER BY r.room_nid), '') FROM roomserver.rooms r;
SELECT 'event_auth ' || md5(coalesce(string_agg(roomserver.event_auth(e.room_id, e.event_id)::text, ';' ORDER BY e.room_nid, e.event_nid), '')) FROM roomserver.events e WHERE e.event_nid % 17 = 0;
SQL
)
ll "SET roomserver.server_name = 'readout.example';" > /dev/null
# compare_digests PHASE: the long-lived standby session against a fresh session on the primary.
compare_digests() {
    wait_replay
    ll "$DIGEST_SQL" > "$WORK/ll-$1.txt"
    printf "SET roomserver.server_name = 'readout.example';\n%s\n" "$DIGEST_SQL" | q -d rs -f - > "$WORK/primary-$1.txt" 2>&1 || true
    if grep -q ERROR "$WORK/ll-$1.txt"; then
        problem "$1: the long-lived standby session got an error: $(grep -m1 -A2 ERROR "$WORK/ll-$1.txt" | tr '\n' ' ' | cut -c1-300)"
    elif ! cmp -s "$WORK/primary-$1.txt" "$WORK/ll-$1.txt"; then
        problem "$1: the long-lived standby session reads other state than the primary: $(diff "$WORK/primary-$1.txt" "$WORK/ll-$1.txt" | grep '^[<>]' | cut -c1-120 | tr '\n' ' ')"
    else
        log "standby: $1: the long-lived standby session agrees with the primary: $(head -1 "$WORK/ll-$1.txt"), $(grep '^current_state' "$WORK/ll-$1.txt" | cut -d' ' -f1-2) ($(elapsed))"
    fi
}
compare_digests "initial load"

# More events on the primary (lines 2001-3000: the outliers get their state).
load_range rs "$WORK/room.jsonl" 2001 3000
compare_digests "after 1000 more events"
grep -q '^events 3040 outliers 0 ' "$WORK/ll-after 1000 more events.txt" || problem "expected 3040 events, no outliers, after the second load: $(head -1 "$WORK/ll-after 1000 more events.txt")"

# Every table emptied, sequences restarted: the NIDs will be handed out again.
tables=$(q -d rs -c "SELECT string_agg(format('roomserver.%I', relname), ', ' ORDER BY relname) FROM pg_class
                     WHERE relnamespace = 'roomserver'::regnamespace AND relkind IN ('r', 'p') AND relname <> 'event_types'")
q -d rs -o /dev/null -c "TRUNCATE $tables RESTART IDENTITY CASCADE" \
    -c "DELETE FROM roomserver.event_types WHERE event_type_nid >= 65536" \
    -c "SELECT setval('roomserver.event_type_nid_seq', 65536, false)"
compare_digests "after TRUNCATE"
grep -q '^events 0 outliers 0 max 0$' "$WORK/ll-after TRUNCATE.txt" || problem "after TRUNCATE the standby session still sees events: $(head -1 "$WORK/ll-after TRUNCATE.txt")"
grep -q '^current_state 0 ' "$WORK/ll-after TRUNCATE.txt" || problem "after TRUNCATE the standby session still sees a current state: $(grep '^current_state' "$WORK/ll-after TRUNCATE.txt")"

# A different room under the same NIDs (room 1, snapshots 1.., blocks 1..).
load_range rs "$WORK/other.jsonl" 1 800
compare_digests "another room after TRUNCATE"

# DROP EXTENSION + CREATE EXTENSION, then the first room again.
q -d rs -o /dev/null -c "DROP EXTENSION pg_roomserver CASCADE" -c "CREATE EXTENSION pg_roomserver"
compare_digests "after DROP + CREATE EXTENSION"
load_range rs "$WORK/room.jsonl" 1 1200
load_range rs "$SAMPLE_ROOM" 1 40
compare_digests "a reload after DROP + CREATE EXTENSION"

exec 7>&-
wait "$LL_PID" 2>/dev/null || true
LL_PID=

if [ "${#failures[@]}" -gt 0 ]; then
    echo "standby: ${#failures[@]} failure(s):" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    install_changed_note
    exit 1
fi
echo "PASS standby: the hot standby reads every room exactly as the primary ($(wc -l < "$WORK/primary.txt")-line read-out), refuses ingest with 25006, and one long-lived standby session followed 5 changes (more events, TRUNCATE, a new room under reused NIDs, DROP/CREATE EXTENSION, a reload) with no stale state ($(elapsed))"
