-- Redactions applied: every function that returns an event returns it redacted when an accepted
-- redaction applies to it (spec rule per room version: v3+ same server as the target's sender,
-- or the redact level in the state before the redaction), the roomserver.redactions view, and
-- purge_redacted_content.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql
SET roomserver.server_name = 'a.org';

-- A redaction of target by sender: top-level redacts before v11, content.redacts from v11.
CREATE FUNCTION pg_temp.redaction(rv text, label text, sender text, target text, prevs text[], auths text[]) RETURNS text
LANGUAGE sql AS $$
    SELECT regress.add_event($1, $2, 'm.room.redaction', NULL, $3,
        CASE WHEN $1::int >= 11 THEN jsonb_build_object('redacts', t.id, 'reason', 'spam') ELSE '{"reason": "spam"}' END,
        $5, $6, CASE WHEN $1::int >= 11 THEN '{}' ELSE jsonb_build_object('redacts', t.id) END)
    FROM regress.evs t WHERE t.rv = $1 AND t.label = $4
$$;
CREATE FUNCTION pg_temp.id(rv text, label text) RETURNS text LANGUAGE sql AS $$ SELECT id FROM regress.evs WHERE regress.evs.rv = $1 AND regress.evs.label = $2 $$;
CREATE FUNCTION pg_temp.label(rv text, event_id text) RETURNS text LANGUAGE sql AS $$ SELECT label FROM regress.evs WHERE regress.evs.rv = $1 AND regress.evs.id = $2 $$;

-- The room of each version: alice@a.org creates it (v12: with @ace:b.org as an additional
-- creator), mod@b.org has level 50 (the default redact level), bob@b.org and carol@a.org 0; dave@c.org
-- never joins. Messages by alice and bob, then redactions of them:
--   r_carol  carol redacts alice's m1: same server, below the level: applies
--   r_bob    bob redacts alice's m2: other server, below the level: does not apply in v3+
--   r_mod    mod redacts alice's m3: other server, at the level: applies
--   r_dave   dave (not in the room) redacts bob's m4: rejected, does not apply
--   r_early  bob redacts m_late, ingested before m_late: applies once m_late arrives
--   r_jr     alice redacts the join rules (state: /state and /event_auth serve them redacted)
--   r_r      alice redacts r_carol (a redaction redacted: v11 keeps content.redacts)
--   r_ace    (v12) ace@b.org, a creator, redacts alice's m5: users_default 0 would be below the
--            level, but a v12 creator outranks every level: applies
CREATE FUNCTION pg_temp.build(rv text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    -- v12: the creators may not be listed (they outrank every level); ace has users_default 0.
    pl jsonb := CASE WHEN rv = '12' THEN '{"users": {"@mod:b.org": 50}}'::jsonb
                     ELSE '{"users": {"@alice:a.org": 100, "@mod:b.org": 50}}'::jsonb END;
    msg jsonb;
BEGIN
    PERFORM regress.add_event(rv, 'create', 'm.room.create', '', '@alice:a.org',
        jsonb_build_object('room_version', rv)
        || CASE WHEN rv::int < 11 THEN '{"creator": "@alice:a.org"}'::jsonb ELSE '{}' END
        || CASE WHEN rv = '12' THEN '{"additional_creators": ["@ace:b.org"]}'::jsonb ELSE '{}' END, '{}', '{}');
    PERFORM regress.add_event(rv, 'a_join', 'm.room.member', '@alice:a.org', '@alice:a.org', '{"membership": "join"}', '{create}', '{create}');
    PERFORM regress.add_event(rv, 'pl', 'm.room.power_levels', '', '@alice:a.org', pl, '{a_join}', '{create,a_join}');
    PERFORM regress.add_event(rv, 'jr', 'm.room.join_rules', '', '@alice:a.org', '{"join_rule": "public", "note": "secret jr"}', '{pl}', '{create,a_join,pl}');
    PERFORM regress.add_event(rv, 'topic', 'm.room.topic', '', '@alice:a.org', '{"topic": "secret topic"}', '{jr}', '{create,a_join,pl}');
    PERFORM regress.add_event(rv, 'b_join', 'm.room.member', '@bob:b.org', '@bob:b.org', '{"membership": "join"}', '{topic}', '{create,jr,pl}');
    PERFORM regress.add_event(rv, 'mod_join', 'm.room.member', '@mod:b.org', '@mod:b.org', '{"membership": "join"}', '{b_join}', '{create,jr,pl}');
    PERFORM regress.add_event(rv, 'c_join', 'm.room.member', '@carol:a.org', '@carol:a.org', '{"membership": "join"}', '{mod_join}', '{create,jr,pl}');
    PERFORM regress.add_event(rv, 'ace_join', 'm.room.member', '@ace:b.org', '@ace:b.org', '{"membership": "join"}', '{c_join}', '{create,jr,pl}');
    PERFORM regress.add_event(rv, 'm1', 'm.room.message', NULL, '@alice:a.org', '{"msgtype": "m.text", "body": "secret m1"}', '{ace_join}', '{create,a_join,pl}');
    PERFORM regress.add_event(rv, 'm2', 'm.room.message', NULL, '@alice:a.org', '{"msgtype": "m.text", "body": "secret m2"}', '{m1}', '{create,a_join,pl}');
    PERFORM regress.add_event(rv, 'm3', 'm.room.message', NULL, '@alice:a.org', '{"msgtype": "m.text", "body": "secret m3"}', '{m2}', '{create,a_join,pl}');
    PERFORM regress.add_event(rv, 'm4', 'm.room.message', NULL, '@bob:b.org', '{"msgtype": "m.text", "body": "secret m4"}', '{m3}', '{create,b_join,pl}');
    PERFORM regress.add_event(rv, 'm5', 'm.room.message', NULL, '@alice:a.org', '{"msgtype": "m.text", "body": "secret m5"}', '{m4}', '{create,a_join,pl}');
    PERFORM regress.add_event(rv, 'm_keep', 'm.room.message', NULL, '@bob:b.org', '{"msgtype": "m.text", "body": "kept"}', '{m5}', '{create,b_join,pl}');
    PERFORM pg_temp.redaction(rv, 'r_carol', '@carol:a.org', 'm1', '{m_keep}', '{create,c_join,pl}');
    PERFORM pg_temp.redaction(rv, 'r_bob', '@bob:b.org', 'm2', '{r_carol}', '{create,b_join,pl}');
    PERFORM pg_temp.redaction(rv, 'r_mod', '@mod:b.org', 'm3', '{r_bob}', '{create,mod_join,pl}');
    PERFORM pg_temp.redaction(rv, 'r_dave', '@dave:c.org', 'm4', '{r_mod}', '{create,pl}');
    PERFORM pg_temp.redaction(rv, 'r_jr', '@alice:a.org', 'jr', '{r_dave}', '{create,a_join,pl}');
    PERFORM pg_temp.redaction(rv, 'r_r', '@alice:a.org', 'r_carol', '{r_jr}', '{create,a_join,pl}');
    -- m_late and the redaction of it, side by side after r_r.
    PERFORM regress.add_event(rv, 'm_late', 'm.room.message', NULL, '@bob:b.org', '{"msgtype": "m.text", "body": "secret m_late"}', '{r_r}', '{create,b_join,pl}');
    PERFORM pg_temp.redaction(rv, 'r_early', '@bob:b.org', 'm_late', '{r_r}', '{create,b_join,pl}');
    IF rv = '12' THEN
        PERFORM pg_temp.redaction(rv, 'r_ace', '@ace:b.org', 'm5', '{r_early,m_late}', '{create,ace_join,pl}');
        PERFORM regress.add_event(rv, 'last', 'm.room.message', NULL, '@bob:b.org', '{"msgtype": "m.text", "body": "last"}', '{r_ace}', '{create,b_join,pl}');
    ELSE
        PERFORM regress.add_event(rv, 'last', 'm.room.message', NULL, '@bob:b.org', '{"msgtype": "m.text", "body": "last"}', '{r_early,m_late}', '{create,b_join,pl}');
    END IF;
END $$;
SELECT pg_temp.build(v) FROM unnest(ARRAY['10', '11', '12']) v;
SELECT rv, count(*) AS events FROM regress.evs GROUP BY rv ORDER BY rv;

-- Ingested one by one in order, except that r_early comes before its target m_late.
CREATE TEMP TABLE ingested AS
SELECT b.rv, roomserver.ingest_event(u.p) AS r
FROM (SELECT rv, array_agg(pdu ORDER BY CASE label WHEN 'm_late' THEN (SELECT x.n FROM regress.evs x WHERE x.rv = regress.evs.rv AND x.label = 'r_early') + 0.5
                                                ELSE n END) AS pdus
      FROM regress.evs GROUP BY rv ORDER BY rv) b
CROSS JOIN LATERAL unnest(b.pdus) WITH ORDINALITY AS u(p, o);
SELECT e.rv, e.label, r->>'rejection' IS NOT NULL AS rejected, r->>'soft_failure' IS NOT NULL AS soft_failed, (r->>'duplicate')::boolean AS duplicate
FROM ingested i JOIN regress.evs e ON e.rv = i.rv AND e.id = i.r->>'event_id'
WHERE e.label LIKE 'r\_%' OR r->>'rejection' IS NOT NULL OR r->>'soft_failure' IS NOT NULL OR (r->>'duplicate')::boolean
ORDER BY e.rv, e.n;

-- The DBA view: every redaction with its target, applied or why not.
SELECT pg_temp.label(v.rv, redaction) AS redaction, pg_temp.label(v.rv, target) AS target, applied, not_applied_because,
       redaction_sender, target_sender, content_purged_at
FROM roomserver.redactions x CROSS JOIN LATERAL (SELECT room_version AS rv FROM roomserver.rooms r WHERE r.room_id = x.room_id) v
ORDER BY v.rv, x.redaction_nid;

-- The homeserver's read, roomserver.pdu: the content of each target, and redacted_because.
SELECT e.rv, e.label, p->'content' AS content,
       roomserver.event_id_for(p->'unsigned'->'redacted_because', e.rv) = pg_temp.id(e.rv, x.label) AS because_is_the_redaction,
       x.label AS redacted_by
FROM regress.evs e
CROSS JOIN LATERAL roomserver.pdu(e.id) p
LEFT JOIN roomserver.redactions rd ON rd.target = e.id AND rd.applied
LEFT JOIN regress.evs x ON x.rv = e.rv AND x.id = rd.redaction
WHERE e.label IN ('jr', 'm1', 'm2', 'm3', 'm4', 'm5', 'm_late', 'r_carol', 'm_keep')
ORDER BY e.rv, e.n;
-- The redacted form is the room version's algorithm applied to the original; unsigned carries
-- only redacted_because.
SELECT e.rv, bool_and(roomserver.pdu(e.id) - 'unsigned' = roomserver.redact(e.pdu, e.rv)) AS redact_of_original,
       bool_and((SELECT array_agg(k) FROM jsonb_object_keys(roomserver.pdu(e.id)->'unsigned') k) = '{redacted_because}') AS unsigned_keys
FROM regress.evs e WHERE e.id IN (SELECT target FROM roomserver.redactions WHERE applied)
GROUP BY e.rv ORDER BY e.rv;
-- A redaction redacted: v10 loses the top-level redacts and content; v11+ keep content.redacts.
SELECT e.rv, p ? 'redacts' AS top_level_redacts, pg_temp.label(e.rv, COALESCE(p->'content'->>'redacts', '')) AS content_redacts,
       p->'content' ? 'reason' AS reason
FROM regress.evs e CROSS JOIN LATERAL roomserver.pdu(e.id) p WHERE e.label = 'r_carol' ORDER BY e.rv;

-- Each federation body, as the labels of its events and whether each is redacted (content
-- differs from the original's). Redactions apply to all of them, requesting server or not.
CREATE FUNCTION pg_temp.redacted(rv text, pdus jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(e.label, ' ' ORDER BY e.n) FROM jsonb_array_elements(pdus) p
    JOIN regress.evs e ON e.rv = redacted.rv AND e.id = roomserver.event_id_for(p, rv)
    WHERE p->'content' IS DISTINCT FROM e.pdu->'content' OR (p ? 'redacts') <> (e.pdu ? 'redacts') $$;
SELECT r.room_version AS rv,
       pg_temp.redacted(r.room_version, roomserver.backfill(r.room_id, ARRAY[pg_temp.id(r.room_version, 'last')], 100)->'pdus') AS backfill,
       pg_temp.redacted(r.room_version, roomserver.backfill(r.room_id, ARRAY[pg_temp.id(r.room_version, 'last')], 100, 'b.org')->'pdus') AS backfill_b_org,
       pg_temp.redacted(r.room_version, roomserver.get_missing_events(r.room_id, ARRAY[pg_temp.id(r.room_version, 'create')],
                                           ARRAY[pg_temp.id(r.room_version, 'last')], 100)->'events') AS get_missing_events,
       pg_temp.redacted(r.room_version, roomserver.forwards_fill(r.room_id, ARRAY[pg_temp.id(r.room_version, 'create')], 100, 'b.org')->'pdus') AS forwards_fill
FROM roomserver.rooms r ORDER BY r.room_version;
-- /state and /event_auth: the join rules are redacted (the join_rule key is kept).
SELECT r.room_version AS rv,
       pg_temp.redacted(r.room_version, s->'pdus') AS state, pg_temp.redacted(r.room_version, s->'auth_chain') AS state_auth_chain,
       pg_temp.redacted(r.room_version, roomserver.event_auth(r.room_id, pg_temp.id(r.room_version, 'last'))->'auth_chain') AS event_auth,
       (SELECT p->'content' FROM jsonb_array_elements(s->'pdus') p WHERE p->>'type' = 'm.room.join_rules') AS join_rules
FROM roomserver.rooms r CROSS JOIN LATERAL roomserver.state(r.room_id, pg_temp.id(r.room_version, 'last')) s
ORDER BY r.room_version;
-- /event: redacted, and without redacted_because (federation bodies do not carry it).
SELECT e.rv, e.label, p->'content' AS content, p ? 'unsigned' AS has_unsigned
FROM regress.evs e CROSS JOIN LATERAL jsonb_array_elements(roomserver.event(e.id, 'b.org')->'pdus') p
WHERE e.label IN ('m1', 'm2') ORDER BY e.rv, e.n;

-- purge_redacted_content: the served output of every event (pdu, and the federation bodies) is
-- kept to compare; every redaction but r_mod is made two days old.
CREATE TEMP TABLE served_before AS
SELECT e.rv, e.label, roomserver.pdu(e.id) AS pdu FROM regress.evs e
UNION ALL
SELECT r.room_version, 'backfill', roomserver.backfill(r.room_id, ARRAY[pg_temp.id(r.room_version, 'last')], 100, 'b.org')->'pdus'
FROM roomserver.rooms r
UNION ALL
SELECT r.room_version, 'state', s - 'origin' FROM roomserver.rooms r CROSS JOIN LATERAL roomserver.state(r.room_id, pg_temp.id(r.room_version, 'last')) s;
UPDATE roomserver.event_redactions SET stored_at = now() - interval '2 days'
WHERE redaction_nid NOT IN (SELECT x.redaction_nid FROM roomserver.redactions x JOIN regress.evs e ON e.id = x.redaction WHERE e.label = 'r_mod');

-- Refused where nothing can be written (25006) and for NULL (22004); not granted to readers.
BEGIN READ ONLY;
SELECT regress.try($$SELECT roomserver.purge_redacted_content('1 day')$$) AS read_only;
ROLLBACK;
SELECT regress.try($$SELECT roomserver.purge_redacted_content(NULL)$$) AS null_argument;
SELECT p.prosecdef AS security_definer, p.provolatile AS volatility FROM pg_proc p WHERE p.oid = 'roomserver.purge_redacted_content(interval)'::regprocedure;

-- The original text is in storage before; a day's retention purges the targets of applied
-- redactions older than that, non-state events only (m1, m5 in v12, m_late, and r_carol which
-- r_r redacts); r_mod's target m3 (redaction too recent), m2 and m4 (not applied) and the join
-- rules (a state event) keep their content.
SELECT count(*) FILTER (WHERE pdu_rest::text LIKE '%secret m1%') AS m1_stored_before FROM roomserver.stored_events;
SELECT roomserver.purge_redacted_content('1 day') AS purged;
SELECT roomserver.purge_redacted_content('1 day') AS purged_again;
SELECT e.rv, e.label, v.content_purged_at IS NOT NULL AS purged, v.content_hash_ok,
       s.pdu_rest::text LIKE '%secret%' OR s.pdu_rest::text LIKE '%spam%' AS original_text_stored
FROM regress.evs e JOIN roomserver.events v ON v.event_id = e.id JOIN roomserver.stored_events s ON s.room_nid = v.room_nid AND s.event_nid = v.event_nid
WHERE e.label IN ('jr', 'm1', 'm2', 'm3', 'm4', 'm5', 'm_late', 'r_carol')
ORDER BY e.rv, e.n;
SELECT count(*) FILTER (WHERE pdu_rest::text LIKE '%secret m1%') AS m1_stored_after FROM roomserver.stored_events;
-- What is served is byte for byte what was served before.
SELECT count(*) AS compared, count(*) FILTER (WHERE b.pdu::text IS DISTINCT FROM a.pdu::text) AS differ
FROM served_before b
JOIN (SELECT e.rv, e.label, roomserver.pdu(e.id) AS pdu FROM regress.evs e
      UNION ALL
      SELECT r.room_version, 'backfill', roomserver.backfill(r.room_id, ARRAY[pg_temp.id(r.room_version, 'last')], 100, 'b.org')->'pdus'
      FROM roomserver.rooms r
      UNION ALL
      SELECT r.room_version, 'state', s - 'origin' FROM roomserver.rooms r CROSS JOIN LATERAL roomserver.state(r.room_id, pg_temp.id(r.room_version, 'last')) s) a
  ON a.rv = b.rv AND a.label = b.label;
-- The view shows when, and the storage checks find nothing broken.
SELECT pg_temp.label(v.rv, target) AS target, content_purged_at IS NOT NULL AS purged
FROM roomserver.redactions x CROSS JOIN LATERAL (SELECT room_version AS rv FROM roomserver.rooms r WHERE r.room_id = x.room_id) v
WHERE v.rv = '11' ORDER BY x.redaction_nid;
SELECT count(*) AS integrity_problems FROM roomserver.check_integrity();

-- The internal rule function refuses NULLs where it needs a value (22004).
SELECT regress.try($$SELECT roomserver_internal.redaction_refusal(NULL, false, '@a:x', NULL, NULL, 1, 1)$$) AS null_room_version;
SELECT roomserver_internal.redaction_target('{"redacts": "$old", "content": {"redacts": "$new"}}', v) AS target, v
FROM unnest(ARRAY['1', '10', '11']) v;
