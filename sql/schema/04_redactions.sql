-- Redactions: which stored m.room.redaction event names which event.

-- One row per stored m.room.redaction event that names a target, written by ingest when the
-- redaction is first stored, whether it was accepted, rejected or stored as an outlier, and
-- whether its target is stored yet. Whether a redaction applies is decided when the target is
-- read (roomserver_internal.redaction_refusal, core/src/redaction.rs), so either event may
-- arrive first and an outlier that later gets its state is judged by what is stored then.
-- No foreign keys, like the other hot tables: roomserver.check_integrity() checks the
-- references.
CREATE TABLE roomserver.event_redactions (
    room_nid        bigint      NOT NULL,
    redaction_nid   bigint      NOT NULL,   -- the m.room.redaction event (stored_events)
    target_event_id text        NOT NULL,   -- the event it redacts, stored or not
    -- roomserver.purge_redacted_content(older_than) erases the content of targets of
    -- redactions stored longer ago than that.
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_nid, redaction_nid)
);
-- Reading an event: is it redacted? One index probe per event served.
CREATE INDEX event_redactions_target ON roomserver.event_redactions (room_nid, target_event_id);
COMMENT ON TABLE roomserver.event_redactions IS 'The target of every stored m.room.redaction event; whether it applies is decided at read time. Use roomserver.redactions (view) to read.';

-- Dumped by pg_dump (see sql/schema/01_nids.sql).
SELECT pg_catalog.pg_extension_config_dump('roomserver.event_redactions', '');
