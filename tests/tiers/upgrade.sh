#!/usr/bin/env bash
# Upgrade tier: data written by every earlier release stays readable after ALTER EXTENSION
# pg_roomserver UPDATE (which chains the upgrade scripts). For each release in RELEASES
# (scripts/lib.sh): builds and installs the real release (its commit, in a target directory of
# its own), checks that its install script is the frozen sql/pg_roomserver--VERSION.sql, loads a
# generated forked room under it, installs the current build again, updates, ingests the rest of
# the room, and compares with a fresh install of the current version that loaded the same events:
# the schema (every member object, its definition, settings and privileges:
# tests/tiers/schema_fingerprint.sql), every table row for row, and what the read functions
# return at every event. Needs PGHOST/PGPORT/PGUSER of a cluster (scripts/test.sh runs it against
# the pg_regress cluster) and the git history (the release commits).
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
WORK="$(mktemp -d /tmp/pg_roomserver-upgrade.XXXXXX)"
# Whatever happens, leave the current build installed.
trap 'install_extension >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
cd "$REPO"

"$REPO/scripts/upgrade-script.sh" --check "$PREVIOUS_VERSION" "$CURRENT_VERSION"

[ -x target/debug/roomgen ] || cargo build -q -p roomgen
target/debug/roomgen --seed 7 --version 11 --members 60 --servers 6 --events 2000 --fork-every 40 \
    --fork-width 3 --fork-depth 4 --churn 0.2 --quiet --out "$WORK/room.jsonl"

PSQL=(psql -X -q -v ON_ERROR_STOP=1)
cat "$WORK/room.jsonl" roomgen/sample/room-v12.jsonl > "$WORK/all.jsonl"
# load DB FIRST LAST: lines FIRST..LAST of the rooms, in batches of 500.
load() {
    "${PSQL[@]}" -d "$1" <<SQL
CREATE TEMP TABLE staging (n bigserial, pdu jsonb);
\copy staging (pdu) FROM '$WORK/all.jsonl' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
DELETE FROM staging WHERE n NOT BETWEEN $2 AND $3;
SELECT count(*) FROM staging s, LATERAL roomserver.ingest_events(
    (SELECT jsonb_agg(pdu ORDER BY n) FROM staging x WHERE (x.n - 1) / 500 = (s.n - 1) / 500)) WHERE (s.n - 1) % 500 = 0 \gset
SQL
}
# What a user reads: every table (same input, same NIDs), and at every event with state its
# state, /state_ids body, backfill and forwards fill from it; the current state; the integrity check.
fingerprint() {
    "${PSQL[@]}" -d "$1" -A -t <<'SQL'
SET roomserver.server_name = 'upgrade.test';
SELECT 'problems ' || count(*) FROM roomserver.check_integrity();
SELECT 'rooms ' || md5(string_agg(r::text, ',' ORDER BY room_nid)) FROM roomserver.rooms r;
SELECT 'event_types ' || md5(string_agg(t::text, ',' ORDER BY event_type_nid)) FROM roomserver.event_types t;
SELECT 'state_keys ' || md5(string_agg(k::text, ',' ORDER BY room_nid, state_key_nid)) FROM roomserver.event_state_keys k;
SELECT 'events ' || count(*) || ' ' || md5(string_agg(e::text, ',' ORDER BY room_nid, event_nid)) FROM roomserver.stored_events e;
SELECT 'edges ' || md5(string_agg(e::text, ',' ORDER BY room_nid, event_nid, kind, position)) FROM roomserver.event_edges e;
SELECT 'blocks ' || md5(string_agg(b::text, ',' ORDER BY room_nid, block_nid)) FROM roomserver.state_blocks b;
SELECT 'snapshots ' || md5(string_agg(s::text, ',' ORDER BY room_nid, snapshot_nid)) FROM roomserver.state_snapshots s;
SELECT 'extremities ' || md5(string_agg(x::text, ',' ORDER BY room_nid, event_nid)) FROM roomserver.extremities x;
SELECT 'current_state ' || md5(string_agg(c::text, ',' ORDER BY room_id, type, state_key)) FROM roomserver.current_state c;
SELECT 'state ' || e.event_id || ' '
       || md5((SELECT string_agg(s.type || '|' || s.state_key || '|' || s.event_id, ',' ORDER BY s.type, s.state_key)
               FROM roomserver.state_at_event(e.event_id, after => true) s)) || ' '
       || md5(roomserver.state_ids(e.room_id, e.event_id)::text) || ' '
       || md5((roomserver.backfill(e.room_id, ARRAY[e.event_id], 20) - 'origin_server_ts')::text) || ' '
       || md5((roomserver.forwards_fill(e.room_id, ARRAY[e.event_id], 20) - 'origin_server_ts')::text)
FROM roomserver.events e WHERE NOT e.outlier ORDER BY e.room_id, e.event_id;
SQL
}

# A reader and a writer in every database, granted as soon as the installed version has
# grant_reader / grant_writer (0.2.0 on; after the update for 0.1.0): their privileges must
# survive the update (0.3.0 replaces ingest_event and ingest_events, whose signatures change),
# so that the schema fingerprints, which include privileges, match a fresh install's.
"${PSQL[@]}" -d postgres <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'upgrade_tier_reader') THEN CREATE ROLE upgrade_tier_reader; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'upgrade_tier_writer') THEN CREATE ROLE upgrade_tier_writer; END IF;
END
$$;
SQL
grant_roles() {
    "${PSQL[@]}" -d "$1" -c "SELECT roomserver.grant_reader('upgrade_tier_reader'), roomserver.grant_writer('upgrade_tier_writer')" >/dev/null
}
has_grant_functions() {
    "${PSQL[@]}" -d "$1" -A -t -c "SELECT count(*) FROM pg_catalog.pg_proc WHERE proname = 'grant_writer' AND pronamespace = 'roomserver'::regnamespace" | grep -qx 1
}

old_versions=()
for r in "${RELEASES[@]}"; do old_versions+=("${r%%=*}"); done
dbs=(fresh)
for v in "${old_versions[@]}"; do dbs+=("upgraded_${v//./_}"); done
for db in "${dbs[@]}"; do
    PGOPTIONS="-c client_min_messages=warning" "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS pg_roomserver_$db" -c "CREATE DATABASE pg_roomserver_$db"
done
for v in "${old_versions[@]}"; do
    db="pg_roomserver_upgraded_${v//./_}"
    # The release's build, from its commit (not from this tree's frozen script).
    log "upgrade: building and installing $v (target/previous-releases)"
    install_previous_release "$v"
    python3 tests/tiers/same_install_script.py "$("$PG_CONFIG" --sharedir)/extension/pg_roomserver--$v.sql" "sql/pg_roomserver--$v.sql" \
        || { echo "upgrade: sql/pg_roomserver--$v.sql is not what $v installs" >&2; exit 1; }
    # 1,500 events written by the release, the rest of the room (and the sample room) after the update.
    "${PSQL[@]}" -d "$db" -c "CREATE EXTENSION pg_roomserver"
    "${PSQL[@]}" -d "$db" -A -t -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_roomserver'" | grep -qx "$v"
    granted_before=false
    if has_grant_functions "$db"; then grant_roles "$db"; granted_before=true; fi
    load "$db" 1 1500
    log "upgrade: installing the current build again"
    install_extension >"$WORK/install.log" 2>&1 || { tail -20 "$WORK/install.log" >&2; exit 1; }
    "${PSQL[@]}" -d "$db" -c "ALTER EXTENSION pg_roomserver UPDATE"
    $granted_before || grant_roles "$db"
    load "$db" 1501 1000000
done
"${PSQL[@]}" -d pg_roomserver_fresh -c "CREATE EXTENSION pg_roomserver"
grant_roles pg_roomserver_fresh
load pg_roomserver_fresh 1 1500
load pg_roomserver_fresh 1501 1000000

status=0
for db in "${dbs[@]}"; do
    "${PSQL[@]}" -d "pg_roomserver_$db" -A -t -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_roomserver'" > "$WORK/$db.version"
    "${PSQL[@]}" -d "pg_roomserver_$db" -f tests/tiers/schema_fingerprint.sql > "$WORK/$db.schema"
    # What pg_dump writes of the schema (for extension members: the extension itself and the
    # privileges that differ from what CREATE EXTENSION set), without its random \restrict key,
    # each run of GRANTs sorted (pg_dump writes them in ACL order: the order they were made in).
    pg_dump --schema-only -d "pg_roomserver_$db" | grep -v '^\\\(un\)\?restrict ' \
        | python3 -c 'import itertools, sys
for grants, lines in itertools.groupby(sys.stdin, lambda l: l.startswith("GRANT ")):
    sys.stdout.writelines(sorted(lines) if grants else lines)' > "$WORK/$db.pg_dump"
    fingerprint "pg_roomserver_$db" > "$WORK/$db.data"
done
events=$(grep -c '^state ' "$WORK/fresh.data")
[ "$events" -gt 1000 ] || { echo "upgrade: only $events events compared" >&2; status=1; }
for v in "${old_versions[@]}"; do
    db="upgraded_${v//./_}"
    diff -u "$WORK/fresh.version" "$WORK/$db.version" || { echo "upgrade from $v: version differs" >&2; status=1; }
    diff -u "$WORK/fresh.schema" "$WORK/$db.schema" || { echo "upgrade from $v: the upgraded schema differs from a fresh install" >&2; status=1; }
    diff -u "$WORK/fresh.pg_dump" "$WORK/$db.pg_dump" || { echo "upgrade from $v: pg_dump --schema-only differs from a fresh install" >&2; status=1; }
    diff -u "$WORK/fresh.data" "$WORK/$db.data" || { echo "upgrade from $v: the upgraded data reads differently" >&2; status=1; }
    grep -qx 'problems 0' "$WORK/$db.data" || { echo "upgrade from $v: check_integrity() is not empty" >&2; status=1; }
    "${PSQL[@]}" -d "pg_roomserver_$db" -A -t -c "SELECT pg_catalog.has_function_privilege('upgrade_tier_writer', 'roomserver.ingest_events(jsonb, text, boolean, boolean)', 'EXECUTE')
                                                         AND pg_catalog.has_function_privilege('upgrade_tier_writer', 'roomserver.ingest_event(jsonb, text, boolean, text[])', 'EXECUTE')
                                                         AND NOT pg_catalog.has_function_privilege('upgrade_tier_reader', 'roomserver.ingest_event(jsonb, text, boolean, text[])', 'EXECUTE')" \
        | grep -qx t || { echo "upgrade from $v: the writer lost (or the reader gained) ingest" >&2; status=1; }
done
for db in "${dbs[@]}"; do
    PGOPTIONS="-c client_min_messages=warning" "${PSQL[@]}" -d postgres -c "DROP DATABASE pg_roomserver_$db"
done
"${PSQL[@]}" -d postgres -c "DROP ROLE upgrade_tier_reader" -c "DROP ROLE upgrade_tier_writer"
[ "$status" -eq 0 ] && echo "upgrade: PASS (builds of ${old_versions[*]} -> $(cat "$WORK/fresh.version"); schema equal to a fresh install; $events events read the same)"
exit "$status"
