#!/usr/bin/env bash
# run.sh - the rzkv benchmark matrix on a fresh local 3-node cluster.
#
#   bench/run.sh [--quick] [--duration S] [--warmup S] [--repeats R]
#                [--concurrency "1 16 64"] [--keys N] [--out DIR]
#                [--base-port P] [--writes N] [--rates "W:R .."]
#
# Starts `rzkvctl start --local 3` in a new directory, runs every cell of
# the matrix (health, set 1 KiB, set 10 KiB, get 1 KiB, mix 50/50 1 KiB,
# each at every concurrency) REPEATS times, and takes the median of each
# figure, since this machine is shared and noisy.  Each workload has a
# keyspace of its own, every key written once with a value of the
# workload's size before its first cell (the prefill, whose rate is
# reported as first writes): sets then measure a store in steady state,
# overwriting values of their own size, and gets find every key.  (Sets
# on a fresh keyspace would measure appends to an empty store; sets of
# 10 KiB over the 1 KiB cell's keys, as this script once ran them, measure
# the cost of growing every row, ~30% slower than either.)  Then, at
# c = 64, each "workload:rate" of --rates runs open loop (rzkvctl bench
# --rps) at that fixed rate, the performance floors by default: closed
# loop, a client waits for each answer before sending the next request, so
# queueing near a node's capacity hides from its latency; open loop
# counts each request's latency from the time it was due.  Around
# each run it samples the CPU time of every cluster process (by role) and
# afterwards the RSS of every node.  --writes N then sets N more keys and
# samples RSS again (the memory bound after a million writes).  Before the
# cluster starts it times fdatasync in its directory and, if built beside
# rzkvctl, the storage engine alone (bench/engine_bench): what this
# machine's disk and CPU give, whatever rzkv does.
#
# Writes to OUT (default bench/out): results.md (tables, machine,
# durability mode, ratios, RSS, the exact commands), results.json, the
# plot results.png (gnuplot, Debian package gnuplot-nox), raw.jsonl (every
# run), commands.txt.  Needs python3.  rzkvctl is taken from $RZKVCTL,
# else $RZKV_BUILDDIR/rzkvctl, else $PATH; it finds rzkvd beside itself.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPEATS=${REPEATS:-3}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
KEYS=${KEYS:-100000}
OUT=${OUT:-$SRC/bench/out}
BASE_PORT=${BASE_PORT:-18800}
WRITES=${WRITES:-0}
RATES=${RATES-"set1k:10000 set10k:5000 get1k:15000"}
WORKLOADS=${WORKLOADS-"health set1k set10k get1k mix"}  # set and empty: none

usage() { sed -n '3,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --quick) DURATION=3; WARMUP=1; REPEATS=1; KEYS=10000 ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --repeats) REPEATS=$2; shift ;;
    --concurrency) CONCURRENCY=$2; shift ;;
    --keys) KEYS=$2; shift ;;
    --out) OUT=$2; shift ;;
    --base-port) BASE_PORT=$2; shift ;;
    --writes) WRITES=$2; shift ;;
    --rates) RATES=$2; shift ;;
    *) usage ;;
    esac
    shift
done

if [ -n "${RZKVCTL:-}" ]; then :
elif [ -n "${RZKV_BUILDDIR:-}" ]; then RZKVCTL=$RZKV_BUILDDIR/rzkvctl
else RZKVCTL=$(command -v rzkvctl) || { echo "run.sh: no rzkvctl" >&2; exit 1; }
fi
# The coordinator's test tool reads NodeInfo (messages, commits, fsyncs).
COORD_LOAD=${COORD_LOAD:-$(dirname "$RZKVCTL")/t/coord_load}
command -v python3 >/dev/null || { echo "run.sh: needs python3" >&2; exit 1; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# Results are not sources: keep them out of git without touching .gitignore.
[ -e "$OUT/.gitignore" ] || echo "*" >"$OUT/.gitignore"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/rzkv-bench.XXXXXX")
ADDRS=127.0.0.1:$BASE_PORT,127.0.0.1:$((BASE_PORT + 1)),127.0.0.1:$((BASE_PORT + 2))
: >"$OUT/raw.jsonl"
: >"$OUT/commands.txt"

stop_cluster() {
    "$RZKVCTL" stop --local --dir "$DIR" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

log() { echo "run.sh: $*" >&2; }
# Log a command exactly as run, with the local cluster's directory
# written as $DIR, then run it.
run() {
    local line="$*"
    echo "${line//$DIR/\$DIR}" >>"$OUT/commands.txt"
    "$@"
}

# pid role node, one line per process of the cluster.
cluster_pids() {
    "$RZKVCTL" status --json --local --dir "$DIR" | python3 -c '
import json, sys
for n in json.load(sys.stdin)["nodes"]:
    if n.get("pid"):
        print(n["pid"], "supervisor", n["id"])
    for w in n.get("workers", []):
        if w.get("pid"):
            print(w["pid"], w["role"], n["id"])'
}

# One JSON sample of the cluster and the machine: per process CPU ticks
# (user, system) and context switches (all threads), the machine's busy
# ticks (so load from outside the cluster shows), and, when the build has
# t/coord_load, every worker's NodeInfo counters (messages, commits).
sample() {
    local info=""
    if [ -x "$COORD_LOAD" ]; then
        info=$("$COORD_LOAD" -i "$ADDRS" 2>/dev/null) || info=""
    fi
    "$RZKVCTL" status --json --local --dir "$DIR" |
    python3 -c '
import glob, json, re, sys, time, urllib.request
def ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])
def switches(pid):
    n = 0
    for st in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            for l in open(st):
                if "ctxt_switches:" in l:
                    n += int(l.split()[1])
        except OSError:
            pass
    return n
procs = {}
for n in json.load(sys.stdin)["nodes"]:
    ps = [(n.get("pid"), "supervisor")]
    ps += [(w.get("pid"), w["role"]) for w in n.get("workers", [])]
    for pid, role in ps:
        try:
            u, s = ticks(pid)
            procs[str(pid)] = {"node": n["id"], "role": role, "utime": u,
                               "stime": s, "ctxsw": switches(pid)}
        except (OSError, TypeError):
            pass
cpu = open("/proc/stat").readline().split()[1:]
busy = sum(int(x) for k, x in enumerate(cpu) if k not in (3, 4))
info = {}
# Time in COMMIT (WAL write and fsync), from the /metrics of each node.
for yml in glob.glob(sys.argv[2] + "/node-*.yml"):
    m = re.search(r"^ *local_metrics_address: *\"?([^\s\"]+)",
                  open(yml).read(), re.M)
    if not m:
        continue
    try:
        text = urllib.request.urlopen(f"http://{m.group(1)}/metrics",
                                      timeout=5).read().decode()
    except OSError:
        continue
    c = {"commit_ns": 0, "commit_count": 0}
    for l in text.splitlines():
        f = l.split()
        name = f[0].split("{")[0] if f else ""
        if name == "rzkv_storage_commit_duration_seconds_sum":
            c["commit_ns"] += int(float(f[1]) * 1e9)
        elif name == "rzkv_storage_commit_duration_seconds_count":
            c["commit_count"] += int(f[1])
    info["metrics/" + yml] = c
for l in sys.argv[1].splitlines():
    m = re.match(r"node (\d+) (\w+)\[(\d+)\]: (.*)", l)
    if m:
        f = m.group(4).split()
        info[f"{m.group(1)}/{m.group(2)}/{m.group(3)}"] = {
            f[k]: int(f[k + 1]) for k in range(0, len(f) - 1, 2)}
print(json.dumps({"time": time.time(), "machine_busy": busy,
                  "procs": procs, "nodeinfo": info}))' "$info" "$DIR"
}

# node role pid rss_kb anon_kb file_kb: VmRSS counts SQLite's memory-mapped
# database pages (RssFile, page cache) beside the process's own memory.
rss_sample() {
    cluster_pids | while read -r pid role node; do
        awk -v n="$node" -v r="$role" -v p="$pid" '
            /^VmRSS:/ { t = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
            END { print n, r, p, t + 0, a + 0, f + 0 }' "/proc/$pid/status"
    done
}

# The keyspace (key prefix) and value size of a workload; the mix works
# on the get cells' keys.
keyspace() {
    case $1 in
    set1k) echo s1k: ;;
    set10k) echo s10k: ;;
    get1k | mix) echo g1k: ;;
    esac
}
value_size() {
    case $1 in
    set10k) echo 10240 ;;
    *) echo 1024 ;;
    esac
}

# prefill WORKLOAD: write every key of its keyspace once (in key order,
# 64 at a time), the first time a workload needs that keyspace.
PREFILLED=" "
prefill() {
    local ks size
    ks=$(keyspace "$1")
    [ -n "$ks" ] || return 0
    case $PREFILLED in *" $ks "*) return 0 ;; esac
    PREFILLED="$PREFILLED$ks "
    size=$(value_size "$1")
    log "prefill $KEYS keys of $size bytes ($ks)"
    run "$RZKVCTL" bench -a "$ADDRS" --no-progress --json --op get \
        --prefill --key-prefix "$ks" --value-size "$size" --keys "$KEYS" \
        -c 64 -n 1 >"$OUT/prefill-${ks%:}.json"
}

# bench_cell WORKLOAD C REP [RATE]: one run (closed loop, or open loop at
# RATE requests/s), one JSON line in raw.jsonl.
bench_cell() {
    local w=$1 c=$2 rep=$3 rate=${4:-0} args
    case $w in
    health) args="--op health" ;;
    set1k | set10k) args="--op set" ;;
    get1k) args="--op get" ;;
    mix) args="--op mix:50/50" ;;
    *) log "unknown workload $w"; exit 2 ;;
    esac
    [ "$w" = health ] ||
        args="$args --value-size $(value_size "$w") --key-prefix $(keyspace "$w")"
    [ "$rate" = 0 ] || args="$args --rps $rate"
    local before after json
    before=$(sample)
    # shellcheck disable=SC2086
    json=$(run "$RZKVCTL" bench -a "$ADDRS" --no-progress --json $args \
        -c "$c" --duration "$DURATION" --warmup "$WARMUP" --keys "$KEYS") ||
        [ -n "$json" ] || { log "bench failed: $w c=$c"; exit 1; }
    after=$(sample)
    python3 - "$w" "$c" "$rep" "$rate" "$json" "$before" "$after" \
        >>"$OUT/raw.jsonl" <<'EOF'
import json, os, sys
w, c, rep, rate, bench, before, after = sys.argv[1:]
bench, b, a = json.loads(bench), json.loads(before), json.loads(after)
hz = os.sysconf("SC_CLK_TCK")
wall = a["time"] - b["time"]
roles = {}
for pid, p in a["procs"].items():
    q = b["procs"].get(pid, {"utime": 0, "stime": 0, "ctxsw": 0})
    r = roles.setdefault(p["role"], {"user": 0.0, "sys": 0.0, "ctxsw": 0})
    r["user"] += (p["utime"] - q["utime"]) / hz / wall
    r["sys"] += (p["stime"] - q["stime"]) / hz / wall
    r["ctxsw"] += p["ctxsw"] - q["ctxsw"]
cluster = sum(r["user"] + r["sys"] for r in roles.values())
machine = (a["machine_busy"] - b["machine_busy"]) / hz / wall
counters = {}
for k, v in a["nodeinfo"].items():
    for f, x in v.items():
        counters[f] = counters.get(f, 0) + x - b["nodeinfo"].get(k, {}).get(f, 0)
print(json.dumps({
    "workload": w, "concurrency": int(c), "repeat": int(rep),
    "rate": int(rate), "wall_s": wall,
    "cluster_cpu_cores": {k: r["user"] + r["sys"] for k, r in roles.items()},
    "cluster_cpu_split": roles, "machine_busy_cores": machine,
    "other_cpu_cores": machine - cluster - bench["bench_cpu_cores"],
    "nodeinfo_delta": counters, "bench": bench}))
EOF
    python3 -c 'import json,sys; j=json.loads(sys.stdin.readlines()[-1])
b=j["bench"]; print("run.sh: %-7s c=%-3d%s #%d %9.1f ops/s p99 %8.3f ms errors %d" % (
    j["workload"], j["concurrency"],
    " rps=%d" % j["rate"] if j["rate"] else "", j["repeat"],
    b["ops_per_sec"], b["latency_ms"]["p99"], b["errors"]))' \
        <"$OUT/raw.jsonl" >&2
}

# ---- the machine and the cluster ---------------------------------------------
# The disk's part of a durable write, measured where the cluster keeps its
# data and before it starts: the median of 200 appends of 4 KiB, each
# followed by fdatasync.  Machines of one class can differ by more than a
# change to rzkv does, so every result says what its disk did.
fsync_probe() {
    python3 - "$1" <<'PROBE'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
block = bytes(4096)
took = []
for _ in range(200):
    os.write(fd, block)
    start = time.perf_counter()
    os.fdatasync(fd)
    took.append(time.perf_counter() - start)
os.close(fd)
os.unlink(path)
took.sort()
print("%.3f" % (took[len(took) // 2] * 1e3))
PROBE
}
FSYNC_MS=$(fsync_probe "$DIR")
# The storage engine alone on this machine (bench/engine_bench, if built):
# CPU a durable 1 KiB write, 15 a commit, 50,000 keys.  Like the fsync
# probe, it tells a slow machine from a slow build.
ENGINE=$(dirname "$RZKVCTL")/bench/engine_bench
ENGINE_US=
if [ -x "$ENGINE" ]; then
    mkdir -p "$DIR/engine"
    ENGINE_US=$("$ENGINE" -n 20000 -k 50000 "$DIR/engine" 2>/dev/null |
                sed -n 's/.*CPU a write \([0-9.]*\) us.*/\1/p')
    rm -rf "$DIR/engine"
fi
log "cluster in $DIR, results in $OUT"
run "$RZKVCTL" start --local 3 --dir "$DIR" --base-port "$BASE_PORT" >&2
DURABILITY=$(sed -n 's/^ *durability: *\([a-z]*\).*/\1/p' "$DIR/node-1.yml" |
             head -1)
: "${DURABILITY:=full}"
{
    echo "nproc=$(nproc)"
    echo "cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
    echo "kernel=$(uname -sr)"
    echo "memory_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "fdatasync_4k_ms=$FSYNC_MS"
    echo "engine_write_us=${ENGINE_US:-?}"
    echo "durability=$DURABILITY"
    echo "replica_count=$(sed -n 's/^ *replica_count: *//p' "$DIR/cluster.yml")"
    echo "storage_workers=$(sed -n 's/^ *storage_workers: *//p' "$DIR/node-1.yml")"
    echo "coordinator_workers=$(sed -n 's/^ *coordinator_workers: *//p' "$DIR/node-1.yml")"
    echo "commit=$(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)"
    # The binaries may be older than the tree: say when they were built.
    for b in "$RZKVCTL" "$(dirname "$RZKVCTL")/rzkvd"; do
        [ -e "$b" ] && echo "built_$(basename "$b")=$(date -u -r "$b" +%Y-%m-%dT%H:%M:%SZ)"
    done
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "duration_s=$DURATION"
    echo "warmup_s=$WARMUP"
    echo "repeats=$REPEATS"
    echo "keys=$KEYS"
    echo "writes=$WRITES"
} >"$OUT/machine.txt"

# ---- the matrix ----------------------------------------------------------------
for w in $WORKLOADS; do
    prefill "$w"
    for c in $CONCURRENCY; do
        for rep in $(seq 1 "$REPEATS"); do
            bench_cell "$w" "$c" "$rep"
        done
    done
done
# Open loop at fixed rates: the floors' "p99 at those rates".
for wr in $RATES; do
    w=${wr%%:*}
    case " $WORKLOADS " in *" $w "*) ;; *) continue ;; esac
    prefill "$w"
    for rep in $(seq 1 "$REPEATS"); do
        bench_cell "$w" 64 "$rep" "${wr#*:}"
    done
done
rss_sample >"$OUT/rss_after_matrix.txt"

if [ "$WRITES" -gt 0 ]; then
    log "$WRITES more writes (distinct keys), then RSS again"
    run "$RZKVCTL" bench -a "$ADDRS" --no-progress --json --op get \
        --prefill --key-prefix w: --value-size 1024 --keys "$WRITES" \
        -c 64 -n 1 >"$OUT/writes.json"
    rss_sample >"$OUT/rss_after_writes.txt"
fi
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# ---- report --------------------------------------------------------------------
python3 - "$OUT" <<'EOF'
import glob, json, os, statistics, sys
out = sys.argv[1]
machine = dict(l.rstrip("\n").split("=", 1) for l in open(f"{out}/machine.txt"))
runs = [json.loads(l) for l in open(f"{out}/raw.jsonl")]
rated = [r for r in runs if r.get("rate")]
runs = [r for r in runs if not r.get("rate")]
names = {"health": "health", "set1k": "set 1 KiB", "set10k": "set 10 KiB",
         "get1k": "get 1 KiB", "mix": "mix 50/50 1 KiB"}
order = [w for w in names if any(r["workload"] == w for r in runs)]
concs = sorted({r["concurrency"] for r in runs})
med = statistics.median

def profile(r):
    """Per-request costs of one run (warmup included on both sides)."""
    n = r["bench"].get("requests_all") or 0
    if n == 0:
        return None
    split, nd = r["cluster_cpu_split"], r.get("nodeinfo_delta") or {}
    p = {"cpu_us": {k: (v["user"] + v["sys"]) * r["wall_s"] / n * 1e6
                    for k, v in split.items()},
         "sys_share": (sum(v["sys"] for v in split.values()) /
                       max(1e-9, sum(v["user"] + v["sys"]
                                     for v in split.values()))),
         "ctxsw": sum(v["ctxsw"] for v in split.values()) / n,
         "other_cores": r["other_cpu_cores"],
         "machine_cores": r["machine_busy_cores"]}
    if nd.get("batches_sent"):
        p["batches"] = nd["batches_sent"] / n
        p["ops_per_batch"] = nd["ops_sent"] / nd["batches_sent"]
    if nd.get("commits"):
        p["ops_per_commit"] = nd["ops_committed"] / nd["commits"]
        p["fsyncs"] = nd["fsyncs"] / n
    if nd.get("commit_count"):
        p["commit_ms"] = nd["commit_ns"] / nd["commit_count"] / 1e6
    return p

def median_profile(rs):
    ps = [p for p in map(profile, rs) if p]
    if not ps:
        return None
    out = {"cpu_us": {k: med(p["cpu_us"].get(k, 0) for p in ps)
                      for k in sorted({k for p in ps for k in p["cpu_us"]})}}
    for k in ("sys_share", "ctxsw", "other_cores", "machine_cores", "batches",
              "ops_per_batch", "ops_per_commit", "commit_ms", "fsyncs"):
        vs = [p[k] for p in ps if k in p]
        if vs:
            out[k] = med(vs)
    return out

cells = []
for w in order:
    for c in concs:
        rs = [r for r in runs if r["workload"] == w and r["concurrency"] == c]
        if not rs:
            continue
        b = [r["bench"] for r in rs]
        roles = sorted({k for r in rs for k in r["cluster_cpu_cores"]})
        cells.append({
            "workload": w, "concurrency": c, "runs": len(rs),
            "ops_per_sec": med(x["ops_per_sec"] for x in b),
            "ops_per_sec_min": min(x["ops_per_sec"] for x in b),
            "ops_per_sec_max": max(x["ops_per_sec"] for x in b),
            "latency_ms": {k: med(x["latency_ms"][k] for x in b)
                           for k in ("p50", "p90", "p99", "p999", "max")},
            "errors": med(x["errors"] for x in b),
            "not_found": med(x["results"]["NOT_FOUND"] for x in b),
            "bench_cpu_cores": med(x["bench_cpu_cores"] for x in b),
            "cluster_cpu_cores": {k: med(r["cluster_cpu_cores"].get(k, 0)
                                         for r in rs) for k in roles},
            "other_cpu_cores": med(r["other_cpu_cores"] for r in rs),
            "profile": median_profile(rs),
        })
def cell(w, c):
    return next((x for x in cells if x["workload"] == w and
                 x["concurrency"] == c), None)

ratios = []
for c in concs:
    h = cell("health", c)
    if h is None or h["ops_per_sec"] == 0:
        continue
    for w in ("set1k", "get1k"):
        x = cell(w, c)
        if x is not None:
            ratios.append({"concurrency": c, "workload": w,
                           "ratio": x["ops_per_sec"] / h["ops_per_sec"]})

def read_rss(path):
    if not os.path.exists(path):
        return None
    nodes = {}
    for l in open(path):
        node, role, pid, kb, anon, file = (l.split() + ["0", "0"])[:6]
        n = nodes.setdefault(node, {"total_kb": 0, "anon_kb": 0, "file_kb": 0,
                                    "processes": []})
        n["total_kb"] += int(kb)
        n["anon_kb"] += int(anon)
        n["file_kb"] += int(file)
        n["processes"].append({"role": role, "pid": int(pid), "rss_kb": int(kb),
                               "anon_kb": int(anon), "file_kb": int(file)})
    return nodes
# Open-loop runs at fixed rates, median of each figure.
rates = []
for w, rate in dict.fromkeys((r["workload"], r["rate"]) for r in rated):
    b = [r["bench"] for r in rated
         if r["workload"] == w and r["rate"] == rate]
    rates.append({"workload": w, "rate": rate, "runs": len(b),
                  "ops_per_sec": med(x["ops_per_sec"] for x in b),
                  "latency_ms": {k: med(x["latency_ms"][k] for x in b)
                                 for k in ("p50", "p90", "p99", "p999",
                                           "max")},
                  "p99_ms_each": [x["latency_ms"]["p99"] for x in b],
                  "errors": med(x["errors"] for x in b)})

# First writes: each keyspace's prefill (one run, not in the medians).
prefills = []
for path in sorted(glob.glob(f"{out}/prefill-*.json")):
    j = json.load(open(path))
    p = j.get("prefill") or {}
    if p.get("seconds"):
        prefills.append({"keyspace": os.path.basename(path)[8:-5] + ":",
                         "value_size": j["value_size"], "keys": p["keys"],
                         "seconds": p["seconds"], "errors": p["errors"],
                         "writes_per_sec": p["keys"] / p["seconds"]})
rss = {"after_matrix": read_rss(f"{out}/rss_after_matrix.txt"),
       "after_writes": read_rss(f"{out}/rss_after_writes.txt")}
commands = [l.rstrip("\n") for l in open(f"{out}/commands.txt")]
json.dump({"machine": machine, "cells": cells, "ratios": ratios,
           "rates": rates, "prefills": prefills, "rss": rss,
           "commands": commands}, open(f"{out}/results.json", "w"), indent=1)

# Plot data: one row per concurrency, ops/s and p99 per workload.
with open(f"{out}/plot.dat", "w") as f:
    f.write("# c " + " ".join(f"{w}_ops {w}_p99" for w in order) + "\n")
    for c in concs:
        row = [str(c)]
        for w in order:
            x = cell(w, c)
            row += ([f"{x['ops_per_sec']:.1f}", f"{x['latency_ms']['p99']:.3f}"]
                    if x else ["NaN", "NaN"])
        f.write(" ".join(row) + "\n")
with open(f"{out}/plot.cols", "w") as f:
    f.write("".join(names[w] + "\n" for w in order))

m = machine
md = []
md.append("# rzkv benchmark results\n")
md.append(f"- machine: {m['nproc']} CPUs, {m['cpu']}, {m['kernel']}, "
          f"{int(m['memory_kb']) // 1024} MiB; load average "
          f"{m['loadavg_start']} at the start, {m.get('loadavg_end', '?')} "
          "at the end (the machine is shared); a 4 KiB append and "
          f"fdatasync in the data directory took {m.get('fdatasync_4k_ms', '?')} "
          "ms (median of 200, before the cluster started); the storage "
          f"engine alone took {m.get('engine_write_us', '?')} us of CPU a "
          "durable 1 KiB write (bench/engine_bench, 15 a commit)")
md.append(f"- cluster: 3 local nodes, replica_count {m['replica_count']}, "
          f"{m['storage_workers']} storage and {m['coordinator_workers']} "
          f"coordinator workers a node, **durability {m['durability']}**, "
          "consistency QUORUM")
md.append(f"- each cell: {m['duration_s']} s measured after {m['warmup_s']} s "
          f"warmup, {m['repeats']} runs, median of each figure; "
          f"keyspace {m['keys']} keys a workload, uniform, every key "
          "written before the workload's first cell; "
          f"{m['date']}, source tree "
          f"{m['commit']}, rzkvd built {m.get('built_rzkvd', '?')}\n")
md.append("| workload | c | ops/s | (min-max) | p50 ms | p90 ms | p99 ms "
          "| p99.9 ms | max ms | errors | bench CPU | cluster CPU (sup/coord/storage) |")
md.append("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
for x in cells:
    l, cc = x["latency_ms"], x["cluster_cpu_cores"]
    cpu = "/".join(f"{cc.get(k, 0):.2f}" for k in
                   ("supervisor", "coordinator", "storage"))
    md.append(f"| {names[x['workload']]} | {x['concurrency']} "
              f"| {x['ops_per_sec']:,.0f} | {x['ops_per_sec_min']:,.0f}-"
              f"{x['ops_per_sec_max']:,.0f} | {l['p50']:.2f} | {l['p90']:.2f} "
              f"| {l['p99']:.2f} | {l['p999']:.2f} | {l['max']:.1f} "
              f"| {x['errors']:g} | {x['bench_cpu_cores']:.2f} | {cpu} |")
md.append("\nCPU columns are cores (CPU seconds per second of the run, warmup "
          "included): the bench process itself, and every cluster process "
          "summed by role over the three nodes.\n")
if rates:
    md.append("Open loop at fixed rates (`--rps`, at most 64 in flight; "
              "latency counted from each request's due time, so queueing "
              "shows):\n")
    md.append("| workload | rate /s | ops/s | p50 ms | p90 ms | p99 ms "
              "| p99.9 ms | max ms | p99 ms of each run | errors |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for x in rates:
        l = x["latency_ms"]
        md.append(f"| {names[x['workload']]} | {x['rate']:,} "
                  f"| {x['ops_per_sec']:,.0f} | {l['p50']:.2f} "
                  f"| {l['p90']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} "
                  f"| {l['max']:.1f} | "
                  + ", ".join(f"{v:.1f}" for v in x["p99_ms_each"])
                  + f" | {x['errors']:g} |")
    md.append("")
if prefills:
    md.append("First writes: before its first cell each workload's "
              "keyspace is written once, every key in key order, 64 at a "
              "time (one run each; the cells above then overwrite these "
              "values):\n")
    md.append("| keyspace | value | keys | seconds | writes/s | errors |")
    md.append("|---|---:|---:|---:|---:|---:|")
    for x in prefills:
        md.append(f"| `{x['keyspace']}` | {x['value_size']:,} B "
                  f"| {x['keys']:,} | {x['seconds']:.1f} "
                  f"| {x['writes_per_sec']:,.0f} | {x['errors']:g} |")
    md.append("")
md.append("Where the time goes, per client request (medians; counters from "
          "/proc, from each worker's NodeInfo and, for the mean time a "
          "storage commit took with its fsync, from /metrics):\n")
md.append("| workload | c | cluster CPU us/req (sup/coord/storage) | kernel "
          "share | ctx switches/req | batch msgs/req | replica ops/msg "
          "| ops/commit | commit ms | fsyncs/req | other load "
          "| machine busy |")
md.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def f(v, fmt):
    return "-" if v is None else format(v, fmt)
for x in cells:
    p = x["profile"]
    if p is None:
        continue
    us = "/".join(f"{p['cpu_us'].get(k, 0):.0f}" for k in
                  ("supervisor", "coordinator", "storage"))
    md.append(f"| {names[x['workload']]} | {x['concurrency']} | {us} "
              f"| {p['sys_share']:.0%} | {p['ctxsw']:.1f} "
              f"| {f(p.get('batches'), '.2f')} "
              f"| {f(p.get('ops_per_batch'), '.1f')} "
              f"| {f(p.get('ops_per_commit'), '.1f')} "
              f"| {f(p.get('commit_ms'), '.2f')} "
              f"| {f(p.get('fsyncs'), '.2f')} | {p['other_cores']:.2f} "
              f"| {p['machine_cores']:.2f} |")
md.append(f"\nOther load and machine busy are cores out of {m['nproc']}: the "
          "CPU used by processes outside the cluster and the bench, and by "
          "everything.\n")
if ratios:
    md.append("Throughput as a fraction of `--op health` at the same "
              "concurrency (same run):\n")
    md.append("| c | set 1 KiB / health | get 1 KiB / health |")
    md.append("|---:|---:|---:|")
    for c in concs:
        r = {x["workload"]: x["ratio"] for x in ratios if x["concurrency"] == c}
        if r:
            md.append(f"| {c} | " + " | ".join(
                f"{r[w]:.0%}" if w in r else "-" for w in ("set1k", "get1k"))
                + " |")
    md.append("")
for label, key in (("after the matrix", "after_matrix"),
                   (f"after {int(m.get('writes', 0)):,} more writes of new "
                    "1 KiB keys", "after_writes")):
    if rss[key]:
        md.append(f"RSS per node {label} (rzkvd and its workers, VmRSS = "
                  "anonymous + file-backed, the latter mostly SQLite's "
                  "memory-mapped database): " +
                  ", ".join(f"node {n} {v['total_kb'] / 1024:.0f} MiB "
                            f"({v['anon_kb'] / 1024:.0f} + "
                            f"{v['file_kb'] / 1024:.0f})"
                            for n, v in sorted(rss[key].items())) + "\n")
md.append("Commands (`$DIR` is the fresh cluster directory):\n")
md.append("```")
seen = set()
for c in commands:
    if c not in seen:
        seen.add(c)
        md.append(c)
md.append("```")
open(f"{out}/results.md", "w").write("\n".join(md) + "\n")
EOF

if command -v gnuplot >/dev/null; then
    gnuplot -e "datafile='$OUT/plot.dat'; colsfile='$OUT/plot.cols'; \
        outfile='$OUT/results.png'" "$SRC/bench/plot.gp" ||
        log "gnuplot failed; no plot"
else
    log "gnuplot not found (Debian: gnuplot-nox); no plot"
fi
log "done: $OUT/results.md"
