-- Everything the extension owns, as text that two databases can be compared by: every member
-- object with its definition, settings and privileges, the table columns, constraints and
-- indexes, and what pg_dump dumps of the data. Used by tests/tiers/upgrade.sh. Privileges are
-- listed sorted: their order in an ACL is only the order the grants were made in.
\pset format unaligned
\pset tuples_only on
SELECT 'function ' || p.oid::regprocedure || ' ' || pg_get_function_result(p.oid) || ' ' || p.provolatile::text || p.proparallel::text
       || CASE WHEN p.proisstrict THEN ' strict' ELSE '' END || CASE WHEN p.prosecdef THEN ' definer' ELSE '' END
       || ' config=' || coalesce(array_to_string(p.proconfig, ','), '') || ' acl=' || coalesce((SELECT array_agg(a::text ORDER BY a::text) FROM unnest(p.proacl) a)::text, 'default')
       || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '') || E'\n'
       || CASE WHEN p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') THEN p.prosrc ELSE pg_get_functiondef(p.oid) END
FROM pg_proc p WHERE p.pronamespace IN ('roomserver'::regnamespace, 'roomserver_internal'::regnamespace)
ORDER BY 1;
SELECT 'relation ' || c.relkind::text || ' ' || c.oid::regclass || ' acl=' || coalesce((SELECT array_agg(a::text ORDER BY a::text) FROM unnest(c.relacl) a)::text, 'default')
       || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
       || coalesce(E'\n' || pg_get_viewdef(c.oid), '')
FROM pg_class c WHERE c.relnamespace = 'roomserver'::regnamespace
ORDER BY 1;
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
       || ' storage=' || a.attstorage::text
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = 'roomserver'::regnamespace AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1;
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'roomserver'::regnamespace ORDER BY 1;
SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = 'roomserver'::regnamespace ORDER BY 1;
SELECT 'sequence ' || seqrelid::regclass || ' ' || format_type(seqtypid, NULL) || ' start ' || seqstart || ' owned by '
       || coalesce((SELECT d.refobjid::regclass || '.' || a.attname FROM pg_depend d
                    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                    WHERE d.objid = s.seqrelid AND d.deptype = 'a'), '-')
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'roomserver'::regnamespace ORDER BY 1;
SELECT 'dumped ' || c::regclass || ' ' || coalesce(w, '')
FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w)
WHERE e.extname = 'pg_roomserver' ORDER BY 1;
SELECT 'schema ' || nspname || ' acl=' || coalesce((SELECT array_agg(a::text ORDER BY a::text) FROM unnest(nspacl) a)::text, 'default') FROM pg_namespace WHERE nspname IN ('roomserver', 'roomserver_internal') ORDER BY nspname;
SELECT 'event type ' || event_type_nid || ' ' || event_type FROM roomserver.event_types WHERE event_type_nid < 65536 ORDER BY event_type_nid;
