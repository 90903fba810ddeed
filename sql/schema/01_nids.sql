-- The extension's second schema: functions the API is built from (the walks, PDU assembly, the
-- snapshot store, lookups that raise 404s) that are not part of it. Callers use schema
-- roomserver; readers may execute what is here only because the read functions call it.
CREATE SCHEMA roomserver_internal;
COMMENT ON SCHEMA roomserver_internal IS 'pg_roomserver internals: not an API, may change in any release.';

-- Numeric IDs (NIDs): every Matrix string the roomserver stores is mapped to a bigint, never 0,
-- so that state and graph tables hold 8-byte integers instead of 40-byte strings (seed 004,
-- Dendrite's "Numeric IDs").
--
-- Citus: `rooms` and `event_types` are small global dictionaries (reference tables); every other
-- table is keyed by `room_nid` (the distribution column) and all of its primary keys and unique
-- indexes include it.

CREATE TABLE roomserver.rooms (
    room_nid      bigint PRIMARY KEY,
    room_id       text   NOT NULL,
    room_version  text   NOT NULL,
    -- The snapshot (roomserver.state_snapshots) of the current state: the resolution of the
    -- states after the forward extremities. NULL until the create event is stored.
    current_state bigint,
    CONSTRAINT rooms_room_id_key UNIQUE (room_id),
    CONSTRAINT rooms_room_nid_positive CHECK (room_nid > 0)
);
CREATE SEQUENCE roomserver.room_nid_seq AS bigint START 1 OWNED BY roomserver.rooms.room_nid;
ALTER TABLE roomserver.rooms ALTER COLUMN room_nid SET DEFAULT nextval('roomserver.room_nid_seq');
COMMENT ON TABLE roomserver.rooms IS 'One row per room: its NID, room ID and room version.';

CREATE TABLE roomserver.event_types (
    event_type_nid bigint PRIMARY KEY,
    event_type     text   NOT NULL,
    CONSTRAINT event_types_event_type_key UNIQUE (event_type),
    CONSTRAINT event_types_nid_positive CHECK (event_type_nid > 0)
);
-- NIDs below 65536 are reserved for well-known types, so the list can grow without renumbering.
CREATE SEQUENCE roomserver.event_type_nid_seq AS bigint START 65536 OWNED BY roomserver.event_types.event_type_nid;
ALTER TABLE roomserver.event_types ALTER COLUMN event_type_nid SET DEFAULT nextval('roomserver.event_type_nid_seq');
COMMENT ON TABLE roomserver.event_types IS 'Event type strings and their NIDs; NIDs below 65536 are preassigned to well-known types.';

-- The first seven follow Dendrite's numbering.
INSERT INTO roomserver.event_types (event_type_nid, event_type) VALUES
    (1,  'm.room.create'),
    (2,  'm.room.power_levels'),
    (3,  'm.room.join_rules'),
    (4,  'm.room.third_party_invite'),
    (5,  'm.room.member'),
    (6,  'm.room.redaction'),
    (7,  'm.room.history_visibility'),
    (8,  'm.room.name'),
    (9,  'm.room.topic'),
    (10, 'm.room.avatar'),
    (11, 'm.room.canonical_alias'),
    (12, 'm.room.guest_access'),
    (13, 'm.room.encryption'),
    (14, 'm.room.server_acl'),
    (15, 'm.room.tombstone'),
    (16, 'm.room.pinned_events'),
    (17, 'm.room.aliases'),
    (18, 'm.room.message'),
    (19, 'm.room.encrypted'),
    (20, 'm.reaction'),
    (21, 'm.sticker'),
    (22, 'm.space.child'),
    (23, 'm.space.parent');

-- State keys are per room: user IDs dominate them and a room's state keys live on the room's
-- shard. The empty state key has the fixed NID 1 in every room; other NIDs come from a sequence.
CREATE TABLE roomserver.event_state_keys (
    room_nid      bigint NOT NULL REFERENCES roomserver.rooms (room_nid),
    state_key_nid bigint NOT NULL,
    state_key     text   NOT NULL,
    PRIMARY KEY (room_nid, state_key_nid),
    -- state_key first: lookups pass many keys of one room, and with the room first the planner
    -- was seen to scan the whole room and filter the keys (seconds for a 2,000-key batch).
    CONSTRAINT event_state_keys_room_state_key_key UNIQUE (state_key, room_nid),
    CONSTRAINT event_state_keys_nid_positive CHECK (state_key_nid > 0),
    CONSTRAINT event_state_keys_empty_is_one CHECK ((state_key = '') = (state_key_nid = 1))
);
CREATE SEQUENCE roomserver.state_key_nid_seq AS bigint START 65536 OWNED BY roomserver.event_state_keys.state_key_nid;
ALTER TABLE roomserver.event_state_keys ALTER COLUMN state_key_nid SET DEFAULT nextval('roomserver.state_key_nid_seq');
COMMENT ON TABLE roomserver.event_state_keys IS 'State keys (and senders) of a room and their NIDs; the empty state key is NID 1 in every room.';

-- pg_dump writes the rows of extension tables only for tables registered here. The preassigned
-- event types are created by CREATE EXTENSION itself, so only the assigned ones are dumped.
SELECT pg_catalog.pg_extension_config_dump('roomserver.rooms', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.room_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_types', 'WHERE event_type_nid >= 65536');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_type_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_state_keys', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_key_nid_seq', '');
