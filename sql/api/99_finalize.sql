-- Runs last, once the Rust functions exist.

-- Ingest's statements are written to be index probes whatever the batch size, so they run with
-- generic plans: re-planning them on every call was a quarter of the time of single-event ingest
-- (perf on the backend: GetCachedPlan -> pg_plan_queries). A generic plan is costed with the
-- statistics of the moment it is made, and a plan made while the tables were still empty chose
-- sequential scans that then ran on every call as the room grew (measured: 784 instead of 4,000+
-- events/s after 70,000 events). enable_seqscan = off keeps those plans on the indexes; it applies
-- only while these functions run.
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean) SET enable_seqscan = off;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean) SET enable_seqscan = off;

-- Writers ingest with the owner's rights (see 05_access.sql): they need no table privileges.
ALTER FUNCTION roomserver.ingest_event(jsonb, text, boolean) SECURITY DEFINER;
ALTER FUNCTION roomserver.ingest_events(jsonb, text, boolean) SECURITY DEFINER;

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
             WHERE p.oid = 'roomserver.ingest_event(jsonb, text, boolean)'::pg_catalog.regprocedure AND a.grantee <> p.proowner AND a.grantee <> 0
    LOOP
        PERFORM roomserver.grant_writer(r);
    END LOOP;
END
$$;
