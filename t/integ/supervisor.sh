#!/usr/bin/env bash
# supervisor.sh - rzkvd's lifecycle on real processes: configuration check,
# data directory lock, worker restarts after kill -9, reload (refused and
# accepted), orderly stop on SIGTERM, and no worker outliving a killed
# supervisor.  Ports 18131-18132.
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

PORT=18131
N="$T/node.yml"
C="$T/cluster.yml"
LOG="$T/rzkvd.log"

cat >"$N" <<EOF
node:
  id: "1"
  local_address: 127.0.0.1:$PORT
  data_dir: data
  run_dir: run
  storage_workers: 2
  coordinator_workers: 1
  log:
    level: debug
EOF
cat >"$C" <<EOF
cluster:
  replica_count: 1
  nodes:
    "1":
      remote_address: 127.0.0.1:$PORT
EOF
RUN="$T/run"

status_json() { "$RZKVCTL" status --json "$N"; }
# jget EXPR: evaluate EXPR on d, the node's status object
jget() {
    status_json | python3 -c "import json,sys
d = json.load(sys.stdin)['nodes'][0]
w = {(x['role'], x['instance']): x for x in d['workers']}
print($1)"
}
serving() { [ "$(jget "d['state']")" = serving ]; }
wpid() { jget "w[('$1', $2)]['pid']"; }
gone() {   # every pid given has exited (a zombie counts as gone)
    for p in "$@"; do
        if kill -0 "$p" 2>/dev/null &&
           ! grep -q '^[0-9]* (.*) Z' "/proc/$p/stat" 2>/dev/null; then
            return 1
        fi
    done
    return 0
}

# ---- rzkvd -t --------------------------------------------------------------
out=$("$RZKVD" -t "$N" "$C" 2>&1)
is "rzkvd -t accepts a valid configuration" "$out" "configuration OK"

sed 's/replica_count: 1/replica_count: 5/' "$C" >"$T/bad-cluster.yml"
out=$("$RZKVD" -t "$N" "$T/bad-cluster.yml" 2>&1); rc=$?
is "rzkvd -t exits 78 on a bad cluster file" "$rc" 78
like "  and names file:line:column" "$out" "bad-cluster.yml:[0-9]+:[0-9]+: cluster.replica_count"

{ cat "$N"; echo "  bogus_key: 1"; } >"$T/bad-node.yml"
out=$("$RZKVD" -t "$T/bad-node.yml" "$C" 2>&1); rc=$?
is "rzkvd -t exits 78 on a bad node file" "$rc" 78
like "  and names file:line:column" "$out" "bad-node.yml:[0-9]+:[0-9]+:"
ok "rzkvd -t created nothing" test ! -e "$T/data"

# ---- start in the foreground -------------------------------------------------
bg "$RZKVD" -f "$N" "$C" 2>>"$LOG"
SUP=$!
ok "the node serves" wait_until 15 serving
is "the pidfile names the supervisor" "$(cat "$RUN/rzkvd.pid" 2>/dev/null)" "$SUP"
is "the run directory is private" "$(stat -c %a "$RUN")" 700
is "the control socket is private" "$(stat -c %a "$RUN/control.sock")" 600
ok "the workers get the validated copy of the cluster file" \
    cmp "$C" "$RUN/cluster.active.yml"
ok "the front door listens" wait_until 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"

# ---- restarts after kill -9 --------------------------------------------------
for slot in "storage 0" "coordinator 0"; do
    set -- $slot
    old=$(wpid "$1" "$2")
    kill -9 "$old"
    restarted() { serving && [ "$(wpid "$1" "$2")" != "$old" ]; }
    ok "kill -9 $1[$2]: restarted and the node serves again" \
        wait_until 15 restarted "$1" "$2"
    is "  restart count 1" "$(jget "w[('$1', $2)]['restarts']")" 1
    is "  last exit reported" "$(jget "w[('$1', $2)]['last_exit']")" "signal 9"
done
like "the death is logged with role, instance and signal" \
    "$(cat "$LOG")" "storage\\[0\\] pid [0-9]+ killed by signal 9"

# ---- the data directory lock ---------------------------------------------------
sed -e "s/$PORT/18132/" -e 's/run_dir: run/run_dir: run2/' "$N" >"$T/node2.yml"
out=$("$RZKVD" -f "$T/node2.yml" "$C" 2>&1); rc=$?
is "a second rzkvd on the same data directory exits 1" "$rc" 1
like "  and names the holder" "$out" "data directory .*/data is in use by pid $SUP"
ok "  the first node still serves" serving

# ---- the front door's port taken ------------------------------------------------
sed -e "s/$PORT/18132/" -e 's/: data$/: data3/' -e 's/: run$/: run3/' "$N" \
    >"$T/node3.yml"
python3 -c "import socket,time
s = socket.socket(); s.bind(('127.0.0.1', 18132)); s.listen(1); time.sleep(30)" &
HOLDER=$!
tap_pids="$tap_pids $HOLDER"
wait_until 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/18132"
out=$("$RZKVCTL" start "$T/node3.yml" "$C" 2>&1); rc=$?
ok "a node whose port is taken does not start" test "$rc" -ne 0
like "  and says why" "$out" "cannot listen on 127.0.0.1:18132: Address already in use"
ok "  leaving no process behind" test ! -e "$T/run3/rzkvd.pid"
kill "$HOLDER"

# ---- reload ----------------------------------------------------------------------
cp "$C" "$T/cluster.good"
printf 'cluster:\n  replica_count: [\n' >"$C"
out=$("$RZKVCTL" reload "$N" "$C" 2>&1); rc=$?
ok "rzkvctl reload of a broken file fails" test "$rc" -ne 0
like "  with the file:line:column error" "$out" "cluster.yml:[0-9]+:[0-9]+:.*keeping the current"
ok "  the node keeps serving" serving
ok "  the active copy is the old file" cmp "$T/cluster.good" "$RUN/cluster.active.yml"
kill -HUP "$SUP"
refused_twice() { [ "$(grep -c 'keeping the current' "$LOG")" -ge 2 ]; }
ok "SIGHUP with a broken file is logged and refused" wait_until 5 refused_twice
ok "  the node keeps serving" serving
{ cat "$T/cluster.good"; echo "  timeout_ms: 3000"; } >"$C"
out=$("$RZKVCTL" reload "$N" "$C" 2>&1); rc=$?
is "rzkvctl reload of a valid file succeeds" "$rc" 0
ok "  the active copy is the new file" cmp "$C" "$RUN/cluster.active.yml"
sed -i 's/storage_workers: 2/storage_workers: 3/' "$N"
out=$("$RZKVCTL" reload "$N" "$C" 2>&1)
like "  a node.yml change is reported as needing a restart" "$out" \
    "node.storage_workers.*restart"
sed -i 's/storage_workers: 3/storage_workers: 2/' "$N"

# ---- SIGTERM ---------------------------------------------------------------------
pids="$SUP $(jget "' '.join(str(x['pid']) for x in d['workers'])")"
kill -TERM "$SUP"
wait "$SUP"; rc=$?
is "SIGTERM: rzkvd exits 0" "$rc" 0
ok "  no worker is left" wait_until 2 gone $pids
left=$(ls -A "$RUN")
is "  the run directory is empty (sockets, pidfile, active copy gone)" "$left" ""
like "  the stop was in order" "$(tr '\n' ' ' <"$LOG")" \
    "stopping 1 coordinator.*stopping 2 storage.*node 1 stopped"

# ---- kill -9 of the supervisor -----------------------------------------------------
"$RZKVD" "$N" "$C" 2>>"$LOG"
is "rzkvd detaches and exits 0 once it is up" "$?" 0
DAEMON=$(cat "$RUN/rzkvd.pid")
kill_daemon() { kill -9 "$DAEMON" 2>/dev/null; }
tap_cleanup_hook=kill_daemon
ok "the daemon serves" wait_until 15 serving
workers=$(jget "' '.join(str(x['pid']) for x in d['workers'])")
kill -9 "$DAEMON"
ok "kill -9 rzkvd: no worker survives it for 1 s" wait_until 1 gone $workers
# A worker's main thread shows as a zombie while its other threads may
# still be closing its files: the data directory lock says when all is gone.
unlocked() { flock -n "$T/data/rzkvd.lock" true; }
ok "  and the data directory is free" wait_until 2 unlocked
ok "a new rzkvd starts over the leftovers" "$RZKVD" "$N" "$C"
DAEMON=$(cat "$RUN/rzkvd.pid")
ok "  and serves" wait_until 15 serving
workers=$(jget "' '.join(str(x['pid']) for x in d['workers'])")
ok "rzkvctl stop stops it" "$RZKVCTL" stop "$N"
ok "  every process of the node is gone" gone "$DAEMON" $workers

done_testing
