# Shared helpers of dump_restore.sh, standby.sh and crash_recovery.sh (tests/tiers/):
# the generated room, loading it in chunks, waiting for the installed extension, psql wrappers.
# shellcheck shell=bash
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

TIERS="$REPO/tests/tiers"
ROOMGEN="$REPO/target/debug/roomgen"
SAMPLE_ROOM="$REPO/roomgen/sample/room-v12.jsonl"
T0=$SECONDS

fail() { echo "FAIL: $*" >&2; install_changed_note; exit 1; }

# The installed extension's files and their times, as wait_for_extension found them: a failure
# says so when they changed during the run (a reinstall under running backends).
EXT_STAMP=
ext_stamp() { stat -c '%n %Y' "$($PG_CONFIG --pkglibdir)/pg_roomserver.so" /usr/share/postgresql/$PG_VERSION/extension/pg_roomserver* 2>/dev/null || true; }
install_changed_note() {
    if [ -n "$EXT_STAMP" ] && [ "$(ext_stamp)" != "$EXT_STAMP" ]; then
        echo "NOTE: the installed pg_roomserver files changed during this run (reinstalled?): the failure may come from that" >&2
    fi
}
elapsed() { echo "$((SECONDS - T0))s"; }

# psql for scripts: no psqlrc, quiet, unaligned tuples only, stop at the first error.
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# Waits (bounded: $WAIT_EXTENSION_SECONDS, default 1800) for the extension to be installed into
# the system PostgreSQL; the lead installs it while these tiers are written and run.
wait_for_extension() {
    local control=/usr/share/postgresql/$PG_VERSION/extension/pg_roomserver.control
    local limit=${WAIT_EXTENSION_SECONDS:-1800} waited=0
    while [ ! -f "$control" ]; do
        [ "$waited" -ge "$limit" ] && fail "$control did not appear within ${limit}s (is the extension installed?)"
        [ "$waited" = 0 ] && log "waiting for $control"
        sleep 10; waited=$((waited + 10))
    done
    # The control file is written before the library and the SQL script: let the install finish.
    # And wait until no file of it changed for 20 s (an install rewrites them one by one: a
    # library newer than the SQL scripts fails in odd ways), at most 10 more minutes.
    local lib i newest
    lib="$($PG_CONFIG --pkglibdir)/pg_roomserver.so"
    for i in $(seq 1 300); do
        if ls /usr/share/postgresql/$PG_VERSION/extension/pg_roomserver--*.sql >/dev/null 2>&1 && [ -f "$lib" ]; then
            newest=$(stat -c %Y "$lib" /usr/share/postgresql/$PG_VERSION/extension/pg_roomserver* | sort -n | tail -1)
            if [ $(( $(date +%s) - newest )) -ge 20 ]; then EXT_STAMP=$(ext_stamp); return 0; fi
        fi
        sleep 2
    done
    fail "the pg_roomserver install did not settle (its library and SQL scripts kept changing, or one is missing)"
}

ensure_roomgen() {
    if [ ! -x "$ROOMGEN" ]; then
        log "cargo build -q -p roomgen"
        if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
        (cd "$REPO" && cargo build -q -p roomgen)
    fi
}

# gen_room FILE: the forked room every tier loads (room version 11, 60 members on 6 servers,
# 3000 events, a fork of 3 branches of 4 events every 50 events, 20% state churn).
gen_room() {
    ensure_roomgen
    "$ROOMGEN" --seed 7 --version 11 --members 60 --servers 6 --events 3000 --fork-every 50 \
        --fork-width 3 --fork-depth 4 --churn 0.2 --quiet --out "$1"
    [ "$(wc -l < "$1")" = 3000 ] || fail "roomgen wrote $(wc -l < "$1") lines to $1, expected 3000"
}

# load_sql FILE FROM TO [CHUNK]: the psql script that loads lines FROM..TO of a JSONL room file
# with ingest_events, CHUNK (default 1000) events per statement, each statement committed.
load_sql() {
    local file=$1 from=$2 to=$3 chunk=${4:-1000}
    cat <<SQL
CREATE TEMP TABLE staging (n bigserial, pdu jsonb);
\\copy staging (pdu) FROM '$file' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')
SELECT format('SELECT count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM staging WHERE n BETWEEN %s AND %s))',
              lo, least(lo + $chunk - 1, $to))
FROM generate_series($from, $to, $chunk) AS lo ORDER BY lo \\gexec
SQL
}

# load_range DB FILE FROM TO: loads those lines (see load_sql) into DB; fails on any error.
load_range() {
    try_load_range "$@" || fail "loading lines $3-$4 of $2 into database $1 failed"
}
# try_load_range DB FILE FROM TO: the same, returning psql's status instead of failing.
try_load_range() {
    local db=$1 file=$2 from=$3 to=$4
    load_sql "$file" "$from" "$to" | q -d "$db" -o /dev/null -f -
}

# ingest_outliers DB FILE FROM TO COUNT: stores as outliers the first COUNT events among every
# 3rd line of FROM..TO whose auth events are all stored (their prev events are not: pending
# references, backward extremities). Prints how many were stored.
ingest_outliers() {
    local db=$1 file=$2 from=$3 to=$4 count=$5
    q -d "$db" <<SQL
CREATE TEMP TABLE staging (n bigserial, pdu jsonb);
\\copy staging (pdu) FROM '$file' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')
SELECT count(*) FROM roomserver.ingest_events((
    SELECT jsonb_agg(pdu ORDER BY n) FROM (
        SELECT s.n, s.pdu FROM staging s
        WHERE s.n BETWEEN $from AND $to AND s.n % 3 = 0
          AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(s.pdu -> 'auth_events') a(id)
                          WHERE NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.event_id = a.id))
        ORDER BY s.n LIMIT $count) x), NULL, true) r
WHERE (r ->> 'outlier')::boolean;
SQL
}

# probe_pdus DB FILE FROM TO: keeps lines FROM..TO as public.probe_pdus (not ingested) for the
# read-out's missing_events section.
probe_pdus() {
    local db=$1 file=$2 from=$3 to=$4
    q -d "$db" -o /dev/null <<SQL
CREATE TEMP TABLE staging (n bigserial, pdu jsonb);
\\copy staging (pdu) FROM '$file' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')
CREATE TABLE public.probe_pdus AS SELECT n, pdu FROM staging WHERE n BETWEEN $from AND $to;
SQL
}

# readout DB OUT [K] [extra psql args]: the canonical read-out (tests/tiers/readout.sql) of
# every room in DB, every K-th event (default 10) sampled for the heavier endpoints.
readout() {
    local db=$1 out=$2 k=${3:-10}
    shift 3 || shift $#
    q -d "$db" -v k="$k" "$@" -f "$TIERS/readout.sql" > "$out" || fail "read-out of $db failed (see above)"
}

# diff_or_fail A B WHAT: fails with the sections that differ and the head of the diff when the
# read-outs differ.
diff_or_fail() {
    if ! cmp -s "$1" "$2"; then
        local tagged_a tagged_b
        tagged_a=$(awk '/^== /{s=$0; next} {print s "\t" $0}' "$1")
        tagged_b=$(awk '/^== /{s=$0; next} {print s "\t" $0}' "$2")
        echo "--- $1 vs $2: $(diff "$1" "$2" | grep -c '^[<>]' || true) lines differ, in these sections:" >&2
        diff <(printf '%s\n' "$tagged_a") <(printf '%s\n' "$tagged_b") | grep '^[<>]' | cut -f1 | sed 's/^[<>] /    /' | sort | uniq -c >&2 || true
        echo "--- first 30 lines of the diff:" >&2
        diff "$1" "$2" | head -30 | cut -c1-300 >&2 || true
        fail "$3"
    fi
}
