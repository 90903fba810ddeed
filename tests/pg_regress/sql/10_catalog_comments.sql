-- Every function and view of the API (schema roomserver) says what it is in the catalog, where
-- \df+, \dv+ and a DBA's tools show it: the functions and views without a comment (none).
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
SELECT CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'window function' END AS kind,
       format('%s(%s)', p.proname, pg_get_function_identity_arguments(p.oid)) AS name
FROM pg_proc p
WHERE p.pronamespace = 'roomserver'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, c.relname::text
FROM pg_class c
WHERE c.relnamespace = 'roomserver'::regnamespace AND c.relkind IN ('v', 'm') AND obj_description(c.oid, 'pg_class') IS NULL
ORDER BY 1, 2;
