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

-- missing_events was PL/pgSQL with its own reading of prev_events and auth_events; it is Rust
-- now and reads them as ingest does. Replaced in place (same signature, same attributes), so
-- the grants to readers stay.
CREATE OR REPLACE FUNCTION roomserver."missing_events"(
	"pdu" jsonb /* Option < JsonInput > */
) RETURNS jsonb /* JsonB */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'missing_events_wrapper';
