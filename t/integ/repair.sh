#!/usr/bin/env bash
# repair.sh - anti-entropy on demand, not at its interval (here an hour).
# A reload that moves keys starts a pass at once: a 3-node cluster with
# replica_count 2 holds each key on two nodes; reloaded with
# replica_count 3, every key has a new replica that lacks it, and the
# pass copies it there within seconds.  A reload that places nothing
# differently (a new timeout) starts no pass.  `rzkvctl repair` starts
# one too: node 3, down while keys changed, is current again within
# seconds of it; on a node with anti-entropy off it fails, saying why.
# Ports: 3 in 18900-18929 (metrics 19900-19929).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/local.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

D="$T/repair"
P=$(free_base 18900 18929 3)
A1=127.0.0.1:$P A2=127.0.0.1:$((P + 1)) A3=127.0.0.1:$((P + 2))
NKEYS=60
tap_cleanup_hook=stop_local_cluster

ctl() { "$RZKVCTL" "$@"; }
# held A: how many live keys node A's own storage lists
held() {
    ctl keys -a "$1" --json 2>/dev/null | python3 -c "import json, sys
print(len(json.load(sys.stdin)['keys']))"
}
all_held() {
    local a
    for a in $A1 $A2 $A3; do
        [ "$(held $a)" = $NKEYS ] || return 1
    done
}
passes() { node_metric "$1" rzkv_antientropy_passes_total; }
set_cluster() { sed -i -e "s/^\(  $1:\).*/\1 $2/" "$D/cluster.yml"; }
reloaded() {
    [ "$(grep -c "coordinator.*reloaded" "$D/log/node-$1.log")" -ge "$2" ]
}

out=$(ctl start --local 3 --dir "$D" --base-port $P 2>&1); rc=$?
is "a 3-node cluster starts" "$rc" 0
[ "$rc" = 0 ] || { diag "$out"; done_testing; exit 1; }
ctl stop --local --dir "$D" >/dev/null 2>&1
for i in 1 2 3; do
    sed -i -e 's/^\(  anti_entropy_interval_ms:\).*/\1 3600000/' \
        "$D/node-$i.yml"
done
set_cluster replica_count 2
ok "it restarts with replica_count 2, anti-entropy every hour" \
    ctl start --local --dir "$D"

for i in $(seq 1 $NKEYS); do
    a=$A1; [ $((i % 3)) = 1 ] && a=$A2; [ $((i % 3)) = 2 ] && a=$A3
    ctl set -a $a k$i "v$i" >/dev/null 2>&1
done
h1=$(held $A1) h2=$(held $A2) h3=$(held $A3)
is "$NKEYS keys written, each held by two nodes" "$((h1 + h2 + h3))" \
    $((NKEYS * 2))
ok "  so every node lacks some ($h1, $h2, $h3)" \
    test "$h1" -lt $NKEYS -a "$h2" -lt $NKEYS -a "$h3" -lt $NKEYS

# ---- a reload that places nothing differently -----------------------------------
set_cluster timeout_ms 3000
ok "reload with a new timeout" ctl reload --local --dir "$D"
ok "  which every node's coordinator takes" \
    wait_until 10 eval 'reloaded 1 1 && reloaded 2 1 && reloaded 3 1'
sleep 1
is "  starts no anti-entropy pass" "$(passes 1) $(passes 2)" "0 0"
is "  and logs no change of placement" \
    "$(grep -c "placement changed" "$D"/log/node-*.log | cut -d: -f2 | paste -sd' ')" \
    "0 0 0"

# ---- a reload that gives every key a third replica --------------------------------
set_cluster replica_count 3
ok "reload with replica_count 3" ctl reload --local --dir "$D"
ok "  every node's storage soon holds all $NKEYS keys (no reads)" \
    wait_until 20 all_held ||
    diag "held: $(held $A1) $(held $A2) $(held $A3)"
# (a pass counts itself and its copies when it ends, just after its copies)
ok "  copied by a pass of node 1 and one of node 2" \
    wait_until 10 eval '[ "$(passes 1)" -ge 1 -a "$(passes 2)" -ge 1 ]'
pushed() {
    echo $(( $(node_metric 1 rzkv_antientropy_pushed_total) +
             $(node_metric 2 rzkv_antientropy_pushed_total) ))
}
ok "  which count the copies" \
    wait_until 10 eval '[ "$(pushed)" -ge $((3 * NKEYS - h1 - h2 - h3)) ]'
for i in 1 2; do
    like "  node $i's log says why" "$(cat "$D/log/node-$i.log")" \
        "placement changed: an anti-entropy pass starts now"
done
like "  node 3, last in the file, compares nothing itself" \
    "$(cat "$D/log/node-3.log")" \
    "placement changed: this node compares nothing itself"
is "  and k1 reads back through node 3" "$(ctl get -a $A3 k1)" v1

# ---- rzkvctl repair ----------------------------------------------------------------
ok "stop node 3" ctl stop "$D/node-3.yml"
for i in $(seq 1 20); do
    ctl set -a $A1 k$i "w$i" >/dev/null 2>&1
done
ctl set -a $A2 new-key here >/dev/null 2>&1
ok "start it again, behind by 21 writes" ctl start --local --dir "$D"
ok "  which its storage does not hold" eval '! same_listings $A1 $A3'
before=$(passes 1)
out=$(ctl repair --local --dir "$D" 2>&1); rc=$?
is "rzkvctl repair --local exits 0" "$rc" 0
like "  node 1 starts a pass" "$out" "node 1: anti-entropy pass started"
like "  node 3 says it compares nothing itself" "$out" \
    "node 3: node 3 is last in the cluster file and compares nothing itself"
ok "  node 3's storage soon lists what node 1's does" \
    wait_until 20 same_listings $A1 $A3 ||
    diag "node 1 lists $(wc -l <"$T/la") keys, node 3 $(wc -l <"$T/lb")"
ok "  by a new pass of node 1" \
    wait_until 10 eval '[ "$(passes 1)" -gt "$before" ]'
like "  which node 1's log tells" "$(cat "$D/log/node-1.log")" \
    "rzkvctl repair: an anti-entropy pass starts now"
is "  and node 3 reads k1 as its newest value" \
    "$(ctl get -a $A3 --consistency one k1 2>&1)" w1

ctl stop "$D/node-3.yml" >/dev/null 2>&1
sed -i -e 's/^\(  anti_entropy_interval_ms:\).*/\1 0/' "$D/node-3.yml"
ok "node 3 restarted with anti-entropy off" ctl start --local --dir "$D"
out=$(ctl repair "$D/node-3.yml" "$D/cluster.yml" 2>&1); rc=$?
ok "  rzkvctl repair of it fails" test "$rc" -ne 0
like "  saying why" "$out" "anti-entropy is off on node 3"
out=$(ctl repair --bogus 2>&1); rc=$?
ok "rzkvctl repair with an unknown option fails" test "$rc" -ne 0
like "  with its usage" "$(ctl repair --help 2>&1)" \
    "usage: rzkvctl repair NODE.yml"

done_testing
