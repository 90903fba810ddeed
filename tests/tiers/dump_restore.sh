#!/usr/bin/env bash
# pg_dump and restore of a database holding rooms: the restored database must answer every read
# function exactly as the original did, keep its NID sequences, and go on ingesting.
#
# Database a gets lines 1-2400 of a generated forked room (room version 11, 3,000 events), the
# sample room (v12, 40 events), 5 later events stored as outliers (pending references, backward
# extremities) and 20 held-back PDUs in a user table (public.probe_pdus). Its canonical read-out
# (tests/tiers/readout.sql: check_integrity, every table's row count, every sequence's last value,
# the NID dictionaries, every event, state_ids at every event (every 3rd after the second load), state_at_event / state /
# event_auth / event at a sample, backfill from the forward extremities and at 4 points,
# get_missing_events, forwards_fill, snapshot_entries of every snapshot, current_state, ...) is
# recorded; then for both pg_dump -Fc + pg_restore and plain pg_dump + psql -f into a fresh
# database, the restored read-out must be identical. Then lines 2401-3000 (which include the 5
# outliers, now with their prev events) are ingested into a and into both restored databases:
# the new events must get NIDs above every NID from before the dump (the sequences survived),
# check_integrity() must stay empty, and the three read-outs must again be identical.
#
# Usage: tests/tiers/dump_restore.sh  (root or a user that can run initdb; the extension must be
# installed into the system PostgreSQL 15). KEEP=1 keeps the work directory. FROM_VERSION=0.1.0
# creates the extension at that version and updates it (ALTER EXTENSION UPDATE) before loading,
# as an upgraded installation has it.
. "$(dirname "$0")/lib_rooms.sh"

WORK="$(mktemp -d /tmp/dump_restore.XXXXXX)"
chmod 755 "$WORK"
cleanup() {
    stop_cluster
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

wait_for_extension
gen_room "$WORK/room.jsonl"
chmod 644 "$WORK/room.jsonl"
start_cluster "$WORK/cluster"
log "dump_restore: cluster on port $PGPORT"

failures=()
problem() { echo "FAIL: $*" >&2; failures+=("$*"); }

# The original database.
q -d postgres -c "CREATE DATABASE a"
if [ -n "${FROM_VERSION:-}" ]; then
    # The database as an upgraded installation has it: created at FROM_VERSION, then updated.
    q -d a -c "CREATE EXTENSION pg_roomserver VERSION '$FROM_VERSION'" -c "ALTER EXTENSION pg_roomserver UPDATE"
    log "dump_restore: extension created at $FROM_VERSION, updated to $(q -d a -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_roomserver'")"
else
    q -d a -c "CREATE EXTENSION pg_roomserver"
fi
load_range a "$WORK/room.jsonl" 1 2400
load_range a "$SAMPLE_ROOM" 1 40
outliers=$(ingest_outliers a "$WORK/room.jsonl" 2405 2460 5)
[ "$outliers" = 5 ] || fail "expected 5 outliers stored, got '$outliers'"
probe_pdus a "$WORK/room.jsonl" 2401 2420
readout a "$WORK/a0.txt" 10 -v with_sequences=1
[ "$(sed -n 2p "$WORK/a0.txt")" = "== tables" ] || fail "check_integrity() of the original database is not empty: $(sed -n 2,5p "$WORK/a0.txt")"
events_before=$(q -d a -c "SELECT count(*) FROM roomserver.stored_events")
[ "$events_before" = 2445 ] || fail "expected 2445 stored events in a, got $events_before"
# The largest NID of each kind before the dump.
max_sql="SELECT (SELECT max(event_nid) FROM roomserver.stored_events) || ' ' ||
                (SELECT max(snapshot_nid) FROM roomserver.state_snapshots) || ' ' ||
                (SELECT max(block_nid) FROM roomserver.state_blocks) || ' ' ||
                (SELECT max(state_key_nid) FROM roomserver.event_state_keys) || ' ' ||
                (SELECT max(room_nid) FROM roomserver.rooms)"
read -r max_event max_snapshot max_block max_state_key _ <<< "$(q -d a -c "$max_sql")"
q -d a -o /dev/null -c "CREATE TABLE public.before_dump AS SELECT event_id FROM roomserver.stored_events"
log "dump_restore: a holds $events_before events (max event NID $max_event, snapshot $max_snapshot, block $max_block); read-out $(wc -l < "$WORK/a0.txt") lines ($(elapsed))"

# The dumps, both taken before anything else is written to a.
pg_dump -d a -Fc -f "$WORK/a.dump"
pg_dump -d a -f "$WORK/a.sql"
data_entries=$(pg_restore -l "$WORK/a.dump" | grep -c 'TABLE DATA roomserver ' || true)
seq_entries=$(pg_restore -l "$WORK/a.dump" | grep -c 'SEQUENCE SET roomserver ' || true)
log "dump_restore: the custom dump has $data_entries TABLE DATA and $seq_entries SEQUENCE SET entries of schema roomserver"

restore() {  # restore FORMAT DB
    if [ "$1" = custom ]; then
        pg_restore --exit-on-error -d "$2" "$WORK/a.dump"
    else
        q -d "$2" -o /dev/null -f "$WORK/a.sql"
    fi
}

# Restore each dump into a fresh database and compare.
for fmt in custom plain; do
    db="restored_$fmt"
    q -d postgres -c "CREATE DATABASE $db"
    if ! restore "$fmt" "$db" > "$WORK/restore-$fmt.log" 2>&1; then
        problem "$fmt dump: the restore into a fresh database failed: $(grep -m3 -E 'ERROR|error' "$WORK/restore-$fmt.log" | tr '\n' ' ')"
        continue
    fi
    ( readout "$db" "$WORK/$fmt-0.txt" 10 -v with_sequences=1 ) || { problem "$fmt dump: the read-out of the restored database failed"; continue; }
    if ! cmp -s "$WORK/a0.txt" "$WORK/$fmt-0.txt"; then
        ( diff_or_fail "$WORK/a0.txt" "$WORK/$fmt-0.txt" "x" ) 2>&1 | grep -v '^FAIL: x$' >&2 || true
        problem "$fmt dump: the restored database does not read back as the original ($(q -d "$db" -c "SELECT count(*) FROM roomserver.stored_events") events restored of $events_before)"
    else
        log "dump_restore: $fmt dump restored: read-out identical ($(elapsed))"
    fi
done

# Go on ingesting: the rest of the room into a (the reference) and into each restored database.
if ! try_load_range a "$WORK/room.jsonl" 2401 3000 > "$WORK/ingest-a.log" 2>&1; then
    fail "ingesting lines 2401-3000 into the ORIGINAL database failed (not a dump problem): $(head -3 "$WORK/ingest-a.log")"
fi
readout a "$WORK/a1.txt" 10 -v with_sequences=1 -v ids_k=3
ref_new_events=$(q -d a -c "SELECT count(*) FROM roomserver.stored_events WHERE event_id NOT IN (SELECT event_id FROM public.before_dump)")
[ "$ref_new_events" = 595 ] || fail "expected 595 new events in the original database (600 lines, 5 already stored as outliers), got $ref_new_events"
for fmt in custom plain; do
    db="restored_$fmt"
    [ -f "$WORK/$fmt-0.txt" ] || continue
    if ! try_load_range "$db" "$WORK/room.jsonl" 2401 3000 > "$WORK/ingest-$fmt.log" 2>&1; then
        problem "$fmt dump: ingesting lines 2401-3000 into the restored database failed: $(grep -m2 -E 'ERROR|DETAIL' "$WORK/ingest-$fmt.log" | cut -c1-300 | tr '\n' ' ')"
        continue
    fi
    bad=$(q -d "$db" -c "SELECT count(*) FROM roomserver.check_integrity()")
    [ "$bad" = 0 ] || problem "$fmt dump: check_integrity() reports $bad problems after ingesting into the restored database: $(q -d "$db" -c "SELECT * FROM roomserver.check_integrity() LIMIT 3" | tr '\n' ' ')"
    read -r new_events low_event <<< "$(q -d "$db" -c "
        SELECT count(*) || ' ' || count(*) FILTER (WHERE e.event_nid <= $max_event)
        FROM roomserver.stored_events e WHERE e.event_id NOT IN (SELECT event_id FROM public.before_dump)")"
    # New snapshots, blocks and state keys: those whose NID is above the old maximum must be all
    # the rows added (none may have come in below it, reusing a range the sequence handed out).
    read -r added_snapshots added_blocks added_keys <<< "$(q -d "$db" -c "
        SELECT (SELECT count(*) FROM roomserver.state_snapshots WHERE snapshot_nid > $max_snapshot) || ' ' ||
               (SELECT count(*) FROM roomserver.state_blocks WHERE block_nid > $max_block) || ' ' ||
               (SELECT count(*) FROM roomserver.event_state_keys WHERE state_key_nid > $max_state_key)")"
    read -r ref_snapshots ref_blocks ref_keys <<< "$(q -d a -c "
        SELECT (SELECT count(*) FROM roomserver.state_snapshots WHERE snapshot_nid > $max_snapshot) || ' ' ||
               (SELECT count(*) FROM roomserver.state_blocks WHERE block_nid > $max_block) || ' ' ||
               (SELECT count(*) FROM roomserver.event_state_keys WHERE state_key_nid > $max_state_key)")"
    [ "$new_events" = "$ref_new_events" ] || problem "$fmt dump: expected $ref_new_events new events after the restore (as the original got), got $new_events"
    [ "$low_event" = 0 ] || problem "$fmt dump: $low_event new events got NIDs <= $max_event, the largest before the dump (the event NID sequence did not survive)"
    [ "$added_snapshots $added_blocks $added_keys" = "$ref_snapshots $ref_blocks $ref_keys" ] ||
        problem "$fmt dump: snapshots/blocks/state keys above the pre-dump maxima: $added_snapshots/$added_blocks/$added_keys, the original got $ref_snapshots/$ref_blocks/$ref_keys"
    ( readout "$db" "$WORK/$fmt-1.txt" 10 -v with_sequences=1 -v ids_k=3 ) || { problem "$fmt dump: the read-out of the restored database failed after ingesting"; continue; }
    if ! cmp -s "$WORK/a1.txt" "$WORK/$fmt-1.txt"; then
        ( diff_or_fail "$WORK/a1.txt" "$WORK/$fmt-1.txt" "x" ) 2>&1 | grep -v '^FAIL: x$' >&2 || true
        problem "$fmt dump: after ingesting the same 600 PDUs, the restored database and the original differ"
    else
        log "dump_restore: $fmt dump: $new_events new events ingested after the restore, NIDs above $max_event, read-out identical to the original's ($(elapsed))"
    fi
done
bad=$(q -d a -c "SELECT count(*) FROM roomserver.check_integrity()")
[ "$bad" = 0 ] || problem "check_integrity() of the original database reports $bad problems after the second load"

if [ "${#failures[@]}" -gt 0 ]; then
    echo "dump_restore: ${#failures[@]} failure(s):" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    install_changed_note
    exit 1
fi
echo "PASS dump_restore: pg_dump -Fc/pg_restore and plain pg_dump/psql both restore $events_before events identically ($(wc -l < "$WORK/a0.txt")-line read-out), sequences survive, $ref_new_events more events ingest with higher NIDs ($(elapsed))"
