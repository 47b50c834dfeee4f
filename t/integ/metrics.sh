#!/usr/bin/env bash
# metrics.sh - /metrics, /health and rzkvctl status on a local 3-node
# cluster: the text format parses (t/lib/promparse.py, which is first shown
# to refuse broken input), counters move by what was asked, survive a
# storage worker's restart, /health turns 503 with the reason when a
# majority of nodes is unreachable or a worker failed and 200 again when
# they are back, and a taken metrics port stops the node from starting.
# Ports 18600-18602 (metrics 19600-19602).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

command -v python3 >/dev/null || skip_all "python3 is needed"
[ -x "$RZKVD" ] || skip_all "rzkvd is not built"

D="$T/c"
PROM="$RZKV_SRCDIR/t/lib/promparse.py"
tap_cleanup_hook=stop_local_cluster

# http URL FILE [METHOD]: the status code on stdout, the body in FILE.
http() {
    if command -v curl >/dev/null; then
        curl -s -o "$2" -w '%{http_code}' --max-time 5 -X "${3:-GET}" "$1"
    else
        python3 - "$1" "$2" "${3:-GET}" <<'EOF'
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], method=sys.argv[3])
try:
    r = urllib.request.urlopen(req, timeout=5)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except Exception:
    code, body = 0, b''
open(sys.argv[2], 'wb').write(body)
print(code)
EOF
    fi
}
# scrape N: node N's /metrics into $T/mN.txt; m N SERIES: one value of it;
# msum N NAME [LABEL=VALUE...]: the sum over matching series.
scrape() { http "http://127.0.0.1:1960$(($1 - 1))/metrics" "$T/m$1.txt"; }
m() { scrape "$1" >/dev/null; python3 "$PROM" get "$T/m$1.txt" "$2"; }
msum() {
    local n=$1; shift
    scrape "$n" >/dev/null
    python3 "$PROM" sum "$T/m$n.txt" "$@"
}
health() { http "http://127.0.0.1:1960$(($1 - 1))/health" "$T/h$1.txt"; }
# until_is SECONDS WANT COMMAND...: until COMMAND prints WANT.
until_is() {
    local s=$1 want=$2; shift 2
    wait_until "$s" bash -c '[ "$("${@:2}")" = "$1" ]' _ "$want" "$@"
}
export -f http scrape m msum health
export T PROM

plan 58

# ---- the parser refuses what Prometheus would --------------------------------
bad() {
    printf "$2" >"$T/bad.txt"
    like "parser refuses $1" "$(python3 "$PROM" check "$T/bad.txt")" \
        "^invalid: "
}
H='# TYPE h histogram\n'
bad "a bucket count that decreases" \
    "${H}h_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"
bad "buckets not ending at +Inf" \
    "${H}h_bucket{le=\"1\"} 3\nh_sum 1\nh_count 3\n"
bad "_count unlike the +Inf bucket" \
    "${H}h_bucket{le=\"+Inf\"} 3\nh_sum 1\nh_count 4\n"
bad "a TYPE after its samples" "x 1\n# TYPE x gauge\n"
bad "a family split in two" "a 1\nb 1\na{l=\"2\"} 1\n"
bad "a counter not named _total" "# TYPE c counter\nc 1\n"
bad "a series twice" "a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n"
bad "a bad escape" "a{x=\"\\\\q\"} 1\n"
bad "a bad value" "a 1,5\n"
printf "${H}h_bucket{a=\"\\\\\"\",le=\"1\"} 1\nh_bucket{a=\"\\\\\"\",le=\"+Inf\"} 2\nh_sum{a=\"\\\\\"\"} 0.5\nh_count{a=\"\\\\\"\"} 2\n# TYPE c_total counter\nc_total 1e3\n" >"$T/good.txt"
is "parser takes a valid text" "$(python3 "$PROM" check "$T/good.txt")" \
    "ok: 5 samples"

# ---- /metrics --------------------------------------------------------------
# Two storage workers a node, as the counters below expect (with one,
# peers' batches skip the coordinator and its node API counters).
"$RZKVCTL" start --local 3 --dir "$D" --base-port 18600 >/dev/null 2>&1 &&
    "$RZKVCTL" stop --local --dir "$D" >/dev/null 2>&1
sed -i 's/storage_workers: 1/storage_workers: 2/' "$D"/node-*.yml
rm -rf "$D"/data/node-*
out=$("$RZKVCTL" start --local --dir "$D" 2>&1)
is "a local cluster starts" "$?" 0
[ "$(printf '%s\n' "$out" | grep -c serving)" = 3 ] || diag "start: $out"

for n in 1 2 3; do
    code=$(scrape $n)
    is "node $n: GET /metrics answers 200 and parses" \
        "$code $(python3 "$PROM" check "$T/m$n.txt" | cut -d: -f1)" "200 ok"
done
[ -s "$T/m1.txt" ] && diag "$(grep -c . "$T/m1.txt") lines from node 1"
if command -v curl >/dev/null; then
    like "  in the text format 0.0.4" \
        "$(curl -sI --max-time 5 http://127.0.0.1:19600/metrics)" \
        "Content-Type: text/plain; version=0.0.4"
else
    tap_result 0 "  in the text format 0.0.4 # SKIP curl is not installed"
fi
is "  with HELP and TYPE for every family" \
    "$(grep -c '^# HELP' "$T/m1.txt") $(grep -c '^# TYPE' "$T/m1.txt")" \
    "$(grep -c '^# TYPE' "$T/m1.txt") $(sed -n 's/^\([a-z_]*\)[{ ].*/\1/p' \
    "$T/m1.txt" | sed -E 's/_(bucket|sum|count)$//' | sort -u | wc -l)"

is "/health answers 200 serving" "$(health 1) $(cat "$T/h1.txt")" \
    "200 serving"
is "another path answers 404" \
    "$(http http://127.0.0.1:19600/nothing "$T/x")" 404
like "POST is refused" "$(http http://127.0.0.1:19600/metrics "$T/x" POST)" \
    '^(405|501)$'

# ---- counters move by what was asked -----------------------------------------
SET='rzkv_requests_total{api="cluster",op="set",result="OK"}'
SETDUR='rzkv_coordinator_request_duration_seconds_count{api="cluster",op="set"}'
GETOK='rzkv_requests_total{api="cluster",op="get",result="OK"}'
GETNF='rzkv_requests_total{api="cluster",op="get",result="NOT_FOUND"}'
BATCH='rzkv_requests_total{api="node",op="batch",result="OK"}'
TOPEER='rzkv_batch_messages_total{dest_kind="peer"}'
# g N SERIES...: values from the last scrape of node N, on one line;
# s N NAME [LABEL=VALUE...]: a sum from it.
g() { local n=$1; shift; python3 "$PROM" get "$T/m$n.txt" "$@" | xargs; }
s() { local n=$1; shift; python3 "$PROM" sum "$T/m$n.txt" "$@"; }
scrape 1 >/dev/null; scrape 2 >/dev/null
read -r set0 dur0 get0 nf0 <<<"$(g 1 "$SET" "$SETDUR" "$GETOK" "$GETNF")"
batch0=$(g 2 "$BATCH"); fsync0=$(s 1 rzkv_storage_fsyncs_total)
for i in 1 2 3 4 5 6 7; do
    "$RZKVCTL" -a 127.0.0.1:18600 set "mk$i" "value $i" >/dev/null ||
        diag "set mk$i failed"
done
for i in 1 2 3 nothing; do
    "$RZKVCTL" -a 127.0.0.1:18600 get "mk$i" >/dev/null 2>&1
done
# Node 1's own replica may ack after the client's answer (W=2 of 3).
ok "the shards of node 1 hold the 7 keys" \
    until_is 5 7 msum 1 rzkv_storage_entries
scrape 1 >/dev/null; scrape 2 >/dev/null
read -r set1 dur1 get1 nf1 <<<"$(g 1 "$SET" "$SETDUR" "$GETOK" "$GETNF")"
is "7 sets count 7 in rzkv_requests_total{op=set,result=OK}" \
    "$((set1 - set0))" 7
is "  and 7 in the latency histogram" "$((dur1 - dur0))" 7
is "3 gets OK and 1 NOT_FOUND counted" "$((get1 - get0)) $((nf1 - nf0))" \
    "3 1"
batch1=$(g 2 "$BATCH")
ok "a peer counts the node batches it served ($batch0 -> $batch1)" \
    test "$batch1" -ge $((batch0 + 7))
fsync1=$(s 1 rzkv_storage_fsyncs_total)
ok "fsyncs increase ($fsync0 -> $fsync1)" test "$fsync1" -gt "$fsync0"
ok "replica op latency counted for the sets" \
    test "$(s 1 rzkv_storage_op_duration_seconds_count op=set)" -ge 7
ok "group commit sizes counted" \
    test "$(s 1 rzkv_storage_group_commit_ops_count)" -ge 1
is "every commit's duration counted, once" \
    "$(s 1 rzkv_storage_commit_duration_seconds_count)" \
    "$(s 1 rzkv_storage_commits_total)"
ok "  and it took time" \
    python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > 0)' \
    "$(s 1 rzkv_storage_commit_duration_seconds_sum)"
ok "batches sent to peers counted" test "$(g 1 "$TOPEER")" -ge 14
ok "storage bytes on disk reported" test "$(s 1 rzkv_storage_bytes)" -gt 0
is "WAL restarts reported for each shard (none yet: 7 writes)" \
    "$(g 1 'rzkv_storage_wal_restarts_total{shard="0"}')" 0
is "clock epoch of shard 0 is at least 1, peers connected, workers up" \
    "$(g 1 'rzkv_clock_epoch{shard="0"}' 'rzkv_peer_connected{peer="2"}' \
    'rzkv_peer_connected{peer="3"}' | sed 's/^[1-9][0-9]* /E /') \
$(s 1 rzkv_worker_up)" "E 1 1 3"
t0=$(date +%s.%N); scrape 1 >/dev/null; t1=$(date +%s.%N)
ok "rzkv_node_time_seconds is the node's clock as it served the scrape" \
    python3 -c 'import sys; t0, v, t1 = map(float, sys.argv[1:])
sys.exit(not t0 - 0.5 <= v <= t1 + 0.5)' "$t0" "$(g 1 rzkv_node_time_seconds)" "$t1"
ok "every scrape still parses" python3 "$PROM" check "$T/m1.txt"
missing=$(python3 - "$RZKV_SRCDIR/etc/rzkv-alerts.yml" \
    "$RZKV_SRCDIR/etc/grafana-dashboard.json" "$T/m1.txt" <<'EOF'
import re, sys
used = set()
for f in sys.argv[1:-1]:
    used |= set(re.findall(r'\b(rzkv_[a-z_]+)', open(f).read()))
served = set()
for line in open(sys.argv[-1]):
    m = re.match(r'# TYPE (\S+) (\S+)', line)
    if m:
        served.add(m.group(1))
        if m.group(2) == 'histogram':
            served.update(m.group(1) + x for x in ('_bucket', '_sum', '_count'))
print(' '.join(sorted(used - served)) or 'none')
EOF
)
is "the alerting rules and the Grafana dashboard name only served series" \
    "$missing" none

# ---- rzkvctl status ------------------------------------------------------------
out=$("$RZKVCTL" status --local --dir "$D")
is "status: a header and one line per node" \
    "$(printf '%s\n' "$out" | awk 'NR == 1 {print $1, $2, $3, $4, $5} NR > 1 {print $1, $2}' | tr '\n' ' ')" \
    "ID STATE ADDRESS LOAD KEYS 1 serving 2 serving 3 serving "
like "  with load and keys" "$(printf '%s\n' "$out" | sed -n 2p)" \
    '^1 +serving +127\.0\.0\.1:18600 +[0-9.]+ (B|KiB|MiB) +7 +[0-9]+s +[0-9]+$'
like "status -v shows the workers" \
    "$("$RZKVCTL" status -v --local --dir "$D")" \
    'storage\[1\] +ready +pid [0-9]+ +up [0-9]+s +restarts 0 +keys [0-9]+'
is "status --json has load and keys" "$("$RZKVCTL" status --json --local \
    --dir "$D" | python3 -c 'import json,sys
n = json.load(sys.stdin)["nodes"][0]
print(n["load_bytes"] > 0, n["keys"], n["health"],
      sum(w.get("keys", 0) for w in n["workers"]))')" "True 7 serving 7"

# ---- a storage worker restarts: counters keep counting -----------------------
spid=$("$RZKVCTL" status --json "$D/node-1.yml" | python3 -c 'import json,sys
print([w["pid"] for w in json.load(sys.stdin)["nodes"][0]["workers"]
       if w["role"] == "storage" and w["instance"] == 0][0])')
scrape 1 >/dev/null
read -r c0 e0 < <(python3 "$PROM" get "$T/m1.txt" \
    'rzkv_storage_commits_total{shard="0"}' 'rzkv_clock_epoch{shard="0"}' |
    tr '\n' ' ')
kill -9 "$spid"
ok "storage[0] killed: its restart is counted" until_is 20 "1 1" bash -c \
    "echo \$(m 1 'rzkv_worker_restarts_total{role=\"storage\",instance=\"0\"}') \$(m 1 'rzkv_worker_up{role=\"storage\",instance=\"0\"}')"
for i in $(seq 1 20); do     # some land on shard 0 (1 in 2^20 none)
    "$RZKVCTL" -a 127.0.0.1:18600 set "after$i" x >/dev/null 2>&1
done
scrape 1 >/dev/null
read -r c1 e1 < <(python3 "$PROM" get "$T/m1.txt" \
    'rzkv_storage_commits_total{shard="0"}' 'rzkv_clock_epoch{shard="0"}' |
    tr '\n' ' ')
ok "  its commit counter kept counting ($c0 -> $c1)" test "$c1" -gt "$c0"
is "  and its clock epoch moved on" "$e1" "$((e0 + 1))"

# ---- /health follows the peers ----------------------------------------------------
ok "stop node 3" "$RZKVCTL" stop "$D/node-3.yml"
ok "  node 1 sees it gone" until_is 5 0 m 1 'rzkv_peer_connected{peer="3"}'
is "  and still serves: 2 of 3 nodes are a majority" \
    "$(health 1) $(cat "$T/h1.txt")" "200 serving"
ok "stop node 2" "$RZKVCTL" stop "$D/node-2.yml"
ok "  /health turns 503" until_is 5 503 health 1
is "  saying why" "$(cat "$T/h1.txt")" "2 of 3 nodes unreachable: 2, 3"
is "  rzkv_node_serving is 0" "$(m 1 rzkv_node_serving)" 0
like "  status says why" "$("$RZKVCTL" status "$D/node-1.yml")" \
    "not serving: 2 of 3 nodes unreachable: 2, 3"
ok "start them again" "$RZKVCTL" start --local --dir "$D"
ok "  /health is 200 again" until_is 10 200 health 1

# ---- a failed worker, a taken port -------------------------------------------------
ok "stop node 3 again" "$RZKVCTL" stop "$D/node-3.yml"
RZKV_TEST_CRASH_AT_START=storage/1:78 "$RZKVCTL" start "$D/node-3.yml" \
    "$D/cluster.yml" >/dev/null 2>&1
ok "a node whose storage[1] failed answers 503" until_is 5 503 health 3
like "  saying which worker and why" "$(cat "$T/h3.txt")" \
    "^storage worker 1 failed: exited with status 78"
"$RZKVCTL" stop "$D/node-3.yml" >/dev/null 2>&1
python3 -c 'import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 19602)); s.listen(1); time.sleep(30)' &
holder=$!
tap_pids="$tap_pids $holder"
wait_until 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/19602'
out=$("$RZKVCTL" start "$D/node-3.yml" "$D/cluster.yml" 2>&1)
rc=$?
kill "$holder" 2>/dev/null
is "a taken metrics port stops the node from starting" "$rc" 5
like "  saying why" "$out" \
    "^rzkvd: cannot listen on metrics address 127\.0\.0\.1:19602: Address"

done_testing
