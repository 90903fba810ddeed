#!/usr/bin/env bash
# Runs every test tier and exits non-zero on any failure:
#   1. cargo test        — the pure core (roomserver-core) and the room generator, and the
#                          differential test of state resolution against Synapse from PyPI
#   2. cargo pgrx test   — #[pg_test]s inside PostgreSQL 15
#   3. pg_regress        — tests/pg_regress/sql vs expected, the SQL surface as a DBA types it,
#                          the front end (roomserver-http) over the installed extension and
#                          end to end against Synapse from PyPI (tests/e2e/run.sh),
#                          plus the concurrency tests (several sessions at once: NID assignment,
#                          REPEATABLE READ duplicates, two-call transactions vs a new sender)
#   4. storage tiers     — upgrade from every earlier release build, privileges and search_path, pg_dump and
#                          restore, a hot standby, kill -9 mid-batch, a bounded fuzz
# Installs what it needs first (apt packages, cargo-pgrx 0.18.0). Usage: scripts/test.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_prerequisites
cd "$REPO"

WORK="$(mktemp -d /tmp/pg_roomserver-test.XXXXXX)"
chmod 755 "$WORK"
cleanup() { stop_cluster; rm -rf "$WORK"; }
trap cleanup EXIT

log "tier 1/4: cargo test (pure core, room generator, front end units)"
cargo test --workspace --exclude pg_roomserver

log "tier 1/4: differential test of state resolution against Synapse (PyPI)"
ensure_synapse
SYNAPSE_PYTHON="$SYNAPSE_VENV/bin/python" cargo test --release -p roomserver-conformance -- --ignored --nocapture

log "tier 2/4: cargo pgrx test pg15"
if [ "$(id -u)" = 0 ]; then
    # pgrx creates PGDATA below this directory as the postgres user.
    mkdir -p "$WORK/pgrx-data" && chown postgres: "$WORK/pgrx-data"
    cargo pgrx test pg15 --runas postgres --pgdata "$WORK/pgrx-data"
else
    cargo pgrx test pg15
fi

log "tier 3/4: pg_regress"
install_extension
start_cluster "$WORK/cluster"
tests=$(cd tests/pg_regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
# run_pg_regress OUTPUTDIR TEST...: pg_regress drops and creates the database first; each file
# gets its fixture from tests/pg_regress/setup/setup.sql, which it includes. Prints a line per
# test; on a failure, pg_regress's output and the diffs, and exits.
run_pg_regress() {
    local out="$1"; shift
    mkdir -p "$out"
    local status=0
    /usr/lib/postgresql/$PG_VERSION/lib/pgxs/src/test/regress/pg_regress \
        --inputdir=tests/pg_regress --outputdir="$out" --bindir="$PG_BIN" \
        --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=pg_roomserver_regress \
        "$@" >"$out/pg_regress.txt" 2>&1 || status=$?
    grep '^test ' "$out/pg_regress.txt" || true
    if [ "$status" -ne 0 ]; then
        cat "$out/pg_regress.txt" "$out/regression.diffs" >&2 || true
        exit "$status"
    fi
}
# shellcheck disable=SC2086
run_pg_regress "$WORK/regress" $tests
log "pg_regress: each file alone, on a fresh database (none may depend on what another left)"
for t in $tests; do
    run_pg_regress "$WORK/regress-alone/$t" "$t"
done

log "concurrency: NID assignment from several sessions at once"
bash tests/concurrency/nid_race.sh
log "concurrency: REPEATABLE READ sessions ingesting the same events (40001, never 23505)"
bash tests/concurrency/rr_duplicate.sh
log "concurrency: a two-call transaction against a call introducing a new sender (no deadlock)"
bash tests/concurrency/deadlock_two_calls.sh
log "front end: roomserver-http over the installed extension, a signed test client on loopback TLS"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS roomserver_http_test" -c "CREATE DATABASE roomserver_http_test"
psql -X -q -v ON_ERROR_STOP=1 -d roomserver_http_test -c "CREATE EXTENSION pg_roomserver"
ROOMSERVER_TEST_DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=roomserver_http_test" \
    cargo test -p roomserver-http --test federation_pg --test joins_pg --test remote_join_pg -- --ignored
log "end to end: roomserver-http and Synapse $SYNAPSE_VERSION on loopback (a room hosted here joined, paginated, talked to; a Synapse room joined and backfilled)"
bash tests/e2e/run.sh
log "demo: scripts/demo.sh on the installed build (it checks its own answers)"
bash scripts/demo.sh --installed >"$WORK/demo.txt" 2>&1 || { cat "$WORK/demo.txt" >&2; exit 1; }

log "tier 4/4: upgrade from the builds of every earlier release (0.1.0, 0.2.0)"
bash tests/tiers/upgrade.sh
log "tier 4/4: privileges, roles and planted search_path functions"
bash tests/tiers/privileges.sh
log "tier 4/4: pg_dump (custom and plain) and restore into fresh databases"
bash tests/tiers/dump_restore.sh
log "tier 4/4: a streaming replica: reads equal to the primary, ingest 25006, a long-lived session"
bash tests/tiers/standby.sh
log "tier 4/4: kill -9 of the postmaster mid-batch"
bash tests/tiers/crash_recovery.sh
log "tier 4/4: fuzz: 10,000 mutated PDUs and random read arguments (fixed seed, bounded time)"
bash tests/fuzz/run.sh

log "all tiers passed"
