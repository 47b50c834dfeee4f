#!/usr/bin/env python3
"""test_linearize.py - the checker's own tests, TAP output.

A checker that never says "no" proves nothing, so most cases here are
histories that must be rejected: stale reads, reads of values never
written, lost updates, resurrected deletes, failed writes that appear.
The rest must be accepted, including the indeterminate cases (writes that
timed out and appear later, or never).  Random histories of a simulated
atomic register must all pass, and the same histories with one read made
stale must all fail.
"""

import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import linearize  # noqa: E402

CHECKER = os.path.join(HERE, "linearize.py")
results = []


def ok(cond, name, diag=None):
    results.append(bool(cond))
    print("%s %d - %s" % ("ok" if cond else "not ok", len(results), name))
    if not cond and diag:
        for line in str(diag).splitlines():
            print("#   " + line)
    sys.stdout.flush()


# ---- building histories --------------------------------------------------

def H(*ops):
    """Events from compact ops: (process, f, value, start, end, status).

    status is ok/fail/info; for a read, value is what it returned.  An
    end of None leaves the operation without a completion event.
    """
    events = []
    for p, f, v, start, end, status in ops:
        events.append({"process": p, "type": "invoke", "f": f, "key": "k",
                       "value": v if f == "write" else None,
                       "time": start})
        if end is not None:
            events.append({"process": p, "type": status, "f": f,
                           "key": "k", "value": v, "time": end})
    events.sort(key=lambda e: e["time"])
    return events


def verdict(events, budget=1000000):
    """'ok', 'bad' or 'unknown', through the library."""
    by_key = {}
    pending = {}
    counts = {"events": 0, "ok": 0, "fail": 0, "info": 0, "unfinished": 0}
    for n, ev in enumerate(events, 1):
        linearize.parse_event(ev, "test", n, pending, by_key, counts)
    out = io.StringIO()
    s = linearize.check_history(by_key, budget, out, False, 2.0)
    if s["violations"]:
        return "bad", out.getvalue()
    if s["unknown"]:
        return "unknown", out.getvalue()
    return "ok", out.getvalue()


def run_cli(events, *args):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl",
                                     delete=False) as fp:
        for ev in events:
            fp.write(json.dumps(ev) + "\n")
        path = fp.name
    try:
        p = subprocess.run([sys.executable, CHECKER] + list(args) + [path],
                           capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(path)
    return p.returncode, p.stdout + p.stderr


def simulate(seed, n_ops, clients, keys=1, p_info=0.1, p_fail=0.03,
             p_delete=0.0):
    """A history of a real atomic register.

    Each operation takes effect at one instant inside its window; an
    indeterminate write or delete takes effect at some instant after its
    call (even long after its completion event) or never.  Values are
    unique.  Returns (events, ops) where ops are the simulated operations.
    """
    rnd = random.Random(seed)
    clock = [0] * clients
    ops = []
    for n in range(n_ops):
        c = rnd.randrange(clients)
        start = clock[c] + rnd.randint(1, 40)
        dur = rnd.randint(5, 150)
        end = start + dur
        clock[c] = end
        r = rnd.random()
        f = ("read" if r < 0.5 else
             "delete" if r < 0.5 + p_delete else "write")
        x = rnd.random()
        status = ("fail" if x < p_fail else
                  "info" if x < p_fail + p_info else "ok")
        applies = status == "ok" or (status == "info" and f != "read"
                                     and rnd.random() < 0.5)
        at = start + rnd.randint(0, dur)
        if status == "info" and applies:
            at = start + rnd.randint(0, dur * 6)
        ops.append({"p": c, "f": f, "key": "k%d" % rnd.randrange(keys),
                    "v": "v%d" % n if f == "write" else None,
                    "start": start, "end": end, "at": at,
                    "status": status, "applies": applies})
    state = {}
    for op in sorted(ops, key=lambda o: o["at"]):
        if not op["applies"]:
            continue
        if op["f"] == "read":
            op["v"] = state.get(op["key"])
        elif op["f"] == "write":
            state[op["key"]] = op["v"]
        else:
            state[op["key"]] = None
    events = []
    for op in ops:
        events.append((op["start"], 0, {
            "process": op["p"], "type": "invoke", "f": op["f"],
            "key": op["key"], "time": op["start"],
            "value": op["v"] if op["f"] == "write" else None}))
        events.append((op["end"], 1, {
            "process": op["p"], "type": op["status"], "f": op["f"],
            "key": op["key"], "value": op["v"], "time": op["end"]}))
    events.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in events], ops


def make_stale(events, ops, rnd):
    """Make one ok read return a value that is certainly overwritten.

    Picks a read R, an ok write W of the same key and an ok write X with
    W.end < X.start and X.end < R.start: R returning W's value is stale.
    """
    reads = [o for o in ops if o["f"] == "read" and o["status"] == "ok"]
    writes = [o for o in ops if o["f"] == "write" and o["status"] == "ok"]
    rnd.shuffle(reads)
    for r in reads:
        for x in writes:
            if x["key"] != r["key"] or x["end"] >= r["start"]:
                continue
            for w in writes:
                if w["key"] == r["key"] and w["end"] < x["start"]:
                    for ev in events:
                        if (ev["type"] == "ok" and ev["f"] == "read"
                                and ev["time"] == r["end"]
                                and ev["process"] == r["p"]):
                            ev["value"] = w["v"]
                            return w["v"]
    return None


# ---- cases -----------------------------------------------------------------

def main():
    good = {
        "empty history":
            [],
        "read of a key never written returns null":
            H((1, "read", None, 0, 5, "ok")),
        "sequential write then read":
            H((1, "write", "a", 0, 10, "ok"), (2, "read", "a", 20, 30, "ok")),
        "concurrent writes, read sees the first invoked":
            H((1, "write", "a", 0, 50, "ok"), (2, "write", "b", 10, 60, "ok"),
              (3, "read", "a", 70, 80, "ok")),
        "concurrent writes, read sees the second invoked":
            H((1, "write", "a", 0, 50, "ok"), (2, "write", "b", 10, 60, "ok"),
              (3, "read", "b", 70, 80, "ok")),
        "read concurrent with a write sees the old value":
            H((1, "write", "a", 0, 10, "ok"), (1, "write", "b", 20, 40, "ok"),
              (2, "read", "a", 25, 35, "ok")),
        "read concurrent with a write sees the new value":
            H((1, "write", "a", 0, 10, "ok"), (1, "write", "b", 20, 40, "ok"),
              (2, "read", "b", 25, 35, "ok")),
        "indeterminate write appears long after it timed out":
            H((1, "write", "a", 0, 10, "ok"), (2, "write", "b", 20, 30, "info"),
              (1, "read", "a", 40, 50, "ok"), (1, "read", "a", 60, 70, "ok"),
              (3, "read", "b", 500, 510, "ok")),
        "indeterminate write never appears":
            H((1, "write", "a", 0, 10, "ok"), (2, "write", "b", 20, 30, "info"),
              (1, "read", "a", 40, 50, "ok"), (3, "read", "a", 500, 510, "ok")),
        "write without a completion is indeterminate":
            H((1, "write", "a", 0, 10, "ok"), (2, "write", "b", 20, None, "ok"),
              (1, "read", "b", 40, 50, "ok")),
        "failed write never appears":
            H((1, "write", "a", 0, 10, "ok"), (2, "write", "b", 20, 30, "fail"),
              (1, "read", "a", 40, 50, "ok")),
        "delete then read null":
            H((1, "write", "a", 0, 10, "ok"), (1, "delete", None, 20, 30, "ok"),
              (2, "read", None, 40, 50, "ok")),
        "indeterminate delete takes effect later":
            H((1, "write", "a", 0, 10, "ok"), (1, "delete", None, 20, 30, "info"),
              (2, "read", "a", 40, 50, "ok"), (2, "read", None, 60, 70, "ok")),
        "write after delete is read":
            H((1, "write", "a", 0, 10, "ok"), (1, "delete", None, 20, 30, "ok"),
              (1, "write", "b", 40, 50, "ok"), (2, "read", "b", 60, 70, "ok")),
        "failed and indeterminate reads constrain nothing":
            H((1, "write", "a", 0, 10, "ok"), (2, "read", "zzz", 20, 30, "info"),
              (2, "read", "yyy", 40, 50, "fail"), (1, "read", "a", 60, 70, "ok")),
    }
    bad = {
        "stale read after a completed write":
            H((1, "write", "a", 0, 10, "ok"), (1, "write", "b", 20, 30, "ok"),
              (2, "read", "a", 40, 50, "ok")),
        "read of a value never written":
            H((1, "write", "a", 0, 10, "ok"), (2, "read", "zzz", 20, 30, "ok")),
        "acknowledged write lost: later read returns null":
            H((1, "write", "a", 0, 10, "ok"), (2, "read", None, 20, 30, "ok")),
        "lost update visible: read goes back to the older value":
            H((1, "write", "a", 0, 10, "ok"), (1, "write", "b", 20, 30, "ok"),
              (2, "read", "b", 40, 50, "ok"), (3, "read", "a", 60, 70, "ok")),
        "indeterminate write appears, then disappears":
            H((1, "write", "a", 0, 10, "ok"), (2, "write", "b", 20, 30, "info"),
              (1, "read", "b", 40, 50, "ok"), (1, "read", "a", 60, 70, "ok")),
        "failed write appears":
            H((1, "write", "a", 0, 10, "ok"), (2, "write", "b", 20, 30, "fail"),
              (1, "read", "b", 40, 50, "ok")),
        "deleted value resurrected":
            H((1, "write", "a", 0, 10, "ok"), (1, "delete", None, 20, 30, "ok"),
              (2, "read", None, 40, 50, "ok"), (2, "read", "a", 60, 70, "ok")),
        "two readers see concurrent writes in opposite orders":
            H((1, "write", "a", 0, 100, "ok"), (2, "write", "b", 0, 100, "ok"),
              (3, "read", "a", 110, 120, "ok"), (3, "read", "b", 130, 140, "ok"),
              (4, "read", "a", 150, 160, "ok")),
        "read returns a value before its write was invoked":
            H((2, "read", "a", 0, 10, "ok"), (1, "write", "a", 20, 30, "ok")),
    }
    for name, events in good.items():
        v, out = verdict(events)
        ok(v == "ok", "linearizable: " + name, out)
    for name, events in bad.items():
        v, out = verdict(events)
        ok(v == "bad", "violation: " + name, out)

    # The command line: exit codes and the explanation of a stale read.
    stale = bad["stale read after a completed write"]
    rc, out = run_cli(stale)
    ok(rc == 1, "cli: a violation exits 1", out)
    ok("NOT linearizable" in out and "these 3 operations" in out
       and 'write "a"' in out and 'write "b"' in out
       and 'read -> "a"' in out,
       "cli: the explanation names the three operations involved", out)
    rc, out = run_cli(good["indeterminate write appears long after it "
                           "timed out"])
    ok(rc == 0 and "linearizable" in out, "cli: a good history exits 0", out)
    rc, out = run_cli([{"process": 1, "type": "ok", "f": "read",
                        "key": "k", "value": None, "time": 1}])
    ok(rc == 2, "cli: a completion without an invoke is bad input (2)", out)
    rc, out = run_cli([{"process": 1, "type": "invoke", "f": "frob",
                        "key": "k", "value": None, "time": 1}])
    ok(rc == 2, "cli: an unknown operation is bad input (2)", out)

    # Budget: an undecided history fails the run, it does not pass.
    events, _ = simulate(3, 400, 6)
    rc, out = run_cli(events, "--budget", "50")
    ok(rc == 1 and "unknown (search budget)" in out,
       "cli: an exhausted search budget is reported and exits 1", out)

    # Random histories of a real register pass; made stale, they fail.
    rnd = random.Random(42)
    for seed in range(6):
        keys = 1 + seed % 3
        events, ops = simulate(seed, 600, 5, keys=keys, p_info=0.15,
                               p_delete=0.1 if seed % 2 else 0.0)
        v, out = verdict(events)
        ok(v == "ok", "random register history %d (%d keys) is "
           "linearizable" % (seed, keys), out)
        if make_stale(events, ops, rnd) is None:
            ok(False, "random history %d: found a read to make stale" % seed)
            continue
        v, out = verdict(events)
        ok(v == "bad", "random history %d with one stale read is not"
           % seed, out)

    # Scale: the size a fault run produces, in bounded time.
    events, ops = simulate(99, 3000, 5, p_info=0.2)
    t0 = time.monotonic()
    v, out = verdict(events, budget=2000000)
    took = time.monotonic() - t0
    ok(v == "ok" and took < 30,
       "3000 ops on one key, 5 clients, 20%% indeterminate: "
       "linearizable in %.1fs" % took, out)
    make_stale(events, ops, rnd)
    t0 = time.monotonic()
    v, out = verdict(events, budget=2000000)
    took = time.monotonic() - t0
    ok(v == "bad" and took < 60,
       "the same with one stale read: violation found in %.1fs" % took, out)

    print("1..%d" % len(results))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
