-- Runs last, once the Rust functions exist.

-- Ingest's statements are written to be index probes whatever the batch size, so they run with
-- generic plans: re-planning them on every call was a quarter of the time of single-event ingest
-- (perf on the backend: GetCachedPlan -> pg_plan_queries). A generic plan is costed with the
-- statistics of the moment it is made, and a plan made while the tables were still empty chose
-- sequential scans that then ran on every call as the room grew (measured: 784 instead of 4,000+
-- events/s after 70,000 events). enable_seqscan = off keeps those plans on the indexes; it applies
-- only while these functions run.
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) SET enable_seqscan = off;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) SET enable_seqscan = off;

-- Writers ingest with the owner's rights (see 05_access.sql): they need no table privileges.
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) SECURITY DEFINER;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) SECURITY DEFINER;

-- Every function runs with a pinned search_path, so no function or operator a caller's
-- search_path could supply (public.unnest(bigint[]) is a better match than pg_catalog's
-- unnest(anyarray)) ever runs inside ours, whoever calls. pg_temp comes last so that not even
-- a temporary object can shadow anything.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
             WHERE p.pronamespace IN ('roomserver'::pg_catalog.regnamespace, 'roomserver_internal'::pg_catalog.regnamespace)
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, roomserver, pg_temp', f);
    END LOOP;
END
$$;

-- Nothing is granted to PUBLIC; roomserver.grant_reader / grant_writer grant what a role needs.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA roomserver, roomserver_internal FROM PUBLIC;

-- An upgrade gives existing readers and writers what the new release adds (a fresh install
-- has none). A reader is a role that may call state_ids, a writer one that may call ingest_event.
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::regrole FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid = 'roomserver.state_ids(text, text)'::pg_catalog.regprocedure AND a.grantee <> p.proowner AND a.grantee <> 0
    LOOP
        PERFORM roomserver.grant_reader(r);
    END LOOP;
    FOR r IN SELECT DISTINCT a.grantee::regrole FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
             WHERE p.oid = 'roomserver.ingest_event(jsonb, text, boolean, text[])'::pg_catalog.regprocedure AND a.grantee <> p.proowner AND a.grantee <> 0
    LOOP
        PERFORM roomserver.grant_writer(r);
    END LOOP;
END
$$;

-- Grants to roles are never initial privileges. PostgreSQL records what an extension script
-- (CREATE or ALTER EXTENSION) grants in pg_init_privs, and pg_dump dumps only the privileges that
-- differ from those: the grants above, made by ALTER EXTENSION UPDATE, would count as the
-- extension's own, be left out of every dump, and be lost on restore (whose CREATE EXTENSION
-- grants nobody anything). So the initial privileges of the extension's objects keep only what
-- their owner holds, as after a fresh install. (A fresh install grants nothing: nothing changes.)
UPDATE pg_catalog.pg_init_privs i
SET initprivs = ARRAY(SELECT a FROM pg_catalog.unnest(i.initprivs) AS a
                      WHERE (SELECT x.grantee = x.grantor FROM pg_catalog.aclexplode(ARRAY[a]) AS x LIMIT 1))
WHERE i.privtype = 'e'
  AND (EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
               WHERE d.classid = i.classoid AND d.objid = i.objoid AND d.deptype = 'e'
                 AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                 AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_roomserver'))
       -- Schema roomserver is the extension's schema, not a member of it.
       OR (i.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
           AND i.objoid IN ('roomserver'::pg_catalog.regnamespace, 'roomserver_internal'::pg_catalog.regnamespace)))
  AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(i.initprivs) AS x WHERE x.grantee <> x.grantor);
