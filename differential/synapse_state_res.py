#!/usr/bin/env python3
"""Resolves state with Synapse's own state resolution (v1, v2, v2.1), for the differential test.

stdin: one JSON object per line: {"room_id", "room_version", "events": [PDU, ...],
"cases": [[[event_id, ...], ...], ...]} where each case is a list of state sets (event IDs).
stdout: one JSON line per input line: a list with, per case, {"type\\u0000state_key": event_id}
or {"error": "..."}.

Run with a Python that has matrix-synapse installed (see tools/vectors/README.md).
"""
import json
import sys

import synapse.event_auth  # noqa: F401  (imported before synapse.state, which would otherwise import itself circularly)
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import make_event_from_dict
from synapse.state import v1, v2
from synapse.storage.databases.main.event_federation import StateDifference


class Store:
    """Everything is passed as in-flight events, so the store holds nothing of its own."""

    def __init__(self, events):
        self.events = events

    async def get_events(self, event_ids, allow_rejected=False):
        return {i: self.events[i] for i in event_ids if i in self.events}

    async def get_auth_chain_difference(self, room_id, state_sets, conflicted_state, additional):
        return StateDifference(auth_difference=set(), conflicted_subgraph=set() if conflicted_state is not None else None)


class Clock:
    async def sleep(self, duration):
        return None


def run(coro):
    """Drives a coroutine that never really suspends (all data is in memory)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("state resolution suspended on I/O")


def resolve(room_id, rv, events, sets):
    state_sets = [{(events[e].type, events[e].state_key): e for e in ids} for ids in sets]
    if rv.identifier == "1":
        async def factory(ids):
            return {i: events[i] for i in ids if i in events}
        coro = v1.resolve_events_with_store(room_id, rv, state_sets, dict(events), factory)
    else:
        coro = v2.resolve_events_with_store(Clock(), room_id, rv, state_sets, dict(events), Store(events))
    resolved = run(coro)
    return {f"{t}\u0000{k}": e for (t, k), e in resolved.items()}


def main():
    for line in sys.stdin:
        room = json.loads(line)
        rv = KNOWN_ROOM_VERSIONS[room["room_version"]]
        events = {}
        for pdu in room["events"]:
            ev = make_event_from_dict(pdu, rv)
            events[ev.event_id] = ev
        out = []
        for sets in room["cases"]:
            try:
                out.append(resolve(room["room_id"], rv, events, sets))
            except Exception as e:  # reported per case, compared by the test
                out.append({"error": f"{type(e).__name__}: {e}"})
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
