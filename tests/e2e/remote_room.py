"""The reverse direction: this server joins a room Synapse hosts, part-way through, and backfills it.

1. The Synapse user creates a public room at Synapse and sends MESSAGES messages, changing the
   topic half-way.
2. Our user joins through our admin API (our make_join / send_join to Synapse): the room's
   current state here must be Synapse's, our user joined in it.
3. Our admin API backfills the room from Synapse (our /backfill requests) until no gap is left:
   every message must be stored, in depth order, none left an outlier, the create event too.
4. Synapse's user speaks: it arrives over our /send. Ours answers: Synapse's user sees it.
Every wait is bounded; a failure raises SystemExit.
"""
import json

MESSAGES = 60


def remote_room_scenario(a, version, token):
    # Here, not at the top: driver.py imports this module.
    from driver import call, q, sql, wait_for
    syn, admin = a.synapse_client, a.admin
    alice = f"@alice:{a.our_name}"

    # 1. Synapse's room and its history.
    created = call("POST", f"{syn}/_matrix/client/v3/createRoom",
                   {"preset": "public_chat", "room_version": version, "name": "remote e2e", "topic": "before"}, token)
    room = created["room_id"]
    bodies = [f"remote message {i}" for i in range(MESSAGES)]
    for i, body in enumerate(bodies):
        call("PUT", f"{syn}/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/rr-{version}-{i}",
             {"msgtype": "m.text", "body": body}, token)
        if i == MESSAGES // 2:
            call("PUT", f"{syn}/_matrix/client/v3/rooms/{q(room)}/state/m.room.topic/", {"topic": "half-way"}, token)
    print(f"synapse room {room}: {MESSAGES} messages", flush=True)

    # 2. We join mid-history, with the state Synapse gives.
    joined = call("POST", f"{admin}/_roomserver/admin/v1/rooms/{q(room)}/join",
                  {"user_id": alice, "servers": [a.synapse_name]}, a.admin_token)
    if joined.get("room_id") != room or not joined.get("event_id"):
        raise SystemExit(f"our join answered {joined}")
    membership = sql(a.database, f"SELECT membership FROM roomserver.room_members WHERE room_id = '{room}' AND user_id = '{alice}'")
    if membership != "join":
        raise SystemExit(f"after our join, {alice}'s membership here is {membership!r}")
    theirs = {(e["type"], e["state_key"], e["event_id"]) for e in call("GET", f"{syn}/_matrix/client/v3/rooms/{q(room)}/state", token=token)}
    rows = sql(a.database, f"SELECT json_agg(json_build_array(type, state_key, event_id)) FROM roomserver.current_state WHERE room_id = '{room}'")
    ours = {tuple(r) for r in json.loads(rows or "[]")}
    if ours != theirs:
        raise SystemExit(f"our current state differs from Synapse's: only ours {sorted(ours - theirs)}, only Synapse's {sorted(theirs - ours)}")
    print(f"alice joined {room} ({joined['event_id']}): our current state equals Synapse's ({len(ours)} events)", flush=True)

    # 3. Backfill until no gap is left.
    total, complete = 0, False
    for _ in range(10):
        done = call("POST", f"{admin}/_roomserver/admin/v1/rooms/{q(room)}/backfill", {"limit": 25, "rounds": 3}, a.admin_token)
        total += done["events"]
        if done["complete"]:
            complete = True
            break
        if done["events"] == 0:
            break
    if not complete:
        gaps = sql(a.database, f"SELECT count(*) FROM roomserver.backward_extremities('{room}')")
        raise SystemExit(f"backfill stopped with {gaps} gaps left after {total} events")
    stored = sql(a.database, f"SELECT json_agg(roomserver.pdu(event_id) -> 'content' ->> 'body' ORDER BY depth, event_id) "
                             f"FROM roomserver.events WHERE room_id = '{room}' AND type = 'm.room.message' AND NOT rejected")
    stored = json.loads(stored or "[]")
    if stored != bodies:
        missing = [b for b in bodies if b not in stored]
        raise SystemExit(f"the backfilled history differs: {len(stored)} messages stored, {len(missing)} missing (first {missing[:3]})")
    outliers = sql(a.database, f"SELECT count(*) FROM roomserver.events WHERE room_id = '{room}' AND outlier")
    creates = sql(a.database, f"SELECT count(*) FROM roomserver.events WHERE room_id = '{room}' AND type = 'm.room.create' AND NOT outlier")
    if outliers != "0" or creates != "1":
        raise SystemExit(f"after the backfill: {outliers} outliers left, {creates} create events with state")
    print(f"backfilled {total} events back to the create event: all {len(stored)} messages, in order, no outlier left", flush=True)

    # 4. Live both ways.
    sent = call("PUT", f"{syn}/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/rr-{version}-live",
                {"msgtype": "m.text", "body": "live from synapse"}, token)
    bob_event = sent["event_id"]
    query = f"SELECT count(*) FROM roomserver.events WHERE event_id = '{bob_event}' AND NOT rejected AND NOT outlier"
    wait_for("Bob's message in the remote room over our /send", lambda: sql(a.database, query) == "1", 60)
    print(f"bob's message {bob_event} arrived over /send", flush=True)
    answer = call("POST", f"{admin}/_roomserver/admin/v1/rooms/{q(room)}/events",
                  {"sender": alice, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "live from us"}}, a.admin_token)
    ours_id = answer["event_id"]
    got = wait_for("Alice's message at Synapse",
                   lambda: call("GET", f"{syn}/_matrix/client/v3/rooms/{q(room)}/event/{q(ours_id)}", token=token), 60)
    if got.get("content", {}).get("body") != "live from us":
        raise SystemExit(f"Synapse has {ours_id} as {got}")
    print(f"alice's message {ours_id} reached Synapse", flush=True)
