#!/usr/bin/env bash
# Writes sql/pg_roomserver--A--B.sql: the hand-written schema changes sql/upgrades/A--B.sql, then
# the whole API (sql/api/*.sql, CREATE OR REPLACE throughout) replayed, so an upgraded database
# has exactly the functions and views of a fresh install of B. Usage: scripts/upgrade-script.sh A B
# (--check: exit 1 if the committed script differs from what this would write).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check=false
if [ "${1:-}" = --check ]; then check=true; shift; fi
from="$1" to="$2"
out="$REPO/sql/pg_roomserver--$from--$to.sql"
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
{
    echo "-- pg_roomserver $from -> $to. Written by scripts/upgrade-script.sh from sql/upgrades/$from--$to.sql"
    echo "-- and sql/api/*.sql; do not edit by hand."
    echo '\echo Use "ALTER EXTENSION pg_roomserver UPDATE" to load this file. \quit'
    for f in "$REPO/sql/upgrades/$from--$to.sql" "$REPO"/sql/api/*.sql; do
        echo
        echo "-- ${f#"$REPO/"}"
        cat "$f"
    done
} > "$generated"
if $check; then
    diff -u "$out" "$generated" >&2 || { echo "$out is stale: run scripts/upgrade-script.sh $from $to" >&2; exit 1; }
else
    cp "$generated" "$out"
fi
