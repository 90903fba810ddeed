-- Schema changes from 0.1.0 to 0.2.0 (the API, sql/api/*.sql, is replayed after this).

-- Internal functions leave the API's schema (0.1.0 had them all in roomserver).
CREATE SCHEMA roomserver_internal;
COMMENT ON SCHEMA roomserver_internal IS 'pg_roomserver internals: not an API, may change in any release.';
ALTER FUNCTION roomserver.raise_if_invisible(text, bigint, bigint) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.store_snapshot(bigint, bytea, bigint[], integer[], bytea, bytea, integer, bigint, integer) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.event_refs(bigint, bigint, "char") SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.find_event(text, text) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.find_event(text) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.state_at_nids(text, boolean, text[], text[]) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.event_with_state(text, text) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.find_room(text) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.visibility_inputs(bigint, bigint[], text) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.federation_pdus(bigint, bigint[], boolean[]) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.federation_pdus(bigint, bigint[]) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.transaction_body(jsonb) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.origin() SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.backfill_walk(text, text[], integer, text) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.forwards_fill_walk(text, text[], integer, text) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.get_missing_events_walk(text, text[], text[], integer, bigint, text) SET SCHEMA roomserver_internal;
ALTER FUNCTION roomserver.server_may_see_events(bigint, bigint[], text) SET SCHEMA roomserver_internal;

-- pg_dump now carries every table and sequence (0.1.0 registered none, so a dump lost every room).
SELECT pg_catalog.pg_extension_config_dump('roomserver.rooms', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.room_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_types', 'WHERE event_type_nid >= 65536');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_type_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_state_keys', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_key_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.stored_events', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_edges', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_blocks', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_block_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_snapshot_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.extremities', '');
