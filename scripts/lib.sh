# Shared helpers for demo.sh, test.sh and bench.sh: prerequisites and throwaway clusters.
# shellcheck shell=bash

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_VERSION=15
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
PG_CONFIG="$PG_BIN/pg_config"
PGRX_VERSION=0.18.0
export PGRX_HOME="$REPO/pgrx-config"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs what building and testing need, only what is missing: PostgreSQL 15 with its server
# headers, clang for bindgen, sudo (cargo pgrx uses it), openssl (the end-to-end tier makes its
# test CA with it), and cargo-pgrx $PGRX_VERSION.
ensure_prerequisites() {
    if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
    command -v cargo >/dev/null || { echo "cargo is required (install Rust with rustup)" >&2; exit 1; }
    local pkgs=(postgresql-$PG_VERSION postgresql-server-dev-$PG_VERSION libclang-dev clang sudo openssl)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        log "cargo install --locked cargo-pgrx@$PGRX_VERSION (about 6 minutes)"
        cargo install --locked "cargo-pgrx@$PGRX_VERSION"
    fi
}

# A Python virtualenv with Synapse, the independent implementation the differential tests and
# test vectors compare against. Kept under target/ so later runs reuse it.
SYNAPSE_VERSION=1.163.2
SYNAPSE_VENV="$REPO/target/synapse-venv"
ensure_synapse() {
    if ! "$SYNAPSE_VENV/bin/python" -c "import synapse, sys; sys.exit(synapse.__version__.split()[0] != '$SYNAPSE_VERSION')" 2>/dev/null; then
        log "installing matrix-synapse==$SYNAPSE_VERSION into $SYNAPSE_VENV"
        rm -rf "$SYNAPSE_VENV"
        python3 -m venv "$SYNAPSE_VENV"
        "$SYNAPSE_VENV/bin/pip" install -q "matrix-synapse==$SYNAPSE_VERSION"
    fi
}

# Runs a command as the OS user that owns the cluster: postgres when we are root (initdb
# refuses root), else ourselves.
as_cluster_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    local p
    for p in $(seq 54320 54999); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    echo "no free port in 54320-54999" >&2; exit 1
}

# start_cluster DIR: initdb + start on a free localhost port; sets PGHOST, PGPORT, PGUSER.
start_cluster() {
    CLUSTER_DIR="$1"
    mkdir -p "$CLUSTER_DIR"
    chmod 755 "$CLUSTER_DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$CLUSTER_DIR"; fi
    as_cluster_user "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    # free_port only probes: a cluster started elsewhere at the same moment can take the port
    # first ("Address already in use"), so the start is tried again on another free port.
    local port attempt
    for attempt in 1 2 3; do
        port="$(free_port)"
        if as_cluster_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w \
            -o "-p $port -k $CLUSTER_DIR -c listen_addresses=localhost -c fsync=off" start >/dev/null; then
            export PGHOST="$CLUSTER_DIR" PGPORT="$port" PGUSER=postgres
            return 0
        fi
        log "starting the cluster in $CLUSTER_DIR on port $port failed (attempt $attempt): $(tail -n 2 "$CLUSTER_DIR/server.log" 2>/dev/null | tr '\n' ' ')"
        sleep 1
    done
    echo "could not start a cluster in $CLUSTER_DIR" >&2
    return 1
}

stop_cluster() {
    if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR/data" ]; then
        as_cluster_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$CLUSTER_DIR"
    fi
}

# make_test_tls DIR NAME: a test CA (DIR/ca.pem) and one certificate it signed for localhost and
# 127.0.0.1 (DIR/tls.crt, DIR/tls.key), valid two days: for servers on loopback (the e2e tier,
# the front end's benchmark). NAME goes into the CA's common name.
make_test_tls() {
    local dir="$1" name="$2"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=roomserver $name CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
        -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > "$dir/leaf.ext"
    openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
        -extfile "$dir/leaf.ext" -out "$dir/tls.crt" 2>/dev/null
}

# load_pdus DB FILE: ingests the PDUs of FILE (one JSON object a line, in order) into DB in
# batches of 5,000 (`ingest_events`), then VACUUM ANALYZE: how the benchmarks load a room.
load_pdus() {
    local db="$1" file="$2" size a
    size="$(wc -l < "$file")"
    {
        echo "CREATE TEMP TABLE staging (n bigserial PRIMARY KEY, pdu jsonb);"
        echo "\\copy staging (pdu) FROM '$file'"
        for ((a = 1; a <= size; a += 5000)); do
            echo "SELECT count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM staging WHERE n BETWEEN $a AND $((a + 4999)))) \\g /dev/null"
        done
    } | psql -X -q -v ON_ERROR_STOP=1 -d "$db"
    psql -X -q -d "$db" -c "VACUUM ANALYZE"
}

# Builds the extension and installs it into PostgreSQL's directories.
install_extension() {
    local profile_flag=("$@")
    log "cargo pgrx install ${profile_flag[*]}"
    if [ "$(id -u)" = 0 ]; then
        (cd "$REPO" && cargo pgrx install --pg-config "$PG_CONFIG" "${profile_flag[@]}")
    else
        (cd "$REPO" && cargo pgrx install --sudo --pg-config "$PG_CONFIG" "${profile_flag[@]}")
    fi
    # cargo pgrx install writes the current version's script and copies the upgrade scripts
    # (sql/pg_roomserver--A--B.sql); the frozen install scripts of earlier releases
    # (sql/pg_roomserver--A.sql) are copied here, so CREATE EXTENSION ... VERSION 'A' works.
    local extdir; extdir="$("$PG_CONFIG" --sharedir)/extension"
    local f
    for f in "$REPO"/sql/pg_roomserver--*.sql; do
        case "$(basename "$f")" in
            *--*--*) ;;                                   # upgrade scripts: copied by pgrx
            "pg_roomserver--$CURRENT_VERSION.sql") ;;             # never overwrite the generated one
            *) as_root install -m 644 "$f" "$extdir/" ;;
        esac
    done
}

# The releases an installation can upgrade from, oldest first, as VERSION=COMMIT: each has its
# frozen install script sql/pg_roomserver--VERSION.sql, and upgrade scripts chain them to the
# current version. The last one is the previous release, whose upgrade script to the current
# version scripts/upgrade-script.sh writes.
RELEASES=(
    0.1.0=68bd9aef0056e46cd36b570c86b17196acca24fa
    0.2.0=9f8921a4968338251cb242489661514afeb87a01
)
PREVIOUS_VERSION=${RELEASES[-1]%%=*}
CURRENT_VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)"

# release_commit VERSION: the commit of a release in RELEASES.
release_commit() {
    local r
    for r in "${RELEASES[@]}"; do [ "${r%%=*}" = "$1" ] && { echo "${r#*=}"; return 0; }; done
    echo "no release $1 in RELEASES (scripts/lib.sh)" >&2
    return 1
}

# install_previous_release [VERSION] [--release]: builds a release (default: the previous one)
# from its commit (exported with git archive; all releases share one target directory of their
# own, so their dependencies build once and the current build stays warm) and installs it into
# PostgreSQL's directories in place of the current build. Needs the history.
install_previous_release() {
    local version=$PREVIOUS_VERSION
    case "${1:-}" in [0-9]*) version=$1; shift ;; esac
    local profile=debug; [ "${1:-}" = --release ] && profile=release
    local commit; commit="$(release_commit "$version")" || return 1
    git -C "$REPO" cat-file -e "$commit^{commit}" 2>/dev/null \
        || { echo "commit $commit ($version) is not in this clone's history" >&2; return 1; }
    local src; src="$(mktemp -d /tmp/pg_roomserver-$version.XXXXXX)"
    # -m: the files get the time of extraction, not the commit's, so cargo rebuilds what differs
    # from the release built before in the shared target directory.
    git -C "$REPO" archive "$commit" | tar -x -m -C "$src"
    local target="$REPO/target/previous-releases"
    [ "$profile" = release ] && target="$target-release"
    (cd "$src" && CARGO_TARGET_DIR="$target" cargo pgrx install "$@" --pg-config "$PG_CONFIG" >"$src.log" 2>&1) \
        || { tail -20 "$src.log" >&2; rm -rf "$src" "$src.log"; echo "building $version failed" >&2; return 1; }
    rm -rf "$src" "$src.log"
}
