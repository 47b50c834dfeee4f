#!/usr/bin/env python3
"""linearize.py - linearizability checker for rzkv register histories.

rzkv claims that QUORUM reads, writes and deletes are linearizable per key.
This checks a recorded history against that claim, the way Knossos and
Porcupine do: a Wing-Gong search with Lowe's just-in-time linearisation,
memoised on (set of linearised operations, register state), run on each key
separately (a register history is linearizable iff each key's is: P-
compositionality).

Input: JSON lines, one event each (file arguments or stdin):

    {"process": P, "type": "invoke"|"ok"|"fail"|"info",
     "f": "read"|"write"|"delete", "key": K, "value": V|null, "time": NS}

Each process has at most one operation outstanding: an invoke is completed
by the next ok/fail/info of the same process.  A write's value is in its
invoke; a read's value is in its ok (null: NOT_FOUND).

    ok    the operation took effect, between invoke and completion.
    fail  it definitely did not take effect (UNAVAILABLE before sending).
    info  indeterminate (UNKNOWN): it may take effect at any time after its
          invoke, or never.  An invoke with no completion counts as info.

A read that failed or is indeterminate constrains nothing and is dropped.
Every key starts absent (a read of it returns null).

Output: one verdict per key, an explanation of each violation (a small set
of operations that cannot be linearised together, shrunk from the history),
and a summary line.  A key whose search exceeds its budget is reported as
"unknown (search budget)" and makes the run fail: an undecided history is
not a passing one.

Exit status: 0 every key linearizable, 1 a violation or an unknown,
2 bad input.

Usage: linearize.py [--budget STEPS] [--quiet] [--json FILE] [HISTORY...]
"""

import argparse
import bisect
import json
import sys
import time as _time

INF = float("inf")


class BadInput(Exception):
    pass


class Op:
    """One operation of one key: its kind, value and real-time window."""

    __slots__ = ("id", "process", "f", "key", "value", "call", "ret",
                 "status", "line", "error")

    def __init__(self, process, f, key, value, call, line):
        self.id = -1
        self.process = process
        self.f = f
        self.key = key
        self.value = value
        self.call = call
        self.ret = INF
        self.status = "info"
        self.line = line
        self.error = None       # what the client was told, if not ok

    def describe(self):
        if self.f == "read":
            what = "read -> %s" % fmt_value(self.value)
        elif self.f == "write":
            what = "write %s" % fmt_value(self.value)
        else:
            what = "delete"
        end = "never returned" if self.ret == INF else "%d" % self.ret
        told = ": %s" % self.error[:240] if self.error else ""
        return ("process %s %s [%d, %s] %s%s (line %d)"
                % (self.process, what, self.call, end, self.status, told,
                   self.line))


def fmt_value(v):
    return "null" if v is None else json.dumps(v)


# ---- reading the history --------------------------------------------------

def read_history(files):
    """Pair invokes with completions; return {key: [Op]} and counters."""
    pending = {}
    by_key = {}
    counts = {"events": 0, "ok": 0, "fail": 0, "info": 0, "unfinished": 0}
    for name in files:
        stream = sys.stdin if name == "-" else open(name, encoding="utf-8")
        try:
            for lineno, text in enumerate(stream, 1):
                text = text.strip()
                if not text:
                    continue
                try:
                    ev = json.loads(text)
                except ValueError as e:
                    raise BadInput("%s:%d: not JSON: %s" % (name, lineno, e))
                parse_event(ev, name, lineno, pending, by_key, counts)
        finally:
            if stream is not sys.stdin:
                stream.close()
    # An invoke never completed (the client died): indeterminate.
    counts["unfinished"] = len(pending)
    return by_key, counts


def parse_event(ev, name, lineno, pending, by_key, counts):
    where = "%s:%d" % (name, lineno)
    if not isinstance(ev, dict):
        raise BadInput("%s: expected a JSON object" % where)
    for field in ("process", "type", "f", "time"):
        if field not in ev:
            raise BadInput("%s: missing \"%s\"" % (where, field))
    kind, f = ev["type"], ev["f"]
    if f not in ("read", "write", "delete"):
        raise BadInput("%s: unknown f %r" % (where, f))
    if not isinstance(ev["time"], int):
        raise BadInput("%s: time must be an integer (ns)" % where)
    proc = json.dumps(ev["process"])
    counts["events"] += 1
    if kind == "invoke":
        if proc in pending:
            raise BadInput("%s: process %s invoked twice without completing"
                           % (where, proc))
        if "key" not in ev:
            raise BadInput("%s: missing \"key\"" % where)
        key = ev["key"]
        if not isinstance(key, (str, int)):
            raise BadInput("%s: key must be a string" % where)
        value = ev.get("value") if f == "write" else None
        if f == "write" and value is None:
            raise BadInput("%s: a write needs a value" % where)
        op = Op(ev["process"], f, key, value, ev["time"], lineno)
        pending[proc] = op
        by_key.setdefault(key, []).append(op)
    elif kind in ("ok", "fail", "info"):
        op = pending.pop(proc, None)
        if op is None:
            raise BadInput("%s: %s without an invoke for process %s"
                           % (where, kind, proc))
        if op.f != f:
            raise BadInput("%s: completion f %r does not match invoke %r"
                           % (where, f, op.f))
        if ev["time"] < op.call:
            raise BadInput("%s: completion before its invoke" % where)
        op.status = kind
        op.error = ev.get("error")
        counts[kind] += 1
        if kind == "ok":
            op.ret = ev["time"]
            if f == "read":
                op.value = ev.get("value")
    else:
        raise BadInput("%s: unknown type %r" % (where, kind))


# ---- the search -----------------------------------------------------------

def prepare(ops):
    """The operations the search must place, and notes on what was dropped.

    Dropped: failed operations (never applied), reads that did not complete
    (they constrain nothing), and indeterminate writes whose value no read
    returned.  Leaving out such a write never hurts: in any linearisation
    containing it, no read sits between it and the next write or delete (a
    read there would have returned its value), so removing it keeps every
    read valid.
    """
    read_values = set()
    for op in ops:
        if op.f == "read" and op.status == "ok":
            read_values.add(json.dumps(op.value))
    kept = []
    for op in ops:
        if op.status == "fail":
            continue
        if op.f == "read" and op.status != "ok":
            continue
        if (op.f == "write" and op.status == "info"
                and json.dumps(op.value) not in read_values):
            continue
        kept.append(op)
    # An indeterminate write whose value was read, and that is the only
    # write of that value, must take effect before the first read that
    # returned it: bound it there.  Without this, each such write stays
    # pending to the end and doubles the search space.
    writers = {}
    for op in kept:
        if op.f == "write":
            writers.setdefault(json.dumps(op.value), []).append(op)
    first_read = {}
    for op in kept:
        if op.f == "read" and op.value is not None:
            v = json.dumps(op.value)
            first_read[v] = min(first_read.get(v, INF), op.ret)
    bounded = []
    for op in kept:
        if op.f == "write" and op.status == "info":
            v = json.dumps(op.value)
            if len(writers[v]) == 1 and first_read.get(v, INF) < INF:
                op = clone_with_ret(op, max(op.call, first_read[v]))
        bounded.append(op)
    return bounded


def clone_with_ret(op, ret):
    c = Op(op.process, op.f, op.key, op.value, op.call, op.line)
    c.status = op.status
    c.ret = ret
    return c


class Budget(Exception):
    pass


def search(ops, budget):
    """Wing-Gong/Lowe search.  Returns (True, None) or (False, deepest).

    deepest describes the furthest the search got: the operation that could
    not be linearised before its return, the register state then and the
    order of the operations linearised so far.  Raises Budget when more
    than budget steps are needed.

    Definite operations (those with a return time) live in a doubly linked
    list of call and return entries in time order, as in Lowe's algorithm:
    an operation may be linearised next if its call entry comes before the
    first return entry still in the list.  Optional operations (never
    returned: they may take effect at any time after their call, or never)
    are kept apart and tried only after the definite candidates, so the
    search first looks for an order without them; the dominance rule on
    the memo then prunes most of their placements.
    """
    n = len(ops)
    for i, op in enumerate(ops):
        op.id = i
    definite = [i for i in range(n) if ops[i].ret != INF]
    optional_ids = sorted((i for i in range(n) if ops[i].ret == INF),
                          key=lambda i: ops[i].call)
    if not definite:
        return True, None
    # Entries i (call) and i + n (return) for definite i.  At equal times
    # a call sorts before a return: operations that touch in time are
    # concurrent.
    entries = [i for i in definite] + [i + n for i in definite]
    entries.sort(key=lambda e: (ops[e].call, 0, e) if e < n
                 else (ops[e - n].ret, 1, e))
    head = 2 * n                    # sentinel
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    last = head
    for e in entries:
        nxt[last] = e
        prv[e] = last
        last = e
    nxt[last] = -1

    def lift(i):
        for e in (i, i + n):
            p, q = prv[e], nxt[e]
            nxt[p] = q
            if q != -1:
                prv[q] = p

    def unlift(i):
        for e in (i + n, i):
            p, q = prv[e], nxt[e]
            nxt[p] = e
            if q != -1:
                prv[q] = e

    def first_return():
        e = nxt[head]
        while e != -1 and e < n:
            e = nxt[e]
        return e

    fs = [op.f for op in ops]
    vals = [json.dumps(op.value) if op.value is not None else None
            for op in ops]
    calls = [op.call for op in ops]
    is_optional = [op.ret == INF for op in ops]
    optional_mask = 0
    for i in optional_ids:
        optional_mask |= 1 << i
    # Optional deletes are interchangeable but for their call times: the
    # set still pending is kept as a sorted tuple of ranks in call order.
    del_rank = {}
    for i in optional_ids:
        if fs[i] == "delete":
            del_rank[i] = len(del_rank)
    dels_pending = tuple(range(len(del_rank)))
    write_mask = optional_mask
    for i in del_rank:
        write_mask &= ~(1 << i)

    # Memo with dominance.  A configuration is (definite operations
    # linearised, state, optional writes applied, optional deletes still
    # pending).  It is dominated by an earlier one with the same definite
    # set and state if that one applied a subset of these optional writes
    # and can match each pending delete here with a distinct pending
    # delete of its own called no later: everything this one could still
    # do, that one could, and it failed.
    seen = {}

    def dominates(p, wbits, dels):
        pw, pd = p
        if pw & ~wbits:
            return False
        if len(pd) < len(dels):
            return False
        for a, b in zip(pd, dels):
            if a > b:
                return False
        return True
    state = None                    # absent
    linearized = 0
    stack = []                      # (op id, state before it)
    steps = 0
    deepest = None

    def try_op(i):
        """Linearise op i if legal and new; True if it was."""
        nonlocal state, linearized, dels_pending
        f = fs[i]
        if f == "read":
            if vals[i] != state:
                return False
            new_state = state
        else:
            new_state = vals[i] if f == "write" else None
        new_lin = linearized | (1 << i)
        dels = dels_pending
        if i in del_rank:
            dels = tuple(d for d in dels if d != del_rank[i])
        wbits = new_lin & write_mask
        memo = (new_lin & ~optional_mask, new_state)
        prior = seen.get(memo)
        if prior is None:
            seen[memo] = [(wbits, dels)]
        elif any(dominates(p, wbits, dels) for p in prior):
            return False
        else:
            prior.append((wbits, dels))
        stack.append((i, state, dels_pending))
        state = new_state
        linearized = new_lin
        dels_pending = dels
        return True

    # The search position: walking the list (entry), or walking the
    # optional operations from index opt_at once the list walk reached
    # the first return entry (blocker).
    rank_to_op = {r: i for i, r in del_rank.items()}

    def last_pending_delete(i, limit):
        later = [d for d in dels_pending if d > del_rank[i]]
        return not any(calls[rank_to_op[d]] <= limit for d in later)

    def legal_read():
        """A read that may be linearised now and returns the state, or -1.

        Placing such a read at once is always safe: no pending operation
        has to precede it (it is a candidate), and it leaves the state as
        it is.  So if the configuration after it fails, so does this one.
        """
        e = nxt[head]
        while e != -1 and e < n:
            if fs[e] == "read" and vals[e] == state:
                return e
            e = nxt[e]
        return -1

    # The search position: walking the list (entry), or walking the
    # optional operations from index opt_at once the list walk reached
    # the first return entry (blocker).  forced[k] marks stack frames
    # placed by the safe-read rule: backtracking passes over them.
    forced = []
    fresh = True
    entry = nxt[head]
    opt_at = None
    blocker = -1
    while True:
        steps += 1
        if steps > budget:
            raise Budget()
        backtrack = False
        if fresh:
            fresh = False
            r = legal_read()
            if r != -1:
                if try_op(r):
                    forced.append(True)
                    lift(r)
                    fresh = True
                    entry = nxt[head]
                    continue
                backtrack = True    # seen before, and it failed
        if not backtrack and opt_at is None:
            if entry == -1:
                return True, None   # every definite operation placed
            if entry < n:
                if try_op(entry):
                    forced.append(False)
                    lift(entry)
                    entry = nxt[head]
                    fresh = True
                else:
                    entry = nxt[entry]
                continue
            blocker = entry
            opt_at = 0
        if not backtrack:
            # Optional operations invoked before the blocking return.  Of
            # the pending optional deletes only the last called is tried:
            # any other could stand in for it later, not always the
            # reverse.
            limit = ops[blocker - n].ret
            placed = False
            while opt_at < len(optional_ids):
                i = optional_ids[opt_at]
                if calls[i] > limit:
                    break
                opt_at += 1
                if (linearized >> i) & 1:
                    continue
                if i in del_rank and not last_pending_delete(i, limit):
                    continue
                if try_op(i):
                    placed = True
                    break
            if placed:
                forced.append(False)
                entry = nxt[head]
                opt_at = None
                fresh = True
                continue
            # Nothing can be placed before the blocking return.
            if deepest is None or len(stack) > deepest[0]:
                deepest = (len(stack), blocker - n, state,
                           [s[0] for s in stack])
        # Backtrack: undo the last choice, skipping safe reads (their
        # configuration failing means the one before failed too).
        while True:
            if not stack:
                return False, deepest
            i, state, dels_pending = stack.pop()
            linearized &= ~(1 << i)
            was_forced = forced.pop()
            if not is_optional[i]:
                unlift(i)
            if not was_forced:
                break
        if is_optional[i]:
            opt_at = optional_ids.index(i) + 1
            blocker = first_return()
        else:
            entry = nxt[i]
            opt_at = None


def check_ops(ops, budget):
    """'ok', ('bad', deepest) or 'unknown' for one key's operations."""
    try:
        good, deepest = search(prepare(ops), budget)
    except Budget:
        return "unknown", None
    return ("ok", None) if good else ("bad", deepest)


# ---- explaining a violation ------------------------------------------------

def can_drop(dropped, remaining):
    """Whether dropping these operations keeps a violation genuine.

    Dropping a read never turns a linearizable history into one that is
    not.  Dropping a write or a delete can (a read of its value would lose
    its only writer), unless no remaining read returns that value (null for
    a delete): then any linearisation of the larger history, with the
    operation removed, is one of the smaller.
    """
    mutations = [o for o in dropped if o.f != "read"]
    if not mutations:
        return True
    seen = set(json.dumps(o.value) for o in remaining
               if o.f == "read" and o.status == "ok")
    for o in mutations:
        if json.dumps(o.value) in seen:     # a delete's value is None: null
            return False
    return True


def shrink(ops, budget, deadline):
    """A small subset of ops that is still not linearizable (ddmin-like).

    Greedy: try dropping chunks, halving the chunk size when nothing more
    can be dropped.  Returns (subset, minimal): minimal is True when no
    single operation can be dropped, False if the deadline stopped it.
    """
    current = list(ops)
    chunk = max(1, len(current) // 2)
    while True:
        dropped_any = False
        start = 0
        while start < len(current):
            if _time.monotonic() > deadline:
                return current, False
            trial = current[:start] + current[start + chunk:]
            if (can_drop(current[start:start + chunk], trial)
                    and check_ops(trial, budget)[0] == "bad"):
                current = trial
                dropped_any = True
            else:
                start += chunk
        if chunk == 1 and not dropped_any:
            return current, True
        if not dropped_any:
            chunk = max(1, chunk // 2)


def known_pattern(kept, blocked, budget):
    """The classic small contradictions around a blocked read, if one holds.

    Tried before the general shrinking because each check is tiny:
      - a read of a value no remaining operation wrote;
      - a stale read: write v, then a write or delete that completed
        after it and before the read began, then the read of v;
      - a read of null after a completed write, with no delete at all.
    """
    if blocked.f != "read":
        return None
    candidates = [[blocked]]
    mutations = [o for o in kept if o.f != "read"]
    before = [o for o in mutations if o.ret < blocked.call]
    if blocked.value is not None:
        for w in (o for o in mutations if o.f == "write"
                  and o.value == blocked.value):
            later = [x for x in before if x.call > w.ret]
            for x in later[-20:]:
                candidates.append([w, x, blocked])
    else:
        for w in [o for o in before if o.f == "write"][-20:]:
            candidates.append([w, blocked])
    for cand in candidates:
        rest = [o for o in kept if o not in cand]
        if can_drop(rest, cand) and check_ops(cand, budget)[0] == "bad":
            return cand
    return None


def explain(ops, deepest, budget, seconds):
    """Lines explaining why one key's history is not linearizable."""
    lines = []
    kept = prepare(ops)
    if deepest is not None:
        _, blocked, state, order = deepest
        op = kept[blocked]
        lines.append("cannot linearize: %s" % op.describe())
        lines.append("  the register then holds %s, after %d operations"
                     % (state if state is not None else "null", len(order)))
        if op.f == "read" and op.value is not None:
            writers = [w for w in ops if w.f == "write"
                       and w.value == op.value]
            if not writers:
                lines.append("  no operation ever wrote %s"
                             % fmt_value(op.value))
            elif all(w.status == "fail" for w in writers):
                lines.append("  %s was written only by operations that "
                             "definitely failed:" % fmt_value(op.value))
                for w in writers[:5]:
                    lines.append("    " + w.describe())
    small = known_pattern(kept, kept[deepest[1]], budget) \
        if deepest is not None else None
    minimal = True
    if small is None:
        # Everything invoked after the blocked operation returned can go,
        # if that keeps the violation genuine; then shrink greedily.
        window = kept
        if deepest is not None:
            limit = kept[deepest[1]].ret
            trial = [o for o in kept if o.call <= limit]
            later = [o for o in kept if o.call > limit]
            if (can_drop(later, trial)
                    and check_ops(trial, budget)[0] == "bad"):
                window = trial
        small, minimal = shrink(window, budget,
                                _time.monotonic() + seconds)
    lines.append("%s %d operations that cannot be linearized together:"
                 % ("these" if minimal else "(not fully shrunk)",
                    len(small)))
    for o in sorted(small, key=lambda o: o.call)[:40]:
        lines.append("  " + o.describe())
    if len(small) > 40:
        lines.append("  ... and %d more" % (len(small) - 40))
    return lines


# ---- main -------------------------------------------------------------------

def key_sort(k):
    return (0, k, "") if isinstance(k, int) else (1, 0, str(k))


def check_history(by_key, budget, out, quiet, explain_seconds=5.0):
    """Check every key; print verdicts to out; return a summary dict."""
    summary = {"keys": 0, "ops": 0, "linearizable": 0, "violations": 0,
               "unknown": 0, "bad_keys": [], "unknown_keys": []}
    for key in sorted(by_key, key=key_sort):
        ops = by_key[key]
        summary["keys"] += 1
        summary["ops"] += len(ops)
        t0 = _time.monotonic()
        verdict, deepest = check_ops(ops, budget)
        took = _time.monotonic() - t0
        label = json.dumps(key)
        if verdict == "ok":
            summary["linearizable"] += 1
            if not quiet:
                print("key %s: linearizable (%d ops, %.2fs)"
                      % (label, len(ops), took), file=out)
        elif verdict == "unknown":
            summary["unknown"] += 1
            summary["unknown_keys"].append(key)
            print("key %s: unknown (search budget) (%d ops, %.2fs)"
                  % (label, len(ops), took), file=out)
        else:
            summary["violations"] += 1
            summary["bad_keys"].append(key)
            print("key %s: NOT linearizable (%d ops)" % (label, len(ops)),
                  file=out)
            for line in explain(ops, deepest, budget, explain_seconds):
                print("  " + line, file=out)
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Check per-key register histories for linearizability.")
    ap.add_argument("history", nargs="*", default=["-"],
                    help="JSON-lines history files (default: stdin)")
    ap.add_argument("--budget", type=int, default=2000000,
                    help="search steps per key before giving up (unknown)")
    ap.add_argument("--quiet", action="store_true",
                    help="print only keys that are not linearizable")
    ap.add_argument("--json", metavar="FILE",
                    help="also write the summary as JSON to FILE")
    args = ap.parse_args(argv)
    try:
        by_key, counts = read_history(args.history)
    except (BadInput, OSError) as e:
        print("linearize.py: %s" % e, file=sys.stderr)
        return 2
    summary = check_history(by_key, args.budget, sys.stdout, args.quiet)
    summary.update({"events": counts["events"], "info": counts["info"],
                    "fail": counts["fail"],
                    "unfinished": counts["unfinished"]})
    print("summary: %d keys, %d ops (%d indeterminate, %d failed), "
          "%d linearizable, %d violations, %d unknown"
          % (summary["keys"], summary["ops"],
             counts["info"] + counts["unfinished"], counts["fail"],
             summary["linearizable"], summary["violations"],
             summary["unknown"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fp:
            json.dump(summary, fp, default=str)
            fp.write("\n")
    return 0 if summary["violations"] == 0 and summary["unknown"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
