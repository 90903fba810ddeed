"""The end-to-end driver: our server hosts a room, a Synapse user joins it and reads it back.

1. A local user of ours creates a public room (admin API) and sends N messages.
2. A Synapse user (registered with the shared secret) joins it over federation (Synapse calls
   our make_join / send_join) and paginates /messages back to the create event (Synapse calls
   our /backfill): every message must arrive, in order.
3. The Synapse user sends a message: it must arrive over our /send and be stored.
4. Our user answers: it must reach Synapse over our outbound /send.
Every wait is bounded; the first failure exits non-zero.
"""
import argparse
import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from remote_room import remote_room_scenario


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
    for flag in ["our-name", "admin", "admin-token", "synapse-name", "synapse-client", "shared-secret", "database"]:
        p.add_argument(f"--{flag}", required=True)
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--room-versions", default="10,12")
    a = p.parse_args()
    syn = a.synapse_client

    wait_for("Synapse's client API", lambda: call("GET", f"{syn}/_matrix/client/versions"), 120)
    wait_for("our admin API", lambda: call("POST", f"{a.admin}/_roomserver/admin/v1/rooms", {}, a.admin_token, expect=400), 60)
    nonce = call("GET", f"{syn}/_synapse/admin/v1/register")["nonce"]
    mac = hmac.new(a.shared_secret.encode(), b"\0".join([nonce.encode(), b"bob", b"bobpassword", b"notadmin"]), hashlib.sha1).hexdigest()
    token = call("POST", f"{syn}/_synapse/admin/v1/register",
                 {"nonce": nonce, "username": "bob", "password": "bobpassword", "admin": False, "mac": mac})["access_token"]
    for version in a.room_versions.split(","):
        print(f"--- room version {version}", flush=True)
        scenario(a, version, token)
        remote_room_scenario(a, version, token)


def scenario(a, version, token):
    syn = a.synapse_client
    # 1. Our room.
    alice = f"@alice:{a.our_name}"
    created = call("POST", f"{a.admin}/_roomserver/admin/v1/rooms", {"creator": alice, "room_version": version}, a.admin_token)
    room = created["room_id"]
    events = f"{a.admin}/_roomserver/admin/v1/rooms/{q(room)}/events"
    call("POST", events, {"sender": alice, "type": "m.room.name", "state_key": "", "content": {"name": "e2e"}}, a.admin_token)
    bodies = [f"message {i}" for i in range(a.messages)]
    started = time.monotonic()
    for body in bodies:
        call("POST", events, {"sender": alice, "type": "m.room.message", "content": {"msgtype": "m.text", "body": body}}, a.admin_token)
    print(f"room {room}: {a.messages} messages sent in {time.monotonic() - started:.1f}s", flush=True)

    # 2. A Synapse user joins and reads the history.
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
    if seen != bodies:
        missing = [b for b in bodies if b not in seen]
        raise SystemExit(f"the history differs: {len(seen)} messages seen, {len(missing)} missing (first {missing[:3]}), "
                         f"in order: {[b for b in seen if b in bodies] == [b for b in bodies if b in seen]}")
    print(f"bob paginated back to the create event: all {len(seen)} messages, in order", flush=True)

    # 3. Bob speaks: it comes over our /send.
    sent = call("PUT", f"{syn}/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/e2e-{version}",
                {"msgtype": "m.text", "body": "hello from synapse"}, token)
    bob_event = sent["event_id"]
    query = f"SELECT count(*) FROM roomserver.events WHERE event_id = '{bob_event}' AND NOT rejected AND NOT outlier"
    wait_for("Bob's message over our /send", lambda: sql(a.database, query) == "1", 60)
    print(f"bob's message {bob_event} arrived over /send", flush=True)

    # 4. Alice answers: it reaches Synapse over our outbound /send.
    answer = call("POST", events, {"sender": alice, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "hello from us"}}, a.admin_token)
    ours = answer["event_id"]
    got = wait_for("Alice's answer at Synapse",
                   lambda: call("GET", f"{syn}/_matrix/client/v3/rooms/{q(room)}/event/{q(ours)}", token=token), 60)
    assert got["content"]["body"] == "hello from us", got
    print(f"alice's answer {ours} reached Synapse", flush=True)


if __name__ == "__main__":
    main()
