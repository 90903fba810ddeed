-- Reading events back as PDUs, and the DBA views over events and references.

-- The stored PDUs of events of a room, rebuilt, each with its position in event_nids (ord), the
-- room version, the NID of the redaction that applies to it (redacted_by; NULL: none) and
-- whether it is rejected; events not stored are left out. A PDU equals the ingested one under
-- canonical JSON, or its redacted form (the room version's algorithm) when a redaction applies
-- or its content hash did not match. The one SQL owner of stored row -> PDU (core/src/stored_form.rs
-- is its Rust twin): event_pdu, pdu and federation_pdus read through it, so every function that
-- returns an event returns it redacted.
-- Set-based, for a whole response in one call (event_pdu per event cost about 0.3 ms each, most
-- of a 100-event backfill), and every event read by index probes whatever the batch size.
-- Whether an event is redacted is one probe of event_redactions_target; the rule
-- (roomserver_internal.redaction_refusal, core/src/redaction.rs) is called only for the
-- redactions found, so an event nothing redacts costs the probe alone.
-- PL/pgSQL so that the statement is planned once per session: a SQL function called from another
-- plans its body on every call (about 1 ms, four times the rest of an event_pdu call). The plan is
-- generic, as a SQL function's would be: a custom plan for a large batch could trade the probes
-- for a scan of the room.
CREATE OR REPLACE FUNCTION roomserver_internal.stored_pdus(room_nid bigint, event_nids bigint[])
RETURNS TABLE (ord bigint, pdu jsonb, room_version text, redacted_by bigint, rejected boolean)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT b.ord,
           CASE WHEN b.redacted_by IS NULL THEN b.pdu ELSE roomserver.redact(b.pdu, b.room_version) END,
           b.room_version, b.redacted_by, b.rejected
    FROM (
        SELECT u.ord,
               e.pdu_rest
            || jsonb_build_object(
                   'type', t.event_type,
                   'sender', s.state_key,
                   'depth', e.depth,
                   'origin_server_ts', e.origin_server_ts,
                   'prev_events', refs.prev_events,
                   'auth_events', refs.auth_events)
            || CASE WHEN e.room_id_implied THEN '{}'::jsonb ELSE jsonb_build_object('room_id', r.room_id) END
            || CASE WHEN e.state_key_nid IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('state_key', k.state_key) END
            -- Room versions 1 and 2 carry the event ID inside the PDU.
            || CASE WHEN r.room_version IN ('1', '2') THEN jsonb_build_object('event_id', e.event_id) ELSE '{}'::jsonb END AS pdu,
               r.room_version,
               ar.redaction_nid AS redacted_by,
               e.rejection IS NOT NULL AS rejected
        FROM unnest(event_nids) WITH ORDINALITY AS u(nid, ord)
        JOIN roomserver.stored_events e ON e.room_nid = stored_pdus.room_nid AND e.event_nid = u.nid
        JOIN roomserver.rooms r ON r.room_nid = e.room_nid
        JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
        JOIN roomserver.event_state_keys s ON s.room_nid = e.room_nid AND s.state_key_nid = e.sender_nid
        LEFT JOIN roomserver.event_state_keys k ON k.room_nid = e.room_nid AND k.state_key_nid = e.state_key_nid
        -- The prev_events and auth_events lists as they were in the PDU (event IDs, or [event_id,
        -- hashes] pairs in room versions 1 and 2), both in one index probe per event. (As a grouped
        -- CTE joined back, the planner, taking the unnested array for 10 rows, scanned the CTE once
        -- per event: quadratic, over a second for 2,000 events and hours for a /state of 60,000.)
        CROSS JOIN LATERAL (
            SELECT COALESCE(jsonb_agg(x.ref ORDER BY x.position) FILTER (WHERE x.kind = 'p'), '[]'::jsonb) AS prev_events,
                   COALESCE(jsonb_agg(x.ref ORDER BY x.position) FILTER (WHERE x.kind = 'a'), '[]'::jsonb) AS auth_events
            FROM (SELECT ed.kind, ed.position,
                         CASE WHEN ed.ref_hashes IS NULL THEN to_jsonb(COALESCE(rt.event_id, ed.target_event_id))
                              ELSE jsonb_build_array(COALESCE(rt.event_id, ed.target_event_id), ed.ref_hashes) END AS ref
                  FROM roomserver.event_edges ed
                  LEFT JOIN roomserver.stored_events rt ON rt.room_nid = ed.room_nid AND rt.event_nid = ed.target_nid
                  WHERE ed.room_nid = e.room_nid AND ed.event_nid = e.event_nid) x
        ) refs
        -- The first stored redaction of the event that applies to it (same room by the key).
        LEFT JOIN LATERAL (
            SELECT rd.redaction_nid
            FROM roomserver.event_redactions rd
            JOIN roomserver.stored_events x ON x.room_nid = rd.room_nid AND x.event_nid = rd.redaction_nid
            JOIN roomserver.event_state_keys xs ON xs.room_nid = x.room_nid AND xs.state_key_nid = x.sender_nid
            WHERE rd.room_nid = e.room_nid AND rd.target_event_id = e.event_id
              AND roomserver_internal.redaction_refusal(r.room_version, x.rejection IS NOT NULL, xs.state_key,
                                                        t.event_type, s.state_key, rd.room_nid, rd.redaction_nid) IS NULL
            ORDER BY rd.redaction_nid
            LIMIT 1
        ) ar ON true
    ) b;
END
$$;

-- The stored PDU, rebuilt (roomserver_internal.stored_pdus); NULL when the event is not stored.
CREATE OR REPLACE FUNCTION roomserver.event_pdu(room_nid bigint, event_nid bigint) RETURNS jsonb
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT p.pdu FROM roomserver_internal.stored_pdus($1, ARRAY[$2]) p
$$;
COMMENT ON FUNCTION roomserver.event_pdu(bigint, bigint) IS
    'The stored PDU of an event by room and event NID, rebuilt from its columns, edges and pdu_rest: equal to the ingested PDU under canonical JSON (redacted if a redaction applies or its content hash did not match). NULL when unknown.';

-- The PDU of an event by its ID, for the homeserver itself; ERROR P0002 (404 M_NOT_FOUND) when
-- unknown. Rejected events too (the homeserver may need to look at them). When a redaction
-- applies, the PDU is redacted and unsigned.redacted_because holds the redaction's PDU, as
-- Synapse gives clients; the federation bodies do not carry it (Synapse's get_pdu_json drops it).
CREATE OR REPLACE FUNCTION roomserver.pdu(event_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found record;
BEGIN
    SELECT e.room_nid, p.pdu, p.redacted_by INTO found
    FROM roomserver.stored_events e CROSS JOIN LATERAL roomserver_internal.stored_pdus(e.room_nid, ARRAY[e.event_nid]) p
    WHERE e.event_id = pdu.event_id ORDER BY e.room_nid LIMIT 1;
    IF found.pdu IS NULL THEN
        RAISE EXCEPTION 'event % not found', pdu.event_id USING ERRCODE = 'no_data_found';
    END IF;
    IF found.redacted_by IS NULL THEN
        RETURN found.pdu;
    END IF;
    -- The redacted form has no unsigned (the algorithm drops it).
    RETURN found.pdu || jsonb_build_object('unsigned', jsonb_build_object(
        'redacted_because', roomserver.event_pdu(found.room_nid, found.redacted_by)));
END
$$;
COMMENT ON FUNCTION roomserver.pdu(text) IS
    'The stored PDU of an event by its event ID, rebuilt: equal to the ingested PDU under canonical JSON; redacted if a redaction applies (then unsigned.redacted_because is the redaction''s PDU) or its content hash did not match. ERROR P0002 when the event is unknown.';

CREATE OR REPLACE VIEW roomserver.events AS
SELECT r.room_id,
       e.event_id,
       t.event_type AS type,
       k.state_key,
       s.state_key AS sender,
       e.depth,
       e.origin_server_ts,
       e.content_hash_ok,
       e.rejection IS NOT NULL AS rejected,
       e.rejection,
       e.soft_failure IS NOT NULL AS soft_failed,
       e.soft_failure,
       e.outlier,
       e.room_nid,
       e.event_nid,
       e.content_purged_at
FROM roomserver.stored_events e
JOIN roomserver.rooms r ON r.room_nid = e.room_nid
JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
JOIN roomserver.event_state_keys s ON s.room_nid = e.room_nid AND s.state_key_nid = e.sender_nid
LEFT JOIN roomserver.event_state_keys k ON k.room_nid = e.room_nid AND k.state_key_nid = e.state_key_nid;
COMMENT ON VIEW roomserver.events IS 'Every stored event with readable strings instead of NIDs; content_purged_at: when purge_redacted_content erased its content (why its content hash no longer matches).';

-- Every stored redaction with its target and whether it applies, by the rule stored_pdus applies
-- (roomserver_internal.redaction_refusal): for DBAs, and to explain why an event is or is not
-- served redacted.
CREATE OR REPLACE VIEW roomserver.redactions AS
SELECT r.room_id,
       x.event_id AS redaction,
       rd.target_event_id AS target,
       v.refusal IS NULL AS applied,
       v.refusal AS not_applied_because,
       xs.state_key AS redaction_sender,
       ts.state_key AS target_sender,
       x.outlier AS redaction_outlier,
       rd.stored_at,
       t.content_purged_at,
       rd.room_nid,
       rd.redaction_nid,
       t.event_nid AS target_nid
FROM roomserver.event_redactions rd
JOIN roomserver.rooms r ON r.room_nid = rd.room_nid
JOIN roomserver.stored_events x ON x.room_nid = rd.room_nid AND x.event_nid = rd.redaction_nid
JOIN roomserver.event_state_keys xs ON xs.room_nid = x.room_nid AND xs.state_key_nid = x.sender_nid
LEFT JOIN roomserver.stored_events t ON t.room_nid = rd.room_nid AND t.event_id = rd.target_event_id
LEFT JOIN roomserver.event_types tt ON tt.event_type_nid = t.event_type_nid
LEFT JOIN roomserver.event_state_keys ts ON ts.room_nid = t.room_nid AND ts.state_key_nid = t.sender_nid
CROSS JOIN LATERAL (
    SELECT roomserver_internal.redaction_refusal(r.room_version, x.rejection IS NOT NULL, xs.state_key,
                                                 tt.event_type, ts.state_key, rd.room_nid, rd.redaction_nid) AS refusal
) v;
COMMENT ON VIEW roomserver.redactions IS 'Every stored m.room.redaction event with the event it names: applied (the target is served redacted) or why not (rejected, target not stored, target is the create event, different server and below the redact level), when it was stored, and when purge_redacted_content erased the target''s content.';

-- Synapse's redaction_retention_period: the original content of events redacted longer ago than
-- older_than is erased from storage, so that a redacted message is gone from disk too. Each
-- target's pdu_rest becomes that of its redacted form (roomserver_internal.redacted_pdu_rest) and
-- content_purged_at is set, which explains why its content hash no longer matches. What is served
-- does not change: the target was served redacted already, and redaction is idempotent.
-- Only targets of redactions that apply and are stored with state (an outlier redaction is
-- judged again when it gets its state), and only non-state events: the auth rules and state
-- resolution read the stored content of state events, and would decide differently than on an
-- unpurged copy of the room. Returns the number of events purged.
CREATE OR REPLACE FUNCTION roomserver.purge_redacted_content(older_than interval) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    purged bigint;
BEGIN
    IF older_than IS NULL THEN
        RAISE EXCEPTION 'older_than must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF pg_catalog.pg_is_in_recovery() OR pg_catalog.current_setting('transaction_read_only')::boolean THEN
        RAISE EXCEPTION 'purge_redacted_content: cannot purge %',
            CASE WHEN pg_catalog.pg_is_in_recovery() THEN 'on a hot standby' ELSE 'in a read-only transaction' END
            USING ERRCODE = 'read_only_sql_transaction', HINT = 'purge on the primary';
    END IF;
    WITH due AS (
        SELECT DISTINCT t.room_nid, t.event_nid
        FROM roomserver.event_redactions rd
        JOIN roomserver.rooms r ON r.room_nid = rd.room_nid
        JOIN roomserver.stored_events x ON x.room_nid = rd.room_nid AND x.event_nid = rd.redaction_nid
        JOIN roomserver.event_state_keys xs ON xs.room_nid = x.room_nid AND xs.state_key_nid = x.sender_nid
        JOIN roomserver.stored_events t ON t.room_nid = rd.room_nid AND t.event_id = rd.target_event_id
        JOIN roomserver.event_types tt ON tt.event_type_nid = t.event_type_nid
        JOIN roomserver.event_state_keys ts ON ts.room_nid = t.room_nid AND ts.state_key_nid = t.sender_nid
        WHERE rd.stored_at < pg_catalog.now() - older_than
          AND NOT x.outlier
          AND t.state_key_nid IS NULL
          AND t.content_purged_at IS NULL
          AND roomserver_internal.redaction_refusal(r.room_version, x.rejection IS NOT NULL, xs.state_key,
                                                    tt.event_type, ts.state_key, rd.room_nid, rd.redaction_nid) IS NULL
    ), by_room AS (
        SELECT d.room_nid, pg_catalog.array_agg(d.event_nid) AS nids FROM due d GROUP BY d.room_nid
    ), served AS (
        -- The served (redacted) PDU, which is what is kept.
        SELECT b.room_nid, b.nids[p.ord::integer] AS event_nid, p.pdu, p.room_version
        FROM by_room b
        CROSS JOIN LATERAL roomserver_internal.stored_pdus(b.room_nid, b.nids) p
        WHERE p.redacted_by IS NOT NULL
    )
    UPDATE roomserver.stored_events e
    SET pdu_rest = roomserver_internal.redacted_pdu_rest(s.pdu, s.room_version),
        content_purged_at = pg_catalog.now()
    FROM served s
    WHERE e.room_nid = s.room_nid AND e.event_nid = s.event_nid;
    GET DIAGNOSTICS purged = ROW_COUNT;
    RETURN purged;
END
$$;
COMMENT ON FUNCTION roomserver.purge_redacted_content(interval) IS
    'Erases from storage the original content of every non-state event that a redaction stored more than older_than ago applies to (Synapse''s redaction_retention_period): its stored remainder becomes the redacted form and events.content_purged_at is set. Served output does not change. Returns the number of events purged. Writers only; ERROR 25006 on a standby or in a read-only transaction, 22004 for NULL.';

CREATE OR REPLACE VIEW roomserver.event_references AS
SELECT r.room_id,
       e.event_id,
       CASE ed.kind WHEN 'p' THEN 'prev' ELSE 'auth' END AS kind,
       ed.position,
       COALESCE(t.event_id, ed.target_event_id) AS referenced_event_id,
       ed.target_nid IS NOT NULL AS known
FROM roomserver.event_edges ed
JOIN roomserver.stored_events e ON e.room_nid = ed.room_nid AND e.event_nid = ed.event_nid
JOIN roomserver.rooms r ON r.room_nid = ed.room_nid
LEFT JOIN roomserver.stored_events t ON t.room_nid = ed.room_nid AND t.event_nid = ed.target_nid;
COMMENT ON VIEW roomserver.event_references IS 'prev_events and auth_events of every event, and whether the referenced event is known yet.';

-- The references the hot tables do not declare as foreign keys, checked on demand: one row per
-- broken reference (none on a healthy database).
CREATE OR REPLACE FUNCTION roomserver.check_integrity()
RETURNS TABLE (problem text, room_nid bigint, event_nid bigint, detail text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT 'event of an unknown room', e.room_nid, e.event_nid, e.event_id
    FROM roomserver.stored_events e
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.rooms r WHERE r.room_nid = e.room_nid)
    UNION ALL
    SELECT 'unknown event type NID', e.room_nid, e.event_nid, e.event_type_nid::text
    FROM roomserver.stored_events e
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.event_types t WHERE t.event_type_nid = e.event_type_nid)
    UNION ALL
    SELECT 'unknown sender NID', e.room_nid, e.event_nid, e.sender_nid::text
    FROM roomserver.stored_events e
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.event_state_keys k WHERE k.room_nid = e.room_nid AND k.state_key_nid = e.sender_nid)
    UNION ALL
    SELECT 'unknown state key NID', e.room_nid, e.event_nid, e.state_key_nid::text
    FROM roomserver.stored_events e
    WHERE e.state_key_nid IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.event_state_keys k WHERE k.room_nid = e.room_nid AND k.state_key_nid = e.state_key_nid)
    UNION ALL
    SELECT 'edge of an unknown event', ed.room_nid, ed.event_nid, ed.kind || ed.position
    FROM roomserver.event_edges ed
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = ed.room_nid AND e.event_nid = ed.event_nid)
    UNION ALL
    SELECT 'edge to an unknown event', ed.room_nid, ed.event_nid, ed.target_nid::text
    FROM roomserver.event_edges ed
    WHERE ed.target_nid IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = ed.room_nid AND e.event_nid = ed.target_nid)
    UNION ALL
    -- A reference left pending although its event is stored: the resolution missed it.
    SELECT 'pending edge to a stored event', ed.room_nid, ed.event_nid, ed.target_event_id
    FROM roomserver.event_edges ed
    WHERE ed.target_nid IS NULL
      AND EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = ed.room_nid AND e.event_id = ed.target_event_id)
    UNION ALL
    -- The state tables: every snapshot an event or a room names, every block a snapshot lists,
    -- every extremity's event.
    SELECT 'state_before of an unknown snapshot', e.room_nid, e.event_nid, e.state_before::text
    FROM roomserver.stored_events e
    WHERE e.state_before IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = e.room_nid AND s.snapshot_nid = e.state_before)
    UNION ALL
    SELECT 'state_after of an unknown snapshot', e.room_nid, e.event_nid, e.state_after::text
    FROM roomserver.stored_events e
    WHERE e.state_after IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = e.room_nid AND s.snapshot_nid = e.state_after)
    UNION ALL
    SELECT 'current state of an unknown snapshot', r.room_nid, NULL::bigint, r.current_state::text
    FROM roomserver.rooms r
    WHERE r.current_state IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM roomserver.state_snapshots s WHERE s.room_nid = r.room_nid AND s.snapshot_nid = r.current_state)
    UNION ALL
    SELECT 'snapshot of an unknown block', s.room_nid, NULL::bigint, s.snapshot_nid || ': block ' || b.nid
    FROM roomserver.state_snapshots s
    CROSS JOIN LATERAL pg_catalog.unnest(s.block_nids) AS b(nid)
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.state_blocks x WHERE x.room_nid = s.room_nid AND x.block_nid = b.nid)
    UNION ALL
    SELECT 'extremity of an unknown event', x.room_nid, x.event_nid, NULL::text
    FROM roomserver.extremities x
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = x.room_nid AND e.event_nid = x.event_nid)
    UNION ALL
    -- event_redactions: every row names a stored m.room.redaction event (its target may be unknown).
    SELECT 'redaction of an unknown event', rd.room_nid, rd.redaction_nid, rd.target_event_id
    FROM roomserver.event_redactions rd
    WHERE NOT EXISTS (SELECT 1 FROM roomserver.stored_events e WHERE e.room_nid = rd.room_nid AND e.event_nid = rd.redaction_nid)
    UNION ALL
    SELECT 'redaction row of an event that is not m.room.redaction', rd.room_nid, rd.redaction_nid, t.event_type
    FROM roomserver.event_redactions rd
    JOIN roomserver.stored_events e ON e.room_nid = rd.room_nid AND e.event_nid = rd.redaction_nid
    JOIN roomserver.event_types t ON t.event_type_nid = e.event_type_nid
    WHERE t.event_type <> 'm.room.redaction'
$$;
COMMENT ON FUNCTION roomserver.check_integrity() IS 'Lists broken references in the event and state tables (which declare no foreign keys, for ingest speed); empty when healthy.';
