#!/usr/bin/env bash
# antientropy.sh - re-replication by anti-entropy on a 3-node local
# cluster: node 3, down while keys were written, overwritten and deleted,
# and then node 1, whose data directory was wiped, get back exactly what
# they should hold (newest versions, no deleted key back) without a
# single read of those keys; rzkv_antientropy_* count it.  Each pair of
# nodes is compared by the one listed first: node 3 is sent copies by
# nodes 1 and 2, node 1 fetches its own from 2 and 3.  The deleted key's
# tombstone is purged, but only once node 3 is back and has held it too,
# and the deleted value never comes back.
# Ports: 3 in 18800-18829 (metrics 19800-19829).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/local.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

D="$T/ae"
P=$(free_base 18800 18829 3)
A1=127.0.0.1:$P A2=127.0.0.1:$((P + 1)) A3=127.0.0.1:$((P + 2))
NKEYS=120
tap_cleanup_hook=stop_local_cluster

ctl() { "$RZKVCTL" "$@"; }
# caught_up WHAT A B: node B's storage comes to list what node A's does,
# within 20 s, and holds every live key
caught_up() {
    ok "$1" wait_until 20 same_listings "$2" "$3" ||
        diag "$2 lists $(wc -l <"$T/la") keys, $3 $(wc -l <"$T/lb")"
    is "  it lists all $((NKEYS + 1)) live keys" "$(wc -l <"$T/lb")" \
        $((NKEYS + 1))
}
# tombstones N: the keys node N's storage files hold as tombstones
tombstones() { storage_tombstones "$D/data/node-$1"; }
# purged KEY: no node's storage holds KEY, even as a tombstone
purged() {
    local i
    for i in 1 2 3; do
        [ -z "$(tombstones $i | grep -x "$1")" ] || return 1
    done
}

out=$(ctl start --local 3 --dir "$D" --base-port $P 2>&1); rc=$?
is "a 3-node cluster starts" "$rc" 0
[ "$rc" = 0 ] || { diag "$out"; done_testing; exit 1; }
ctl stop --local --dir "$D" >/dev/null 2>&1
for i in 1 2 3; do
    sed -i -e 's/^\(  anti_entropy_interval_ms:\).*/\1 300/' \
        -e 's/^\(  tombstone_purge_delay_ms:\).*/\1 1500/' "$D/node-$i.yml"
done
ok "it restarts with anti-entropy every 300 ms" \
    ctl start --local --dir "$D"
like "  and says so in its log" "$(cat "$D"/log/node-1.log)" \
    "anti-entropy every 300 ms, purging tombstones every replica has held for 1500 ms"

# ---- a node that was down while keys changed -----------------------------------
ctl set -a $A1 before old >/dev/null
ctl set -a $A1 gone doomed >/dev/null
ok "stop node 3" ctl stop "$D/node-3.yml"
for i in $(seq 1 $NKEYS); do
    a=$A1; [ $((i % 2)) = 0 ] && a=$A2
    ctl set -a $a k$i "v$i" >/dev/null 2>&1
done
ok "with node 3 down, $NKEYS sets" ctl get -a $A2 k$NKEYS
ctl set -a $A2 before new >/dev/null
ok "  an overwrite" ctl get -a $A1 before
ctl del -a $A1 gone >/dev/null
ok "  and a delete" test "$(ctl get -a $A2 gone 2>&1)" != doomed
sleep 3
is "  whose tombstone nodes 1 and 2 keep past the purge delay, node 3 down" \
    "$(tombstones 1) $(tombstones 2)" "gone gone"
kept() { node_metric 1 rzkv_antientropy_tombstones_kept; }
ok "  node 1's rzkv_antientropy_tombstones_kept shows it waiting" \
    wait_until 5 eval '[ "$(kept)" = 1 ]'
ok "start node 3" ctl start --local --dir "$D"
caught_up "node 3's storage catches up with node 1's (no reads)" $A1 $A3
is "  the one deleted while it was down is not back" \
    "$(grep -c '^gone ' "$T/lb")" 0
ok "once all three held it 1500 ms, its tombstone is purged everywhere" \
    wait_until 20 purged gone
ok "  which rzkv_antientropy_purged_total counts" \
    test "$(node_metric 1 rzkv_antientropy_purged_total)" -ge 3
ok "  and no tombstone is kept any more" wait_until 5 eval '[ "$(kept)" = 0 ]'
like "  and node 1's log" "$(cat "$D"/log/node-1.log)" \
    "[1-9][0-9]* tombstones purged"
for a in $A1 $A2 $A3; do
    like "  through $a, the key still reads NOT_FOUND" \
        "$(ctl get -a $a gone 2>&1)" "NOT_FOUND"
done
is "  through node 3, the overwrite reads new" "$(ctl get -a $A3 before)" new
pushed=$(( $(node_metric 1 rzkv_antientropy_pushed_total) +
           $(node_metric 2 rzkv_antientropy_pushed_total) ))
ok "  rzkv_antientropy_pushed_total counts the copies ($pushed)" \
    test "$pushed" -ge $((NKEYS + 2))
ok "  and rzkv_antientropy_passes_total the passes" \
    test "$(node_metric 1 rzkv_antientropy_passes_total)" -gt 0
ts=$(node_metric 1 rzkv_antientropy_last_pass_timestamp_seconds)
ok "  rzkv_antientropy_last_pass_timestamp_seconds says when, recently ($ts)" \
    test "$ts" -gt 0 -a $(( $(date +%s) - ts )) -lt 60
like "  and rzkvctl status -v how long ago" \
    "$(ctl status -v --local --dir "$D" 2>&1 | grep 'coordinator' | head -1)" \
    "anti-entropy [0-9]+s ago"

# ---- a node whose disk was lost ----------------------------------------------
ctl set -a $A1 gone2 soon >/dev/null
ok "stop node 1" ctl stop "$D/node-1.yml"
ok "  delete a key it holds" ctl del -a $A2 gone2
rm -rf "$D/data/node-1"
ok "start it with an empty data directory" ctl start --local --dir "$D"
caught_up "node 1's storage is rebuilt from its peers" $A2 $A1
ok "  with its copies counted by node 1 itself" \
    test "$(node_metric 1 rzkv_antientropy_pushed_total)" -ge $((NKEYS + 1))
is "  and k1 reads back through node 1" "$(ctl get -a $A1 k1)" v1
ok "  the deleted key's tombstone is purged from nodes 2 and 3" \
    wait_until 20 purged gone2
# (node 1's counters start again with it)
is "  and was never copied to node 1, which lacked the key: 2 rows purged" \
    "$(node_metric 1 rzkv_antientropy_purged_total)" 2

# ---- quiet when nothing differs ------------------------------------------------
p1=$(node_metric 1 rzkv_antientropy_pushed_total)
p2=$(node_metric 2 rzkv_antientropy_pushed_total)
sleep 1
is "once replicas agree, passes copy nothing" \
    "$(node_metric 1 rzkv_antientropy_pushed_total) $(node_metric 2 rzkv_antientropy_pushed_total)" \
    "$p1 $p2"

done_testing
