#!/usr/bin/env bash
# membership.sh - nodes joining and leaving with joint quorums.
#
# A node marked `state: joining` (or `leaving`) in cluster.yml makes every
# operation need a quorum of the key's replicas after the change and one
# of its replicas before it, until the change is finished by a second
# reload without the mark.
#
# Part 1 (anti-entropy off, so only the operations move data): node 4
# joins a 3-node cluster, replica_count 3.  Keys K1 and K2 lose old node X
# to node 4; their newest values are on X and Y only (node Z was down when
# they were written), and Y is down for the reads.  The placement after
# the change alone would read Z and node 4, both empty: "not found".  The
# joint read also waits for a second old replica, X, and returns the
# value.  Finishing the change before the data moved (K2) shows the
# difference: then that read does answer NOT_FOUND.
#
# Part 2 (anti-entropy on): node 1 leaves the 4-node cluster.  The reload
# that marks it starts a pass, which copies each key to its replicas
# after the change; finished, the three nodes left hold every key, and
# every key reads back with one of them down.
# Ports: 4 in 18940-18979 (metrics 19940-19979).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/local.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

D="$T/membership"
P=$(free_base 18940 18979 4)
addr() { echo 127.0.0.1:$((P + $1 - 1)); }
tap_cleanup_hook=stop_local_cluster

ctl() { "$RZKVCTL" "$@"; }
node_start() { ctl start "$D/node-$1.yml" "$D/cluster.yml" >/dev/null 2>&1; }
node_stop() { ctl stop "$D/node-$1.yml" "$D/cluster.yml" >/dev/null 2>&1; }
node_reload() { ctl reload "$D/node-$1.yml" "$D/cluster.yml" >/dev/null 2>&1; }
reload_count() { grep -c "coordinator.*reloaded" "$D/log/node-$1.log"; }
# reload_nodes N...: reload each node, and wait until each coordinator
# has logged it (the cluster file is shared)
reload_nodes() {
    local n
    wanted=
    for n in "$@"; do
        wanted="$wanted $n:$(( $(reload_count $n) + 1 ))"
        node_reload $n
    done
    wait_until 10 reloaded_all
}
reloaded_all() {
    local w
    for w in $wanted; do
        [ "$(reload_count ${w%:*})" -ge "${w#*:}" ] || return 1
    done
}
# holds N KEY: node N's own storage lists KEY (live)
holds() { ctl keys -a "$(addr "$1")" --limit 100000 2>/dev/null | grep -qx "$2"; }
# held N: how many keys m* node N's own storage lists
held() { ctl keys -a "$(addr "$1")" --limit 100000 2>/dev/null | grep -c '^m'; }
# cluster_file MEMBERS...: cluster.yml with these nodes, each "N" or
# "N:joining" / "N:leaving"
cluster_file() {
    {
        printf 'cluster:\n  replica_count: 3\n  timeout_ms: 2000\n  nodes:\n'
        for m in "$@"; do
            printf '    "%s":\n      remote_address: %s\n' "${m%%:*}" \
                "$(addr "${m%%:*}")"
            case $m in *:*) printf '      state: %s\n' "${m#*:}" ;; esac
        done
    } >"$D/cluster.yml.new" && mv "$D/cluster.yml.new" "$D/cluster.yml"
}
set_node() { sed -i -e "s/^\(  $2:\).*/\1 $3/" "$D/node-$1.yml"; }

out=$(ctl start --local 4 --dir "$D" --base-port $P 2>&1); rc=$?
is "a 4-node local cluster is made" "$rc" 0
[ "$rc" = 0 ] || { diag "$out"; done_testing; exit 1; }
ctl stop --local --dir "$D" >/dev/null 2>&1
for i in 1 2 3 4; do
    set_node $i anti_entropy_interval_ms 0
done

# ---- part 1: node 4 joins ---------------------------------------------------
cluster_file 1 2 3 4:joining
# Keys that node 4 takes from one old node X, X the same for both.
pick=$(for i in $(seq 1 400); do
    a=$(ctl locate --cluster "$D/cluster.yml" k$i | paste -sd' ')
    b=$(ctl locate --cluster "$D/cluster.yml" --before k$i | paste -sd' ')
    case " $a " in *" 4 "*) echo "k$i|$a|$b" ;; esac
done)
ok "locate names node 4 among the new replicas of some keys" \
    test -n "$pick"
x=
while IFS= read -r line; do
    after=${line#*|}; after=${after%|*}; before=${line##*|}
    for n in $before; do
        case " $after " in *" $n "*) ;; *) lost=$n ;; esac
    done
    if [ -z "$x" ]; then
        x=$lost; k1=${line%%|*}
    elif [ "$lost" = "$x" ]; then
        k2=${line%%|*}; break
    fi
done <<<"$pick"
set -- $(for n in 1 2 3; do [ $n != "$x" ] && echo $n; done)
y=$1 z=$2
ok "two keys ($k1, $k2) move from node $x to node 4" test -n "$k2"
is "  --before names the old replicas" \
    "$(ctl locate --cluster "$D/cluster.yml" --before $k1 | sort | paste -sd' ')" \
    "1 2 3"

cluster_file 1 2 3
for i in 1 2 3; do node_start $i; done
ctl get -a "$(addr 1)" nothing-here >/dev/null 2>&1
is "nodes 1-3 run as a 3-node cluster, anti-entropy off" "$?" 1
node_stop $z
ok "with node $z down, $k1 and $k2 are written on nodes $x and $y" \
    eval 'ctl set -a "$(addr $x)" $k1 one >/dev/null &&
          ctl set -a "$(addr $x)" $k2 two >/dev/null'
# (the replica writes to Z wait for it until their deadline, 2 s: let
# them fail first)
sleep 2.5
node_start $z
ok "  node $z, back, holds neither" \
    eval '! holds $z $k1 && ! holds $z $k2 && holds $x $k1 && holds $y $k2'

cluster_file 1 2 3 4:joining
node_start 4
ok "node 4 starts joining, and nodes 1-3 reload" reload_nodes 1 2 3
like "  node 1's log says quorums of both placements are needed" \
    "$(cat "$D/log/node-1.log")" \
    "reloaded .*1 joining and 0 leaving: quorums of both placements"
info=$(ctl info -a "$(addr 1)" 2>&1)
like "  rzkvctl info shows node 4 joining" "$info" \
    "^4 +127\.0\.0\.1:[0-9]+ +joining +yes$"
like "  in a STATE column" "$info" "^ID +ADDRESS +STATE +REACHABLE$"
state_of() {
    ctl info -a "$(addr $1)" --json | python3 -c "import json, sys
print(' '.join(n['id'] + ':' + n['state'] for n in json.load(sys.stdin)['nodes']))"
}
is "  and in JSON" "$(state_of 2)" "1:member 2:member 3:member 4:joining"
ok "  rzkv_membership_change_start_timestamp_seconds says since when" \
    test "$(node_metric 1 rzkv_membership_change_start_timestamp_seconds)" -gt 0

node_stop $y
is "with node $y down, $k1 reads back through node 4" \
    "$(ctl get -a "$(addr 4)" $k1 2>&1)" one
is "  and through node $z" "$(ctl get -a "$(addr $z)" $k1 2>&1)" one
ok "  the read repaired node 4 and node $z" \
    wait_until 5 eval 'holds 4 $k1 && holds $z $k1'
out=$(ctl set -a "$(addr $x)" --timeout 2000 joint-write w 2>&1); rc=$?
is "a write with one node down still reaches both quorums" "$rc" 0 ||
    diag "$out"

# Finish the change without moving the data: K2 is on X and Y only, and
# the replicas after the change that answer (Z, 4) lack it.
cluster_file 1 2 3 4
ok "the change is finished too early (anti-entropy is off)" \
    reload_nodes $x $z 4
out=$(ctl get -a "$(addr 4)" $k2 2>&1); rc=$?
is "  so $k2 reads as not found: what joint quorums prevented" "$rc" 1 ||
    diag "$out"
node_start $y
ok "  though node $y, back, still holds it" holds $y $k2

# ---- part 2: node 1 leaves, anti-entropy moves the data ---------------------
ctl stop --local --dir "$D" >/dev/null 2>&1
for i in 1 2 3 4; do
    set_node $i anti_entropy_interval_ms 3600000
done
for i in 1 2 3 4; do node_start $i; done
NKEYS=60
for i in $(seq 1 $NKEYS); do
    ctl set -a "$(addr $(( i % 4 + 1 )))" m$i "v$i" >/dev/null 2>&1
done
total=0
for i in 1 2 3 4; do total=$((total + $(held $i))); done
is "4 nodes, anti-entropy hourly: $NKEYS keys, each on 3 of them" \
    "$total" $((3 * NKEYS))

cluster_file 1:leaving 2 3 4
marked=$(date +%s)
wanted_1=$(( $(reload_count 1) + 1 ))
like "rzkvctl reload says what a marked file means" \
    "$(ctl reload "$D/node-1.yml" "$D/cluster.yml" 2>&1)" \
    "reloaded .*cluster\.yml \(4 nodes, 0 joining and 1 leaving: quorums of both placements until the marks are dropped\)"
ok "node 1 is marked leaving, and every node reloads" \
    eval 'reload_nodes 2 3 4 && wanted=" 1:$wanted_1" && wait_until 10 reloaded_all'
is "  rzkvctl info on node 4 shows it" "$(state_of 4)" \
    "1:leaving 2:member 3:member 4:member"
all_moved() {
    for i in 2 3 4; do
        [ "$(held $i)" = $NKEYS ] || return 1
    done
}
ok "  the pass it starts copies every key to nodes 2, 3 and 4" \
    wait_until 30 all_moved ||
    diag "held: $(held 2) $(held 3) $(held 4)"

clean() {
    local i
    for i in 1 2 3; do
        [ "$(node_metric $i \
            rzkv_antientropy_last_clean_pass_start_timestamp_seconds)" \
            -ge "$marked" ] || return 1
    done
}
ok "  nodes 1-3 each report a pass with no failure begun since" \
    wait_until 10 clean
like "  rzkvctl status -v says so too" \
    "$(ctl status -v "$D/node-1.yml" "$D/cluster.yml" 2>&1)" \
    "coordinator\\[0\\].*last clean pass began [0-9]+s ago"
is "  node 4, last in the file, compares nothing itself" \
    "$(node_metric 4 rzkv_antientropy_last_clean_pass_start_timestamp_seconds)" 0

cluster_file 2 3 4
ok "the change is finished without node 1" reload_nodes 2 3 4
is "  and the nodes left say no change is under way" \
    "$(node_metric 2 rzkv_membership_change_start_timestamp_seconds)" 0
node_stop 1
node_stop 3
bad=0
for i in $(seq 1 $NKEYS); do
    v=$(ctl get -a "$(addr 2)" m$i 2>&1)
    [ "$v" = "v$i" ] || { bad=$((bad + 1)); diag "m$i: $v"; }
done
is "  every key reads back with node 1 gone and node 3 down" "$bad" 0

done_testing
