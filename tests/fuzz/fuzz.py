#!/usr/bin/env python3
"""Bounded, deterministic fuzzer of pg_roomserver's SQL surface (tests/fuzz/run.sh runs it).

It mutates the real PDUs of the loaded rooms and sends each mutation to ingest_event (some also
to ingest_events in small arrays, and to missing_events, canonical_json, redact, event_id_for,
content_hash, check_auth and room_id_for_create_event), and calls the read functions with random
arguments. Every call runs in its own transaction (autocommit) under statement_timeout = 10s and
is classified by SQLSTATE. Every 50 PDUs one room gets a valid merge of (up to 20 of) its forward
extremities, as a sending homeserver would do, so that accepted fuzz events, which fork the DAG,
do not make every later ingest resolve hundreds of extremities. Case generation never looks at
results (except the merges' prev events), so a seed always sends the same inputs.

A FAIL is: an XX*** SQLSTATE (internal_error and friends), a lost connection or a server crash
("terminated by signal" in the server log), a statement timeout, a failing write call that
changed the database (row counts of every table in schema roomserver, plus a digest of rooms
and extremities, compared before and after), an accepted PDU that pdu() does not give back equal
under canonical JSON, or check_integrity() rows at the end.

Usage: fuzz.py --room VERSION:FILE.jsonl [--room ...] [--server-log FILE]
Environment: FUZZ_SEED (default 1), FUZZ_CASES (mutated PDUs, default 10000),
FUZZ_TIME_CAP (seconds, default 240: stops generating cases by itself), FUZZ_REPORT (file for
the full failure list), FUZZ_EXAMPLES (file for the first input of each function and SQLSTATE),
PGHOST/PGPORT/PGUSER/PGDATABASE (libpq).
"""

import argparse
import base64
import collections
import copy
import hashlib
import json
import os
import re
import sys
import time

import psycopg

# --------------------------------------------------------------------------------------------
# JSON text with values Python's json cannot write (1e400, 5000 levels of nesting, duplicate
# keys): a Raw value is copied into the text as it is.


class Raw:
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        t = self.text
        return "Raw(%s)" % (t if len(t) < 40 else t[:20] + "..." + t[-10:])


def enc_str(s):
    try:
        s.encode("utf-8")
        return json.dumps(s, ensure_ascii=False)
    except UnicodeEncodeError:  # lone surrogates: only as \u escapes
        return json.dumps(s, ensure_ascii=True)


def enc(v):
    if isinstance(v, Raw):
        return v.text
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return json.dumps(v)
    if isinstance(v, str):
        return enc_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(enc(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(enc_str(str(k)) + ":" + enc(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


def has_raw(v):
    if isinstance(v, Raw):
        return True
    if isinstance(v, dict):
        return any(has_raw(x) for x in v.values())
    if isinstance(v, list):
        return any(has_raw(x) for x in v)
    return False


def canonical(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fix_content_hash(pdu):
    """Sets hashes.sha256 to the PDU's real content hash (when Python can compute it)."""
    if not isinstance(pdu, dict) or has_raw(pdu):
        return False
    body = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    try:
        data = canonical(body).encode("utf-8")
    except (UnicodeEncodeError, ValueError, TypeError):
        return False
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    pdu["hashes"] = {"sha256": digest}
    return True


# --------------------------------------------------------------------------------------------
# Values the mutations use.

HUGE_NUMBERS = [
    Raw("1e400"), Raw("-1e400"), 2**63, -(2**63) - 1, 2**63 - 1, -(2**63), 2**64, 2**53 + 1,
    -(2**53) - 1, 2**53, 2**53 - 1, -(2**53) + 1, 1.5, -0.5, Raw("1.0"), Raw("1E2"), Raw("-0"),
    Raw("0.0"), Raw("1e-400"), Raw("1" + "0" * 400), Raw("-" + "9" * 300), Raw("1e308"),
    Raw("1.7976931348623157e309"), Raw("123456789012345678901234567890"), Raw("0.1e1"),
    Raw("5e-324"), Raw("2.5e-330"),
]

UNICODE_STRINGS = [
    "\u0000", "a\u0000b", "\ud800", "\udc00", "\ud83d", "x\udfffy", "\U0001F600", "e\u0301",
    "\u00e9", "\ufeff", "\uffff", "\ufffe", "\U0010ffff", "\u202e", "\u200b", "\u00a0",
    "\x01\x1f", "\x7f", "\u2028\u2029", "\u0130", "\u03a3\u03c3\u03c2", "\U000E0001", "\\",
    '"', "\n\t\r\b\f", "\u0085", "@user0:s0.example\u200b", "@\u00fcser0:s0.example",
    "!zAvfWoHG8TUOabE8bantV71rmViONPmSnEVZ5TcPXbg\u0301", "\ud800\udc00", "\U0001F1FA\U0001F1F8",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "\u4e2d\u6587", "\u1f80" * 50,
]

ODD_IDS = [
    "", "$", "!", "@", "#", "$abc", "$abc:", "$:x", "no-sigil", "$" + "A" * 43, "$" + "A" * 44,
    "$" + "+" * 43, "$" + "/" * 43, "$" + "=" * 43, "$ " + "A" * 42, "$\u00e9" + "A" * 41,
    "@user0", "@:s0.example", "@user0:", "@USER0:S0.EXAMPLE", "!x:y", "$x:y", "$x:y:z",
    "@a:[::1]", "@a:[::1]:8448", "@a:999.999.999.999", "@a:s0.example:99999",
]

ROOM_VERSION_ARGS = ["", "99", "x", "0", "-1", "12 ", " 12", "v12", "1.0", "13", "11", "10",
                     "9", "8", "7", "6", "5", "4", "3", "2", "1", "org.matrix.msc2176",
                     "\u0661\u0662", "12\u0000"[:-1] + "\u200b", "1" * 300]

KNOWN_VERSIONS = [str(v) for v in range(1, 13)]

SIZES_NEST = [129, 200, 1000, 5000]


def deep(rng, n):
    kind = rng.randrange(6)
    if kind == 0:
        return Raw("[" * n + "]" * n), "arrays"
    if kind == 1:
        return Raw('{"a":' * n + "0" + "}" * n), "objects"
    if kind == 2:
        half = n // 2
        return Raw('[{"k":' * half + "[]" + "}]" * half), "mixed"
    if kind == 3:
        return Raw("[" * n + "1e400" + "]" * n), "arrays+1e400"
    if kind == 4:
        return Raw('{"a":[' * (n // 2) + '"x"' + "]}" * (n // 2)), "obj-arr"
    return Raw("[" * n + "1" + "]" * n), "arrays+int"


def b64id(rng, n=43, urlsafe=True):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + ("-_" if urlsafe else "+/")
    return "".join(rng.choice(alphabet) for _ in range(n))


# --------------------------------------------------------------------------------------------


class Room:
    def __init__(self, version, path):
        self.version = version
        self.path = path
        self.pdus = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
        self.name = "v%s:%s" % (version, os.path.basename(path))
        self.ids = []
        self.room_id = None
        self.room_nid = None
        self.event_nids = []
        self.snapshot_nids = []
        self.block_nids = []
        self.type_nids = []
        self.state_key_nids = []
        self.chains = []
        self.state_pdus = []
        self.state_ids = []
        self.state_sets = []
        self.users = []
        self.auth_sets = []
        self.depth_max = max((p.get("depth", 0) for p in self.pdus if isinstance(p.get("depth"), int)), default=1)

    @property
    def legacy_refs(self):
        return self.version in ("1", "2")


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--room", action="append", default=[], help="VERSION:FILE.jsonl, already loaded")
    ap.add_argument("--server-log", default=None)
    return ap.parse_args()


STATE_NAMES = {
    "22P02": "invalid_text_representation", "22023": "invalid_parameter_value",
    "22003": "numeric_value_out_of_range", "22001": "string_data_right_truncation",
    "54000": "program_limit_exceeded", "0A000": "feature_not_supported", "P0002": "no_data_found",
    "55000": "object_not_in_prerequisite_state", "23503": "foreign_key_violation",
    "22000": "data_exception", "22004": "null_value_not_allowed", "40001": "serialization_failure",
    "XX000": "internal_error", "57014": "query_canceled", "54001": "statement_too_complex",
    "22P05": "untranslatable_character", "22021": "character_not_in_repertoire",
    "2202E": "array_subscript_error", "42883": "undefined_function", "22P04": "bad_copy_file_format",
    "42804": "datatype_mismatch", "53200": "out_of_memory", "CONN": "connection lost",
    "23502": "not_null_violation", "22012": "division_by_zero", "25006": "read_only_sql_transaction",
    "42501": "insufficient_privilege", "40P01": "deadlock_detected", "ok": "success",
}
DOCUMENTED = {"22P02", "22023", "22003", "22001", "54000", "0A000", "P0002", "55000", "23503",
              "22000", "22004", "40001", "25006", "42501", "40P01"}


class Fuzzer:
    def __init__(self, args):
        import random

        self.seed = int(os.environ.get("FUZZ_SEED", "1"))
        self.cases = int(os.environ.get("FUZZ_CASES", "10000"))
        self.time_cap = float(os.environ.get("FUZZ_TIME_CAP", "240"))
        self.report_path = os.environ.get("FUZZ_REPORT")
        self.rng = random.Random(self.seed)
        self.server_log = args.server_log
        self.rooms = [Room(*spec.split(":", 1)) for spec in args.room]
        if not self.rooms:
            sys.exit("fuzz.py: no --room given")
        self.conn = None
        self.connect()
        self.calls = collections.Counter()
        self.fn_time = collections.Counter()
        self.per_fn = collections.defaultdict(collections.Counter)
        self.states = collections.Counter()
        self.undocumented = {}
        self.examples = {}
        self.suspicious = {}
        self.failures = []
        self.slowest = []
        self.baseline = None
        self.reads_since_check = 0
        self.recent = collections.deque(maxlen=64)
        self.batch = []
        self.pdu_cases = 0
        self.merges = 0
        self.started = time.monotonic()
        self.stopped_by_cap = False
        self.count_sql = None

    # ---------------------------------------------------------------- connection and calls

    def connect(self, wait=60.0):
        deadline = time.monotonic() + wait
        last = None
        while time.monotonic() < deadline:
            try:
                self.conn = psycopg.connect(autocommit=True, options="-c statement_timeout=10s",
                                            connect_timeout=10)
                self.conn.execute("SET roomserver.server_name = 'fuzz.example'")
                self.conn.execute("SET client_min_messages = warning")
                return
            except psycopg.Error as e:
                last = e
                time.sleep(0.5)
        sys.exit("fuzz.py: cannot connect: %s" % last)

    def q(self, sql, params=None):
        """A setup/checking query: any error here is the harness's problem."""
        return self.conn.execute(sql, params).fetchall()

    def counts(self):
        if self.count_sql is None:
            tables = [r[0] for r in self.q(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'roomserver' "
                "AND table_type = 'BASE TABLE' ORDER BY table_name")]
            self.count_tables = tables
            parts = ['(SELECT count(*) FROM roomserver."%s")' % t.replace('"', '""') for t in tables]
            parts.append("(SELECT md5(string_agg(r::text, ',' ORDER BY r.room_nid)) FROM roomserver.rooms r)")
            parts.append("(SELECT md5(string_agg(x::text, ',' ORDER BY x.room_nid, x.event_nid)) FROM roomserver.extremities x)")
            parts.append("(SELECT max(event_nid) FROM roomserver.stored_events)")
            self.count_sql = "SELECT " + ", ".join(parts)
        return tuple(self.q(self.count_sql)[0])

    def describe_counts(self, before, after):
        names = self.count_tables + ["rooms digest", "extremities digest", "max event_nid"]
        return ", ".join("%s %s->%s" % (n, b, a) for n, b, a in zip(names, before, after) if b != a)

    def fail(self, kind, fn, desc, state, msg, payload=None):
        self.failures.append({"kind": kind, "fn": fn, "desc": desc, "sqlstate": state,
                              "message": msg, "payload": payload})

    def call(self, fn, desc, sql, params=(), write=False, payload=None):
        """Runs one call in its own transaction; returns (sqlstate or 'ok', rows)."""
        if write:
            # The counts before this call. Read calls since the last known counts are checked on
            # the way: they are STABLE and must not have changed anything.
            if self.baseline is None or self.reads_since_check:
                before = self.counts()
                if self.baseline is not None and before != self.baseline:
                    self.fail("db_changed", "(read calls)", "one of the %d read calls before: %s" % (self.reads_since_check, desc[:60]),
                              "ok", "read calls changed " + self.describe_counts(self.baseline, before), None)
                self.baseline = before
                self.reads_since_check = 0
        self.calls[fn] += 1
        t0 = time.monotonic()
        rows = None
        msg = ""
        try:
            cur = self.conn.execute(sql, params, prepare=False)
            rows = cur.fetchall() if cur.description else []
            state = "ok"
        except psycopg.Error as e:
            state = e.sqlstate or "CONN"
            msg = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            if e.diag and e.diag.message_detail:
                msg += " | DETAIL: " + e.diag.message_detail.splitlines()[0]
            if self.conn.broken or self.conn.closed:
                state = "CONN"
        elapsed = time.monotonic() - t0
        self.fn_time[fn] += elapsed
        self.slowest.append((elapsed, fn, desc))
        if len(self.slowest) > 200:
            self.slowest.sort(reverse=True)
            del self.slowest[20:]
        self.states[state] += 1
        self.per_fn[fn][state] += 1
        if (fn, state) not in self.examples:
            self.examples[(fn, state)] = (desc, msg)
        if payload is None:
            payload = params
        if state == "CONN":
            self.fail("crash", fn, desc, state, msg, payload)
            self.conn = None
            time.sleep(1.0)
            self.connect()
            self.baseline = None
            return state, None
        if state.startswith("XX"):
            self.fail("internal", fn, desc, state, msg, payload)
        elif state == "57014":
            self.fail("timeout", fn, desc, state, msg, payload)
        elif state != "ok" and state not in DOCUMENTED and state not in self.undocumented:
            self.undocumented[state] = (fn, desc, msg)
        if state in ("40001", "40P01") and (fn, state) not in self.suspicious:
            # This driver is the only session: nothing can have run concurrently, so "retry the
            # transaction" is wrong advice (a retry fails the same way).
            self.suspicious[(fn, state)] = (desc, msg)
        if write:
            if state == "ok":
                self.baseline = None
            else:
                after = self.counts()
                if after != self.baseline:
                    self.fail("db_changed", fn, desc, state,
                              "%s, yet it changed %s" % (msg, self.describe_counts(self.baseline, after)), payload)
                self.baseline = after
        else:
            self.reads_since_check += 1
        return state, rows

    # ---------------------------------------------------------------- setup

    def load_rooms(self):
        for room in self.rooms:
            texts = [canonical(p) for p in room.pdus]
            rows = self.q("SELECT roomserver.event_id_for(x::jsonb, %s) FROM unnest(%s::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n",
                          (room.version, texts))
            room.ids = [r[0] for r in rows]
            room.room_id = next(p["room_id"] for p in room.pdus if "room_id" in p)
            room.room_nid = self.q("SELECT roomserver.room_nid(%s)", (room.room_id,))[0][0]
            if room.room_nid is None:
                sys.exit("fuzz.py: room %s (%s) is not loaded" % (room.room_id, room.path))
            rows = self.q("SELECT event_nid, state_before, state_after, auth_chain FROM roomserver.stored_events WHERE room_nid = %s ORDER BY event_nid",
                          (room.room_nid,))
            room.event_nids = [r[0] for r in rows]
            room.snapshot_nids = sorted({r[1] for r in rows if r[1]} | {r[2] for r in rows if r[2]})
            room.chains = [bytes(r[3]) for r in rows if r[3] is not None][:200]
            room.block_nids = [r[0] for r in self.q("SELECT block_nid FROM roomserver.state_blocks WHERE room_nid = %s ORDER BY 1", (room.room_nid,))]
            room.type_nids = [r[0] for r in self.q("SELECT DISTINCT event_type_nid FROM roomserver.stored_events WHERE room_nid = %s ORDER BY 1", (room.room_nid,))]
            room.state_key_nids = [r[0] for r in self.q("SELECT state_key_nid FROM roomserver.event_state_keys WHERE room_nid = %s ORDER BY 1", (room.room_nid,))]
            room.users = sorted({p["sender"] for p in room.pdus if isinstance(p.get("sender"), str)})
            st = self.q("SELECT event_id, roomserver.pdu(event_id)::text FROM roomserver.current_state WHERE room_id = %s ORDER BY type, state_key",
                        (room.room_id,))
            room.state_ids = [r[0] for r in st]
            room.state_pdus = [json.loads(r[1]) for r in st]
            room.auth_sets = [p["auth_events"] for p in room.pdus if p.get("auth_events")]
            # Real inputs for resolve_state: the states before a few events (small rooms only).
            if len(room.pdus) <= 400:
                picks = [room.ids[i] for i in sorted(self.rng.sample(range(1, len(room.ids)), min(8, len(room.ids) - 1)))]
                for eid in picks:
                    s = [r[0] for r in self.q("SELECT event_id FROM roomserver.state_at_event(%s)", (eid,))]
                    room.state_sets.append(s)
                room.event_map = {i: p for i, p in zip(room.ids, room.pdus)}
            else:
                room.event_map = None
            print("fuzz: room %s %s: %d events, %d snapshots, %d blocks, current state %d entries"
                  % (room.name, room.room_id, len(room.ids), len(room.snapshot_nids), len(room.block_nids), len(room.state_ids)))
        self.all_ids = [(r, i) for r in self.rooms for i in r.ids]

    # ---------------------------------------------------------------- helpers

    def pick_room(self):
        # The sample room (first) gets half the cases.
        if self.rng.random() < 0.5 or len(self.rooms) == 1:
            return self.rooms[0]
        return self.rng.choice(self.rooms[1:])

    def other_room(self, room):
        others = [r for r in self.rooms if r is not room]
        return self.rng.choice(others) if others else None

    def unknown_id(self, room):
        if room.version in ("1", "2"):
            return "$%s:s%d.example" % (b64id(self.rng, 18), self.rng.randrange(5))
        return "$" + b64id(self.rng, 43, urlsafe=room.version != "3")

    def ref(self, room, eid):
        if room.legacy_refs:
            return [eid, {"sha256": b64id(self.rng, 43, urlsafe=False)}]
        return eid

    def ref_list(self, room, n, mode=None):
        mode = mode or self.rng.choice(["known", "unknown", "other", "mix", "dup"])
        out = []
        for k in range(n):
            m = mode if mode != "mix" else self.rng.choice(["known", "unknown", "other"])
            if m == "known" or (m == "other" and len(self.rooms) == 1):
                eid = self.rng.choice(room.ids)
            elif m == "dup":
                eid = room.ids[len(room.ids) // 2]
            elif m == "unknown":
                eid = self.unknown_id(room)
            else:
                eid = self.rng.choice(self.other_room(room).ids)
            out.append(self.ref(room, eid))
        return out, mode

    def paths(self, v, prefix=(), depth=0, out=None):
        """Every (path) into a PDU, as tuples of keys/indices."""
        if out is None:
            out = []
        if depth > 6:
            return out
        if isinstance(v, dict):
            for k, x in v.items():
                out.append(prefix + (k,))
                self.paths(x, prefix + (k,), depth + 1, out)
        elif isinstance(v, list):
            for i, x in enumerate(v[:5]):
                out.append(prefix + (i,))
                self.paths(x, prefix + (i,), depth + 1, out)
        return out

    @staticmethod
    def get_parent(v, path):
        for k in path[:-1]:
            v = v[k]
        return v

    def set_path(self, pdu, path, value):
        parent = self.get_parent(pdu, path)
        parent[path[-1]] = value

    def random_target(self, pdu):
        """A path to put a value at: an existing one, or a new key in content/unsigned/root."""
        r = self.rng.random()
        ps = self.paths(pdu)
        if r < 0.55 and ps:
            return self.rng.choice(ps)
        if r < 0.8 and isinstance(pdu.get("content"), dict):
            return ("content", self.rng.choice(["body", "x", "membership", "users", "ban", "room_version", "redacts", "\u00e9"]))
        if r < 0.9:
            if not isinstance(pdu.get("unsigned"), dict):
                pdu["unsigned"] = {}
            return ("unsigned", self.rng.choice(["age", "x", "prev_content"]))
        return (self.rng.choice(["x_extra", "depth", "origin_server_ts", "state_key", "origin", "event_id"]),)

    @staticmethod
    def path_str(path):
        return ".".join(str(p) for p in path)

    def random_value(self):
        r = self.rng.randrange(14)
        return [None, True, False, 0, -1, 1.5, "", "str", [], {}, [1, "a"], {"a": 1},
                self.rng.choice(HUGE_NUMBERS), self.rng.choice(UNICODE_STRINGS)][r]

    # ---------------------------------------------------------------- PDU mutations
    # Each takes (room, pdu) and returns a short description; it may replace keys with Raw.

    def m_drop_key(self, room, pdu):
        if self.rng.random() < 0.6:
            keys = list(pdu.keys())
            if not keys:
                return "drop(nothing)"
            k = self.rng.choice(keys)
            del pdu[k]
            return "drop(%s)" % k
        ps = [p for p in self.paths(pdu) if len(p) > 1]
        if not ps:
            return "drop(nothing)"
        p = self.rng.choice(ps)
        parent = self.get_parent(pdu, p)
        del parent[p[-1]]
        return "drop(%s)" % self.path_str(p)

    def m_rename_key(self, room, pdu):
        keys = list(pdu.keys())
        k = self.rng.choice(keys)
        variants = [k.upper(), k + "_", " " + k, k[:-1], k.replace("e", "\u0435", 1), k + "\u200b",
                    k.capitalize(), k + "\u0000", "", k * 2]
        nk = self.rng.choice(variants)
        pdu[nk] = pdu.pop(k)
        return "rename(%s->%r)" % (k, nk)

    def m_change_type(self, room, pdu):
        ps = self.paths(pdu)
        p = self.rng.choice(ps)
        val = self.random_value()
        self.set_path(pdu, p, val)
        return "type(%s=%r)" % (self.path_str(p), val if not isinstance(val, str) else val[:10])

    def m_huge_number(self, room, pdu):
        key = self.rng.choice(["depth", "origin_server_ts", "content", "content", "content", "unsigned", "any",
                               "power", "hashes", "prev", "state_key"])
        val = self.rng.choice(HUGE_NUMBERS)
        if key in ("depth", "origin_server_ts", "state_key"):
            pdu[key] = val
            path = key
        elif key == "content" and isinstance(pdu.get("content"), dict):
            k = self.rng.choice(list(pdu["content"].keys()) + ["n", "ban", "users_default", "body"])
            pdu["content"][k] = val
            path = "content." + k
        elif key == "unsigned":
            pdu["unsigned"] = {"age": val}
            path = "unsigned.age"
        elif key == "power":
            pdu["type"] = "m.room.power_levels"
            pdu["state_key"] = ""
            c = copy.deepcopy(next((p["content"] for p in room.pdus if p.get("type") == "m.room.power_levels"), {}))
            field = self.rng.choice(["users", "ban", "events", "notifications", "users_default", "state_default"])
            if field == "users":
                c["users"] = {self.rng.choice(room.users): val}
            elif field == "events":
                c["events"] = {"m.room.name": val}
            elif field == "notifications":
                c["notifications"] = {"room": val}
            else:
                c[field] = val
            pdu["content"] = c
            path = "power_levels." + field
        elif key == "hashes":
            pdu["hashes"] = {"sha256": val}
            path = "hashes.sha256"
        elif key == "prev":
            pdu["prev_events"] = [val]
            path = "prev_events[0]"
        else:
            p = self.random_target(pdu)
            self.set_path(pdu, p, val)
            path = self.path_str(p)
        return "number(%s=%r)" % (path, val)

    def m_deep(self, room, pdu):
        n = self.rng.choice(SIZES_NEST)
        val, kind = deep(self.rng, n)
        where = self.rng.choice(["content.x", "content", "unsigned", "x_extra", "prev_events", "auth_events",
                                 "signatures", "hashes", "content.users", "state_key", "content.body"])
        if where.startswith("content.") and isinstance(pdu.get("content"), dict):
            pdu["content"][where.split(".", 1)[1]] = val
        else:
            pdu[where.split(".")[0]] = val
        return "deep(%s,%d)@%s" % (kind, n, where)

    def long_str(self, n, multibyte=False):
        if multibyte:
            return "\u00e9" * (n // 2)
        return "a" * n

    def m_long_string(self, room, pdu):
        which = self.rng.choice(["sender", "room_id", "type", "state_key", "prev", "auth", "redacts",
                                 "body70k", "body63k", "key300", "boundary", "origin", "sigs"])
        n = self.rng.choice([256, 300, 1000, 70000])
        mb = self.rng.random() < 0.3
        s = self.long_str(n, mb)
        if which == "sender":
            pdu["sender"] = "@" + s + ":s0.example"
        elif which == "room_id":
            pdu["room_id"] = "!" + s + ":s0.example"
        elif which == "type":
            pdu["type"] = "m." + s
        elif which == "state_key":
            pdu["state_key"] = s
        elif which == "prev":
            pdu["prev_events"] = [self.ref(room, "$" + s)]
        elif which == "auth":
            pdu["auth_events"] = list(pdu.get("auth_events") or [])[:2] + [self.ref(room, "$" + s)]
        elif which == "redacts":
            pdu["redacts"] = "$" + s
            if isinstance(pdu.get("content"), dict):
                pdu["content"]["redacts"] = "$" + s
        elif which == "body70k":
            n = 70 * 1024
            pdu.setdefault("content", {})
            if isinstance(pdu["content"], dict):
                pdu["content"]["body"] = self.long_str(n, mb)
            else:
                pdu["content"] = {"body": self.long_str(n, mb)}
        elif which == "body63k":
            n = 63 * 1024 + self.rng.randrange(1024)
            pdu["content"] = {"body": "b" * n, "msgtype": "m.text"}
        elif which == "key300":
            if isinstance(pdu.get("content"), dict):
                pdu["content"]["k" * 300] = 1
            n = 300
        elif which == "boundary":
            field = self.rng.choice(["sender", "state_key", "type", "room_id"])
            total = self.rng.choice([255, 256])
            sigil = {"sender": "@", "room_id": "!", "type": "", "state_key": ""}[field]
            suffix = ":s0.example" if field in ("sender", "room_id") else ""
            fill = total - len(sigil) - len(suffix)
            if mb:
                body = "\u00e9" * (fill // 2) + ("a" if fill % 2 else "")
            else:
                body = "a" * fill
            pdu[field] = sigil + body + suffix
            which = "boundary-%s" % field
            n = total
        elif which == "origin":
            pdu["origin"] = s
        else:
            pdu["signatures"] = {"s0.example": {"ed25519:" + s[:400]: b64id(self.rng, 86, False)}}
        return "long(%s,%d%s)" % (which, n, ",mb" if mb else "")

    def m_many_refs(self, room, pdu):
        if self.rng.random() < 0.6:
            n = self.rng.choice([21, 25, 100, 20, 0, 1])
            refs, mode = self.ref_list(room, n)
            pdu["prev_events"] = refs
            return "prev_events(%d,%s)" % (n, mode)
        n = self.rng.choice([11, 30, 10, 0])
        refs, mode = self.ref_list(room, n)
        pdu["auth_events"] = refs
        return "auth_events(%d,%s)" % (n, mode)

    def m_ref_junk(self, room, pdu):
        key = self.rng.choice(["prev_events", "auth_events"])
        junk = self.rng.choice([None, 123, {}, [], ["$x"], [1, 2], "", "$", "no-sigil", Raw("1e400"),
                                [self.rng.choice(room.ids), "not-a-hash-object"], [self.rng.choice(room.ids)],
                                [self.rng.choice(room.ids), {"sha256": 5}], self.rng.choice(room.ids) + "\u0000",
                                self.rng.choice(ODD_IDS)])
        lst = list(pdu.get(key) or []) if isinstance(pdu.get(key), list) else []
        if lst and self.rng.random() < 0.5:
            lst[self.rng.randrange(len(lst))] = junk
        else:
            lst.append(junk)
        if self.rng.random() < 0.15:
            pdu[key] = self.rng.choice([None, "str", {}, 5, Raw("1e400")])
            return "refs(%s=%r)" % (key, pdu[key])
        pdu[key] = lst
        return "refs(%s+%r)" % (key, junk)

    def m_unicode(self, room, pdu):
        field = self.rng.choice(["sender", "state_key", "type", "content.body", "content.key", "room_id",
                                 "content.membership", "prev", "key_root"])
        s = self.rng.choice(UNICODE_STRINGS)
        mode = self.rng.choice(["replace", "append", "prepend"])

        def apply(old):
            old = old if isinstance(old, str) else ""
            return s if mode == "replace" else (old + s if mode == "append" else s + old)

        if field.startswith("content.") and isinstance(pdu.get("content"), dict):
            k = field.split(".", 1)[1]
            if k == "key":
                pdu["content"][s] = "v"
            else:
                pdu["content"][k] = apply(pdu["content"].get(k))
        elif field == "prev":
            pdu["prev_events"] = [self.ref(room, apply(self.rng.choice(room.ids)))]
        elif field == "key_root":
            pdu[s] = 1
        else:
            pdu[field] = apply(pdu.get(field))
        return "unicode(%s,%s,%r)" % (field, mode, s[:12])

    def m_cross_room(self, room, pdu):
        other = self.other_room(room)
        r = self.rng.randrange(5)
        if other is None or r == 4:
            # Unknown, or (after assign_room_nids) a room with a NID but no create event.
            pdu["room_id"] = self.rng.choice(["!elsewhere:s9.example", "!fuzz%d:s0.example" % self.rng.randrange(10)])
            return "cross(room %s)" % pdu["room_id"]
        if r == 0:
            pdu["room_id"] = other.room_id
            return "cross(room_id of %s)" % other.name
        if r == 1:
            pdu["prev_events"] = [self.ref(room, self.rng.choice(other.ids))]
            return "cross(prev of %s)" % other.name
        if r == 2:
            pdu["auth_events"] = [self.ref(room, i) for i in self.rng.sample(other.ids, min(3, len(other.ids)))]
            return "cross(auth of %s)" % other.name
        pdu["room_id"] = other.room_id
        pdu["prev_events"] = [self.ref(other, self.rng.choice(other.ids))]
        return "cross(room_id+prev of %s)" % other.name

    def m_fields(self, room, pdu):
        """Plausible-looking changes of single fields (the PDU stays well-formed mostly)."""
        r = self.rng.randrange(16)
        if r == 0:
            pdu["depth"] = self.rng.choice([0, -1, 1, 2**63 - 1, 2**53 - 1, "1", 1.0, room.depth_max + 1])
            return "depth=%r" % (pdu["depth"],)
        if r == 1:
            pdu["origin_server_ts"] = self.rng.choice([0, -1, 2**53 - 1, "0", 1.0e3])
            return "ts=%r" % (pdu["origin_server_ts"],)
        if r == 2:
            pdu["sender"] = self.rng.choice(room.users + ODD_IDS + ["@stranger:s9.example"])
            return "sender=%r" % pdu["sender"]
        if r == 3:
            if "state_key" in pdu:
                del pdu["state_key"]
                return "state_key removed"
            pdu["state_key"] = self.rng.choice(["", "@user1:s1.example", "x"])
            return "state_key added"
        if r == 4:
            pdu["type"] = self.rng.choice(["m.room.create", "m.room.power_levels", "m.room.member",
                                           "m.room.join_rules", "m.room.redaction", "m.room.third_party_invite",
                                           "m.room.aliases", "", "m.room.message", "x.custom"])
            return "type=%s" % pdu["type"]
        if r == 5:
            pdu["hashes"] = self.rng.choice([{}, {"sha256": ""}, {"sha256": "AAAA"}, {"sha512": "x"},
                                             {"sha256": b64id(self.rng, 43, False)}, "x", None])
            return "hashes=%r" % (pdu["hashes"],)
        if r == 6:
            if "event_id" in pdu:
                del pdu["event_id"]
                return "event_id removed"
            pdu["event_id"] = self.rng.choice([self.rng.choice(room.ids), "$x:y", 5, "", None])
            return "event_id=%r" % (pdu["event_id"],)
        if r == 7:
            c = pdu.get("content") if isinstance(pdu.get("content"), dict) else {}
            c["membership"] = self.rng.choice(["join", "leave", "invite", "ban", "knock", "JOIN", "", None, 1])
            pdu["content"] = c
            pdu["type"] = "m.room.member"
            pdu["state_key"] = self.rng.choice(room.users + ["@new:s7.example", "", "not-a-user"])
            return "member(%r,%r)" % (c["membership"], pdu["state_key"])
        if r == 8:
            c = {"membership": "invite", "third_party_invite": self.rng.choice([
                {"display_name": "x", "signed": {"mxid": "@a:b", "token": "t", "signatures": {"s": {"ed25519:0": "AAAA"}}}},
                {"signed": "x"}, {"signed": {"mxid": 1}}, {}, "x", None,
                {"display_name": "x", "signed": {"mxid": "@a:b", "token": "t", "signatures": {"s": {"ed25519:0": "!!!"}}}}])}
            pdu["type"], pdu["state_key"], pdu["content"] = "m.room.member", "@a:b", c
            return "third_party_invite(%r)" % (c["third_party_invite"],)[:60]
        if r == 9:
            c = {"membership": "join", "join_authorised_via_users_server": self.rng.choice(room.users + ODD_IDS + [1, None])}
            pdu["type"], pdu["state_key"], pdu["content"] = "m.room.member", self.rng.choice(room.users), c
            return "join_authorised(%r)" % (c["join_authorised_via_users_server"],)
        if r == 10:
            pdu["type"], pdu["state_key"] = "m.room.join_rules", ""
            pdu["content"] = {"join_rule": self.rng.choice(["public", "invite", "knock", "restricted", "knock_restricted", "private", "x", 1]),
                              "allow": self.rng.choice([[], [{"type": "m.room_membership", "room_id": room.room_id}], "x", [1], [{}], None])}
            return "join_rules(%r)" % (pdu["content"],)
        if r == 11:
            pdu["type"], pdu["state_key"] = "m.room.power_levels", ""
            pdu["content"] = {self.rng.choice(["ban", "kick", "invite", "redact", "users_default", "events_default", "state_default"]):
                              self.rng.choice(["50", " 50", "+50", "5e1", "0x10", "-0", "", "1.5", "9" * 30, 50, -1, None, [], True]),
                              "users": self.rng.choice([{room.users[0]: "100"}, {room.users[0]: 100}, {"not-a-user": 1}, [], "x"])}
            return "power_levels(%r)" % (pdu["content"],)
        if r == 12:
            pdu["type"], pdu["state_key"] = "m.room.create", ""
            pdu["prev_events"], pdu["auth_events"] = [], []
            c = {"room_version": self.rng.choice([room.version, "11", "99", 12, None, ""])}
            if self.rng.random() < 0.5:
                c["additional_creators"] = self.rng.choice([[], ["@a:b"], "x", [1], ["bad"], ["@" + "a" * 300 + ":b"], ["@u%d:s.example" % i for i in range(100)]])
            if self.rng.random() < 0.5:
                c["creator"] = self.rng.choice(room.users + [1, None])
            if self.rng.random() < 0.3:
                pdu.pop("room_id", None)
            pdu["content"] = c
            return "create(%r)" % (c,)
        if r == 13:
            pdu["type"] = "m.room.redaction"
            pdu.pop("state_key", None)
            target = self.rng.choice([self.rng.choice(room.ids), self.unknown_id(room), "", 5, None, "$x"])
            if self.rng.random() < 0.5:
                pdu["redacts"] = target
            else:
                pdu["content"] = {"redacts": target}
            return "redaction(%r)" % (target,)
        if r == 14:
            pdu["unsigned"] = self.rng.choice([{"age": 5}, "x", None, {"prev_content": {"x": Raw("1e400")}},
                                               {"redacted_because": {}}, [], {"age_ts": 2**63}])
            return "unsigned=%r" % (pdu["unsigned"],)
        pdu["signatures"] = self.rng.choice([{}, "x", None, {"s0.example": {"ed25519:a": 5}}, {"s0.example": []}])
        return "signatures=%r" % (pdu["signatures"],)

    def m_fresh(self, room, pdu):
        """A plausible new event: new content, prev events from the room, correct content hash."""
        kind = self.rng.randrange(3)
        pdu["prev_events"] = [self.ref(room, e) for e in self.rng.sample(room.ids, self.rng.choice([1, 1, 2, 3]))]
        pdu["depth"] = self.rng.randrange(1, room.depth_max + 5)
        pdu["origin_server_ts"] = 1700000000000 + self.rng.randrange(10**9)
        if kind == 0:
            pdu["content"] = {"body": "fuzz %d" % self.rng.randrange(10**9), "msgtype": "m.text"}
            pdu["type"] = "m.room.message"
            pdu.pop("state_key", None)
        elif kind == 1:
            pdu["type"] = "m.room.topic"
            pdu["state_key"] = ""
            pdu["content"] = {"topic": "fuzz %d" % self.rng.randrange(10**9)}
        else:
            pdu["type"] = "org.fuzz.state"
            pdu["state_key"] = "k%d" % self.rng.randrange(50)
            pdu["content"] = {"v": self.rng.randrange(-(2**53) + 1, 2**53)}
        if room.version in ("1", "2"):
            pdu["event_id"] = "$fuzz%d:s0.example" % self.rng.randrange(10**12)
        return "fresh(%s)" % pdu["type"]

    MUTATIONS = [
        ("drop", "m_drop_key", 8), ("rename", "m_rename_key", 5), ("type", "m_change_type", 10),
        ("number", "m_huge_number", 10), ("deep", "m_deep", 6), ("long", "m_long_string", 7),
        ("refs", "m_many_refs", 7), ("refjunk", "m_ref_junk", 5), ("unicode", "m_unicode", 7),
        ("cross", "m_cross_room", 4), ("fields", "m_fields", 12), ("fresh", "m_fresh", 8),
    ]

    def mutate(self):
        """One mutated PDU: (room, json text, description, parsed-or-None)."""
        room = self.pick_room()
        base_i = self.rng.randrange(len(room.pdus))
        base = room.pdus[base_i]
        r = self.rng.random()
        # Text-level cases: duplicates, reformatting, non-objects, duplicate keys.
        if r < 0.03:
            return room, canonical(base), "duplicate(#%d %s)" % (base_i, base["type"]), base
        if r < 0.045 and self.recent:
            text, desc = self.rng.choice(list(self.recent))
            return room, text, "resend(%s)" % desc, None
        if r < 0.055:
            keys = list(base.keys())
            self.rng.shuffle(keys)
            text = json.dumps({k: base[k] for k in keys}, indent=self.rng.choice([None, 1, "\t"]), ensure_ascii=self.rng.random() < 0.5)
            return room, text, "reformatted duplicate(#%d)" % base_i, base
        if r < 0.065:
            junk = self.rng.choice(["[]", "[%s]" % canonical(base), '"pdu"', "1", "null", "true", "{}",
                                    '{"type":null}', "[[[]]]", '{"":""}', "-0", "1e400",
                                    "[" * 200 + "]" * 200, "{" * 10, "not json", '{"a":1,}', "\"\\u0000\"",
                                    '"\\ud800"', "\ufeff{}"])
            return room, junk, "root(%r)" % junk[:30], None
        if r < 0.075:
            k = self.rng.choice(["type", "room_id", "sender", "content", "depth", "prev_events"])
            val = enc(self.random_value())
            text = "{" + enc_str(k) + ":" + val + "," + canonical(base)[1:]
            if self.rng.random() < 0.5:
                text = canonical(base)[:-1] + "," + enc_str(k) + ":" + val + "}"
            return room, text, "duplicate key(%s=%s)" % (k, val[:20]), None
        pdu = copy.deepcopy(base)
        n = 1 if self.rng.random() < 0.7 else self.rng.choice([2, 3])
        descs = []
        names = [m for m in self.MUTATIONS]
        weights = [w for _, _, w in names]
        for _ in range(n):
            _, meth, _ = self.rng.choices(names, weights)[0]
            if not isinstance(pdu, dict):
                break
            try:
                descs.append(getattr(self, meth)(room, pdu))
            except (KeyError, IndexError, TypeError, ValueError) as e:
                descs.append("%s(skipped: %s)" % (meth, type(e).__name__))
        rehash = self.rng.random() < 0.6 and fix_content_hash(pdu)
        desc = "#%d %s: %s%s" % (base_i, base.get("type"), "; ".join(descs), " +hash" if rehash else "")
        text = enc(pdu)
        self.recent.append((text if len(text) < 100000 else canonical(base), desc))
        return room, text, desc, (None if has_raw(pdu) else pdu)

    def rv_arg(self, room, null_ok=True):
        r = self.rng.random()
        if r < 0.7:
            return None if null_ok else room.version
        if r < 0.85:
            return room.version
        return self.rng.choice(ROOM_VERSION_ARGS)

    # ---------------------------------------------------------------- one PDU case

    def pdu_case(self):
        room, text, desc, parsed = self.mutate()
        self.pdu_cases += 1
        rv = self.rv_arg(room)
        outlier = self.rng.random() < 0.15
        state, rows = self.call("ingest_event", desc, "SELECT roomserver.ingest_event(%s::jsonb, %s, %s)::text",
                                (text, rv, outlier), write=True, payload=(text, rv, outlier))
        if state == "ok" and rows:
            self.check_accepted(room, desc, text, rows[0][0])
        pure_rv = room.version if self.rng.random() < 0.8 else self.rng.choice(ROOM_VERSION_ARGS + KNOWN_VERSIONS)
        if self.rng.random() < 0.3:
            self.call("missing_events", desc, "SELECT roomserver.missing_events(%s::jsonb)::text", (text,))
        if self.rng.random() < 0.25:
            self.call("canonical_json", desc, "SELECT roomserver.canonical_json(%s::jsonb)", (text,))
        if self.rng.random() < 0.2:
            self.call("redact", desc, "SELECT roomserver.redact(%s::jsonb, %s)::text", (text, pure_rv))
        if self.rng.random() < 0.2:
            self.call("event_id_for", desc, "SELECT roomserver.event_id_for(%s::jsonb, %s)", (text, pure_rv))
        if self.rng.random() < 0.2:
            self.call("content_hash", desc, "SELECT roomserver.content_hash(%s::jsonb)", (text,))
        if self.rng.random() < 0.15:
            st, sdesc = self.auth_state(room)
            self.call("check_auth", desc + " | state " + sdesc, "SELECT roomserver.check_auth(%s::jsonb, %s, %s::jsonb)::text",
                      (text, pure_rv, st), payload=(text, pure_rv, sdesc))
        if self.rng.random() < 0.03:
            self.call("room_id_for_create_event", desc, "SELECT roomserver.room_id_for_create_event(%s::jsonb, %s)",
                      (text, self.rng.choice(["12", "11", "1"] + ROOM_VERSION_ARGS[:4])))
        if self.rng.random() < 0.15:
            self.batch.append((room, text, desc))
            if len(self.batch) >= self.rng.choice([2, 3, 4, 5]):
                self.flush_batch()

    def flush_batch(self):
        items = self.batch
        self.batch = []
        if not items:
            return
        texts = [t for _, t, _ in items]
        if self.rng.random() < 0.3:
            texts.insert(self.rng.randrange(len(texts) + 1), self.rng.choice(texts))  # a duplicate in the batch
        if self.rng.random() < 0.1:
            texts.insert(0, canonical(items[0][0].pdus[0]))  # the create event again
        body = "[" + ",".join(texts) + "]"
        desc = "batch of %d: " % len(texts) + " || ".join(d for _, _, d in items)
        room = items[0][0]
        self.call("ingest_events", desc, "SELECT x::text FROM roomserver.ingest_events(%s::jsonb, %s, %s) x",
                  (body, self.rv_arg(room), self.rng.random() < 0.15), write=True, payload=(body[:4000],))

    def check_accepted(self, room, desc, text, result_text):
        try:
            res = json.loads(result_text)
        except ValueError:
            self.fail("bad_result", "ingest_event", desc, "ok", "result is not JSON: %r" % result_text[:200], text)
            return
        want = {"event_id", "event_nid", "room_id", "duplicate", "content_hash_ok", "outlier", "rejection", "soft_failure"}
        if not isinstance(res, dict) or not want <= set(res):
            self.fail("bad_result", "ingest_event", desc, "ok", "result lacks keys: %r" % result_text[:200], text)
            return
        if res["duplicate"] or not res["content_hash_ok"]:
            return
        st, rows = self.call("pdu roundtrip", desc,
                             "SELECT roomserver.canonical_json(roomserver.event_pdu(roomserver.room_nid(%s), %s)) = roomserver.canonical_json(%s::jsonb)",
                             (res["room_id"], res["event_nid"], text))
        if st == "ok" and rows and rows[0][0] is not True:
            self.fail("roundtrip", "ingest_event", desc, "ok",
                      "event_pdu(%s) differs from the ingested PDU under canonical JSON" % res["event_id"], text)

    def auth_state(self, room):
        st = list(room.state_pdus)
        r = self.rng.random()
        if r < 0.6:
            return json.dumps(st), "current"
        if r < 0.7:
            self.rng.shuffle(st)
            return json.dumps(st[: self.rng.randrange(len(st) + 1)]), "subset"
        if r < 0.78:
            return json.dumps(st + [self.rng.choice(st)]), "repeated entry"
        if r < 0.86:
            return json.dumps(st + [self.rng.choice(room.pdus)]), "plus a random event"
        if r < 0.92:
            other = self.other_room(room) or room
            return json.dumps(other.state_pdus), "another room's state"
        return self.rng.choice(["{}", "null", "[1]", "[null]", "[{}]", '"x"', "[" + json.dumps(st[0]) + ",[]]",
                                "[" + "[" * 1000 + "]" * 1000 + "]", '[{"type":"m.room.create","depth":1e400}]']), "junk"

    def merge_extremities(self, room):
        """What a homeserver does when it sends: one event whose prev_events are (up to 20 of)
        the forward extremities. Accepted fuzz events fork the DAG, and without merges the
        extremities (and each ingest's resolution of the current state) would grow all run."""
        try:
            exts = self.q("SELECT e FROM roomserver.forward_extremities(%s) e", (room.room_id,))
            exts = [r[0] for r in exts]
            if len(exts) < 6:
                return
            exts = exts[:20]
            depth = self.q("SELECT max(depth) FROM roomserver.stored_events WHERE room_nid = %s AND event_id = ANY (%s)",
                           (room.room_nid, exts))[0][0] or 1
            state = {(t, k): e for t, k, e in self.q(
                "SELECT type, state_key, event_id FROM roomserver.current_state WHERE room_id = %s "
                "AND type IN ('m.room.create', 'm.room.power_levels', 'm.room.member')", (room.room_id,))}
            joined = [u for u, in self.q("SELECT user_id FROM roomserver.room_members WHERE room_id = %s AND membership = 'join'",
                                         (room.room_id,))]
        except psycopg.Error:
            return
        senders = [u for u in room.users if u in joined]
        if not senders or ("m.room.member", senders[0]) not in state:
            return
        sender = senders[0]
        auth = [state[k] for k in (("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender))
                if k in state and not (k[0] == "m.room.create" and room.version == "12")]
        self.merges += 1
        pdu = {"type": "m.room.message", "sender": sender, "room_id": room.room_id, "depth": min(depth + 1, 2**53 - 1),
               "origin_server_ts": 1800000000000 + self.merges, "content": {"body": "merge %d" % self.merges, "msgtype": "m.text"},
               "prev_events": [self.ref(room, e) for e in exts], "auth_events": [self.ref(room, e) for e in auth]}
        if room.legacy_refs:
            pdu["event_id"] = "$merge%d:s0.example" % self.merges
        fix_content_hash(pdu)
        text = enc(pdu)
        self.call("ingest_event (merge)", "merge of %d extremities" % len(exts), "SELECT roomserver.ingest_event(%s::jsonb)::text",
                  (text,), write=True, payload=(text,))

    # ---------------------------------------------------------------- read functions

    def any_room_id(self):
        r = self.rng.random()
        if r < 0.75:
            return self.rng.choice(self.rooms).room_id, None
        return self.rng.choice([None, "", "!nope:s0.example", "!" + "a" * 300, "\u00e9", "!" + b64id(self.rng),
                                "!fuzz%d:s0.example" % self.rng.randrange(10),
                                self.rng.choice(self.rooms).room_id.upper(), self.rng.choice(self.rooms).room_id + " "]), "odd"

    def event_list(self, room):
        n = self.rng.choice([0, 1, 1, 2, 3, 5, 20, 200])
        out = []
        for _ in range(n):
            r = self.rng.random()
            if r < 0.6:
                out.append(self.rng.choice(room.ids))
            elif r < 0.7:
                out.append(None)
            elif r < 0.8:
                other = self.other_room(room)
                out.append(self.rng.choice(other.ids) if other else self.unknown_id(room))
            elif r < 0.9:
                out.append(self.unknown_id(room))
            else:
                out.append(self.rng.choice(ODD_IDS + ["\u00e9", "$" + "a" * 300]))
        if self.rng.random() < 0.05:
            return None
        return out

    def limit(self):
        return self.rng.choice([-1, 0, 1, 2, 10, 100, 1000, 1001, 10**9, None, 2**31 - 1, -(2**31)])

    def server(self):
        return self.rng.choice([None, None, "s0.example", "s1.example", "s3.example", "evil.example", "", "\u00e9", "a" * 300])

    def event_arg(self, room):
        r = self.rng.random()
        if r < 0.7:
            return self.rng.choice(room.ids)
        if r < 0.8:
            other = self.other_room(room)
            return self.rng.choice(other.ids) if other else None
        return self.rng.choice([None, "", self.unknown_id(room), "$" + "a" * 300, "\u00e9"])

    def nid(self, known):
        r = self.rng.random()
        if r < 0.6 and known:
            return self.rng.choice(known)
        if r < 0.7 and known:
            return self.rng.choice(known) + self.rng.choice([-1, 1, 1000])
        return self.rng.choice([0, -1, 1, 2, 65536, 2**31, 2**63 - 1, -(2**63), None, self.rng.randrange(1, 10**6)])

    def nids(self, known):
        if self.rng.random() < 0.05:
            return None
        return [self.nid(known) for _ in range(self.rng.choice([0, 1, 2, 5, 50]))]

    def nid_room(self):
        r = self.rng.random()
        room = self.rng.choice(self.rooms)
        if r < 0.8:
            return room, room.room_nid
        return room, self.rng.choice([0, -1, 999999, None, 2**63 - 1])

    def varint(self, v):
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            if v == 0:
                out.append(b)
                return bytes(out)
            out.append(b | 0x80)

    def random_bytea(self, room, big_ok):
        r = self.rng.random()
        chains = room.chains or [b"\x01"]
        if r < 0.2:
            return self.rng.choice(chains), "real chain"
        if r < 0.3:
            c = bytearray(self.rng.choice(chains))
            if c:
                c[self.rng.randrange(len(c))] ^= 1 << self.rng.randrange(8)
            return bytes(c), "bit flip"
        if r < 0.37:
            c = self.rng.choice(chains)
            return c + b"\x80", "truncated varint"
        if r < 0.45:
            return b"", "empty"
        if r < 0.55:
            n = self.rng.choice([9, 10, 11, 64, 1000, 100000])
            tail = self.rng.choice([b"", b"\x01", b"\x7f"])
            return b"\x80" * n + tail, "0x80 x %d + %r" % (n, tail)
        if r < 0.62:
            return b"\xff" * self.rng.choice([9, 10, 11, 20]) + b"\x01", "long varint"
        if r < 0.7:
            vals = self.rng.choice([[2**63], [2**64 - 1], [2**63 - 1, 1], [1, 2**63 - 1], [2**62, 2**62], [2**63 - 1, 2**63 - 1]])
            return b"".join(self.varint(v) for v in vals), "varints %r" % vals
        if r < 0.76:
            return b"\x05" + self.varint(2**64 - 2), "wraps below the first"
        if r < 0.82:
            return self.varint(1) + self.varint(2**30) + self.varint(2**40), "wide span"
        if r < 0.9:
            return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 64))), "random bytes"
        if big_ok:
            n = self.rng.choice([1, 2, 4]) * 1024 * 1024
            kind = self.rng.randrange(4)
            if kind == 0:
                return b"\x80" * n, "%d MiB of 0x80" % (n >> 20)
            if kind == 1:
                return b"\x01" * n, "%d MiB of 0x01" % (n >> 20)
            if kind == 2:
                return b"\x80" * (n - 1) + b"\x01", "%d MiB of 0x80 then 0x01" % (n >> 20)
            return bytes(self.rng.getrandbits(8) for _ in range(n // 16)) * 16, "%d MiB random" % (n >> 20)
        return b"\x01\x01\x01", "small"

    def read_case(self):
        kind = self.rng.choices(
            ["backfill", "get_missing_events", "forwards_fill", "state_ids", "state", "event_auth", "event",
             "pdu", "state_at_event", "membership_at_event", "backward_extremities", "forward_extremities",
             "auth_chain_nids", "snapshot_lookup", "snapshot_entries", "snapshot_diff", "block_entries",
             "snapshot_state_arrays", "event_pdu", "nid_set_decode", "nid_set_union", "resolve_state", "nid lookups",
             "state_auth_chain", "assign"],
            [8, 8, 8, 4, 3, 4, 4, 3, 5, 3, 2, 2, 4, 5, 3, 4, 3, 2, 3, 6, 5, 5, 4, 2, 2])[0]
        room = self.rng.choice(self.rooms)
        rid, odd = self.any_room_id()
        if kind == "backfill":
            a = (rid, self.event_list(room), self.limit(), self.server())
            self.call(kind, "%r" % (a,), "SELECT roomserver.backfill(%s, %s::text[], %s, %s)::text", a)
        elif kind == "forwards_fill":
            a = (rid, self.event_list(room), self.limit(), self.server())
            self.call(kind, "%r" % (a,), "SELECT roomserver.forwards_fill(%s, %s::text[], %s, %s)::text", a)
        elif kind == "get_missing_events":
            a = (rid, self.event_list(room), self.event_list(room), self.limit(),
                 self.rng.choice([0, -1, 1, 5, 2**63 - 1, -(2**63), None]), self.server())
            self.call(kind, "%r" % (a,), "SELECT roomserver.get_missing_events(%s, %s::text[], %s::text[], %s, %s, %s)::text", a)
        elif kind in ("state_ids", "state", "event_auth"):
            a = (rid, self.event_arg(room))
            self.call(kind, "%r" % (a,), "SELECT roomserver.%s(%%s, %%s)::text" % kind, a)
        elif kind == "event":
            a = (self.event_arg(room), self.server())
            self.call(kind, "%r" % (a,), "SELECT roomserver.event(%s, %s)::text", a)
        elif kind == "pdu":
            a = (self.event_arg(room),)
            self.call(kind, "%r" % (a,), "SELECT roomserver.pdu(%s)::text", a)
        elif kind == "state_at_event":
            types = self.rng.choice([None, [], ["m.room.member"], ["m.room.create", None], ["x" * 300], ["\u00e9"]])
            pairs = self.rng.choice([None, "{}", "{{m.room.member,@user0:s0.example}}", "{{m.room.create,\"\"}}",
                                     "{a,b}", "{{a,b,c}}", "{{a},{b}}", "{{NULL,NULL}}", "{{{a,b}}}",
                                     "{{m.room.member,%s}}" % self.rng.choice(room.users)])
            a = (self.event_arg(room), self.rng.choice([None, True, False]), types, pairs)
            self.call(kind, "%r" % (a,), "SELECT count(*) FROM roomserver.state_at_event(%s, %s, %s::text[], %s::text[])", a)
        elif kind == "membership_at_event":
            a = (self.event_arg(room), self.rng.choice(room.users + [None, "", "@nobody:x"]), self.rng.choice([None, True, False]))
            self.call(kind, "%r" % (a,), "SELECT roomserver.membership_at_event(%s, %s, %s)", a)
        elif kind in ("backward_extremities", "forward_extremities"):
            self.call(kind, "%r" % (rid,), "SELECT count(*) FROM roomserver.%s(%%s)" % kind, (rid,))
        elif kind == "auth_chain_nids":
            r2, rn = self.nid_room()
            a = (rn, self.nids(r2.event_nids))
            self.call(kind, "%r" % (a,), "SELECT count(*) FROM roomserver.auth_chain_nids(%s, %s::bigint[])", a)
        elif kind == "snapshot_lookup":
            r2, rn = self.nid_room()
            n = self.rng.choice([0, 1, 3, 10])
            t = [self.nid(r2.type_nids) for _ in range(n)]
            k = [self.nid(r2.state_key_nids) for _ in range(n + self.rng.choice([0, 0, 0, 1, -1]) if n else 0)]
            if self.rng.random() < 0.05:
                t = None
            a = (rn, self.nid(r2.snapshot_nids), t, k)
            self.call(kind, "%r" % (a,), "SELECT count(*) FROM roomserver.snapshot_lookup(%s, %s, %s::bigint[], %s::bigint[])", a)
        elif kind in ("snapshot_entries", "snapshot_state_arrays"):
            r2, rn = self.nid_room()
            a = (rn, self.nid(r2.snapshot_nids))
            self.call(kind, "%r" % (a,), "SELECT count(*) FROM roomserver.%s(%%s, %%s)" % kind, a)
        elif kind == "snapshot_diff":
            r2, rn = self.nid_room()
            a = (rn, self.nid(r2.snapshot_nids), self.nid(r2.snapshot_nids))
            self.call(kind, "%r" % (a,), "SELECT count(*) FROM roomserver.snapshot_diff(%s, %s, %s)", a)
        elif kind == "block_entries":
            r2, rn = self.nid_room()
            a = (rn, self.nid(r2.block_nids))
            self.call(kind, "%r" % (a,), "SELECT count(*) FROM roomserver.block_entries(%s, %s)", a)
        elif kind == "event_pdu":
            r2, rn = self.nid_room()
            a = (rn, self.nid(r2.event_nids))
            self.call(kind, "%r" % (a,), "SELECT roomserver.event_pdu(%s, %s)::text", a)
        elif kind == "nid_set_decode":
            b, d = self.random_bytea(room, big_ok=self.big_budget())
            self.call(kind, "%s (%d bytes)" % (d, len(b)), "SELECT cardinality(roomserver.nid_set_decode(%s::bytea))", (b,),
                      payload=(d, len(b), b[:64].hex()))
        elif kind == "nid_set_union":
            sets, ds = [], []
            for _ in range(self.rng.choice([0, 1, 2, 3, 5, 20])):
                if self.rng.random() < 0.1:
                    sets.append(None)
                    ds.append("NULL")
                else:
                    b, d = self.random_bytea(room, big_ok=self.big_budget())
                    sets.append(b)
                    ds.append(d)
            if self.rng.random() < 0.03:
                sets = [self.rng.choice(room.chains or [b"\x01"]) for _ in range(2000)]
                ds = ["2000 real chains"]
            desc = "[%s]" % ", ".join(ds[:6]) + (" ..." if len(ds) > 6 else "")
            self.call(kind, desc, "SELECT cardinality(roomserver.nid_set_union(%s::bytea[]))", (sets,),
                      payload=(desc, [len(s) if s is not None else None for s in sets]))
        elif kind == "resolve_state":
            self.resolve_case(room)
        elif kind == "state_auth_chain":
            r2, rn = self.nid_room()
            a = (rn, self.nid(r2.snapshot_nids))
            self.call(kind, "%r" % (a,), "SELECT count(*) FROM roomserver.state_auth_chain(%s, %s)", a)
        elif kind == "assign":
            self.assign_case(room)
        else:
            self.nid_lookup(room)

    def big_budget(self):
        # A few multi-MiB inputs per run, not hundreds.
        if self.rng.random() < 0.04 and self.big_left > 0:
            self.big_left -= 1
            return True
        return False

    def resolve_case(self, room):
        rooms = [r for r in self.rooms if r.event_map]
        room = self.rng.choice(rooms) if rooms else room
        rv = room.version if self.rng.random() < 0.75 else self.rng.choice(ROOM_VERSION_ARGS + KNOWN_VERSIONS)
        r = self.rng.random()
        if room.event_map and room.state_sets and r < 0.6:
            k = self.rng.choice([1, 2, 2, 3, 4])
            sets = [self.rng.choice(room.state_sets) for _ in range(k)]
            emap = room.event_map
            how = "real %d sets" % k
            if self.rng.random() < 0.3:
                sets = [list(s) for s in sets]
                sets[0].append(self.rng.choice([self.unknown_id(room), None, 5, "", self.rng.choice(room.ids)]))
                how += ", junk entry"
            if self.rng.random() < 0.2:
                drop = self.rng.choice(list(emap))
                emap = {a: b for a, b in emap.items() if a != drop}
                how += ", one event missing"
            if self.rng.random() < 0.15:
                emap = dict(emap)
                e = self.rng.choice(list(emap))
                p = copy.deepcopy(emap[e])
                p["auth_events"] = [self.ref(room, e)]  # a cycle
                emap[e] = p
                how += ", auth cycle"
            sets_t, events_t = json.dumps(sets), json.dumps(emap)
            if self.rng.random() < 0.1:
                e = self.rng.choice(list(emap))
                events_t = events_t.replace('"depth":', '"depth":1e400,"x":', 1)
                how += ", 1e400 depth"
        else:
            sets_t = self.rng.choice(["[]", "[[]]", "{}", "null", "[1]", "[[1]]", '[["$x"]]', "[[null]]", '"x"',
                                      "[" * 300 + "]" * 300, json.dumps([room.ids[:3], room.ids[3:6]])])
            events_t = self.rng.choice(["{}", "[]", "null", '{"$x":1}', '{"$x":{}}', '{"$x":null}',
                                        json.dumps({room.ids[0]: room.pdus[0]}), '{"a":' * 200 + "1" + "}" * 200])
            how = "junk %s / %s" % (sets_t[:30], events_t[:30])
        self.call("resolve_state", how, "SELECT roomserver.resolve_state(%s, %s::jsonb, %s::jsonb)::text",
                  (rv, sets_t, events_t), payload=(rv, how))

    def odd_strings(self, n):
        pool = ["m.room.member", "m.room.create", "org.fuzz.t%d" % self.rng.randrange(20), "", None, "a" * 300,
                "\u00e9", "\U0001F600", "@user0:s0.example", "@fuzz%d:s0.example" % self.rng.randrange(20), " ", "x" * 255]
        return [self.rng.choice(pool) for _ in range(n)]

    def assign_case(self, room):
        """The NID assignment functions (they write): junk arrays, NULL elements, unequal lengths."""
        r = self.rng.randrange(3)
        n = self.rng.choice([0, 1, 2, 5])
        if r == 0:
            a = (None if self.rng.random() < 0.05 else self.odd_strings(n),)
            self.call("assign_event_type_nids", "%r" % (a,), "SELECT count(*) FROM roomserver.assign_event_type_nids(%s::text[])",
                      a, write=True)
        elif r == 1:
            rooms = [self.nid([x.room_nid for x in self.rooms]) for _ in range(n + self.rng.choice([0, 0, 0, 1, -1]) if n else 0)]
            a = (rooms, self.odd_strings(n))
            self.call("assign_state_key_nids", "%r" % (a,), "SELECT count(*) FROM roomserver.assign_state_key_nids(%s::bigint[], %s::text[])",
                      a, write=True)
        else:
            ids = [self.rng.choice([room.room_id, "!fuzz%d:s0.example" % self.rng.randrange(10), "", None, "!" + "a" * 300, "no-sigil"])
                   for _ in range(n)]
            vs = [self.rng.choice(KNOWN_VERSIONS + ["", "99", None]) for _ in range(n + self.rng.choice([0, 0, 0, 1, -1]) if n else 0)]
            a = (ids, vs)
            self.call("assign_room_nids", "%r" % (a,), "SELECT count(*) FROM roomserver.assign_room_nids(%s::text[], %s::text[])",
                      a, write=True)

    def nid_lookup(self, room):
        r = self.rng.randrange(8)
        odd = [None, "", "\u00e9", "a" * 300, "!nope:x"]
        if r == 0:
            a = (self.rng.choice([room.room_id] + odd),)
            self.call("room_nid", "%r" % (a,), "SELECT roomserver.room_nid(%s)", a)
        elif r == 1:
            a = (self.nid([x.room_nid for x in self.rooms]),)
            self.call("room_id", "%r" % (a,), "SELECT roomserver.room_id(%s)", a)
        elif r == 2:
            a = (self.rng.choice(["m.room.member", "m.room.create"] + odd),)
            self.call("event_type_nid", "%r" % (a,), "SELECT roomserver.event_type_nid(%s)", a)
        elif r == 3:
            a = (self.nid(room.type_nids),)
            self.call("event_type", "%r" % (a,), "SELECT roomserver.event_type(%s)", a)
        elif r == 4:
            a = (self.rng.choice([room.room_id] + odd), self.rng.choice(room.users + odd))
            self.call("state_key_nid", "%r" % (a,), "SELECT roomserver.state_key_nid(%s, %s)", a)
        elif r == 5:
            a = (self.nid([room.room_nid]), self.nid(room.state_key_nids))
            self.call("state_key", "%r" % (a,), "SELECT roomserver.state_key(%s, %s)", a)
        elif r == 6:
            a = (self.event_arg(room),)
            self.call("event_nid", "%r" % (a,), "SELECT roomserver.event_nid(%s)", a)
        else:
            a = (self.nid([room.room_nid]), self.nid(room.event_nids))
            self.call("event_id", "%r" % (a,), "SELECT roomserver.event_id(%s, %s)", a)

    # ---------------------------------------------------------------- the run

    def run(self):
        self.load_rooms()
        self.big_left = 6
        # Fixed cases first: each documented defect class at least once, whatever the seed.
        self.fixed_cases()
        while self.pdu_cases < self.cases:
            if time.monotonic() - self.started > self.time_cap:
                self.stopped_by_cap = True
                break
            self.pdu_case()
            if self.pdu_cases % 50 == 0:
                self.merge_extremities(self.rooms[(self.pdu_cases // 50) % len(self.rooms)])
            while self.rng.random() < 0.4:
                self.read_case()
        self.flush_batch()
        self.final_checks()
        return self.summary()

    def fixed_cases(self):
        room = self.rooms[0]
        base = next(p for p in room.pdus if p.get("type") == "m.room.message")
        for n in SIZES_NEST:
            for text, kind in (("[" * n + "]" * n, "arrays"), ('{"a":' * n + "0" + "}" * n, "objects")):
                pdu = dict(base)
                pdu["content"] = Raw(text)
                t = enc(pdu)
                self.call("ingest_event", "fixed: deep(%s,%d)@content" % (kind, n),
                          "SELECT roomserver.ingest_event(%s::jsonb)::text", (t,), write=True, payload=(t[:200],))
                self.call("canonical_json", "fixed: deep(%s,%d)" % (kind, n), "SELECT roomserver.canonical_json(%s::jsonb)", (text,))
        for num in ("1e400", "-1e400", str(2**63), str(2**53 + 1), "1.5"):
            pdu = dict(base)
            pdu["content"] = {"body": Raw(num), "msgtype": "m.text"}
            t = enc(pdu)
            self.call("ingest_event", "fixed: number(content.body=%s)" % num, "SELECT roomserver.ingest_event(%s::jsonb)::text",
                      (t,), write=True, payload=(t,))
            self.call("content_hash", "fixed: number(content.body=%s)" % num, "SELECT roomserver.content_hash(%s::jsonb)", (t,))
        # 40 MiB of one-byte deltas: more NIDs than a set may decode (MAX_DECODED, 2^25).
        for b, d in ((b"\x80" * (4 << 20), "4 MiB of 0x80"), (b"\x01" * (4 << 20), "4 MiB of 0x01"),
                     (b"\x01" * (40 << 20), "40 MiB of 0x01")):
            self.call("nid_set_decode", "fixed: %s" % d, "SELECT cardinality(roomserver.nid_set_decode(%s::bytea))", (b,),
                      payload=(d, len(b)))
        for rv in ("", "99", "x"):
            self.call("ingest_event", "fixed: room_version %r" % rv, "SELECT roomserver.ingest_event(%s::jsonb, %s)::text",
                      (canonical(base), rv), write=True)
        # Federation calls without roomserver.server_name: 55000, not a crash.
        self.conn.execute("RESET roomserver.server_name")
        self.call("backfill", "fixed: server_name unset", "SELECT roomserver.backfill(%s, %s::text[], 5)::text",
                  (room.room_id, [room.ids[-1]]))
        self.conn.execute("SET roomserver.server_name = 'fuzz.example'")

    def final_checks(self):
        st, rows = self.call("check_integrity", "after the run", "SELECT * FROM roomserver.check_integrity()")
        if st == "ok" and rows:
            self.fail("integrity", "check_integrity", "after the run", "ok",
                      "%d broken references, first: %r" % (len(rows), rows[0]), None)
        for view in ("events", "event_references", "current_state", "room_members"):
            self.call("view " + view, "count", "SELECT count(*) FROM roomserver.%s" % view)
        if self.server_log and os.path.exists(self.server_log):
            with open(self.server_log, errors="replace") as f:
                for line in f:
                    if re.search(r"terminated by signal|was terminated by exception|PANIC:|server process .* exited with exit code [^0]", line):
                        self.fail("crash", "(server log)", "server log", "-", line.strip()[:300], None)

    def summary(self):
        elapsed = time.monotonic() - self.started
        total = sum(self.calls.values())
        print("fuzz: seed %d, %d mutated PDUs (target %d), %d calls in %.1f s%s"
              % (self.seed, self.pdu_cases, self.cases, total, elapsed,
                 " (stopped by the time cap of %.0f s)" % self.time_cap if self.stopped_by_cap else ""))
        print("calls per function (seconds in them; SQLSTATEs):")
        for fn, n in sorted(self.calls.items(), key=lambda x: -x[1]):
            hist = ", ".join("%s %d" % (s, c) for s, c in self.per_fn[fn].most_common())
            print("  %-24s %6d %6.1fs  %s" % (fn, n, self.fn_time[fn], hist))
        print("SQLSTATE histogram:")
        for s, c in self.states.most_common():
            print("  %-6s %-34s %7d" % (s, STATE_NAMES.get(s, ""), c))
        if self.undocumented:
            print("SQLSTATEs not in the README's error table (not failures; first example each):")
            for s, (fn, desc, msg) in sorted(self.undocumented.items()):
                print("  %s %s [%s]: %s" % (s, fn, desc[:80], msg[:160]))
        if self.suspicious:
            print("suspicious (not failures): retryable SQLSTATEs with no concurrent session:")
            for (fn, state), (desc, msg) in sorted(self.suspicious.items()):
                print("  %s %s [%s]: %s" % (state, fn, desc[:80], msg[:160]))
        self.slowest.sort(reverse=True)
        print("slowest calls: " + "; ".join("%s %.0f ms [%s]" % (fn, t * 1000, d[:60]) for t, fn, d in self.slowest[:5]))
        if self.report_path:
            with open(self.report_path, "w", encoding="utf-8") as f:
                for x in self.failures:
                    p = x["payload"]
                    f.write(json.dumps({**x, "payload": repr(p)[:3000]}, ensure_ascii=False) + "\n")
        examples_path = os.environ.get("FUZZ_EXAMPLES")
        if examples_path:
            with open(examples_path, "w", encoding="utf-8") as f:
                for (fn, state), (desc, msg) in sorted(self.examples.items()):
                    f.write(json.dumps({"fn": fn, "sqlstate": state, "first_input": desc[:2000], "message": msg[:500]},
                                       ensure_ascii=False) + "\n")
        if not self.failures:
            print("fuzz: PASS (0 failures)")
            return 0
        groups = collections.OrderedDict()
        for x in self.failures:
            key = (x["kind"], x["fn"], x["sqlstate"], normalise(x["message"]))
            if key not in groups:
                groups[key] = [x, 0]
            groups[key][1] += 1
        print("fuzz: FAIL: %d failing calls, %d distinct kinds%s:" % (
            len(self.failures), len(groups), " (full list in %s)" % self.report_path if self.report_path else ""))
        for i, ((kind, fn, state, _), (x, n)) in enumerate(groups.items()):
            if i >= 30:
                print("  ... %d more kinds" % (len(groups) - 30))
                break
            print("  %-10s %-16s %-5s x%-4d [%s] %s" % (kind, fn, state, n, x["desc"][:90], x["message"][:200]))
        return 1


def normalise(msg):
    msg = re.sub(r"\$[A-Za-z0-9_+/=\-:.]+", "$ID", msg)
    msg = re.sub(r"\d+", "N", msg)
    return msg[:120]


if __name__ == "__main__":
    sys.exit(Fuzzer(parse_args()).run())
