-- The state of a room at every event (seed 004: state blocks and state snapshots).
--
-- A state is a map (type NID, state key NID) -> event NID. A snapshot stores it as a list of at
-- most 64 blocks, oldest first; a later block overrides an earlier one for the same key, and an
-- entry with event NID 0 removes a key. A state change appends one block holding just the change
-- and folds the tail blocks together while the newest is at least half the size of the one
-- before it (a binary counter: core/src/state_blocks.rs). So a change costs storage in
-- proportion to what changed, a state of n entries has about log2(n) blocks, blocks are shared
-- by every snapshot that descends from the one that made them, and identical blocks are stored
-- once (block_hash). The same state always gets the same snapshot (state_hash does not depend
-- on the layout).
--
-- A block's entries are one packed value (core/src/state_blocks.rs: sorted, varint deltas, about
-- 7 bytes an entry), not one row each: writing a block is one row, reading a full state reads at
-- most 64 values, and a backend keeps the blocks it has read (src/store/block_cache.rs), so lookups in
-- a state it has seen are binary searches in memory.

CREATE SEQUENCE roomserver.state_block_nid_seq AS bigint START 1;
CREATE SEQUENCE roomserver.state_snapshot_nid_seq AS bigint START 1;

CREATE TABLE roomserver.state_blocks (
    room_nid      bigint  NOT NULL,
    block_nid     bigint  NOT NULL DEFAULT nextval('roomserver.state_block_nid_seq'),
    -- sha256 of the sorted entries: equal blocks are stored once.
    block_hash    bytea   NOT NULL,
    entry_count   integer NOT NULL,
    -- The newest event in the block: state resolution skips blocks older than what it seeks.
    max_event_nid bigint  NOT NULL,
    -- The entries (type NID, state key NID, event NID; event NID 0 removes the key), packed by
    -- roomserver_core::state_blocks::encode_entries. roomserver.block_entries() lists them.
    entries       bytea   NOT NULL,
    PRIMARY KEY (room_nid, block_nid),
    CONSTRAINT state_blocks_block_hash_room_key UNIQUE (block_hash, room_nid)
);
-- Already compact: stored out of line without pglz, which would cost time and save little.
ALTER TABLE roomserver.state_blocks ALTER COLUMN entries SET STORAGE EXTERNAL;
ALTER SEQUENCE roomserver.state_block_nid_seq OWNED BY roomserver.state_blocks.block_nid;
COMMENT ON TABLE roomserver.state_blocks IS 'State blocks: sets of (type, state key) -> event entries shared by snapshots, packed in entries; roomserver.block_entries(room_nid, block_nid) lists them.';

CREATE TABLE roomserver.state_snapshots (
    room_nid     bigint    NOT NULL,
    snapshot_nid bigint    NOT NULL DEFAULT nextval('roomserver.state_snapshot_nid_seq'),
    -- Sum of the sha256 of the live entries: the same state, the same hash, whatever the layout.
    state_hash   bytea     NOT NULL,
    block_nids   bigint[]  NOT NULL,   -- oldest first, at most 64
    block_sizes  integer[] NOT NULL,
    -- How many entries the state has: its size without reading it.
    state_size   integer   NOT NULL,
    PRIMARY KEY (room_nid, snapshot_nid),
    CONSTRAINT state_snapshots_state_hash_room_key UNIQUE (state_hash, room_nid),
    CONSTRAINT state_snapshots_at_most_64_blocks CHECK (cardinality(block_nids) <= 64 AND cardinality(block_nids) = cardinality(block_sizes))
);
ALTER SEQUENCE roomserver.state_snapshot_nid_seq OWNED BY roomserver.state_snapshots.snapshot_nid;
COMMENT ON TABLE roomserver.state_snapshots IS 'Room states as lists of at most 64 state blocks; stored_events.state_before/state_after point here.';

-- The events of a room with no successors yet: what a new local event would reference.
CREATE TABLE roomserver.extremities (
    room_nid  bigint NOT NULL,
    event_nid bigint NOT NULL,
    PRIMARY KEY (room_nid, event_nid)
);
COMMENT ON TABLE roomserver.extremities IS 'Accepted, not soft-failed events with no accepted successor: the leaves of the room DAG.';

-- Dumped by pg_dump (see sql/schema/01_nids.sql).
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_blocks', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_block_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.state_snapshot_nid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('roomserver.extremities', '');
