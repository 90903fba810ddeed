#!/usr/bin/env bash
# Builds and installs pg_roomserver, starts a throwaway PostgreSQL 15 cluster, loads the bundled
# sample room and shows it. Usage: scripts/demo.sh [--keep]   (--keep leaves the cluster running)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEEP=0
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=1 ;;
        *) echo "usage: scripts/demo.sh [--keep]" >&2; exit 2 ;;
    esac
done

ensure_prerequisites
cd "$REPO"
install_extension --release

DIR="$(mktemp -d /tmp/pg_roomserver-demo.XXXXXX)"
start_cluster "$DIR"
if [ "$KEEP" = 0 ]; then trap stop_cluster EXIT; fi

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d postgres)
"${PSQL[@]}" -c "CREATE EXTENSION pg_roomserver"

log "loading the sample room (roomgen/sample/room-v12.jsonl)"
"${PSQL[@]}" <<SQL
CREATE TEMP TABLE sample_pdus (n bigserial, pdu jsonb);
\copy sample_pdus (pdu) FROM '$REPO/roomgen/sample/room-v12.jsonl'
SELECT count(*) AS ingested,
       count(*) FILTER (WHERE (r->>'content_hash_ok')::boolean) AS hashes_ok
FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM sample_pdus)) AS r;
SQL

"${PSQL[@]}" -P pager=off <<'SQL'
\echo
\echo '== Rooms'
SELECT room_nid, room_id, room_version FROM roomserver.rooms;
\echo '== Events, oldest first (NIDs beside their strings)'
SELECT event_nid, depth, left(event_id, 14) || '…' AS event_id, type, state_key, sender,
       roomserver.pdu(event_id)->'content'->>'membership' AS membership
FROM roomserver.events ORDER BY depth, event_nid;
\echo '== Forks and merges: events with several prev_events, and events that several events follow'
SELECT left(event_id, 14) || '…' AS merge_event, count(*) AS prev_events,
       string_agg(left(referenced_event_id, 14) || '…', ', ' ORDER BY position) AS branches
FROM roomserver.event_references WHERE kind = 'prev'
GROUP BY event_id HAVING count(*) > 1;
SELECT left(referenced_event_id, 14) || '…' AS fork_point, count(*) AS successors
FROM roomserver.event_references WHERE kind = 'prev'
GROUP BY referenced_event_id HAVING count(*) > 1;
\echo '== Forward extremities (events nothing follows yet)'
SELECT left(e.event_id, 14) || '…' AS event_id, e.type, e.depth
FROM roomserver.events e
WHERE NOT EXISTS (SELECT 1 FROM roomserver.event_references r
                  WHERE r.kind = 'prev' AND r.referenced_event_id = e.event_id AND r.room_id = e.room_id);
\echo '== One PDU, rebuilt from storage'
SELECT jsonb_pretty(roomserver.pdu(event_id)) FROM roomserver.events WHERE type = 'm.room.topic' ORDER BY depth DESC LIMIT 1;
SQL

if [ "$KEEP" = 1 ]; then
    log "the cluster keeps running. Connect with:"
    echo "    psql -h $PGHOST -p $PGPORT -U postgres postgres"
    echo "Stop and remove it with:"
    if [ "$(id -u)" = 0 ]; then
        echo "    runuser -u postgres -- $PG_BIN/pg_ctl -D $DIR/data stop && rm -rf $DIR"
    else
        echo "    $PG_BIN/pg_ctl -D $DIR/data stop && rm -rf $DIR"
    fi
else
    log "done; the cluster is removed (use --keep to keep it)"
fi
