-- Who may do what. Nothing in the schema is granted to PUBLIC (sql/api/99_finalize.sql); a DBA
-- makes roles readers or writers with these functions, which only the extension's owner (or a
-- role holding the grant option) can run:
--   reader: USAGE on the schema, SELECT on every table and view, EXECUTE on every function that
--           cannot write (STABLE or IMMUTABLE: state, federation reads, NID lookups, ...);
--   writer: a reader that may also call ingest_event and ingest_events (and
--           purge_redacted_content). Those run as SECURITY DEFINER (owner's rights, pinned
--           search_path), so a writer needs no write privilege on any table: what it stores
--           always goes through ingest's checks.
--   admin:  the extension's owner (the superuser who ran CREATE EXTENSION): everything else,
--           DDL, the write functions (assign_*_nids, roomserver_internal.store_snapshot), these
--           grants.
-- Re-running them is harmless; every upgrade re-grants what a new release adds to existing
-- readers and writers (99_finalize.sql).

CREATE OR REPLACE FUNCTION roomserver.grant_reader(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
DECLARE
    f regprocedure;
BEGIN
    -- The read functions run with the caller's rights and call the internal ones.
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA roomserver, roomserver_internal TO %s', role);
    EXECUTE pg_catalog.format('GRANT SELECT ON ALL TABLES IN SCHEMA roomserver TO %s', role);
    FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
             WHERE p.pronamespace IN ('roomserver'::pg_catalog.regnamespace, 'roomserver_internal'::pg_catalog.regnamespace)
               AND p.provolatile <> 'v'
             ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', f, role);
    END LOOP;
END
$$;
COMMENT ON FUNCTION roomserver.grant_reader(regrole) IS 'Makes a role a reader: SELECT on every table and view, EXECUTE on every read function.';

CREATE OR REPLACE FUNCTION roomserver.grant_writer(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    PERFORM roomserver.grant_reader(role);
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) TO %s', role);
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) TO %s', role);
    -- SECURITY DEFINER like ingest: it rewrites stored_events only as its rule says.
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION roomserver.purge_redacted_content(interval) TO %s', role);
END
$$;
COMMENT ON FUNCTION roomserver.grant_writer(regrole) IS 'Makes a role a writer: a reader that may also call ingest_event and ingest_events (no table write privileges).';

CREATE OR REPLACE FUNCTION roomserver.revoke_access(role regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA roomserver, roomserver_internal FROM %s', role);
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA roomserver FROM %s', role);
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA roomserver FROM %s', role);
    EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA roomserver, roomserver_internal FROM %s', role);
END
$$;
COMMENT ON FUNCTION roomserver.revoke_access(regrole) IS 'Takes every privilege on the extension''s schema, tables and functions from a role.';
