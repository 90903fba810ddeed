"""Case e of the end-to-end tier: requests to our federation API, signed (X-Matrix) with Synapse's
own key by Synapse's own signing library (signedjson), so that the signing side is an
implementation independent of ours. Our server fetches the key from Synapse's key endpoint.
"""
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from signedjson.key import read_signing_keys
from signedjson.sign import sign_json


class SignedClient:
    def __init__(self, base, ca_file, origin, signing_key_file, destination):
        self.base, self.origin, self.destination = base, origin, destination
        with open(signing_key_file) as f:
            self.key = read_signing_keys(f)[0]
        self.tls = ssl.create_default_context(cafile=ca_file)

    def request(self, method, path, body=None, sign=True):
        """(status, JSON body) of `method path`, signed as `origin` unless `sign` is false."""
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        if sign:
            signed = {"method": method, "uri": path, "origin": self.origin, "destination": self.destination}
            if body is not None:
                signed["content"] = body
            signed = sign_json(signed, self.origin, self.key)
            for key_id, sig in signed["signatures"][self.origin].items():
                request.add_header("Authorization", f'X-Matrix origin="{self.origin}",destination="{self.destination}",key="{key_id}",sig="{sig}"')
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.tls) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


def negative_cases(client, room_with_origin, room_without_origin, first_event):
    """Unsigned 401, a room the origin has no member in 403, unknown path 404 M_UNRECOGNIZED,
    forwards fill answered at both paths (and equally)."""
    def expect(what, got, status, errcode=None):
        if got[0] != status or (errcode and got[1].get("errcode") != errcode):
            raise SystemExit(f"{what}: expected {status} {errcode or ''}, got {got[0]} {got[1]}")

    q = lambda s: urllib.parse.quote(s, safe="")
    state_ids = f"/_matrix/federation/v1/state_ids/{q(room_with_origin)}?event_id={q(first_event)}"
    expect("an unsigned request", client.request("GET", state_ids, sign=False), 401, "M_UNAUTHORIZED")
    expect("a signed request", client.request("GET", state_ids), 200)
    other = f"/_matrix/federation/v1/state_ids/{q(room_without_origin)}?event_id={q(first_event)}"
    expect("a room the origin is not in", client.request("GET", other), 403, "M_FORBIDDEN")
    expect("an unknown path", client.request("GET", "/_matrix/federation/v1/no_such_endpoint"), 404, "M_UNRECOGNIZED")
    expect("an unknown path, unsigned", client.request("GET", "/_matrix/federation/unstable/nothing", sign=False), 404, "M_UNRECOGNIZED")
    answers = []
    for prefix in ["/_matrix/federation/v1", "/_matrix/federation/org.matrix.msc4000"]:
        got = client.request("GET", f"{prefix}/forwards_fill/{q(room_with_origin)}?from_event_id={q(first_event)}&limit=5")
        expect(f"forwards fill at {prefix}", got, 200)
        if not got[1].get("pdus"):
            raise SystemExit(f"forwards fill at {prefix} answered no events: {got[1]}")
        answers.append(got[1]["pdus"])
    if answers[0] != answers[1]:
        raise SystemExit(f"forwards fill differs between its two paths: {len(answers[0])} and {len(answers[1])} PDUs")
    print("signed client (Synapse's key, signedjson): unsigned 401, not in the room 403, unknown path 404 M_UNRECOGNIZED, "
          "forwards fill at /v1/ and at MSC4000's unstable path", flush=True)


def acl_cases(client, room_denying_origin, first_event, user_of_origin):
    """Case g: a room whose m.room.server_acl denies the origin answers its reads and make_join
    403 M_FORBIDDEN "Server is banned from room", though the origin is in the room."""
    q = lambda s: urllib.parse.quote(s, safe="")
    for what, path in [("state_ids", f"/_matrix/federation/v1/state_ids/{q(room_denying_origin)}?event_id={q(first_event)}"),
                       ("event", f"/_matrix/federation/v1/event/{q(first_event)}"),
                       ("make_join", f"/_matrix/federation/v1/make_join/{q(room_denying_origin)}/{q(user_of_origin)}?ver=10&ver=12")]:
        status, body = client.request("GET", path)
        if (status, body.get("errcode"), body.get("error")) != (403, "M_FORBIDDEN", "Server is banned from room"):
            raise SystemExit(f"{what} in a room whose ACL denies the origin: expected 403 M_FORBIDDEN, got {status} {body}")
    print("server ACL denying the origin: state_ids, event and make_join 403 \"Server is banned from room\"", flush=True)
