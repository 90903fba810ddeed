-- A DBA installs the extension and looks at what it created.
\set setup_without_extension
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
CREATE EXTENSION pg_roomserver;

SELECT extname, extversion, nspname AS schema
FROM pg_extension JOIN pg_namespace ON pg_namespace.oid = extnamespace
WHERE extname = 'pg_roomserver';

-- Well-known event types have fixed NIDs.
SELECT event_type_nid, event_type FROM roomserver.event_types ORDER BY event_type_nid;

-- The functions and how they are marked: the API in roomserver, what it is built from in
-- roomserver_internal. Every one pins its search_path; ingest runs with its owner's rights.
SELECT n.nspname AS schema, p.proname,
       pg_get_function_identity_arguments(p.oid) AS arguments,
       CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END AS volatility,
       p.proisstrict AS strict,
       CASE p.proparallel WHEN 's' THEN 'safe' WHEN 'r' THEN 'restricted' ELSE 'unsafe' END AS parallel,
       p.prosecdef AS security_definer,
       array_to_string(p.proconfig, ', ') AS settings
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname IN ('roomserver', 'roomserver_internal')
ORDER BY n.nspname, p.proname, arguments;

-- Nothing is granted to PUBLIC: only the owner may execute anything until a DBA grants.
SELECT count(*) AS functions_public_may_execute
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname IN ('roomserver', 'roomserver_internal') AND has_function_privilege('public', p.oid, 'EXECUTE');
SELECT count(*) AS tables_public_may_read
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'roomserver' AND c.relkind IN ('r', 'v', 'S') AND has_table_privilege('public', c.oid, 'SELECT');
-- pg_dump carries every table and sequence (the preassigned event types excepted).
SELECT c::regclass AS dumped, w AS filter FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w)
WHERE e.extname = 'pg_roomserver' ORDER BY c::regclass::text;

-- Every table is keyed by room (Citus-ready), except the two global dictionaries.
SELECT c.relname AS table_name, pg_get_constraintdef(k.oid) AS primary_key
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'roomserver' AND k.contype = 'p'
ORDER BY 1;
