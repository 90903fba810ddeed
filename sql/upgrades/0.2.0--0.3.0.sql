-- Schema changes from 0.2.0 to 0.3.0 (tables, sequences, indexes; objects that are renamed or
-- dropped). The API (sql/api/*.sql) is replayed after this file by scripts/upgrade-script.sh.

-- Renamed or replaced internals (the API replay creates what replaces them).
-- state_at_nids took an event ID: it is the body of roomserver.state_at_event, and named so.
DROP FUNCTION roomserver_internal.state_at_nids(text, boolean, text[], text[]);
-- event_refs rebuilt one reference list of one event: roomserver_internal.stored_pdus builds
-- whole PDUs, references included, for event_pdu and federation_pdus alike.
DROP FUNCTION roomserver_internal.event_refs(bigint, bigint, "char");

-- Rust functions new in 0.3.0, as the install script creates them (cargo pgrx schema).
CREATE  FUNCTION roomserver_internal."server_name_of"(
	"user_id" TEXT /* & str */
) RETURNS TEXT /* Option < String > */
IMMUTABLE STRICT PARALLEL SAFE COST 10
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'server_name_of_wrapper';
-- The m.room.server_acl rule (core/src/server_acl.rs) for roomserver.server_allowed (issue 16).
CREATE  FUNCTION roomserver_internal."server_acl_allows"(
	"acl" jsonb, /* JsonInput */
	"server_name" TEXT /* & str */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'server_acl_allows_wrapper';

-- missing_events was PL/pgSQL with its own reading of prev_events and auth_events; it is Rust
-- now and reads them as ingest does. Replaced in place (same signature, same attributes), so
-- the grants to readers stay.
CREATE OR REPLACE FUNCTION roomserver."missing_events"(
	"pdu" jsonb /* Option < JsonInput > */
) RETURNS jsonb /* JsonB */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'missing_events_wrapper';

-- ---------------------------------------------------------------------------------------------
-- Local events and timestamp_to_event (issue 15, items 5 and 6).
-- The index of roomserver.timestamp_to_event, as sql/schema/02_events.sql creates it.
CREATE INDEX stored_events_room_ts ON roomserver.stored_events (room_nid, origin_server_ts, depth, event_nid)
    WHERE NOT outlier AND rejection IS NULL;
-- roomserver.prepare_event (src/api/local_events.rs), as the install script creates it.
CREATE  FUNCTION roomserver."prepare_event"(
	"room_id" TEXT, /* Option < & str > */
	"type" TEXT, /* Option < & str > */
	"state_key" TEXT, /* Option < & str > */
	"sender" TEXT, /* Option < & str > */
	"content" jsonb, /* Option < JsonInput > */
	"origin_server_ts" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS jsonb /* JsonB */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'prepare_event_wrapper';

-- ---------------------------------------------------------------------------------------------
-- Joining part-way through a room's history and backfilling it (issue 15, items 3 and 4):
-- ingest_event gains state_event_ids and ingest_events backfilled. New signatures, so the old
-- functions are dropped and the new ones created as the install script creates them. Their
-- grantees (the writers) are granted the new ones, so that the writer loop of 99_finalize finds
-- them again and grant_writer gives them whatever else 0.3.0 adds.
SELECT pg_catalog.set_config('pg_roomserver_upgrade.writers',
       COALESCE((SELECT pg_catalog.array_agg(DISTINCT a.grantee::regrole)::text
                 FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                 WHERE p.oid = 'roomserver.ingest_event(jsonb, text, boolean)'::pg_catalog.regprocedure
                   AND a.grantee <> p.proowner AND a.grantee <> 0), '{}'), true);
DROP FUNCTION roomserver.ingest_event(jsonb, text, boolean);
DROP FUNCTION roomserver.ingest_events(jsonb, text, boolean);
CREATE  FUNCTION roomserver."ingest_event"(
	"pdu" jsonb, /* Option < JsonInput > */
	"room_version" TEXT DEFAULT NULL, /* Option < & str > */
	"outlier" bool DEFAULT false, /* bool */
	"state_event_ids" TEXT[] DEFAULT NULL /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_event_wrapper';
CREATE  FUNCTION roomserver."ingest_events"(
	"pdus" jsonb, /* Option < JsonInput > */
	"room_version" TEXT DEFAULT NULL, /* Option < & str > */
	"outlier" bool DEFAULT false, /* bool */
	"backfilled" bool DEFAULT false /* bool */
) RETURNS SETOF jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'ingest_events_wrapper';
-- Nothing to PUBLIC (99_finalize revokes it too; the grants below must not be the only ones).
REVOKE ALL ON FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION roomserver.ingest_events(jsonb, text, boolean, boolean) FROM PUBLIC;
DO $$
DECLARE
    w regrole;
BEGIN
    FOR w IN SELECT pg_catalog.unnest(pg_catalog.current_setting('pg_roomserver_upgrade.writers')::regrole[])
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION roomserver.ingest_event(jsonb, text, boolean, text[]) TO %s', w);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Redactions applied and what is served to other servers (issue 15, items 1 and 2).
-- As sql/schema/02_events.sql and 04_redactions.sql create them: the purge mark (the last column
-- of stored_events) and the table of redaction targets.
ALTER TABLE roomserver.stored_events ADD COLUMN content_purged_at timestamptz;
CREATE TABLE roomserver.event_redactions (
    room_nid        bigint      NOT NULL,
    redaction_nid   bigint      NOT NULL,
    target_event_id text        NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_nid, redaction_nid)
);
CREATE INDEX event_redactions_target ON roomserver.event_redactions (room_nid, target_event_id);
COMMENT ON TABLE roomserver.event_redactions IS 'The target of every stored m.room.redaction event; whether it applies is decided at read time. Use roomserver.redactions (view) to read.';
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_redactions', '');
-- visibility_inputs returns the sender and whether the event is a state event too (the outlier
-- rule): a new result type, so it is dropped and the API replay creates it.
DROP FUNCTION roomserver_internal.visibility_inputs(bigint, bigint[], text);
-- The Rust functions of src/api/redactions.rs, as the install script creates them.
CREATE  FUNCTION roomserver_internal."redaction_target"(
	"pdu" jsonb, /* JsonInput */
	"room_version" TEXT /* & str */
) RETURNS TEXT /* Option < String > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'redaction_target_wrapper';
CREATE  FUNCTION roomserver_internal."redaction_refusal"(
	"room_version" TEXT, /* Option < & str > */
	"rejected" bool, /* Option < bool > */
	"redaction_sender" TEXT, /* Option < & str > */
	"target_type" TEXT, /* Option < & str > */
	"target_sender" TEXT, /* Option < & str > */
	"room_nid" bigint, /* Option < i64 > */
	"redaction_nid" bigint /* Option < i64 > */
) RETURNS TEXT /* Option < & '_ str > */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'redaction_refusal_wrapper';
CREATE  FUNCTION roomserver_internal."redacted_pdu_rest"(
	"pdu" jsonb, /* JsonInput */
	"room_version" TEXT /* & str */
) RETURNS jsonb /* JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'redacted_pdu_rest_wrapper';
-- The redactions a 0.2.0 database already stores, as ingest would have recorded them (any
-- outcome; the target read from the stored remainder by core's rule), stored_at the upgrade.
INSERT INTO roomserver.event_redactions (room_nid, redaction_nid, target_event_id, stored_at)
SELECT x.room_nid, x.event_nid, x.target, pg_catalog.now()
FROM (SELECT e.room_nid, e.event_nid, roomserver_internal.redaction_target(e.pdu_rest, r.room_version) AS target
      FROM roomserver.stored_events e
      JOIN roomserver.rooms r ON r.room_nid = e.room_nid
      JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
      WHERE t.event_type = 'm.room.redaction') x
WHERE x.target IS NOT NULL;
