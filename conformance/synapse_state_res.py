#!/usr/bin/env python3
"""Resolves state with Synapse's own state resolution (v1, v2, v2.1), for the differential test.

stdin: one JSON object per line: {"room_id", "room_version", "events": [PDU, ...],
"cases": [[[event_id, ...], ...], ...]} where each case is a list of state sets (event IDs).
Optional: "repeat": N runs each case N times, "persisted": true passes no events in flight.
stdout: one JSON line per input line: {"results": [per case {"type\\u0000state_key": event_id} or
{"error": "..."}], "timings_ms": [per case, the time of each run]}.

Run with a Python that has matrix-synapse installed (see tools/vectors/README.md).
"""
import json
import sys
import time

import synapse.event_auth  # noqa: F401  (imported before synapse.state, which would otherwise import itself circularly)
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import make_event_from_dict
from synapse.state import v1, v2
from synapse.storage.databases.main.event_federation import StateDifference


class Store:
    """The events as Synapse's store would hold them. In the differential test every event is
    also passed in flight (`event_map`), so Synapse computes auth chains itself and asks the
    store about none; in the benchmark (`"persisted": true`) nothing is in flight, and the store
    answers the auth chain difference as Synapse's database does (chains include the events)."""

    def __init__(self, events):
        self.events = events

    async def get_events(self, event_ids, allow_rejected=False):
        return {i: self.events[i] for i in event_ids if i in self.events}

    def _chain(self, ids):
        seen = set(ids)
        todo = list(ids)
        while todo:
            for a in self.events[todo.pop()].auth_event_ids():
                if a not in seen:
                    seen.add(a)
                    todo.append(a)
        return seen

    async def get_auth_chain_difference(self, room_id, state_sets, conflicted_state, additional):
        chains = [self._chain(s) for s in state_sets] if state_sets else []
        difference = set().union(*chains) - set.intersection(*chains) if chains else set()
        subgraph = None
        if conflicted_state is not None:
            starts = set(conflicted_state) | set(additional or ())
            forward = self._chain(starts)
            backward, todo = set(starts), list(starts)
            reverse = {}
            for e in forward:
                for a in self.events[e].auth_event_ids():
                    reverse.setdefault(a, set()).add(e)
            while todo:
                for up in reverse.get(todo.pop(), ()):
                    if up not in backward:
                        backward.add(up)
                        todo.append(up)
            subgraph = forward & backward
        return StateDifference(auth_difference=difference, conflicted_subgraph=subgraph)


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


def resolve(room_id, rv, events, sets, persisted=False):
    state_sets = [{(events[e].type, events[e].state_key): e for e in ids} for ids in sets]
    in_flight = None if persisted else dict(events)
    if rv.identifier == "1":
        async def factory(ids):
            return {i: events[i] for i in ids if i in events}
        coro = v1.resolve_events_with_store(room_id, rv, state_sets, in_flight, factory)
    else:
        coro = v2.resolve_events_with_store(Clock(), room_id, rv, state_sets, in_flight, Store(events))
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
        timings = []
        for sets in room["cases"]:
            runs = []
            for _ in range(room.get("repeat", 1)):
                started = time.perf_counter()
                try:
                    result = resolve(room["room_id"], rv, events, sets, room.get("persisted", False))
                except Exception as e:  # reported per case, compared by the caller
                    result = {"error": f"{type(e).__name__}: {e}"}
                runs.append((time.perf_counter() - started) * 1000)
            out.append(result)
            timings.append(runs)
        sys.stdout.write(json.dumps({"results": out, "timings_ms": timings}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
