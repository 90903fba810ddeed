#!/usr/bin/env bash
# End-to-end tier of issue 16: roomserver-http against a real Synapse, loopback only, bounded.
#
#   PGHOST=… PGPORT=… PGUSER=… tests/e2e/run.sh
#
# Needs a running PostgreSQL with the extension installed (the database is made here and
# dropped after), the Synapse venv (scripts/lib.sh ensure_synapse) and openssl. Makes a test CA
# and a certificate for localhost / 127.0.0.1, starts roomserver-http (federation + admin API)
# and Synapse (SQLite, trusting only that CA, no key servers), runs driver.py, stops both.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
source "$REPO/scripts/lib.sh"
: "${PGHOST:?PGHOST}" "${PGPORT:?PGPORT}"
export PGUSER="${PGUSER:-postgres}"
ensure_synapse
TIME_LIMIT="${E2E_TIME_LIMIT:-600}"

DIR="$(mktemp -d /tmp/roomserver-e2e.XXXXXX)"
DB="e2e_$$"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    dropdb --if-exists "$DB" 2>/dev/null || true
    if [ "${E2E_KEEP:-}" = "" ]; then rm -rf "$DIR"; else echo "kept $DIR"; fi
}
trap cleanup EXIT

port() {  # a free loopback port not handed out yet in this run
    local p
    for p in $(seq "$1" "$(( $1 + 500 ))"); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && [[ " ${TAKEN:-} " != *" $p "* ]]; then
            TAKEN="${TAKEN:-} $p"; echo "$p"; return
        fi
    done
    echo "no free port" >&2; exit 1
}
OUR_PORT="$(port 18448)"; TAKEN=" $OUR_PORT"
ADMIN_PORT="$(port 18600)"; TAKEN="$TAKEN $ADMIN_PORT"
SYN_FED_PORT="$(port 18700)"; TAKEN="$TAKEN $SYN_FED_PORT"
SYN_CLIENT_PORT="$(port 18800)"

# A test CA and one certificate for both servers (both are localhost).
make_test_tls "$DIR" e2e

createdb "$DB"
psql -q -d "$DB" -c 'CREATE EXTENSION pg_roomserver'

OUR_NAME="localhost:$OUR_PORT"
SYN_NAME="localhost:$SYN_FED_PORT"
ADMIN_TOKEN="e2e-$(openssl rand -hex 16)"
cat > "$DIR/roomserver-http.toml" <<TOML
server_name = "$OUR_NAME"
listen = "127.0.0.1:$OUR_PORT"
tls_certificate = "tls.crt"
tls_private_key = "tls.key"
signing_key = "signing.key"
database_url = "host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB"
trusted_ca_file = "ca.pem"
database_pool_size = 4
admin_listen = "127.0.0.1:$ADMIN_PORT"
admin_token = "$ADMIN_TOKEN"
TOML

cat > "$DIR/log.yaml" <<YAML
version: 1
formatters:
  precise: {format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'}
handlers:
  file: {class: logging.FileHandler, formatter: precise, filename: $DIR/synapse.log}
root: {level: INFO, handlers: [file]}
disable_existing_loggers: false
YAML
cat > "$DIR/homeserver.yaml" <<YAML
server_name: "$SYN_NAME"
pid_file: $DIR/synapse.pid
listeners:
  - {port: $SYN_FED_PORT, bind_addresses: ['127.0.0.1'], type: http, tls: true, resources: [{names: [federation, keys], compress: false}]}
  - {port: $SYN_CLIENT_PORT, bind_addresses: ['127.0.0.1'], type: http, tls: false, resources: [{names: [client], compress: false}]}
tls_certificate_path: $DIR/tls.crt
tls_private_key_path: $DIR/tls.key
database: {name: sqlite3, args: {database: $DIR/homeserver.db}}
log_config: $DIR/log.yaml
media_store_path: $DIR/media
signing_key_path: $DIR/synapse.signing.key
registration_shared_secret: "e2e-shared-secret"
report_stats: false
enable_metrics: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_custom_ca_list: [$DIR/ca.pem]
federation_verify_certificates: true
ip_range_whitelist: ['127.0.0.0/8', '::1/128']
rc_message: {per_second: 1000, burst_count: 1000}
rc_joins: {local: {per_second: 100, burst_count: 100}, remote: {per_second: 100, burst_count: 100}}
rc_federation: {window_size: 1000, sleep_limit: 1000, sleep_delay: 1, reject_limit: 1000, concurrent: 100}
YAML

log "building roomserver-http"
(cd "$REPO" && cargo build -q -p roomserver-http)
"$REPO/target/debug/roomserver-http" "$DIR/roomserver-http.toml" > "$DIR/roomserver-http.log" 2>&1 &
PIDS+=($!)
"$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver -c "$DIR/homeserver.yaml" --generate-keys > /dev/null
"$SYNAPSE_VENV/bin/python" -m synapse.app.homeserver -c "$DIR/homeserver.yaml" > "$DIR/synapse.out" 2>&1 &
PIDS+=($!)

log "driver: $OUR_NAME (admin 127.0.0.1:$ADMIN_PORT) with Synapse $SYN_NAME (client 127.0.0.1:$SYN_CLIENT_PORT)"
status=0
timeout "$TIME_LIMIT" "$SYNAPSE_VENV/bin/python" "$REPO/tests/e2e/driver.py" \
    --our-name "$OUR_NAME" --admin "http://127.0.0.1:$ADMIN_PORT" --admin-token "$ADMIN_TOKEN" \
    --our-federation "https://localhost:$OUR_PORT" --ca "$DIR/ca.pem" \
    --synapse-name "$SYN_NAME" --synapse-client "http://127.0.0.1:$SYN_CLIENT_PORT" \
    --synapse-signing-key "$DIR/synapse.signing.key" \
    --shared-secret "e2e-shared-secret" --database "$DB" \
    --messages "${E2E_MESSAGES:-300}" || status=$?
if [ "$status" != 0 ]; then
    echo "--- roomserver-http log (tail)"; tail -n 40 "$DIR/roomserver-http.log"
    echo "--- synapse log (errors)"; grep -E 'ERROR|WARNING' "$DIR/synapse.log" | tail -n 40 || true
    exit "$status"
fi
# Synapse must have found no bad signature or hash in what we served.
# (Synapse: "content has been tampered, redacting", "Signature on retrieved event … was invalid",
# "… failed signature check".)
if grep -Ei 'tampered|(signature|hash).*(fail|invalid|mismatch)|(fail|invalid).*(signature|hash)' "$DIR/synapse.log"; then
    echo "Synapse's log shows failed signature or hash checks" >&2
    exit 1
fi
# Synapse must have read the history through our walks (cases a and b), not only been sent it.
for walk in backfill get_missing_events; do
    if ! grep -q "/_matrix/federation/v1/$walk/" "$DIR/synapse.log"; then
        echo "Synapse's log shows no request to our /$walk" >&2
        exit 1
    fi
done
log "e2e: passed"
