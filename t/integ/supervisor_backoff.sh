#!/usr/bin/env bash
# supervisor_backoff.sh - a worker that crashes at start is restarted with a
# growing delay, never more than once a second, while rzkvd keeps answering;
# a worker that exits 78 is marked failed and not restarted, and rzkvctl
# start says so.  Crashes come from RZKV_TEST_CRASH_AT_START (worker.h).
# Ports 18141-18142.
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

# mknode NAME PORT: NAME.yml and NAME-cluster.yml under $T
mknode() {
    cat >"$T/$1.yml" <<EOF
node:
  id: "1"
  local_address: 127.0.0.1:$2
  data_dir: $1/data
  run_dir: $1/run
  storage_workers: 2
  coordinator_workers: 1
  log:
    file: $1.log
EOF
    cat >"$T/$1-cluster.yml" <<EOF
cluster:
  replica_count: 1
  nodes:
    "1":
      remote_address: 127.0.0.1:$2
EOF
}
# jget NAME EXPR: EXPR on d (status of node NAME) and w[(role, instance)]
jget() {
    "$RZKVCTL" status --json "$T/$1.yml" | python3 -c "import json,sys
d = json.load(sys.stdin)['nodes'][0]
w = {(x['role'], x['instance']): x for x in d['workers']}
print($2)"
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ---- a coordinator that crashes at every start ----------------------------
mknode crash 18141
RZKV_TEST_CRASH_AT_START=coordinator bg "$RZKVD" -f "$T/crash.yml" \
    "$T/crash-cluster.yml" 2>>"$T/crash-stderr.log"
SUP=$!
t0=$(now_ms)
restarts() { jget crash "w[('coordinator', 0)]['restarts']"; }
four_restarts() { [ "$(restarts)" -ge 4 ]; }
ok "the crashing coordinator is restarted again and again" \
    wait_until 20 four_restarts
elapsed=$(( $(now_ms) - t0 ))
ok "  no more than once a second (4 restarts took ${elapsed} ms)" \
    test "$elapsed" -ge 3000
backoff=$(jget crash "w[('coordinator', 0)]['backoff_ms']")
ok "  the backoff doubled at each death (now ${backoff} ms)" \
    test "$backoff" -ge 800
grown() { [ "$(jget crash "w[('coordinator', 0)]['backoff_ms']")" -gt "$backoff" ]; }
ok "  and keeps growing past ${backoff} ms" wait_until 10 grown
is "  the last exit is reported" \
    "$(jget crash "w[('coordinator', 0)]['last_exit']")" "exit 1"
is "  the node does not claim to serve" "$(jget crash "d['state']")" starting
t1=$(now_ms)
"$RZKVCTL" status "$T/crash.yml" >/dev/null
t2=$(now_ms)
ok "  rzkvd stays responsive (status in $((t2 - t1)) ms)" \
    test $((t2 - t1)) -lt 1000
is "  the storage workers were not disturbed" \
    "$(jget crash "w[('storage', 0)]['restarts']"),$(jget crash "w[('storage', 1)]['state']")" \
    "0,ready"
like "  each death is logged with its exit status" "$(cat "$T/crash-stderr.log")" \
    "coordinator\\[0\\] pid [0-9]+ exited with status 1"
kill -TERM "$SUP"
wait "$SUP"; rc=$?
is "SIGTERM during a backoff: rzkvd exits 0" "$rc" 0

# ---- exit 78 is not restarted --------------------------------------------------
mknode config 18142
out=$(RZKV_TEST_CRASH_AT_START=storage/1:78 "$RZKVCTL" start \
      "$T/config.yml" "$T/config-cluster.yml" 2>&1); rc=$?
stop_config() { "$RZKVCTL" stop "$T/config.yml" >/dev/null 2>&1; }
tap_cleanup_hook=stop_config
ok "rzkvctl start of a node whose storage worker exits 78 fails" \
    test "$rc" -ne 0
like "  and says which worker failed and why" "$out" \
    "storage\\[1\\] failed: exited with status 78"
like "  and shows the end of the node's log" "$out" "last lines of .*config.log"
is "  the slot is failed" "$(jget config "w[('storage', 1)]['state']")" failed
sleep 1.5
is "  and not restarted" "$(jget config "w[('storage', 1)]['restarts']")" 0
is "  the node is degraded" "$(jget config "d['state']")" degraded
is "  coordinators wait for storage" \
    "$(jget config "w[('coordinator', 0)]['state']")" stopped
like "  the log says why" "$(cat "$T/config.log")" \
    "storage\\[1\\] exited with status 78 .*not restarting"
ok "rzkvctl stop stops the degraded node" "$RZKVCTL" stop "$T/config.yml"

done_testing
