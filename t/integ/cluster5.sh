#!/usr/bin/env bash
# cluster5.sh - a 5-node cluster (replica_count 3): set/get/del through
# every node, keys placed on 3 of 5 nodes, two nodes down (keys with two
# dead replicas are UNAVAILABLE, the others still served), and
# concurrent writers on one key from every node converge on all replicas;
# then anti-entropy purges every tombstone, each from the replicas that
# hold it, decided by the key's first replica, once.
# Ports: 5 in 18430-18459 (metrics 19430-19459).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/local.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

D="$T/c"
P=$(free_base 18430 18459 5)
ADDRS=()
for i in 0 1 2 3 4; do ADDRS+=(127.0.0.1:$((P + i))); done
ALL=$(IFS=,; echo "${ADDRS[*]}")
tap_cleanup_hook=stop_local_cluster
ctl() { "$RZKVCTL" "$@"; }
addr() { echo "${ADDRS[$(($1 - 1))]}"; }
stamp_on() {
    ctl keys -a "$1" --json >"$T/keys.json" 2>/dev/null || return 1
    python3 -c "import json
for k in json.load(open('$T/keys.json'))['keys']:
    if k.get('key') == '$2':
        s = k['stamp']; print(s['epoch'], s['counter'], s['writer'], s['nonce'])"
}
kill_node() {
    local pid kids
    pid=$(cat "$D/run/node-$1/rzkvd.pid")
    kids=$(pgrep -P "$pid")
    kill -9 "$pid" $kids 2>/dev/null
    wait_until 5 bash -c "! kill -0 $pid 2>/dev/null"
}

out=$(ctl start --local 5 --dir "$D" --base-port $P 2>&1); rc=$?
is "a 5-node cluster starts" "$rc" 0
[ "$rc" = 0 ] || { diag "$out"; done_testing; exit 1; }

# ---- every node coordinates --------------------------------------------------
good=0
for i in 1 2 3 4 5; do
    j=$(( i % 5 + 1 ))
    ctl set -a "$(addr $i)" "five-$i" "value-$i" >/dev/null 2>&1 &&
        [ "$(ctl get -a "$(addr $j)" "five-$i")" = "value-$i" ] &&
        ctl del -a "$(addr $j)" "five-$i" >/dev/null 2>&1 &&
        ! ctl get -a "$(addr $i)" "five-$i" >/dev/null 2>&1 &&
        good=$((good + 1))
done
is "set, get, del and NOT_FOUND through each of the 5 nodes" "$good" 5

# ---- placement: a key lives on exactly its 3 replicas ------------------------
ctl set -a "$(addr 1)" placed here >/dev/null
reps=$(ctl locate --cluster "$D/cluster.yml" placed | tr '\n' ' ')
held=""
for i in 1 2 3 4 5; do
    [ -n "$(stamp_on "$(addr $i)" placed)" ] && held="$held$i "
done
is "a key is stored on its 3 replicas and nowhere else" \
    "$(echo $held | tr ' ' '\n' | sort | tr '\n' ' ')" \
    "$(echo $reps | tr ' ' '\n' | sort | tr '\n' ' ')"

# ---- concurrent writers on one key --------------------------------------------
for i in 1 2 3 4 5; do
    ( for n in $(seq 1 15); do
          ctl set -a "$(addr $i)" hot "w$i-$n" >/dev/null 2>&1
      done ) &
done
wait
vals=""
for i in 1 2 3 4 5; do vals="$vals$(ctl get -a "$(addr $i)" hot) "; done
first=${vals%% *}
like "after concurrent writers, QUORUM reads from all 5 nodes agree" \
    "$vals" "^($first ){5}$"
# The third replica's copy may land just after the writers were answered.
replicas_agree() {
    local r stamps="" s1
    for r in $(ctl locate --cluster "$D/cluster.yml" "$1"); do
        stamps="$stamps$(stamp_on "$(addr $r)" "$1");"
    done
    s1=${stamps%%;*}
    [ -n "$s1" ] && [ "$stamps" = "$s1;$s1;$s1;" ]
}
ok "  and every replica soon holds the same version" \
    wait_until 5 replicas_agree hot

# ---- two nodes down -------------------------------------------------------------
kill_node 4
kill_node 5
# Find keys: one with both dead nodes among its replicas, one with at most
# one of them.
dead2="" alive=""
for n in $(seq 1 200); do
    r=$(ctl locate --cluster "$D/cluster.yml" "k$n" | tr '\n' ' ')
    d=0
    case " $r" in *" 4 "*) d=$((d + 1));; esac
    case " $r" in *" 5 "*) d=$((d + 1));; esac
    [ $d = 2 ] && [ -z "$dead2" ] && dead2="k$n"
    [ $d -le 1 ] && [ -z "$alive" ] && alive="k$n"
    [ -n "$dead2" ] && [ -n "$alive" ] && break
done
ok "a key with at most one dead replica can be written" \
    ctl set -a "$(addr 1)" "$alive" ok-value
is "  and read" "$(ctl get -a "$(addr 2)" "$alive")" ok-value
ctl set -a "$(addr 3)" "$dead2" x >"$T/unav" 2>&1; rc=$?
is "a key with two dead replicas is UNAVAILABLE (exit 3)" "$rc" 3
like "  naming node 4 and node 5" "$(cat "$T/unav")" "node [45] .*node [45] "

out=$(ctl start --local --dir "$D" 2>&1); rc=$?
is "the two nodes start again" "$rc" 0
ok "  and the key is writable again" \
    wait_until 10 ctl set -a "$(addr 4)" "$dead2" back
# Node 1 redials nodes 4 and 5 on its own schedule (at most 250 ms apart),
# which may come after node 4 already took the write.
reads_back() { [ "$("$RZKVCTL" get -a "$(addr 1)" "$dead2")" = back ]; }
ok "  and readable from another node" wait_until 5 reads_back

# ---- purging tombstones ---------------------------------------------------------
no_tombstones() { [ -z "$(storage_tombstones "$D"/data/node-*)" ]; }
purged_on() { node_metric "$1" rzkv_antientropy_purged_total; }
ctl stop --local --dir "$D" >/dev/null 2>&1
for i in 1 2 3 4 5; do
    sed -i -e 's/^\(  anti_entropy_interval_ms:\).*/\1 300/' \
        -e 's/^\(  tombstone_purge_delay_ms:\).*/\1 1000/' "$D/node-$i.yml"
done
ok "restarted with anti-entropy every 300 ms, purging after 1000 ms" \
    ctl start --local --dir "$D"
for n in $(seq 1 30); do ctl set -a "$(addr $((n % 5 + 1)))" "p$n" v >/dev/null; done
for n in $(seq 1 30); do ctl del -a "$(addr $((n % 4 + 1)))" "p$n" >/dev/null; done
ok "30 more keys deleted: every tombstone is purged from all 5 nodes" \
    wait_until 30 no_tombstones
total=0
for i in 1 2 3 4 5; do total=$((total + $(purged_on $i))); done
is "  each replica's once: (5 + 30) keys x 3 replicas" "$total" 105
is "  by the keys' first replicas (never node 4 or 5)" \
    "$(purged_on 4) $(purged_on 5)" "0 0"
kept_all() {
    for i in 1 2 3 4 5; do
        node_metric $i rzkv_antientropy_tombstones_kept
    done | tr '\n' ' '
}
ok "  and no node's last pass kept a tombstone" \
    wait_until 5 eval '[ "$(kept_all)" = "0 0 0 0 0 " ]'
nf=0
for n in 1 15 30; do
    for i in 1 2 3 4 5; do
        ctl get -a "$(addr $i)" "p$n" >/dev/null 2>&1; [ $? = 1 ] && nf=$((nf + 1))
    done
done
is "  and the keys read NOT_FOUND through every node" "$nf" 15

done_testing
