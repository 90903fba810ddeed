#!/usr/bin/env python3
"""Computes test vectors for pg_roomserver's core with an independent implementation: Synapse
(its Rust event code and Python signing helpers) and the canonicaljson package, from PyPI.

    python3 -m venv /tmp/syn-venv
    /tmp/syn-venv/bin/pip install matrix-synapse==1.163.2
    /tmp/syn-venv/bin/python tools/vectors/generate_vectors.py > core/tests/vectors/synapse_vectors.json

Deterministic: the same Synapse version gives the same file.
"""
import base64
import copy
import hashlib
import json
import sys

import canonicaljson
import synapse
from canonicaljson import encode_canonical_json
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.crypto.event_signing import compute_content_hash, compute_event_reference_hash
from synapse.events import make_event_from_dict
from synapse.synapse_rust.events import redact_event_dict

VERSIONS = [str(v) for v in range(1, 13)]


def b64(raw: bytes, urlsafe: bool = False) -> str:
    enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return enc(raw).decode().rstrip("=")


# Canonical JSON: tricky inputs. Given as JSON text so that key order and escapes in the input
# are exactly as written here.
CANONICAL_INPUTS = [
    '{}',
    '{"one": 1, "two": "Two"}',
    '{"b": "2", "a": "1"}',
    '{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}',
    '{"a": "日本語"}',
    '{"本": 2, "日": 1}',
    '{"a": "\\u65E5"}',
    '{"a": null}',
    '{"a": "\\u0000\\u0001\\u001f \\" \\\\ \\/ \\b\\f\\n\\r\\t"}',
    '{"é": 1, "e": 2, "z": 3, "E": 4, "ä": 5, "😀": 6, "\\u00ff": 7, "\\ud83d\\ude00x": 8}',
    '{"nested": {"z": [3, 2, {"y": 1, "x": [true, false, null]}], "a": {}}, "list": [[], [[]]]}',
    '{"big": 9007199254740991, "neg": -9007199254740991, "zero": 0, "minus_zero": -0}',
    '{"emoji": "\\ud83d\\ude00 snowman \\u2603 nbsp \\u00a0 ls \\u2028 ps \\u2029 del \\u007f"}',
    '{"long": "' + "x" * 300 + '"}',
]

BASE = {
    "room_id": "!room:example.org",
    "sender": "@alice:example.org",
    "origin": "example.org",
    "origin_server_ts": 1700000000000,
    "depth": 12,
    "prev_events": ["$prev:example.org"],
    "auth_events": ["$create:example.org", "$pl:example.org"],
    "hashes": {"sha256": "placeholder"},
    "signatures": {"example.org": {"ed25519:a": "sig"}},
    "unsigned": {"age": 100, "transaction_id": "txn"},
}

EVENTS = {
    "message": {"type": "m.room.message", "content": {"msgtype": "m.text", "body": "Hello ☃", "format": "x"}},
    "create_v1": {"type": "m.room.create", "state_key": "", "content": {"creator": "@alice:example.org", "room_version": "1", "m.federate": True, "predecessor": {"room_id": "!old:x", "event_id": "$e"}}},
    "create_v11": {"type": "m.room.create", "state_key": "", "content": {"room_version": "11", "m.federate": False, "type": "m.space"}},
    "member_join": {"type": "m.room.member", "state_key": "@bob:other.org", "content": {"membership": "join", "displayname": "Bob", "avatar_url": "mxc://x/y", "join_authorised_via_users_server": "@alice:example.org"}},
    "member_3pid": {"type": "m.room.member", "state_key": "@carol:other.org", "membership": "invite", "prev_state": [], "content": {"membership": "invite", "third_party_invite": {"display_name": "carol", "signed": {"mxid": "@carol:other.org", "token": "abc", "signatures": {"id.org": {"ed25519:0": "s"}}}}}},
    "join_rules": {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!space:x"}], "extra": 1}},
    "power_levels": {"type": "m.room.power_levels", "state_key": "", "content": {"ban": 50, "events": {"m.room.name": 100}, "events_default": 0, "invite": 0, "kick": 50, "redact": 50, "state_default": 50, "users": {"@alice:example.org": 100}, "users_default": 0, "notifications": {"room": 50}, "historical": 100}},
    "aliases": {"type": "m.room.aliases", "state_key": "example.org", "content": {"aliases": ["#a:example.org"], "other": True}},
    "history_visibility": {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared", "other": 1}},
    "redaction": {"type": "m.room.redaction", "redacts": "$target:example.org", "content": {"redacts": "$target:example.org", "reason": "spam"}},
    "topic": {"type": "m.room.topic", "state_key": "", "content": {"topic": "A topic"}},
    "unknown_top_level": {"type": "org.example.custom", "content": {"x": [1, 2, 3]}, "extra_top_level": {"kept": "no"}},
}


def event_for(name: str, version: str) -> dict:
    ev = copy.deepcopy(BASE)
    ev.update(copy.deepcopy(EVENTS[name]))
    rv = KNOWN_ROOM_VERSIONS[version]
    if version in ("1", "2"):
        ev["event_id"] = f"${name}:example.org"
        ev["prev_events"] = [[e, {"sha256": "aGFzaA"}] for e in ev["prev_events"]]
        ev["auth_events"] = [[e, {"sha256": "aGFzaA"}] for e in ev["auth_events"]]
    if version == "12":
        ev["room_id"] = "!Kvb8rsvx4Y5yO3WWJuEGIuKlI5ivhWmjZ2Cu6rn1z-E"
        ev["auth_events"] = [e for e in ev["auth_events"] if e != "$create:example.org"]
        if ev["type"] == "m.room.create":
            del ev["room_id"]  # v12 create events have none: the room ID is derived from them
    # Real content hash, so the event is well formed.
    ev["hashes"] = {"sha256": b64(compute_content_hash(ev, hashlib.sha256)[1])}
    return ev


def v12_create(i: int) -> dict:
    ev = {
        "type": "m.room.create", "state_key": "", "sender": f"@creator{i}:example.org",
        "content": {"room_version": "12", "additional_creators": [f"@co{i}:example.org"]},
        "origin_server_ts": 1700000000000 + i, "depth": 1, "prev_events": [], "auth_events": [],
        "hashes": {"sha256": "x"}, "signatures": {},
    }
    ev["hashes"] = {"sha256": b64(compute_content_hash(ev, hashlib.sha256)[1])}
    return ev


def main() -> None:
    out = {
        "source": f"matrix-synapse {synapse.__version__}, canonicaljson {canonicaljson.__version__} (PyPI)",
        "command": "tools/vectors/generate_vectors.py (see tools/vectors/README.md)",
        "canonical_json": [],
        "events": [],
        "v12_create_events": [],
    }
    for text in CANONICAL_INPUTS:
        value = json.loads(text)
        out["canonical_json"].append({"input": text, "canonical": encode_canonical_json(value).decode("utf-8")})
    for name in EVENTS:
        for version in VERSIONS:
            rv = KNOWN_ROOM_VERSIONS[version]
            ev = event_for(name, version)
            built = make_event_from_dict(copy.deepcopy(ev), rv)
            redacted = redact_event_dict(rv, copy.deepcopy(ev))
            out["events"].append({
                "name": name,
                "room_version": version,
                "event": ev,
                "content_hash": b64(compute_content_hash(ev, hashlib.sha256)[1]),
                "redacted": redacted,
                "reference_hash": b64(compute_event_reference_hash(built)[1]),
                "event_id": built.event_id,
            })
    for i in range(4):
        ev = v12_create(i)
        built = make_event_from_dict(copy.deepcopy(ev), KNOWN_ROOM_VERSIONS["12"])
        out["v12_create_events"].append({"event": ev, "event_id": built.event_id, "room_id": built.room_id})
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
