#!/usr/bin/env python3
"""Synapse's decision on redactions (`synapse.event_auth.check_redaction`), for the differential
test of which redactions apply (conformance/tests/redaction_vs_synapse.rs).

stdin: one JSON object per line: {"room_version", "redaction": PDU, "auth_events": [PDU, ...]}.
stdout: one JSON line per input line: {"result": "no_recheck"} (check_redaction returned False:
the redaction applies with no further check), {"result": "recheck"} (True: room version 3+ will
apply it at read time only to events of the redaction sender's server; v1-2: the event ID domains
matched, and it applies), or {"result": "rejected", "error": "..."} (AuthError).

Run with a Python that has matrix-synapse installed (scripts/lib.sh ensure_synapse).
"""
import json
import sys

from synapse.api.errors import AuthError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.event_auth import check_redaction
from synapse.events import make_event_from_dict


def main():
    for line in sys.stdin:
        case = json.loads(line)
        rv = KNOWN_ROOM_VERSIONS[case["room_version"]]
        redaction = make_event_from_dict(case["redaction"], rv)
        auth = {}
        for pdu in case["auth_events"]:
            ev = make_event_from_dict(pdu, rv)
            auth[(ev.type, ev.state_key)] = ev
        try:
            out = {"result": "recheck" if check_redaction(rv, redaction, auth) else "no_recheck"}
        except AuthError as e:
            out = {"result": "rejected", "error": str(e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
