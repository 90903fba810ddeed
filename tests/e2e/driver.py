"""The end-to-end driver: our server hosts a room, a Synapse user joins it and reads it back.

Per room version:
a. A local user of ours creates a public room (admin API), sends N messages, then rounds of
   concurrent messages (the DAG forks: concurrent sends share prev events; later events merge
   them). A Synapse user (registered with the shared secret) joins over federation (Synapse
   calls our make_join / send_join) and paginates /messages back to the create event (Synapse
   calls our /backfill, /state_ids, /event): every message arrives, in DAG order.
   Then the Synapse user's message arrives over our /send and our answer over our outbound
   /send reaches Synapse.
b. Our user stores several events without sending them, the Synapse user speaks meanwhile (a
   fork across the servers), then our user sends one event that merges both: Synapse has only
   that one and asks our /get_missing_events; all of them appear in the Synapse user's /sync.
c. The Synapse user sends messages and a state change: they arrive over our /send and our
   current state equals Synapse's (its admin API) event for event.
d. A redaction on either side is served redacted by the other.
Then, once: e. negative cases signed with Synapse's key (signed_client.py); g. an
m.room.server_acl denying Synapse: its reads and make_join are 403 "Server is banned from room".
Every wait is bounded; the first failure exits non-zero.
"""
import argparse
import hashlib
import hmac
import json
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from remote_room import remote_room_scenario
from signed_client import SignedClient, acl_cases, negative_cases


def call(method, url, body=None, token=None, expect=200):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    answer = json.loads(text or b"{}")
    if expect is not None and status != expect:
        raise SystemExit(f"{method} {url}: {status} {answer}")
    return answer


def wait_for(what, probe, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = probe()
            if result:
                return result
        except (OSError, urllib.error.URLError, SystemExit):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.25)


def q(s):
    return urllib.parse.quote(s, safe="")


def sql(database, query):
    out = subprocess.run(["psql", "-XAtq", "-d", database, "-c", query], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def main():
    p = argparse.ArgumentParser()
    for flag in ["our-name", "our-federation", "admin", "admin-token", "synapse-name", "synapse-client", "synapse-signing-key",
                 "ca", "shared-secret", "database"]:
        p.add_argument(f"--{flag}", required=True)
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--room-versions", default="10,12")
    a = p.parse_args()
    syn = a.synapse_client

    wait_for("Synapse's client API", lambda: call("GET", f"{syn}/_matrix/client/versions"), 120)
    wait_for("our admin API", lambda: call("POST", f"{a.admin}/_roomserver/admin/v1/rooms", {}, a.admin_token, expect=400), 60)
    token = register(a, "bob", admin=False)
    admin_token = register(a, "synapse-admin", admin=True)
    carol_token = register(a, "carol", admin=False)
    rooms = []
    for version in a.room_versions.split(","):
        print(f"--- room version {version}", flush=True)
        rooms.append(scenario(a, version, token, admin_token))
        invite_scenario(a, version, carol_token)
        remote_room_scenario(a, version, token)

    # e. Negative cases, signed by an independent implementation (Synapse's signedjson, its key).
    print("--- negative cases", flush=True)
    alice = f"@alice:{a.our_name}"
    lonely = call("POST", f"{a.admin}/_roomserver/admin/v1/rooms", {"creator": alice}, a.admin_token)["room_id"]
    client = SignedClient(a.our_federation, a.ca, a.synapse_name, a.synapse_signing_key, a.our_name)
    room, first_event = rooms[-1]
    negative_cases(client, room, lonely, first_event)

    # g. m.room.server_acl: the room Synapse is in denies Synapse's host (the ACL matches hosts
    #    without their ports: ours is the same, which does not matter to us). The same signed
    #    read, and a make_join, are 403 "Server is banned from room".
    print("--- server ACL", flush=True)
    events = f"{a.admin}/_roomserver/admin/v1/rooms/{q(room)}/events"
    host = a.synapse_name.rsplit(":", 1)[0]
    call("POST", events, {"sender": alice, "type": "m.room.server_acl", "state_key": "", "content": {"allow": ["*"], "deny": [host]}},
         a.admin_token)
    acl_cases(client, room, first_event, f"@dave:{a.synapse_name}")


def register(a, username, admin):
    """A Synapse user, registered with the shared secret: its access token."""
    syn = a.synapse_client
    nonce = call("GET", f"{syn}/_synapse/admin/v1/register")["nonce"]
    password = f"{username}-password"
    flag = b"admin" if admin else b"notadmin"
    mac = hmac.new(a.shared_secret.encode(), b"\0".join([nonce.encode(), username.encode(), password.encode(), flag]), hashlib.sha1).hexdigest()
    return call("POST", f"{syn}/_synapse/admin/v1/register",
                {"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac})["access_token"]


def send_concurrently(url, token, sender, bodies):
    """POSTs one message per body at once (one thread each): the sends race, so they share prev events."""
    errors = []

    def post(body):
        try:
            call("POST", url, {"sender": sender, "type": "m.room.message", "content": {"msgtype": "m.text", "body": body}}, token)
        except SystemExit as e:
            errors.append(str(e))
    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise SystemExit(f"a concurrent send failed: {errors[0]}")


def merges(database, room):
    """Our events with more than one prev event: where the DAG's forks join."""
    return int(sql(database, f"SELECT count(*) FROM (SELECT event_id FROM roomserver.event_references "
                             f"WHERE room_id = '{room}' AND kind = 'prev' GROUP BY event_id HAVING count(*) > 1) m"))


def make_forks(a, room, events, sender):
    """Rounds of 3 concurrent messages until the DAG has forks (bounded). Returns the bodies by round."""
    rounds = []
    for r in range(40):
        bodies = [f"fork {r}.{i}" for i in range(3)]
        send_concurrently(events, a.admin_token, sender, bodies)
        rounds.append(bodies)
        if r >= 9 and merges(a.database, room) >= 3:
            break
    found = merges(a.database, room)
    if found == 0:
        raise SystemExit(f"{len(rounds)} rounds of concurrent sends made no fork: the DAG stayed a line")
    print(f"forks: {len(rounds)} rounds of 3 concurrent messages, {found} merge events", flush=True)
    return rounds


def check_history(seen, bodies, rounds):
    """`seen` (oldest first) is the sequential bodies in order, then every fork body, each round
    after the ones before it (within a round, concurrent events have no order)."""
    if seen[:len(bodies)] != bodies:
        missing = [b for b in bodies if b not in seen]
        raise SystemExit(f"the history differs: {len(seen)} messages seen, {len(missing)} of the sequential ones missing "
                         f"(first {missing[:3]}), in order: {[b for b in seen if b in bodies] == [b for b in bodies if b in seen]}")
    rest = seen[len(bodies):]
    expected = sorted(b for r in rounds for b in r)
    if sorted(rest) != expected:
        raise SystemExit(f"the forked messages differ: {len(rest)} seen, {len(expected)} sent; "
                         f"missing {sorted(set(expected) - set(rest))[:5]}, unexpected {sorted(set(rest) - set(expected))[:5]}")
    round_of = [int(b.split()[1].split(".")[0]) for b in rest]
    if round_of != sorted(round_of):
        raise SystemExit(f"forked messages out of DAG order: rounds {round_of}")


def sync_timeline(a, token, room, since, wanted, seconds):
    """Polls the Synapse user's /sync from `since` until every event ID of `wanted` appeared in the room's timeline."""
    syn = a.synapse_client
    flt = q(json.dumps({"room": {"timeline": {"limit": 100}}}))
    seen, deadline = set(), time.monotonic() + seconds
    while not wanted <= seen:
        if time.monotonic() > deadline:
            raise SystemExit(f"/sync: {len(wanted - seen)} of {len(wanted)} events did not appear within {seconds}s: {sorted(wanted - seen)[:3]}")
        page = call("GET", f"{syn}/_matrix/client/v3/sync?since={q(since)}&timeout=2000&filter={flt}", token=token)
        since = page["next_batch"]
        joined = page.get("rooms", {}).get("join", {}).get(room, {})
        seen |= {e["event_id"] for e in joined.get("timeline", {}).get("events", [])}
    return since


def our_state(database, room):
    rows = sql(database, f"SELECT type || E'\\t' || state_key || E'\\t' || event_id FROM roomserver.current_state WHERE room_id = '{room}'")
    return {tuple(line.split("\t")) for line in rows.splitlines() if line}


def synapse_state(a, admin_token, room):
    state = call("GET", f"{a.synapse_client}/_synapse/admin/v1/rooms/{q(room)}/state", token=admin_token)["state"]
    return {(e["type"], e["state_key"], e["event_id"]) for e in state}


def stored(database, event_id):
    return sql(database, f"SELECT count(*) FROM roomserver.events WHERE event_id = '{event_id}' AND NOT rejected AND NOT outlier") == "1"


def invite_scenario(a, version, carol_token):
    """Our user invites a Synapse user (our /v2/invite to Synapse, which countersigns), who accepts
    (Synapse's make_join / send_join to us)."""
    syn = a.synapse_client
    alice, carol = f"@alice:{a.our_name}", f"@carol:{a.synapse_name}"
    room = call("POST", f"{a.admin}/_roomserver/admin/v1/rooms", {"creator": alice, "room_version": version}, a.admin_token)["room_id"]
    # From a token taken before the invite: Synapse caches identical /sync requests for a while.
    since = [call("GET", f"{syn}/_matrix/client/v3/sync?timeout=0", token=carol_token)["next_batch"]]
    invite = call("POST", f"{a.admin}/_roomserver/admin/v1/rooms/{q(room)}/invite", {"sender": alice, "user_id": carol}, a.admin_token)["event_id"]
    signers = sql(a.database, f"SELECT string_agg(s, ',' ORDER BY s) FROM jsonb_object_keys(roomserver.pdu('{invite}') -> 'signatures') s")
    if signers != ",".join(sorted([a.our_name, a.synapse_name])):
        raise SystemExit(f"the stored invite is signed by {signers}, not by both servers")

    def invited():
        page = call("GET", f"{syn}/_matrix/client/v3/sync?since={q(since[0])}&timeout=1000", token=carol_token)
        since[0] = page["next_batch"]
        return room in page.get("rooms", {}).get("invite", {})
    wait_for("the invite in carol's /sync", invited, 60)
    call("POST", f"{syn}/_matrix/client/v3/join/{q(room)}", {}, carol_token)
    joined = f"SELECT membership FROM roomserver.room_members WHERE room_id = '{room}' AND user_id = '{carol}'"
    wait_for("carol's join here", lambda: sql(a.database, joined) == "join", 60)
    print(f"invite: {carol} invited over /v2/invite (countersigned, stored), accepted, joined {room}", flush=True)


def scenario(a, version, token, admin_token):
    syn = a.synapse_client
    # a. Our room, with a history that forks.
    alice = f"@alice:{a.our_name}"
    created = call("POST", f"{a.admin}/_roomserver/admin/v1/rooms", {"creator": alice, "room_version": version}, a.admin_token)
    room = created["room_id"]
    events = f"{a.admin}/_roomserver/admin/v1/rooms/{q(room)}/events"

    def say(body, federate=True):
        return call("POST", events, {"sender": alice, "type": "m.room.message", "content": {"msgtype": "m.text", "body": body},
                                     "federate": federate}, a.admin_token)["event_id"]
    call("POST", events, {"sender": alice, "type": "m.room.name", "state_key": "", "content": {"name": "e2e"}}, a.admin_token)
    bodies = [f"message {i}" for i in range(a.messages)]
    started = time.monotonic()
    ids = [say(body) for body in bodies]
    print(f"room {room}: {a.messages} messages sent in {time.monotonic() - started:.1f}s", flush=True)
    rounds = make_forks(a, room, events, alice)

    joined = call("POST", f"{syn}/_matrix/client/v3/join/{q(room)}?server_name={q(a.our_name)}", {}, token)
    assert joined["room_id"] == room, joined
    print("bob joined", flush=True)

    seen, types, start = [], [], None
    for _ in range(100):
        url = f"{syn}/_matrix/client/v3/rooms/{q(room)}/messages?dir=b&limit=100" + (f"&from={q(start)}" if start else "")
        page = call("GET", url, token=token)
        for event in page["chunk"]:
            types.append(event["type"])
            if event["type"] == "m.room.message":
                seen.append(event["content"].get("body"))
        if "m.room.create" in types or not page.get("end"):
            break
        start = page["end"]
    if "m.room.create" not in types:
        raise SystemExit(f"pagination stopped before the create event: {len(seen)} messages, last types {types[-5:]}")
    seen.reverse()
    check_history(seen, bodies, rounds)
    print(f"bob paginated back to the create event: all {len(seen)} messages, in DAG order", flush=True)

    sent = call("PUT", f"{syn}/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/e2e-{version}",
                {"msgtype": "m.text", "body": "hello from synapse"}, token)
    bob_event = sent["event_id"]
    wait_for("Bob's message over our /send", lambda: stored(a.database, bob_event), 60)
    print(f"bob's message {bob_event} arrived over /send", flush=True)

    ours = say("hello from us")
    got = wait_for("Alice's answer at Synapse",
                   lambda: call("GET", f"{syn}/_matrix/client/v3/rooms/{q(room)}/event/{q(ours)}", token=token), 60)
    assert got["content"]["body"] == "hello from us", got
    print(f"alice's answer {ours} reached Synapse", flush=True)

    # b. Events Synapse must fetch with /get_missing_events, across a fork of the two servers.
    since = call("GET", f"{syn}/_matrix/client/v3/sync?timeout=0", token=token)["next_batch"]
    held = [say(f"held {i}", federate=False) for i in range(4)]
    fork = call("PUT", f"{syn}/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/fork-{version}",
                {"msgtype": "m.text", "body": "meanwhile at synapse"}, token)["event_id"]
    wait_for("Bob's message sent while ours were held", lambda: stored(a.database, fork), 60)
    last = say("after the gap")
    prevs = set(sql(a.database, f"SELECT referenced_event_id FROM roomserver.event_references WHERE event_id = '{last}' AND kind = 'prev'").split())
    if prevs != {held[-1], fork}:
        raise SystemExit(f"the merging event's prev events are {prevs}, not the held event and Bob's")
    since = sync_timeline(a, token, room, since, set(held) | {last}, 60)
    print(f"the {len(held)} held events and the one that names them appear in bob's /sync (via our /get_missing_events)", flush=True)

    # c. Synapse's messages and a state change over our /send; the current state agrees.
    bob = f"@bob:{a.synapse_name}"
    bob_ids = [call("PUT", f"{syn}/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/c-{version}-{i}",
                    {"msgtype": "m.text", "body": f"bob {i}"}, token)["event_id"] for i in range(3)]
    bob_ids.append(call("PUT", f"{syn}/_matrix/client/v3/rooms/{q(room)}/state/m.room.member/{q(bob)}",
                        {"membership": "join", "displayname": "Bob of Synapse"}, token)["event_id"])
    for event_id in bob_ids:
        wait_for(f"Bob's event {event_id} over our /send", lambda: stored(a.database, event_id), 60)
    deadline = time.monotonic() + 60
    while (ours_now := our_state(a.database, room)) != (theirs := synapse_state(a, admin_token, room)):
        if time.monotonic() > deadline:
            raise SystemExit(f"current state differs: only ours {sorted(ours_now - theirs)}, only Synapse's {sorted(theirs - ours_now)}")
        time.sleep(0.5)
    print(f"our current state equals Synapse's: {len(ours_now)} state events, event for event", flush=True)

    # d. Redactions, both ways.
    target = ids[7]
    redaction = call("POST", events, {"sender": alice, "type": "m.room.redaction", "content": {"redacts": target, "reason": "e2e"}}, a.admin_token)["event_id"]
    got = wait_for("our redaction applied at Synapse",
                   lambda: (e := call("GET", f"{syn}/_matrix/client/v3/rooms/{q(room)}/event/{q(target)}", token=token))
                   and e.get("content") == {} and e,
                   60)
    assert got.get("unsigned", {}).get("redacted_because", {}).get("event_id") == redaction, got
    print(f"our redaction {redaction} of {target}: Synapse serves it redacted", flush=True)

    bob_target = bob_ids[0]
    bob_redaction = call("PUT", f"{syn}/_matrix/client/v3/rooms/{q(room)}/redact/{q(bob_target)}/d-{version}", {"reason": "e2e"}, token)["event_id"]
    wait_for("Bob's redaction over our /send", lambda: stored(a.database, bob_redaction), 60)
    applied = sql(a.database, f"SELECT applied FROM roomserver.redactions WHERE redaction = '{bob_redaction}' AND target = '{bob_target}'")
    content = sql(a.database, f"SELECT roomserver.pdu('{bob_target}') -> 'content'")
    if applied != "t" or content != "{}":
        raise SystemExit(f"Bob's redaction is not applied here: applied={applied!r}, content served {content}")
    print(f"Synapse's redaction {bob_redaction} of {bob_target}: we serve it redacted", flush=True)
    return room, created["event_ids"][0]


if __name__ == "__main__":
    main()
