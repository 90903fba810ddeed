-- A DBA installs the extension and looks at what it created.
CREATE EXTENSION pg_roomserver;

SELECT extname, extversion, nspname AS schema
FROM pg_extension JOIN pg_namespace ON pg_namespace.oid = extnamespace
WHERE extname = 'pg_roomserver';

-- Well-known event types have fixed NIDs.
SELECT event_type_nid, event_type FROM roomserver.event_types ORDER BY event_type_nid;

-- The public functions and how they are marked.
SELECT p.proname,
       pg_get_function_identity_arguments(p.oid) AS arguments,
       CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END AS volatility,
       p.proisstrict AS strict,
       CASE p.proparallel WHEN 's' THEN 'safe' WHEN 'r' THEN 'restricted' ELSE 'unsafe' END AS parallel,
       array_to_string(p.proconfig, ', ') AS settings
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'roomserver'
ORDER BY p.proname, arguments;

-- Every table is keyed by room (Citus-ready), except the two global dictionaries.
SELECT c.relname AS table_name, pg_get_constraintdef(k.oid) AS primary_key
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'roomserver' AND k.contype = 'p'
ORDER BY 1;
