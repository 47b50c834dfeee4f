#!/usr/bin/env bash
# supervisor_local.sh - rzkvctl start/status/stop --local: a 3-node cluster
# from the embedded configuration, restarted as it was (edits kept, only
# the nodes that are down started), stopped as a whole.
# Ports 18200-18202 and 18210 (metrics 19200-19202, 19210).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

D="$T/c"
stop_all() {
    "$RZKVCTL" stop --local --dir "$D" >/dev/null 2>&1
    "$RZKVCTL" stop --local --dir "$T/one" >/dev/null 2>&1
}
tap_cleanup_hook=stop_all

# nodes_in STATE: how many nodes of the cluster in $D are in STATE
nodes_in() {
    "$RZKVCTL" status --json --local --dir "$D" | python3 -c "import json,sys
print(sum(n['state'] == '$1' for n in json.load(sys.stdin)['nodes']))"
}
pids_of_cluster() {
    "$RZKVCTL" status --json --local --dir "$D" | python3 -c "import json,sys
for n in json.load(sys.stdin)['nodes']:
    print(n.get('pid', 0), *[w['pid'] for w in n['workers'] if w['pid']])"
}
gone() {
    for p in "$@"; do
        if kill -0 "$p" 2>/dev/null &&
           ! grep -q '^[0-9]* (.*) Z' "/proc/$p/stat" 2>/dev/null; then
            return 1
        fi
    done
    return 0
}

out=$("$RZKVCTL" start --local 3 --dir "$D" --base-port 18200 2>&1); rc=$?
is "start --local 3 returns 0" "$rc" 0
is "  once all three nodes serve" "$(printf '%s\n' "$out" | grep -c serving)" 3
ok "  the generated configuration is there" \
    test -f "$D/cluster.yml" -a -f "$D/node-1.yml" -a -f "$D/node-3.yml"
ok "  and commented for the reader" grep -q '^ *#' "$D/node-2.yml"
ok "  and valid" "$RZKVD" -t "$D/node-3.yml" "$D/cluster.yml"
like "  with replica_count 3" "$(cat "$D/cluster.yml")" "replica_count: 3"
like "  node 3 on base port + 2" "$(cat "$D/node-3.yml")" "local_address: 127.0.0.1:18202"

out=$("$RZKVCTL" status --local --dir "$D"); rc=$?
is "status --local exits 0 when every node serves" "$rc" 0
is "  and shows three serving nodes" \
    "$(printf '%s\n' "$out" | grep -Ec '^[0-9]+ +serving ')" 3
like "  with their workers under -v" \
    "$("$RZKVCTL" status -v --local --dir "$D")" \
    "coordinator\[0\] +ready +pid [0-9]+"
is "status --json agrees" "$(nodes_in serving)" 3

out=$("$RZKVCTL" start --local --dir "$D" 2>&1); rc=$?
is "start --local again on a running cluster is a no-op" "$rc" 0
is "  that says so" "$(printf '%s\n' "$out" | grep -c 'already running')" 3

ok "stop one node" "$RZKVCTL" stop "$D/node-2.yml"
"$RZKVCTL" status --local --dir "$D" >"$T/st" 2>&1; rc=$?
is "status exits 3 when a node is down" "$rc" 3
like "  and shows it down" "$(cat "$T/st")" "^2 +down +127\.0\.0\.1:18201 "

echo "# edited by the test" >>"$D/node-2.yml"
sed -i 's/level: info/level: debug/' "$D/node-2.yml"
out=$("$RZKVCTL" start --local 3 --dir "$D" --base-port 18200 2>&1); rc=$?
is "start --local on an existing directory returns 0" "$rc" 0
is "  starts only the node that was down" \
    "$(printf '%s\n' "$out" | grep -c 'already running'),$(printf '%s\n' "$out" | grep -c 'node 2 serving')" \
    "2,1"
ok "  and keeps the user's edits" grep -q "edited by the test" "$D/node-2.yml"
ok "  which take effect" wait_until 5 grep -q " debug " "$D/log/node-2.log"
is "  all three serve" "$(nodes_in serving)" 3

pids=$(pids_of_cluster)
out=$("$RZKVCTL" stop --local --dir "$D" 2>&1); rc=$?
is "stop --local returns 0" "$rc" 0
is "  after every node stopped" "$(printf '%s\n' "$out" | grep -c stopped)" 3
ok "  no process of the cluster is left" gone $pids
is "  status shows them down" "$(nodes_in down)" 3
ok "  the data stays" test -d "$D/data/node-1"

out=$("$RZKVCTL" start --local 1 --dir "$T/one" --base-port 18210 2>&1); rc=$?
is "start --local 1 works" "$rc" 0
like "  with replica_count 1" "$(cat "$T/one/cluster.yml")" "replica_count: 1"
ok "  and stops" "$RZKVCTL" stop --local --dir "$T/one"

out=$("$RZKVCTL" status --local --dir "$T/nothing" 2>&1); rc=$?
like "status --local on a missing directory explains" "$out" "no local cluster in"
ok "  and fails" test "$rc" -ne 0
out=$("$RZKVCTL" start --help); rc=$?
like "start --help describes --local" "$out" "--local"

done_testing
