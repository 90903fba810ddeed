#!/usr/bin/env bash
# Benchmarks (not timed tests): builds the extension in release mode, starts a throwaway cluster
# and runs bench/*.sql, each measuring pg_roomserver against a baseline in the same run.
# Output goes to bench/out/. Usage: scripts/bench.sh [messages members batch]
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MESSAGES=${1:-50000}
MEMBERS=${2:-20000}
BATCH=${3:-1000}

ensure_prerequisites
cd "$REPO"
install_extension --release
DIR="$(mktemp -d /tmp/pg_roomserver-bench.XXXXXX)"
start_cluster "$DIR"
trap stop_cluster EXIT
mkdir -p bench/out

log "ingest: $MESSAGES messages, $MEMBERS member joins, batches of $BATCH"
psql -X -q -d postgres -c "CREATE DATABASE bench"
{
    echo "# scripts/bench.sh $MESSAGES $MEMBERS $BATCH  ($(date -u +%Y-%m-%d), $(nproc) cores, PostgreSQL $PG_VERSION, fsync=off)"
    psql -X -q -d bench -v messages="$MESSAGES" -v members="$MEMBERS" -v batch="$BATCH" -f bench/ingest.sql
} | tee bench/out/ingest.txt
