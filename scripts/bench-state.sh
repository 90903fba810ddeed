#!/usr/bin/env bash
# Benchmark of state storage (bench/state.sql; not a timed test): generates a room with roomgen,
# loads it into a throwaway cluster and compares pg_roomserver's state blocks with a flat table,
# full state per event and a Synapse-style delta chain built from the same events.
# Output: bench/out/state.txt. Usage: [POWER_SHARE=F] scripts/bench-state.sh [events members samples]
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EVENTS=${1:-1000000}
MEMBERS=${2:-100000}
SAMPLES=${3:-200}

ensure_prerequisites
cd "$REPO"
install_extension --release
cargo build --release -q -p roomgen

DIR="$(mktemp -d /tmp/pg_roomserver-statebench.XXXXXX)"
chmod 755 "$DIR"
if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR"; fi
port="$(free_port)"
as_cluster_user "$PG_BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_cluster_user "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
    -o "-p $port -k $DIR -c listen_addresses=localhost -c fsync=off -c shared_buffers=1GB -c max_wal_size=8GB" start >/dev/null
export PGHOST="$DIR" PGPORT="$port" PGUSER=postgres
trap 'as_cluster_user "$PG_BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT

# Forks every 50 events (3 branches of 4), 20% of the other events state changes. Power-level
# changes thinned out to 2% of what the generator draws (its forks fight over power levels at
# nearly every merge: 70,699 power-level events in 1M, one per 14 events); 2% leaves ~1,500 in
# 1M events, one per ~680, still more than large public rooms see.
ROOM_FLAGS=(--seed 11 --version 11 --members "$MEMBERS" --servers 100 --events "$EVENTS" --fork-every 50 --fork-width 3 --fork-depth 4 --churn 0.2 --power-share ${POWER_SHARE:-0.02})
target/release/roomgen "${ROOM_FLAGS[@]}" --format copy --out "$DIR/room.copy" --quiet
chmod 644 "$DIR/room.copy"

mkdir -p bench/out
psql -X -q -d postgres -c "CREATE DATABASE bench"
{
    echo "# scripts/bench-state.sh $EVENTS $MEMBERS $SAMPLES  ($(date -u +%Y-%m-%d), $(nproc) cores, PostgreSQL $PG_VERSION, fsync=off, shared_buffers=1GB)"
    echo "# room: roomgen ${ROOM_FLAGS[*]}"
    psql -X -q -d bench -v file="$DIR/room.copy" -v samples="$SAMPLES" -f bench/state.sql
} 2>&1 | tee bench/out/state.txt
