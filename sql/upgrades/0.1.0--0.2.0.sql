-- Schema changes from 0.1.0 to 0.2.0 (the API, sql/api/*.sql, is replayed after this).

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
