#!/usr/bin/env bash
# The fuzz tier: mutated PDUs and random arguments against the installed extension.
#
# Starts a throwaway cluster, creates the extension in a fresh database, loads the sample room
# (roomgen/sample/room-v12.jsonl) and, when a roomgen binary is at hand (FUZZ_ROOMGEN, or
# target/{release,debug}/roomgen, which tier 1's cargo test builds), two generated rooms of
# room versions 1 and 5 (legacy event IDs and [id, hash] references; integers beyond 2^53 still
# allowed), then runs tests/fuzz/fuzz.py against them and stops the cluster.
#
# Bounded and deterministic: FUZZ_SEED (default 1) fixes every input, FUZZ_CASES (default
# 10000) mutated PDUs, FUZZ_TIME_CAP (default 240 s) stops the driver by itself, and the driver
# is killed at FUZZ_TIME_CAP + 90 s whatever happens. Exits 1 on any failure (the driver prints
# at most 30 lines of them; the full list goes to target/fuzz-failures.jsonl, the first input of
# each function and SQLSTATE to target/fuzz-examples.jsonl, the server log to
# target/fuzz-server.log).
#
# Needs the extension installed into the system PostgreSQL 15 (scripts/lib.sh install_extension)
# and python3 with venv: psycopg[binary] is installed into target/fuzz-venv when missing.
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$REPO"

if [ ! -f "/usr/share/postgresql/$PG_VERSION/extension/pg_roomserver.control" ]; then
    echo "fuzz: pg_roomserver is not installed into PostgreSQL $PG_VERSION (run install_extension first)" >&2
    exit 2
fi

VENV="$REPO/target/fuzz-venv"
if ! "$VENV/bin/python" -c "import psycopg" 2>/dev/null; then
    log "installing psycopg[binary] into $VENV"
    rm -rf "$VENV"
    mkdir -p "$REPO/target"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 has no venv module without python3-venv.
        rm -rf "$VENV"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q "psycopg[binary]"
fi

WORK="$(mktemp -d /tmp/pg_roomserver-fuzz.XXXXXX)"
chmod 755 "$WORK"
cleanup() {
    if [ -n "${CLUSTER_DIR:-}" ] && [ -f "$CLUSTER_DIR/server.log" ]; then
        cp "$CLUSTER_DIR/server.log" "$REPO/target/fuzz-server.log" 2>/dev/null || true
    fi
    stop_cluster
    rm -rf "$WORK"
}
trap cleanup EXIT

started=$SECONDS
start_cluster "$WORK/cluster" || exit 2
export PGDATABASE=pg_roomserver_fuzz
"$PG_BIN/createdb" "$PGDATABASE"
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pg_roomserver"

# load_room FILE: the whole room in one ingest_events call (COPY text format doubles backslashes).
load_room() {
    sed 's/\\/\\\\/g' "$1" > "$WORK/load.copy"
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE staging (n bigserial, pdu jsonb);
\copy staging (pdu) FROM '$WORK/load.copy'
SELECT count(*) AS "loaded $(basename "$1")" FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM staging));
SQL
}

rooms=(--room "12:$REPO/roomgen/sample/room-v12.jsonl")
load_room "$REPO/roomgen/sample/room-v12.jsonl"

ROOMGEN="${FUZZ_ROOMGEN:-}"
if [ -z "$ROOMGEN" ]; then
    for b in "$REPO/target/release/roomgen" "$REPO/target/debug/roomgen"; do
        if [ -x "$b" ]; then ROOMGEN="$b"; break; fi
    done
fi
if [ -n "$ROOMGEN" ] && [ -x "$ROOMGEN" ]; then
    "$ROOMGEN" --quiet --seed 3 --version 1 --members 20 --servers 3 --events 300 --fork-every 30 \
        --fork-width 2 --fork-depth 3 --churn 0.2 --out "$WORK/room-v1.jsonl"
    "$ROOMGEN" --quiet --seed 5 --version 5 --members 50 --servers 4 --events 2000 --fork-every 50 \
        --fork-width 3 --fork-depth 4 --churn 0.2 --power-share 0.1 --out "$WORK/room-v5.jsonl"
    for v in 1 5; do
        load_room "$WORK/room-v$v.jsonl"
        rooms+=(--room "$v:$WORK/room-v$v.jsonl")
    done
else
    log "fuzz: no roomgen binary (FUZZ_ROOMGEN, target/*/roomgen): the sample room only"
fi
log "fuzz: cluster up and rooms loaded in $((SECONDS - started)) s"

cap="${FUZZ_TIME_CAP:-240}"
status=0
FUZZ_TIME_CAP="$cap" FUZZ_REPORT="$REPO/target/fuzz-failures.jsonl" FUZZ_EXAMPLES="$REPO/target/fuzz-examples.jsonl" \
    timeout --signal=KILL "$((${cap%.*} + 90))" \
    "$VENV/bin/python" -u "$REPO/tests/fuzz/fuzz.py" "${rooms[@]}" --server-log "$CLUSTER_DIR/server.log" || status=$?
if [ "$status" -eq 137 ]; then
    echo "fuzz: FAIL: the driver did not stop by itself within $((${cap%.*} + 90)) s and was killed" >&2
fi
log "fuzz: tier finished in $((SECONDS - started)) s (exit $status)"
exit "$status"
