#!/usr/bin/env bash
# Privileges tier: who may do what with pg_roomserver, and that no function a caller's
# search_path supplies runs inside the extension's calls. Starts its own cluster.
#
# The contract (sql/api/05_access.sql):
#   - nothing in schema roomserver is granted to PUBLIC: a LOGIN role that was granted nothing
#     (and one granted only USAGE on the schema) gets 42501 from every function of the schema
#     (each called with junk arguments: the permission check comes before the function runs;
#     not NULLs, since the planner folds a STRICT function of NULL without checking EXECUTE)
#     and from SELECT on every table, view, sequence and materialized view;
#   - roomserver.grant_reader(role): SELECT on every table and view, EXECUTE on every function
#     that is not VOLATILE (the read API, each also called with real arguments); 42501 from
#     ingest_event/ingest_events, from every other VOLATILE function (the internal write
#     functions store_snapshot, assign_*_nids, the grants), from INSERT/UPDATE/DELETE/TRUNCATE
#     on every table and from nextval/setval on every sequence;
#   - roomserver.grant_writer(role): a reader that may also call ingest_event/ingest_events
#     (SECURITY DEFINER), and ingests events with them; everything else as a reader;
#   - only the extension's owner may call grant_reader/grant_writer;
#   - the backend's state cache answers only roles that may read the state tables: after the
#     superuser filled it, SET ROLE to a role with EXECUTE on snapshot_entries/snapshot_lookup
#     but no SELECT on the tables gets 42501;
#   - search_path hijack: a role with CREATE on schema public plants functions, aggregates and
#     operators there that are better matches than pg_catalog's for what the extension calls
#     (public.unnest(bigint[]) beats pg_catalog.unnest(anyarray), ...), each recording its call
#     in public.hijack_log. Then, each in a new backend, the superuser with the default
#     search_path ("$user", public) calls every read function and view, ingest_event and
#     ingest_events, and a writer calls ingest_events: the log must stay empty.
#
# Modes (PRIVILEGES_MODES, default "fresh upgrade"): fresh = CREATE EXTENSION; upgrade =
# CREATE EXTENSION ... VERSION '$PRIVILEGES_FROM' (default 0.1.0, when that script is installed)
# then ALTER EXTENSION ... UPDATE; any other word = CREATE EXTENSION ... VERSION '<word>' alone
# (to see what an old release allowed). Data: roomgen/sample/room-v12.jsonl (40 events).
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

MODES=${PRIVILEGES_MODES:-fresh upgrade}
FROM_VERSION=${PRIVILEGES_FROM:-0.1.0}
SAMPLE="$REPO/roomgen/sample/room-v12.jsonl"
EXTDIR=/usr/share/postgresql/$PG_VERSION/extension
T0=$SECONDS

WORK="$(mktemp -d /tmp/pg_roomserver-privileges.XXXXXX)"
chmod 755 "$WORK"
cleanup() { stop_cluster; rm -rf "$WORK"; }
trap cleanup EXIT

# The extension may still be being installed (bounded wait: WAIT_EXTENSION_SECONDS, 1800).
waited=0
while [ ! -f "$EXTDIR/pg_roomserver.control" ] || [ ! -f "$("$PG_CONFIG" --pkglibdir)/pg_roomserver.so" ]; do
    if [ "$waited" -ge "${WAIT_EXTENSION_SECONDS:-1800}" ]; then
        echo "FAIL: privileges: pg_roomserver is not installed (waited ${waited}s)" >&2; exit 1
    fi
    [ "$waited" = 0 ] && log "waiting for pg_roomserver to be installed"
    sleep 10; waited=$((waited + 10))
done

start_cluster "$WORK/cluster"
export PGOPTIONS="-c client_min_messages=warning -c statement_timeout=60s"
PSQL=(timeout 120 psql -X -q -v ON_ERROR_STOP=1)
Q=("${PSQL[@]}" -A -t)
ROLES=(plain_role usage_only reader_role writer_role exec_only attacker)
for r in "${ROLES[@]}"; do "${PSQL[@]}" -d postgres -c "CREATE ROLE $r LOGIN"; done

failures=0
fail_lines=()
note_fail() { failures=$((failures + 1)); fail_lines+=("$*"); echo "  FAIL: $*" >&2; }

# setup_db DB MODE: the extension (per MODE), events 1-36 of the sample room, and schema t
# with the probe helper, the sample's PDUs, the IDs and NIDs the calls use, and the calls.
setup_db() {
    local db=$1 mode=$2
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE $db" -c "ALTER DATABASE $db SET roomserver.server_name = 'privileges.test'"
    case "$mode" in
        fresh) "${PSQL[@]}" -d "$db" -c "CREATE EXTENSION pg_roomserver" ;;
        upgrade) "${PSQL[@]}" -d "$db" -c "CREATE EXTENSION pg_roomserver VERSION '$FROM_VERSION'" -c "ALTER EXTENSION pg_roomserver UPDATE" ;;
        *) "${PSQL[@]}" -d "$db" -c "CREATE EXTENSION pg_roomserver VERSION '$mode'" ;;
    esac
    "${PSQL[@]}" -d "$db" -o /dev/null <<SQL
CREATE SCHEMA t;
GRANT USAGE ON SCHEMA t TO PUBLIC;
-- The SQLSTATE of a statement, or ok; its effects are rolled back unless keep.
CREATE FUNCTION t.probe(stmt text, keep boolean DEFAULT false) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
    BEGIN
        EXECUTE stmt;
        IF keep THEN RETURN 'ok'; END IF;
        RAISE EXCEPTION 'probe: roll back' USING ERRCODE = 'ZX001';
    EXCEPTION WHEN SQLSTATE 'ZX001' THEN RETURN 'ok';
    END;
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE;
END
\$\$;
-- A junk argument of a type, as SQL: not NULL, since the planner folds a STRICT function of a
-- NULL constant to NULL without ever checking EXECUTE; polymorphic types as integers.
CREATE FUNCTION t.junk(typ oid) RETURNS text LANGUAGE sql STABLE AS \$\$
SELECT CASE
    WHEN typ IN ('anyarray'::regtype, 'anycompatiblearray'::regtype) THEN '''{}''::integer[]'
    WHEN typ IN ('anyelement'::regtype, 'anynonarray'::regtype, 'anycompatible'::regtype,
                 'anycompatiblenonarray'::regtype, '"any"'::regtype) THEN '0::integer'
    WHEN c = 'A' THEN format('%L::%s', '{}', format_type(typ, NULL))
    ELSE format('%L::%s', CASE WHEN typ IN ('jsonb'::regtype, 'json'::regtype) THEN '{}'
                               WHEN typ = 'bytea'::regtype THEN '\x'
                               WHEN typ = 'boolean'::regtype THEN 'false'
                               WHEN typ = '"char"'::regtype THEN 'p'
                               WHEN typ = 'regrole'::regtype THEN 'plain_role'
                               WHEN c = 'N' THEN '0'
                               WHEN c = 'D' THEN 'epoch'
                               WHEN c = 'T' THEN '0'
                               ELSE '' END, format_type(typ, NULL))
    END
FROM (SELECT typcategory AS c FROM pg_type WHERE oid = typ) x
\$\$;
CREATE TABLE t.pdus (n bigserial PRIMARY KEY, pdu jsonb);
\copy t.pdus (pdu) FROM '$SAMPLE' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')
SELECT count(*) FROM roomserver.ingest_events((SELECT jsonb_agg(pdu ORDER BY n) FROM t.pdus WHERE n <= 36));
-- Batches built now: the calls below must not call anything planted in public themselves.
CREATE TABLE t.batches AS
SELECT 'b38' AS name, jsonb_agg(pdu ORDER BY n) AS pdus FROM t.pdus WHERE n = 38
UNION ALL SELECT 'b37_38', jsonb_agg(pdu ORDER BY n) FROM t.pdus WHERE n IN (37, 38)
UNION ALL SELECT 'b39_40', jsonb_agg(pdu ORDER BY n) FROM t.pdus WHERE n IN (39, 40)
UNION ALL SELECT 'all', jsonb_agg(pdu ORDER BY n) FROM t.pdus;
CREATE TABLE t.ids AS
SELECT r.room_id, r.room_nid, r.current_state AS snap,
       early.event_id AS ev_early, mid.event_id AS ev_mid, mid.event_nid AS ev_mid_nid, mid.state_before AS snap_mid,
       late.event_id AS ev_late, late.event_nid AS ev_late_nid,
       (SELECT s.block_nids[1] FROM roomserver.state_snapshots s WHERE s.room_nid = r.room_nid AND s.snapshot_nid = r.current_state) AS block,
       (SELECT p.pdu ->> 'sender' FROM t.pdus p WHERE p.n = 2) AS member,
       (SELECT e.auth_chain FROM roomserver.stored_events e WHERE e.event_id = late.event_id) AS chain
FROM roomserver.rooms r,
     LATERAL (SELECT e.* FROM roomserver.stored_events e WHERE e.event_id = roomserver.event_id_for((SELECT pdu FROM t.pdus WHERE n = 5), '12')) early,
     LATERAL (SELECT e.* FROM roomserver.stored_events e WHERE e.event_id = roomserver.event_id_for((SELECT pdu FROM t.pdus WHERE n = 20), '12')) mid,
     LATERAL (SELECT e.* FROM roomserver.stored_events e WHERE e.event_id = roomserver.event_id_for((SELECT pdu FROM t.pdus WHERE n = 36), '12')) late;
-- The read API, with real arguments: each must succeed for a reader and a writer. The
-- statements use only literals, casts, ARRAY[...] and subqueries besides roomserver's own
-- functions, so whatever planted function runs, runs inside the extension.
CREATE TABLE t.read_calls (ord serial, name text, stmt text);
INSERT INTO t.read_calls (name, stmt) VALUES
  ('view current_state',      'SELECT count(*) FROM roomserver.current_state'),
  ('view room_members',       'SELECT count(*) FROM roomserver.room_members'),
  ('view events',             'SELECT count(*) FROM roomserver.events'),
  ('view event_references',   'SELECT count(*) FROM roomserver.event_references'),
  ('state_ids',               'SELECT roomserver.state_ids((SELECT room_id FROM t.ids), (SELECT ev_late FROM t.ids))'),
  ('state',                   'SELECT roomserver.state((SELECT room_id FROM t.ids), (SELECT ev_late FROM t.ids))'),
  ('event_auth',              'SELECT roomserver.event_auth((SELECT room_id FROM t.ids), (SELECT ev_late FROM t.ids))'),
  ('event',                   'SELECT roomserver.event((SELECT ev_late FROM t.ids))'),
  ('event (server)',          'SELECT roomserver.event((SELECT ev_late FROM t.ids), ''other.example'')'),
  ('backfill',                'SELECT roomserver.backfill((SELECT room_id FROM t.ids), ARRAY[(SELECT ev_late FROM t.ids)], 10)'),
  ('backfill (server)',       'SELECT roomserver.backfill((SELECT room_id FROM t.ids), ARRAY[(SELECT ev_late FROM t.ids)], 10, ''other.example'')'),
  ('get_missing_events',      'SELECT roomserver.get_missing_events((SELECT room_id FROM t.ids), ARRAY[(SELECT ev_early FROM t.ids)], ARRAY[(SELECT ev_late FROM t.ids)], 10, 0)'),
  ('get_missing_events (server)', 'SELECT roomserver.get_missing_events((SELECT room_id FROM t.ids), ARRAY[(SELECT ev_early FROM t.ids)], ARRAY[(SELECT ev_late FROM t.ids)], 10, 0, ''other.example'')'),
  ('forwards_fill',           'SELECT roomserver.forwards_fill((SELECT room_id FROM t.ids), ARRAY[(SELECT ev_early FROM t.ids)], 10)'),
  ('forwards_fill (server)',  'SELECT roomserver.forwards_fill((SELECT room_id FROM t.ids), ARRAY[(SELECT ev_early FROM t.ids)], 10, ''other.example'')'),
  ('auth_chain_nids',         'SELECT count(*) FROM roomserver.auth_chain_nids((SELECT room_nid FROM t.ids), ARRAY[(SELECT ev_late_nid FROM t.ids)])'),
  ('state_auth_chain',        'SELECT count(*) FROM roomserver.state_auth_chain((SELECT room_nid FROM t.ids), (SELECT snap FROM t.ids))'),
  ('missing_events',          'SELECT roomserver.missing_events((SELECT pdu FROM t.pdus WHERE n = 40))'),
  ('state_at_event',          'SELECT count(*) FROM roomserver.state_at_event((SELECT ev_late FROM t.ids))'),
  ('state_at_event (types)',  'SELECT count(*) FROM roomserver.state_at_event((SELECT ev_late FROM t.ids), true, ARRAY[''m.room.member''])'),
  ('state_at_event (pairs)',  'SELECT count(*) FROM roomserver.state_at_event((SELECT ev_late FROM t.ids), false, NULL, ARRAY[[''m.room.member'', (SELECT member FROM t.ids)]])'),
  ('membership_at_event',     'SELECT roomserver.membership_at_event((SELECT ev_late FROM t.ids), (SELECT member FROM t.ids))'),
  ('pdu',                     'SELECT roomserver.pdu((SELECT ev_mid FROM t.ids))'),
  ('event_pdu',               'SELECT roomserver.event_pdu((SELECT room_nid FROM t.ids), (SELECT ev_mid_nid FROM t.ids))'),
  ('federation_pdus',         'SELECT roomserver_internal.federation_pdus((SELECT room_nid FROM t.ids), ARRAY[(SELECT ev_mid_nid FROM t.ids)])'),
  ('forward_extremities',     'SELECT count(*) FROM roomserver.forward_extremities((SELECT room_id FROM t.ids))'),
  ('backward_extremities',    'SELECT count(*) FROM roomserver.backward_extremities((SELECT room_id FROM t.ids))'),
  ('server_allowed',          'SELECT roomserver.server_allowed((SELECT room_id FROM t.ids), ''other.example:8448'')'),
  ('server_in_room',          'SELECT roomserver.server_in_room((SELECT room_id FROM t.ids), ''other.example'')'),
  ('joined_servers',          'SELECT count(*) FROM roomserver.joined_servers((SELECT room_id FROM t.ids))'),
  ('server_acl_allows',       'SELECT roomserver_internal.server_acl_allows(''{"allow": ["*"]}''::jsonb, ''other.example'')'),
  ('snapshot_entries',        'SELECT count(*) FROM roomserver.snapshot_entries((SELECT room_nid FROM t.ids), (SELECT snap FROM t.ids))'),
  ('snapshot_lookup',         'SELECT count(*) FROM roomserver.snapshot_lookup((SELECT room_nid FROM t.ids), (SELECT snap FROM t.ids), ARRAY[1::bigint], ARRAY[1::bigint])'),
  ('snapshot_diff',           'SELECT count(*) FROM roomserver.snapshot_diff((SELECT room_nid FROM t.ids), (SELECT snap_mid FROM t.ids), (SELECT snap FROM t.ids))'),
  ('block_entries',           'SELECT count(*) FROM roomserver.block_entries((SELECT room_nid FROM t.ids), (SELECT block FROM t.ids))'),
  ('check_integrity',         'SELECT count(*) FROM roomserver.check_integrity()'),
  ('nid lookups',             'SELECT roomserver.room_nid((SELECT room_id FROM t.ids)), roomserver.room_id((SELECT room_nid FROM t.ids)), roomserver.event_type_nid(''m.room.member''), roomserver.event_type(5::bigint), roomserver.state_key_nid((SELECT room_id FROM t.ids), (SELECT member FROM t.ids)), roomserver.state_key((SELECT room_nid FROM t.ids), 1::bigint), roomserver.event_nid((SELECT ev_mid FROM t.ids)), roomserver.event_id((SELECT room_nid FROM t.ids), (SELECT ev_mid_nid FROM t.ids))'),
  ('json functions',          'SELECT roomserver.canonical_json(pdu), roomserver.redact(pdu, ''12''), roomserver.event_id_for(pdu, ''12''), roomserver.content_hash(pdu) FROM t.pdus WHERE n = 20'),
  ('room_id_for_create_event', 'SELECT roomserver.room_id_for_create_event(pdu, ''12'') FROM t.pdus WHERE n = 1'),
  ('check_auth',              'SELECT roomserver.check_auth((SELECT pdu FROM t.pdus WHERE n = 20), ''12'', ''[]''::jsonb)'),
  ('resolve_state',           'SELECT roomserver.resolve_state(''12'', ''[]''::jsonb, ''{}''::jsonb)'),
  ('nid_set_decode',          'SELECT roomserver.nid_set_decode((SELECT chain FROM t.ids))'),
  ('nid_set_union',           'SELECT roomserver.nid_set_union(ARRAY[(SELECT chain FROM t.ids), (SELECT chain FROM t.ids)])');
-- The internal write functions, with plausible arguments.
CREATE TABLE t.write_calls (ord serial, name text, stmt text);
INSERT INTO t.write_calls (name, stmt) VALUES
  ('assign_event_type_nids',  'SELECT roomserver.assign_event_type_nids(ARRAY[''org.example.probe''])'),
  ('assign_room_nids',        'SELECT roomserver.assign_room_nids(ARRAY[''!probe:example.org''], ARRAY[''10''])'),
  ('assign_state_key_nids',   'SELECT roomserver.assign_state_key_nids(ARRAY[(SELECT room_nid FROM t.ids)], ARRAY[''@probe:example.org''])'),
  ('store_snapshot',          'SELECT roomserver_internal.store_snapshot((SELECT room_nid FROM t.ids), ''\x01''::bytea, ''{}''::bigint[], ''{}''::integer[], ''\x02''::bytea, ''\x''::bytea, 0, 0::bigint, 0)');
GRANT SELECT ON ALL TABLES IN SCHEMA t TO PUBLIC;
SQL
}

# probe_role DB ROLE KIND: every probe as ROLE in a new backend; KIND none|reader|writer says
# what to expect. Prints "verdict|category|object|got|expected" (verdict ok, FAIL or info).
probe_role() {
    local db=$1 role=$2 kind=$3
    PGUSER=$role "${Q[@]}" -d "$db" -v kind="$kind" -v role="$role" <<'SQL'
CREATE TEMP TABLE r (category text, object text, got text, want text);
-- Every function of the schema, called with junk arguments of its argument types (t.junk).
INSERT INTO r
SELECT 'function', f.sig, t.probe(f.stmt),
       CASE WHEN :'kind' = 'none' THEN '42501'
            WHEN f.proname IN ('ingest_event', 'ingest_events', 'purge_redacted_content') THEN CASE :'kind' WHEN 'writer' THEN '!42501' ELSE '42501' END
            WHEN f.provolatile = 'v' THEN '42501'
            ELSE '!42501' END
FROM (SELECT p.oid::regprocedure::text AS sig, p.proname, p.provolatile,
             format('%s %I.%I(%s)', CASE p.prokind WHEN 'p' THEN 'CALL' ELSE 'SELECT' END, p.pronamespace::regnamespace, p.proname,
                    coalesce((SELECT string_agg(CASE WHEN p.provariadic <> 0 AND a.ord = p.pronargs THEN 'VARIADIC ' ELSE '' END || t.junk(a.typ),
                                                ', ' ORDER BY a.ord)
                              FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(typ, ord)), '')) AS stmt
      FROM pg_proc p WHERE p.pronamespace IN ('roomserver'::regnamespace, 'roomserver_internal'::regnamespace)) f;
-- Every relation: SELECT.
INSERT INTO r
SELECT 'select', c.oid::regclass::text || ' (' || c.relkind::text || ')', t.probe(format('SELECT * FROM %s LIMIT 1', c.oid::regclass)),
       CASE WHEN :'kind' = 'none' THEN '42501' WHEN c.relkind = 'S' THEN 'info' ELSE 'ok' END
FROM pg_class c WHERE c.relnamespace = 'roomserver'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f');
-- Every table: INSERT, UPDATE, DELETE, TRUNCATE (rolled back if they ever succeed).
INSERT INTO r
SELECT 'dml', c.oid::regclass::text || ': ' || d.verb,
       t.probe(CASE d.verb WHEN 'INSERT' THEN format('INSERT INTO %s DEFAULT VALUES', c.oid::regclass)
                           WHEN 'UPDATE' THEN format('UPDATE %s SET %I = %I', c.oid::regclass, a.attname, a.attname)
                           WHEN 'DELETE' THEN format('DELETE FROM %s', c.oid::regclass)
                           ELSE format('TRUNCATE %s', c.oid::regclass) END), '42501'
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = (SELECT min(x.attnum) FROM pg_attribute x WHERE x.attrelid = c.oid AND x.attnum > 0 AND NOT x.attisdropped)
CROSS JOIN (VALUES ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE')) d(verb)
WHERE c.relnamespace = 'roomserver'::regnamespace AND c.relkind IN ('r', 'p');
-- Every sequence: nextval, setval.
INSERT INTO r
SELECT 'sequence', c.oid::regclass::text || ': ' || v.fn,
       t.probe(CASE v.fn WHEN 'nextval' THEN format('SELECT pg_catalog.nextval(%L)', c.oid::regclass)
                         ELSE format('SELECT pg_catalog.setval(%L, pg_catalog.nextval(%L))', c.oid::regclass, c.oid::regclass) END), '42501'
FROM pg_class c CROSS JOIN (VALUES ('nextval'), ('setval')) v(fn)
WHERE c.relnamespace = 'roomserver'::regnamespace AND c.relkind = 'S';
-- The read API with real arguments.
INSERT INTO r
SELECT 'read', c.name, t.probe(c.stmt), CASE WHEN :'kind' = 'none' THEN '42501' ELSE 'ok' END FROM t.read_calls c ORDER BY c.ord;
-- The internal write functions with plausible arguments, and ingest with a new event.
INSERT INTO r SELECT 'internal write', c.name, t.probe(c.stmt), '42501' FROM t.write_calls c ORDER BY c.ord;
INSERT INTO r VALUES
  ('ingest', 'ingest_event (event 37)', t.probe('SELECT roomserver.ingest_event((SELECT pdu FROM t.pdus WHERE n = 37))'),
   CASE :'kind' WHEN 'writer' THEN 'ok' ELSE '42501' END),
  ('ingest', 'ingest_events (events 37, 38)', t.probe('SELECT count(*) FROM roomserver.ingest_events((SELECT pdus FROM t.batches WHERE name = ''b37_38''))'),
   CASE :'kind' WHEN 'writer' THEN 'ok' ELSE '42501' END),
  ('grant', 'grant_reader', t.probe('SELECT roomserver.grant_reader(''plain_role'')'), '42501'),
  ('grant', 'grant_writer', t.probe('SELECT roomserver.grant_writer(''plain_role'')'), '42501');
-- A writer really ingests: event 37 alone, event 38 in a batch, then the whole room (duplicates).
INSERT INTO r
SELECT 'writer ingest', x.name, t.probe(x.stmt, true), 'ok'
FROM (VALUES (1, 'ingest_event (event 37), kept', 'SELECT roomserver.ingest_event((SELECT pdu FROM t.pdus WHERE n = 37))'),
             (2, 'ingest_events (event 38), kept', 'SELECT count(*) FROM roomserver.ingest_events((SELECT pdus FROM t.batches WHERE name = ''b38''))'),
             (3, 'ingest_events (all 40, duplicates), kept', 'SELECT count(*) FROM roomserver.ingest_events((SELECT pdus FROM t.batches WHERE name = ''all''))')) x(ord, name, stmt)
WHERE :'kind' = 'writer' ORDER BY x.ord;
SELECT CASE WHEN want = 'info' THEN 'info'
            WHEN want LIKE '!%' THEN CASE WHEN got <> substr(want, 2) THEN 'ok' ELSE 'FAIL' END
            WHEN got = want THEN 'ok' ELSE 'FAIL' END
       || '|' || category || '|' || object || '|' || got || '|' || want
FROM r;
SQL
}

# report ROLE FILE: one line per role, the failures listed (at most 12 per role).
report() {
    local role=$1 f=$2 total bad info
    total=$(wc -l < "$f"); bad=$(grep -c '^FAIL|' "$f" || true)
    # Not in the contract (SELECT on sequences): how many gave what.
    info=$(awk -F'|' '$1 == "info" { n["SELECT on a sequence: " $4]++ } END { for (k in n) printf "%s%s x%d", (s++ ? ", " : ""), k, n[k] }' "$f")
    echo "  $role: $total probes, $bad failed${info:+ (not checked: ${info})}"
    if [ "$bad" -gt 0 ]; then
        failures=$((failures + bad))
        grep '^FAIL|' "$f" | awk -F'|' -v r="$role" 'NR <= 12 { printf "    FAIL %s: %s %s: got %s, want %s\n", r, $2, $3, $4, $5 } END { if (NR > 12) printf "    ... and %d more\n", NR - 12 }' >&2
        fail_lines+=("$role: $bad probes failed")
    fi
}

# The planted objects: each records the call it ran inside (application_name) in public.hijack_log
# and warns once per backend (the warning survives a rolled-back call).
PLANT_SQL=$(cat <<'SQL'
CREATE TABLE public.hijack_log (call text, fn text, usr text, superuser text, at timestamptz DEFAULT now());
GRANT SELECT, INSERT ON public.hijack_log TO PUBLIC;
CREATE FUNCTION public.hijack_note(fn text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO public.hijack_log (call, fn, usr, superuser)
    VALUES (current_setting('application_name'), fn, current_user, current_setting('is_superuser'));
    IF current_setting('hijack.f' || md5(fn), true) IS DISTINCT FROM 'seen' THEN
        PERFORM set_config('hijack.f' || md5(fn), 'seen', false);
        RAISE WARNING 'hijack: public.% ran inside "%" as %', fn, current_setting('application_name'), current_user;
    END IF;
END $$;
-- Set-returning and scalar functions: exact argument types beat pg_catalog's polymorphic ones.
CREATE FUNCTION public.unnest(a bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('unnest(bigint[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a integer[]) RETURNS SETOF integer LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('unnest(integer[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a smallint[]) RETURNS SETOF smallint LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('unnest(smallint[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a boolean[]) RETURNS SETOF boolean LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('unnest(boolean[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a bytea[]) RETURNS SETOF bytea LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('unnest(bytea[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.generate_series(a integer, b bigint) RETURNS SETOF bigint LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('generate_series(integer,bigint)'); RETURN QUERY SELECT pg_catalog.generate_series(a::bigint, b); END $$;
CREATE FUNCTION public.generate_subscripts(a text[], d integer) RETURNS SETOF integer LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('generate_subscripts(text[],integer)'); RETURN QUERY SELECT pg_catalog.generate_subscripts(a, d); END $$;
CREATE FUNCTION public.nextval(s text) RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('nextval(text)'); RETURN pg_catalog.nextval(s::regclass); END $$;
CREATE FUNCTION public.to_jsonb(v text) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('to_jsonb(text)'); RETURN pg_catalog.to_jsonb(v); END $$;
CREATE FUNCTION public.to_jsonb(v bigint) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('to_jsonb(bigint)'); RETURN pg_catalog.to_jsonb(v); END $$;
CREATE FUNCTION public.jsonb_build_object(k text, v text) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('jsonb_build_object(text,text)'); RETURN pg_catalog.jsonb_build_object(k, v); END $$;
CREATE FUNCTION public.jsonb_build_array(a text, b jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('jsonb_build_array(text,jsonb)'); RETURN pg_catalog.jsonb_build_array(a, b); END $$;
CREATE FUNCTION public.array_fill(v bigint, d integer[]) RETURNS bigint[] LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('array_fill(bigint,integer[])'); RETURN pg_catalog.array_fill(v, d); END $$;
CREATE FUNCTION public.array_fill(v boolean, d integer[]) RETURNS boolean[] LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('array_fill(boolean,integer[])'); RETURN pg_catalog.array_fill(v, d); END $$;
CREATE FUNCTION public.cardinality(a bigint[]) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('cardinality(bigint[])'); RETURN pg_catalog.cardinality(a); END $$;
CREATE FUNCTION public.cardinality(a text[]) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('cardinality(text[])'); RETURN pg_catalog.cardinality(a); END $$;
CREATE FUNCTION public.array_ndims(a text[]) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('array_ndims(text[])'); RETURN pg_catalog.array_ndims(a); END $$;
-- Aggregates.
CREATE FUNCTION public.hijack_jsonb_acc(s jsonb, v jsonb) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog AS
$$ SELECT COALESCE(s, '[]'::jsonb) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array(v) $$;
CREATE FUNCTION public.hijack_jsonb_acc_text(s jsonb, v text) RETURNS jsonb LANGUAGE sql SET search_path = pg_catalog AS
$$ SELECT COALESCE(s, '[]'::jsonb) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array(v) $$;
CREATE FUNCTION public.hijack_jsonb_final(s jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('jsonb_agg(jsonb)'); RETURN s; END $$;
CREATE FUNCTION public.hijack_jsonb_final_text(s jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('jsonb_agg(text)'); RETURN s; END $$;
CREATE AGGREGATE public.jsonb_agg(jsonb) (SFUNC = public.hijack_jsonb_acc, STYPE = jsonb, FINALFUNC = public.hijack_jsonb_final);
CREATE AGGREGATE public.jsonb_agg(text) (SFUNC = public.hijack_jsonb_acc_text, STYPE = jsonb, FINALFUNC = public.hijack_jsonb_final_text);
CREATE FUNCTION public.hijack_final_int8s(s bigint[]) RETURNS bigint[] LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('array_agg(bigint)'); RETURN s; END $$;
CREATE AGGREGATE public.array_agg(bigint) (SFUNC = pg_catalog.array_append, STYPE = bigint[], FINALFUNC = public.hijack_final_int8s);
CREATE FUNCTION public.hijack_final_byteas(s bytea[]) RETURNS bytea[] LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('array_agg(bytea)'); RETURN s; END $$;
CREATE AGGREGATE public.array_agg(bytea) (SFUNC = pg_catalog.array_append, STYPE = bytea[], FINALFUNC = public.hijack_final_byteas);
CREATE FUNCTION public.hijack_final_texts(s text[]) RETURNS text[] LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('array_agg(text)'); RETURN s; END $$;
CREATE AGGREGATE public.array_agg(text) (SFUNC = pg_catalog.array_append, STYPE = text[], FINALFUNC = public.hijack_final_texts);
CREATE FUNCTION public.hijack_count_acc(s bigint, v text) RETURNS bigint LANGUAGE sql SET search_path = pg_catalog AS
$$ SELECT CASE WHEN v IS NULL THEN s ELSE s OPERATOR(pg_catalog.+) 1 END $$;
CREATE FUNCTION public.hijack_count_final(s bigint) RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('count(text)'); RETURN s; END $$;
CREATE AGGREGATE public.count(text) (SFUNC = public.hijack_count_acc, STYPE = bigint, INITCOND = '0', FINALFUNC = public.hijack_count_final);
-- Operators: pg_catalog has only int8 % int8, numeric * numeric, anycompatiblearray || anycompatible.
CREATE FUNCTION public.hijack_mod(a bigint, b integer) RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('operator %(bigint,integer)'); RETURN a OPERATOR(pg_catalog.%) b::bigint; END $$;
CREATE OPERATOR public.% (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = public.hijack_mod);
CREATE FUNCTION public.hijack_mul(a numeric, b integer) RETURNS numeric LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('operator *(numeric,integer)'); RETURN a OPERATOR(pg_catalog.*) b::numeric; END $$;
CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.hijack_mul);
CREATE FUNCTION public.hijack_append(a bigint[], b bigint) RETURNS bigint[] LANGUAGE plpgsql SET search_path = pg_catalog AS
$$ BEGIN PERFORM public.hijack_note('operator ||(bigint[],bigint)'); RETURN pg_catalog.array_append(a, b); END $$;
CREATE OPERATOR public.|| (LEFTARG = bigint[], RIGHTARG = bigint, FUNCTION = public.hijack_append);
SQL
)

# hijack DB MODE: plant, then every call in its own new backend, as the superuser (and the
# ingest of a writer); prints which planted object ran inside which call.
hijack() {
    local db=$1 mode=$2
    "${PSQL[@]}" -d "$db" -c "GRANT CREATE ON SCHEMA public TO attacker"
    local has_writer
    has_writer=$("${Q[@]}" -d "$db" -c "SELECT to_regprocedure('roomserver.grant_writer(regrole)') IS NOT NULL")
    [ "$has_writer" = t ] && "${Q[@]}" -d "$db" -o /dev/null -c "SELECT roomserver.grant_writer('writer_role')"
    # Sanity: with the objects planted, a call that is not the extension's picks them.
    PGUSER=attacker "${PSQL[@]}" -d "$db" -o /dev/null <<<"$PLANT_SQL"
    local planted
    planted=$("${Q[@]}" -d "$db" -c "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname NOT LIKE 'hijack%'")
    planted=$((planted + $("${Q[@]}" -d "$db" -c "SELECT count(*) FROM pg_operator WHERE oprnamespace = 'public'::regnamespace")))
    local self
    self=$(PGAPPNAME=selftest "${Q[@]}" -d "$db" -c "SELECT count(*) FROM unnest(ARRAY[1::bigint, 2::bigint])" \
        -c "SELECT count(*) FROM public.hijack_log WHERE call = 'selftest'" 2>/dev/null | tail -1)
    [ "$self" = 1 ] || { note_fail "$mode: hijack self-test: the planted unnest(bigint[]) did not run in a plain query"; return; }
    "${Q[@]}" -d "$db" -c "TRUNCATE public.hijack_log"

    # The calls: the read API, then ingest (new events, then a duplicate), then a writer.
    local names=() stmts=() users=()
    while IFS=$'\t' read -r name stmt; do names+=("$name"); stmts+=("$stmt"); users+=(postgres); done \
        < <("${Q[@]}" -F $'\t' -d "$db" -c "SELECT name, stmt FROM t.read_calls ORDER BY ord")
    names+=("ingest_event" "ingest_events" "ingest_event (duplicate)")
    stmts+=("SELECT roomserver.ingest_event((SELECT pdu FROM t.pdus WHERE n = 37))"
            "SELECT count(*) FROM roomserver.ingest_events((SELECT pdus FROM t.batches WHERE name = 'b38'))"
            "SELECT roomserver.ingest_event((SELECT pdu FROM t.pdus WHERE n = 37))")
    users+=(postgres postgres postgres)
    if [ "$has_writer" = t ]; then
        names+=("writer: ingest_events"); users+=(writer_role)
        stmts+=("SELECT count(*) FROM roomserver.ingest_events((SELECT pdus FROM t.batches WHERE name = 'b39_40'))")
    fi
    local i out warned=0 call_fail=0
    for i in "${!names[@]}"; do
        if ! out=$(PGAPPNAME="${names[$i]}" PGUSER="${users[$i]}" "${Q[@]}" -d "$db" -o /dev/null \
                   -c '\set VERBOSITY verbose' -c "${stmts[$i]}" 2>&1); then
            call_fail=$((call_fail + 1))
            note_fail "$mode: hijack: call ${names[$i]} failed: $(grep -m1 'ERROR' <<<"$out")"
        fi
        if grep -q 'WARNING: .*hijack: public' <<<"$out"; then warned=$((warned + 1)); fi
    done
    local rows summary
    rows=$("${Q[@]}" -d "$db" -c "SELECT count(*) FROM public.hijack_log")
    summary=$("${Q[@]}" -d "$db" -c "
        SELECT '    ' || call || ': ' || string_agg(fn || ' x' || n, ', ' ORDER BY fn)
        FROM (SELECT call, fn, count(*) AS n FROM public.hijack_log GROUP BY call, fn) x
        GROUP BY call ORDER BY min(call)")
    echo "  hijack: $planted objects planted in public, ${#names[@]} calls in new backends ($call_fail failed): $rows planted calls logged, warnings in $warned calls"
    if [ "$rows" != 0 ] || [ "$warned" != 0 ]; then
        echo "  planted objects that ran inside the extension's calls (call: object x times):"
        echo "$summary"
        note_fail "$mode: hijack: planted functions ran inside $("${Q[@]}" -d "$db" -c "SELECT count(*) FROM (SELECT DISTINCT call FROM public.hijack_log) x") calls (warnings in $warned)"
    fi
}

# The cache: the superuser fills it, then SET ROLE to a role that may execute the state
# functions but not read the state tables.
cache_check() {
    local db=$1 mode=$2 out
    "${PSQL[@]}" -d "$db" -o /dev/null <<'SQL'
GRANT USAGE ON SCHEMA roomserver TO exec_only;
GRANT EXECUTE ON FUNCTION roomserver.snapshot_entries(bigint, bigint), roomserver.snapshot_lookup(bigint, bigint, bigint[], bigint[]) TO exec_only;
SQL
    out=$("${Q[@]}" -d "$db" <<'SQL'
SELECT count(*) FROM roomserver.snapshot_entries((SELECT room_nid FROM t.ids), (SELECT snap FROM t.ids)) \g /dev/null
SELECT count(*) FROM roomserver.snapshot_lookup((SELECT room_nid FROM t.ids), (SELECT snap FROM t.ids), ARRAY[1::bigint], ARRAY[1::bigint]) \g /dev/null
SET ROLE exec_only;
SELECT 'snapshot_entries=' || t.probe('SELECT count(*) FROM roomserver.snapshot_entries((SELECT room_nid FROM t.ids), (SELECT snap FROM t.ids))');
SELECT 'snapshot_lookup=' || t.probe('SELECT count(*) FROM roomserver.snapshot_lookup((SELECT room_nid FROM t.ids), (SELECT snap FROM t.ids), ARRAY[1::bigint], ARRAY[1::bigint])');
RESET ROLE;
SQL
)
    echo "  cache after SET ROLE exec_only: $(tr '\n' ' ' <<<"$out")(want 42501)"
    [ "$out" = $'snapshot_entries=42501\nsnapshot_lookup=42501' ] || note_fail "$mode: the backend cache answered a role without SELECT on the state tables: $(tr '\n' ' ' <<<"$out")"
}

n=0
for mode in $MODES; do
    n=$((n + 1))
    if [ "$mode" = upgrade ] && [ ! -f "$EXTDIR/pg_roomserver--$FROM_VERSION.sql" ]; then
        echo "== mode upgrade: skipped ($EXTDIR/pg_roomserver--$FROM_VERSION.sql is not installed)"
        continue
    fi
    db=privileges_$n; hdb=hijack_$n
    setup_db "$db" "$mode"
    version=$("${Q[@]}" -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_roomserver'")
    echo "== mode $mode (pg_roomserver $version)"
    "${PSQL[@]}" -d "$db" -c "GRANT USAGE ON SCHEMA roomserver TO usage_only"
    for g in reader writer; do
        if ! out=$("${Q[@]}" -d "$db" -c "SELECT roomserver.grant_$g('${g}_role')" 2>&1); then
            note_fail "$mode: the superuser could not call grant_$g: $(grep -m1 ERROR <<<"$out")"
        fi
    done
    for spec in plain_role:none usage_only:none reader_role:reader writer_role:writer; do
        role=${spec%%:*}; kind=${spec##*:}
        if ! probe_role "$db" "$role" "$kind" > "$WORK/$role.$n" 2> "$WORK/$role.$n.err"; then
            note_fail "$mode: the probes of $role did not run: $(head -c 300 "$WORK/$role.$n.err")"
            continue
        fi
        report "$role" "$WORK/$role.$n"
    done
    # What the writer ingested is stored, and sound.
    stored=$("${Q[@]}" -d "$db" -c "SELECT count(*) FROM t.pdus p JOIN roomserver.stored_events e ON e.event_id = roomserver.event_id_for(p.pdu, '12')")
    problems=$("${Q[@]}" -d "$db" -c "SELECT count(*) FROM roomserver.check_integrity()")
    echo "  after the writer: $stored of 40 events stored, $problems integrity problems"
    [ "$stored" = 40 ] && [ "$problems" = 0 ] || note_fail "$mode: after the writer's ingest $stored of 40 events are stored, $problems integrity problems"
    cache_check "$db" "$mode"
    setup_db "$hdb" "$mode"
    hijack "$hdb" "$mode"
done

echo "privileges: modes $MODES in $((SECONDS - T0))s"
if [ "$failures" -ne 0 ]; then
    printf '  %s\n' "${fail_lines[@]}" >&2
    echo "FAIL: privileges: $failures failed checks" >&2
    exit 1
fi
echo "PASS: privileges: nothing granted to PUBLIC, readers read, writers ingest and purge redacted content and nothing more, no planted function runs inside the extension (modes: $MODES)"
