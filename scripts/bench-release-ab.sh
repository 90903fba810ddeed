#!/usr/bin/env bash
# A/B benchmark of the hot ingest path against the previous release: builds the previous
# release (its commit, in target/previous-releases-release) and the current tree in release mode, then runs
# bench/ingest_single.sql (3,000 single-event calls, each committed) ROUNDS times with each
# build, alternating, in one throwaway cluster. Prints events/s per round and the means.
# Usage: scripts/bench-release-ab.sh [ROUNDS]   (default 3; output also in bench/out/release-ab.txt)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROUNDS=${1:-3}
OLD_VERSION=$PREVIOUS_VERSION

ensure_prerequisites
cd "$REPO"
DIR="$(mktemp -d /tmp/pg_roomserver-ab.XXXXXX)"
chmod 755 "$DIR"
start_cluster "$DIR/cluster"
trap 'stop_cluster; rm -rf "$DIR"; install_extension >/dev/null 2>&1 || true' EXIT
mkdir -p bench/out

install_old() { install_previous_release --release || exit 1; }
install_new() { install_extension --release >"$DIR/new.log" 2>&1 || { tail -20 "$DIR/new.log" >&2; exit 1; }; }
round() {
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS ab" -c "CREATE DATABASE ab" 2>/dev/null
    psql -X -q -d ab -c "CREATE EXTENSION pg_roomserver"
    psql -X -q -A -t -d ab -f bench/ingest_single.sql | tail -n 1
}
log "building both releases"
install_old; install_new
old=() new=()
for i in $(seq 1 "$ROUNDS"); do
    install_old; old+=("$(round)")
    install_new; new+=("$(round)")
done
mean() { local s=0 n=0 x; for x in "$@"; do s=$((s + x)); n=$((n + 1)); done; echo $((s / n)); }
{
    echo "# scripts/bench-release-ab.sh $ROUNDS  ($(date -u +%Y-%m-%d), $(nproc) cores, PostgreSQL $PG_VERSION, fsync=off, release builds)"
    echo "single-event ingest, 3,000 calls each committed (bench/ingest_single.sql), events/s"
    echo "$OLD_VERSION ($(release_commit "$OLD_VERSION")): ${old[*]}  mean $(mean "${old[@]}")"
    echo "current ($(git rev-parse --short HEAD)): ${new[*]}  mean $(mean "${new[@]}")"
} | tee bench/out/release-ab.txt
