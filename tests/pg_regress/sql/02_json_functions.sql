-- The pure functions: canonical JSON, content hash, redaction, event IDs.
\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/setup/setup.sql

-- Canonical JSON (spec appendix examples).
SELECT roomserver.canonical_json('{"one": 1, "two": "Two"}');
SELECT roomserver.canonical_json('{"b": "2", "a": "1"}');
SELECT roomserver.canonical_json('{"a": "日本語"}');
SELECT roomserver.canonical_json('{"本": 2, "日": 1}');
SELECT roomserver.canonical_json('{"a": "\u65E5"}');
SELECT roomserver.canonical_json('{"a": null}');
SELECT roomserver.canonical_json('{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}');

-- The content hash of the spec's minimal signed event.
SELECT roomserver.content_hash('{"room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
  "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X", "content": {},
  "prev_events": [], "auth_events": [], "depth": 3, "unsigned": {"age_ts": 1000000}}');

-- Redaction differs by room version.
SELECT v AS room_version,
       roomserver.redact('{"type": "m.room.power_levels", "state_key": "", "content": {"ban": 50, "invite": 0, "notifications": {"room": 20}}, "origin": "x", "unsigned": {"age": 1}}', v)
FROM unnest(ARRAY['1', '10', '11']) AS v;
SELECT v AS room_version,
       roomserver.redact('{"type": "m.room.member", "state_key": "@a:x", "content": {"membership": "join", "displayname": "A", "join_authorised_via_users_server": "@b:x"}}', v) -> 'content' AS content
FROM unnest(ARRAY['8', '9']) AS v;

-- Event IDs: taken from the PDU in v1-v2, reference hashes from v3 (standard base64) and
-- v4+ (URL-safe base64).
SELECT v AS room_version,
       roomserver.event_id_for('{"event_id": "$abc:example.org", "type": "m.room.message", "room_id": "!r:example.org",
         "sender": "@a:example.org", "content": {"body": "hi"}, "depth": 4, "prev_events": [], "auth_events": [],
         "origin_server_ts": 1700000000000, "hashes": {"sha256": "x"}}', v) AS event_id
FROM unnest(ARRAY['1', '2', '3', '4', '10', '11', '12']) AS v;

-- Room version 12: the room ID is derived from the create event.
SELECT roomserver.room_id_for_create_event('{"type": "m.room.create", "state_key": "", "sender": "@alice:example.org",
  "content": {"room_version": "12"}, "depth": 1, "prev_events": [], "auth_events": [],
  "origin_server_ts": 1700000000000, "hashes": {"sha256": "x"}}', '12');

-- Marked immutable and strict: NULL in, NULL out.
SELECT roomserver.canonical_json(NULL) IS NULL AS null_in_null_out;

-- Errors.
SELECT roomserver.canonical_json('{"x": 1.5}');
SELECT roomserver.redact('{}', 'v13');
SELECT roomserver.redact('[1, 2]', '10');
SELECT roomserver.event_id_for('{"type": "m.room.message"}', '2');
SELECT roomserver.room_id_for_create_event('{}', '11');
