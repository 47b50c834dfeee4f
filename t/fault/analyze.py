#!/usr/bin/env python3
"""analyze.py - the figures and verdicts of one fault run.

    analyze.py keys HISTORY            keys to read back at the end
    analyze.py check HISTORY [--json FILE] [--budget N]
    analyze.py converge [--placement FILE] REPLICAS LISTING...

check reads a history written by t/fault/workload (the run's operations,
then the final reads of --verify) and reports:

  operations recorded, by workload and outcome;
  anomalies: keys whose history is not linearizable, or undecided (the
      checker's search budget ran out), over every key of every workload;
  acknowledged writes lost: a key of the unique-write or delete workload
      whose write was acknowledged (and that no delete was sent for) but
      whose final read does not return the value;
  resurrected deletes: a delete-workload key whose delete was
      acknowledged and that a read invoked after it returned a value.

It exits 1 if any of the three is not zero.

converge takes the replica count and one `rzkvctl keys --json` listing
per node, and checks every live key is held by exactly that many nodes,
all with the same stamp.  With --placement (the output of `rzkvctl
locate --cluster FILE -`: a key, a tab, its nodes) and listings named
list-NODE.json, it checks instead that each key's replicas all hold it
with one stamp, and counts as leftovers the copies other nodes keep
after a membership change (rzkv(7) CAVEATS), which must not be newer.
Exit 0 when converged, 1 with the first differences otherwise.
"""

import argparse
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import linearize  # noqa: E402


def load(path):
    by_key, counts = linearize.read_history([path])
    return by_key, counts


def workload_of(op):
    return str(op.process)[:1]     # r, u, d (v: the final reads)


def cmd_keys(args):
    by_key, _ = load(args.history)
    for key in sorted(by_key, key=str):
        print(key)
    return 0


def final_reads(ops):
    """The final reads (process "v..."), ok ones, in time order."""
    return sorted((o for o in ops if str(o.process).startswith("v")
                   and o.f == "read" and o.status == "ok"),
                  key=lambda o: o.call)


def lost_and_resurrected(by_key):
    lost, resurrected, unread = [], [], []
    for key, ops in by_key.items():
        if not isinstance(key, str) or not key.startswith(("uniq-", "del-")):
            continue
        finals = final_reads(ops)
        acked = [o for o in ops if o.f == "write" and o.status == "ok"]
        deletes = [o for o in ops if o.f == "delete"]
        done_deletes = [o for o in deletes if o.status == "ok"]
        if acked and not deletes:
            if not finals:
                unread.append(key)
            elif all(f.value != acked[-1].value for f in finals):
                lost.append((key, acked[-1], finals[-1]))
        for d in done_deletes:
            for r in ops:
                if (r.f == "read" and r.status == "ok" and r.call > d.ret
                        and r.value is not None):
                    resurrected.append((key, d, r))
                    break
    return lost, resurrected, unread


def cmd_check(args):
    by_key, counts = load(args.history)
    per = {}
    for ops in by_key.values():
        for o in ops:
            w = {"r": "register", "u": "unique", "d": "delete",
                 "v": "final-read"}.get(workload_of(o), "other")
            d = per.setdefault(w, {"ok": 0, "fail": 0, "info": 0})
            d[o.status] = d.get(o.status, 0) + 1
    out = io.StringIO()
    summary = linearize.check_history(by_key, args.budget, out, True)
    lost, resurrected, unread = lost_and_resurrected(by_key)
    total = sum(sum(d.values()) for d in per.values())
    print("operations recorded: %d" % total)
    for w in sorted(per):
        d = per[w]
        print("  %-10s ok %d, fail %d, info %d"
              % (w, d["ok"], d["fail"], d["info"]))
    anomalies = summary["violations"] + summary["unknown"]
    print("keys checked for linearizability: %d (%d violations, "
          "%d undecided)" % (summary["keys"], summary["violations"],
                             summary["unknown"]))
    if anomalies:
        sys.stdout.write(out.getvalue())
    print("anomalies: %d" % anomalies)
    print("acknowledged writes lost: %d" % len(lost))
    for key, w, f in lost[:20]:
        print("  %s: acknowledged %s, final read %s"
              % (key, w.describe(), f.describe()))
    print("resurrected deletes: %d" % len(resurrected))
    for key, d, r in resurrected[:20]:
        print("  %s: %s, then %s" % (key, d.describe(), r.describe()))
    if unread:
        print("keys never read back: %d (e.g. %s)"
              % (len(unread), ", ".join(unread[:5])))
    result = {"ops": total, "by_workload": per, "anomalies": anomalies,
              "violations": summary["violations"],
              "undecided": summary["unknown"], "lost": len(lost),
              "resurrected": len(resurrected), "unread": len(unread),
              "keys": summary["keys"]}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fp:
            json.dump(result, fp)
            fp.write("\n")
    bad = anomalies or lost or resurrected or unread
    return 1 if bad else 0


def stamp_str(s):
    return "%s.%s.%s.%s" % (s.get("epoch"), s.get("counter"),
                             s.get("writer"), s.get("nonce"))


def stamp_key(s):
    return (int(s.get("epoch", 0)), int(s.get("counter", 0)),
            str(s.get("writer", "")), int(s.get("nonce", 0)))


def read_placement(path):
    placement = {}
    with open(path, encoding="utf-8") as fp:
        for line in fp:
            key, _, ids = line.rstrip("\n").partition("\t")
            placement[key] = ids.split()
    return placement


def cmd_converge(args):
    placement = read_placement(args.placement) if args.placement else None
    holders = {}
    for path in args.listing:
        with open(path, encoding="utf-8") as fp:
            data = json.load(fp)
        if data.get("status") != "OK":
            print("%s: listing failed: %s" % (path, data.get("status")))
            return 1
        node = os.path.basename(path)[len("list-"):-len(".json")]
        for k in data.get("keys", []):
            holders.setdefault(k["key"], []).append(
                (path, node, k.get("stamp", {})))
    bad = []
    leftovers = 0
    for key, held in holders.items():
        stamps = set(stamp_str(s) for _, _, s in held)
        if placement is None or key not in placement:
            if len(held) != args.replicas or len(stamps) != 1:
                bad.append((key, held))
            continue
        want = placement[key]
        at = {n: s for _, n, s in held}
        reps = [at[n] for n in want if n in at]
        rest = [s for n, s in at.items() if n not in want]
        if not reps:
            leftovers += len(rest)      # deleted on its replicas
            continue
        newest = max(stamp_key(r) for r in reps)
        if (len(reps) != len(want) or
                len(set(stamp_str(r) for r in reps)) != 1 or
                any(stamp_key(r) > newest for r in rest)):
            bad.append((key, held))
        leftovers += len(rest)
    print("keys listed: %d, not converged: %d" % (len(holders), len(bad)))
    if placement is not None:
        print("leftover copies off their keys' replicas: %d" % leftovers)
    for key, held in sorted(bad)[:10]:
        print("  %s: %s" % (key, ", ".join(
            "%s=%s" % (os.path.basename(p), stamp_str(s))
            for p, _, s in held)))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keys")
    k.add_argument("history")
    c = sub.add_parser("check")
    c.add_argument("history")
    c.add_argument("--json")
    c.add_argument("--budget", type=int, default=2000000)
    v = sub.add_parser("converge")
    v.add_argument("--placement")
    v.add_argument("replicas", type=int)
    v.add_argument("listing", nargs="+")
    args = ap.parse_args()
    return {"keys": cmd_keys, "check": cmd_check,
            "converge": cmd_converge}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
