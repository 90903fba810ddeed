#!/usr/bin/env bash
# Several sessions introduce the same new strings at the same moment: each must get the same NIDs,
# none may see an error, and each string must be stored once. Sessions are released together by
# an advisory-lock barrier. Needs PGHOST/PGPORT/PGUSER of a cluster with pg_roomserver installed.
set -euo pipefail

SESSIONS=${SESSIONS:-8}
DB=pg_roomserver_race
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d "$DB")
"${PSQL[@]}" -c "CREATE EXTENSION pg_roomserver"

# The barrier: hold an exclusive advisory lock until every session waits on it.
"${PSQL[@]}" -o /dev/null <<SQL &
SELECT pg_advisory_lock(4242);
DO \$\$ BEGIN
    WHILE (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted) < $SESSIONS LOOP
        PERFORM pg_sleep(0.01);
    END LOOP;
END \$\$;
SELECT pg_advisory_unlock(4242);
SQL
barrier=$!
sleep 0.5

pids=()
for i in $(seq 1 "$SESSIONS"); do
    "${PSQL[@]}" -A -t > "$WORK/session-$i.out" 2> "$WORK/session-$i.err" <<'SQL' &
SELECT pg_advisory_lock_shared(4242);
SELECT pg_advisory_unlock_shared(4242);
BEGIN;
SELECT event_type || '=' || event_type_nid FROM roomserver.assign_event_type_nids(
    ARRAY(SELECT 'org.example.race.' || g FROM generate_series(1, 200) g)) ORDER BY 1;
SELECT room_id || '=' || room_nid FROM roomserver.assign_room_nids(
    ARRAY(SELECT '!race' || g || ':example.org' FROM generate_series(1, 20) g),
    array_fill('10'::text, ARRAY[20])) ORDER BY 1;
SELECT pg_sleep(0.05);
SELECT state_key || '=' || state_key_nid FROM roomserver.assign_state_key_nids(
    ARRAY(SELECT roomserver.room_nid('!race1:example.org') FROM generate_series(1, 200)),
    ARRAY(SELECT '@user' || g || ':example.org' FROM generate_series(1, 200) g)) ORDER BY 1;
COMMIT;
SQL
    pids+=($!)
done

failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
wait "$barrier"
for i in $(seq 1 "$SESSIONS"); do
    if [ -s "$WORK/session-$i.err" ]; then echo "session $i:" >&2; cat "$WORK/session-$i.err" >&2; failed=1; fi
done
[ "$failed" = 0 ] || { echo "FAIL: a session saw an error" >&2; exit 1; }

for i in $(seq 2 "$SESSIONS"); do
    if ! cmp -s "$WORK/session-1.out" "$WORK/session-$i.out"; then
        echo "FAIL: session $i got different NIDs than session 1" >&2
        diff "$WORK/session-1.out" "$WORK/session-$i.out" >&2 || true
        exit 1
    fi
done
lines=$(grep -c '=' "$WORK/session-1.out")
counts=$("${PSQL[@]}" -A -t -c "SELECT (SELECT count(*) FROM roomserver.event_types WHERE event_type LIKE 'org.example.race.%')
    || ',' || (SELECT count(*) FROM roomserver.rooms WHERE room_id LIKE '!race%')
    || ',' || (SELECT count(*) FROM roomserver.event_state_keys WHERE state_key LIKE '@user%')")
if [ "$lines" != 420 ] || [ "$counts" != "200,20,200" ]; then
    echo "FAIL: expected 420 mappings and 200,20,200 rows, got $lines and $counts" >&2
    exit 1
fi
psql -X -q -d postgres -c "DROP DATABASE $DB"
echo "$SESSIONS sessions introduced the same 420 new strings at once: identical NIDs, no errors, one row each"
echo "nid_race: 1 passed, 0 failed"
