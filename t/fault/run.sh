#!/usr/bin/env bash
# run.sh - rzkv's fault-injection run: a real cluster, client workloads
# recording histories, faults on a schedule from a seed, then the checks.
#
#   t/fault/run.sh [--seed N] [--nodes 3|5] [--duration SECONDS]
#                  [--net auto|netns|proxy|none] [--faults LIST]
#                  [--base-port P] [--summary FILE] [--keep DIR]
#                  [--consistency one|quorum|all [--expect-anomalies]]
#                  [--durability full|normal [--expect-lost]]
#                  [--no-all-readback] [--ae-interval MS]
#                  [--purge-delay MS]
#
# The seed (random if not given) is always printed first as "# seed N";
# the same seed gives the same fault schedule, so a failure can be
# replayed with --seed.  Output is TAP; figures are "# " lines.
#
# What it does:
#   1. starts N nodes (replica_count 3, or N if smaller), each in its own
#      network namespace joined by veth pairs to a bridge in a namespace
#      of its own (--net netns: needs root, `ip netns`, nft; addresses
#      10.77.0.0/24 exist only inside those namespaces, all created and
#      removed here), or on 127.0.0.1 with every node-to-node link through
#      t/fault/proxy.py (--net proxy), or as `rzkvctl start --local` with
#      process faults only (--net none).  auto: netns if possible, else
#      proxy.
#   2. runs t/fault/workload (register, unique-write and delete workloads)
#      for the duration while injecting, one at a time, faults drawn from
#      the seed (--faults restricts them; default all that the mode has):
#        kill-node      kill -9 of a node's rzkvd and workers, restarted
#        kill-worker    kill -9 of one worker (the supervisor restarts it)
#        crash-storage  kill -9 of every storage worker of a node under
#                       write load (group commits in flight)
#        power-loss     kill -9 of every node, then every write not yet
#                       fsynced is undone (t/fault/powerloss.c, preloaded
#                       into the nodes when built), then restart
#        pause          SIGSTOP of a whole node for a few seconds
#        partition      majority/minority split of the nodes
#        isolate        one node cut from all others
#        bridge         two halves that only one node still links
#        loss           random packet loss (proxy: connection resets)
#        delay          netem delay (proxy: per-chunk delay); without
#                       netem in the kernel, a tbf rate limit ("slow")
#        membership     a node leaves the cluster and joins it again (with
#                       an empty data directory), each step as rzkv(7)
#                       MEMBERSHIP CHANGES says: marked, anti-entropy
#                       moves the data, then the mark is dropped; only
#                       with more nodes than replicas and anti-entropy on
#   3. heals everything, restarts what is down, waits for anti-entropy
#      alone (every --ae-interval ms, default 1000; 0: off; not in --net
#      none, whose nodes keep rzkvctl's default) to make every replica
#      list every key with the same stamp, before any read; then reads
#      every key back at QUORUM and then at ALL (read repair), waits for
#      the replicas to agree again, and checks the history:
#      linearizable per key, no acknowledged write lost, no deleted key
#      resurrected.  Anti-entropy purges tombstones every replica has held
#      for --purge-delay ms (default 5000; 0: never; not in --net none),
#      during the run and the checks, so "no deleted key resurrected"
#      covers purging too.  Replica writes expire 250 ms after their
#      request's 1 s timeout (cluster.max_clock_skew_ms 250: one clock),
#      so a write held up by a fault (a pause, TCP resending after a cut)
#      is refused when it arrives, and any delay above 1.25 s is safe; a
#      key brought back by a write that landed after its tombstone was
#      purged is reported.  (Before writes expired, it was seen once with
#      --purge-delay 2000.)
#      With --consistency one --expect-anomalies it checks the opposite:
#      weak operations under partitions must be caught
#      (t/fault/fault_detects.sh, the suite's test of itself).
#
# CI runs short runs (t/fault/fault3.sh, fault5.sh).  A long soak:
#
#   for s in $(seq 1 20); do
#     RZKV_BUILDDIR=$PWD t/fault/run.sh --nodes 5 --duration 600 || break
#   done
#
# (from the build directory; each run prints its seed.)
set -u

: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${RZKV_BUILDDIR:=$RZKV_SRCDIR}"
. "$RZKV_SRCDIR/t/lib/tap.sh"

FAULT_DIR=$RZKV_SRCDIR/t/fault
WORKLOAD=$RZKV_BUILDDIR/t/fault/workload
PY=${PYTHON:-python3}

seed=
nodes=3
duration=30
net=auto
faults=
base_port=
summary=
keep=
consistency=quorum
expect_anomalies=0
durability=full
expect_lost=0
all_readback=1
ae_interval=1000
purge_delay=5000
# Every node runs on this machine's one clock: replica writes expire
# 250 ms after their request's 1 s deadline (cluster.max_clock_skew_ms).
max_skew=250
while [ $# -gt 0 ]; do
    case $1 in
    --seed) seed=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --net) net=$2; shift 2 ;;
    --faults) faults=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --summary) summary=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --consistency) consistency=$2; shift 2 ;;
    --expect-anomalies) expect_anomalies=1; shift ;;
    --durability) durability=$2; shift 2 ;;
    --expect-lost) expect_lost=1; shift ;;
    --no-all-readback) all_readback=0; shift ;;
    --ae-interval) ae_interval=$2; shift 2 ;;
    --purge-delay) purge_delay=$2; shift 2 ;;
    *) echo "usage: run.sh [--seed N] [--nodes N] [--duration S] [--net auto|netns|proxy|none] [--faults a,b] [--base-port P] [--summary FILE] [--keep DIR] [--consistency LEVEL [--expect-anomalies]] [--durability full|normal [--expect-lost]] [--no-all-readback] [--ae-interval MS] [--purge-delay MS]" >&2
       exit 64 ;;
    esac
done
# A fault name the schedule does not know would stop the run halfway.
# ("slow" is how a delay is reported where the kernel lacks netem.)
known_faults="kill-node kill-worker crash-storage pause power-loss partition isolate bridge loss delay membership"
for f in ${faults//,/ }; do
    case " $known_faults " in
    *" $f "*) ;;
    *) echo "run.sh: unknown fault '$f' (known: $known_faults)" >&2
       exit 64 ;;
    esac
done
[ -n "$seed" ] || seed=$(( $(od -An -N4 -tu4 /dev/urandom) % 1000000000 ))
echo "# seed $seed"
RANDOM=$seed
# Ports: 127.0.0.1 modes use base..base+N-1 (metrics +1000, proxies
# +2000..); keep runs that may go in parallel apart with --base-port.
[ -n "$base_port" ] || base_port=$(( 24000 + (seed % 50) * 20 ))

[ -x "$WORKLOAD" ] || skip_all "t/fault/workload not built ($WORKLOAD)"
command -v "$PY" >/dev/null 2>&1 || skip_all "python3 not found"

# ---- mode ---------------------------------------------------------------
netns_possible() {
    [ "$(id -u)" = 0 ] && command -v ip >/dev/null && \
        command -v nft >/dev/null && ip netns list >/dev/null 2>&1
}
if [ "$net" = auto ]; then
    if netns_possible; then net=netns; else net=proxy; fi
fi
case $net in
netns) netns_possible || skip_all "--net netns needs root, ip and nft" ;;
proxy|none) ;;
*) echo "run.sh: unknown --net $net" >&2; exit 64 ;;
esac

replicas=$(( nodes < 3 ? nodes : 3 ))
tag=$$
CL=rzkvf$tag-cl            # the clients' namespace (netns mode)
SW=rzkvf$tag-sw            # the bridge's namespace
ns_of() { echo "rzkvf$tag-n$1"; }
ip_of() { echo "10.77.0.$((10 + $1))"; }
NODE_PORT=7000             # netns mode: every node on its own address
proxy_pid=
has_netem=0

# in_ns NODE command...: run in the node's namespace (or here).
in_ns() {
    local i=$1; shift
    if [ "$net" = netns ]; then ip netns exec "$(ns_of "$i")" "$@"; else "$@"; fi
}
# as_client command...: run where the clients are.
as_client() {
    if [ "$net" = netns ]; then ip netns exec "$CL" "$@"; else "$@"; fi
}

client_addrs() {
    local i out=
    for i in $(seq 1 "$nodes"); do
        if [ "$net" = netns ]; then
            out="$out,$(ip_of "$i"):$NODE_PORT"
        else
            out="$out,127.0.0.1:$((base_port + i - 1))"
        fi
    done
    echo "${out#,}"
}
node_addr() {
    if [ "$net" = netns ]; then echo "$(ip_of "$1"):$NODE_PORT"
    else echo "127.0.0.1:$((base_port + $1 - 1))"; fi
}
proxy_port() { echo $((base_port + 2000 + ($1 - 1) * nodes + $2 - 1)); }

# ---- configuration (netns and proxy modes) ------------------------------
write_configs() {
    local i j host port mport
    mkdir -p "$T/c"
    for i in $(seq 1 "$nodes"); do
        if [ "$net" = netns ]; then
            host=$(ip_of "$i"); port=$NODE_PORT; mport=$((NODE_PORT + 1000))
        else
            host=127.0.0.1; port=$((base_port + i - 1)); mport=$((port + 1000))
        fi
        mkdir -p "$T/c/data/node-$i" "$T/c/run/$i" "$T/c/log"
        cat >"$T/c/node-$i.yml" <<EOF
node:
  id: "$i"
  local_address: $host:$port
  local_metrics_address: $host:$mport
  data_dir: $T/c/data/node-$i
  run_dir: $T/c/run/$i
  storage_workers: 2
  coordinator_workers: 1
  durability: $durability
  anti_entropy_interval_ms: $ae_interval
  tombstone_purge_delay_ms: $purge_delay
  log:
    file: $T/c/log/node-$i.log
    level: info
EOF
        write_cluster "$i"
    done
}

# write_cluster I [NODE STATE]: node I's cluster file, with node NODE
# marked STATE (joining, leaving) or, for "gone", left out.
write_cluster() {
    local i=$1 j
    {
        echo "cluster:"
        echo "  seed: 0"
        echo "  replica_count: $replicas"
        echo "  timeout_ms: 1000"
        echo "  max_clock_skew_ms: $max_skew"
        echo "  nodes:"
        for j in $(seq 1 "$nodes"); do
            [ "$j" = "${2:-}" ] && [ "${3:-}" = gone ] && continue
            echo "    \"$j\":"
            if [ "$net" = proxy ] && [ "$i" != "$j" ]; then
                echo "      remote_address: 127.0.0.1:$(proxy_port "$i" "$j")"
            else
                echo "      remote_address: $(node_addr "$j")"
            fi
            if [ "$j" = "${2:-}" ]; then echo "      state: $3"; fi
        done
    } >"$T/c/cluster-$i.yml.new" && mv "$T/c/cluster-$i.yml.new" "$T/c/cluster-$i.yml"
}

# ---- network namespaces ---------------------------------------------------
netns_up() {
    local i
    ip netns add "$SW" || return 1
    ip -n "$SW" link add br0 type bridge || return 1
    ip -n "$SW" link set br0 up
    ip -n "$SW" link set lo up
    for i in $(seq 1 "$nodes") cl; do
        local ns addr
        if [ "$i" = cl ]; then ns=$CL; addr=10.77.0.100
        else ns=$(ns_of "$i"); addr=$(ip_of "$i"); fi
        ip netns add "$ns" || return 1
        ip -n "$SW" link add "v$i" type veth peer name eth0 netns "$ns" || return 1
        ip -n "$SW" link set "v$i" master br0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
        if [ "$i" != cl ]; then
            ip netns exec "$ns" nft -f - <<EOF || return 1
table inet rzkvfault {
    chain input { type filter hook input priority 0; policy accept; }
}
EOF
        fi
    done
    if ip netns exec "$(ns_of 1)" tc qdisc add dev eth0 root netem delay 1ms 2>/dev/null; then
        has_netem=1
        ip netns exec "$(ns_of 1)" tc qdisc del dev eth0 root 2>/dev/null
    fi
}

netns_down() {
    local i ns
    for i in $(seq 1 "$nodes") cl; do
        if [ "$i" = cl ]; then ns=$CL; else ns=$(ns_of "$i"); fi
        # Anything still running inside goes first.
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    ip netns del "$SW" 2>/dev/null
}

# ---- nodes ----------------------------------------------------------------
status_json() {
    if [ "$net" = none ]; then
        "$RZKVCTL" status --json --local --dir "$T/c" 2>/dev/null |
            "$PY" -c 'import json,sys
d=json.load(sys.stdin)
for n in d.get("nodes",[]):
    if n.get("id")==sys.argv[1]: print(json.dumps(n, separators=(",",":")))' "$1"
    else
        "$RZKVCTL" status --json "$T/c/node-$1.yml" "$T/c/cluster-$1.yml" 2>/dev/null
    fi
}

# pids_of NODE [ROLE]: the supervisor and every worker (or one role's).
pids_of() {
    status_json "$1" | "$PY" -c 'import json,sys
try:
    d=json.load(sys.stdin)
except ValueError:
    sys.exit(0)
if "nodes" in d: d=d["nodes"][0]
role=sys.argv[1]
out=[]
if not role and d.get("pid"): out.append(d["pid"])
for w in d.get("workers",[]):
    if w.get("pid") and (not role or w.get("role")==role): out.append(w["pid"])
print(" ".join(str(p) for p in out))' "${2:-}"
}

# Nodes run with the power-loss shim preloaded when it is built: it keeps
# undo logs of unsynced writes so that a power-loss fault can drop them.
POWERLOSS_SO=$RZKV_BUILDDIR/t/fault/.libs/libpowerloss.so
POWERLOSS=$RZKV_BUILDDIR/t/fault/powerloss
ENVARGS=()
if [ -f "$POWERLOSS_SO" ] && [ -x "$POWERLOSS" ]; then
    ENVARGS=(env LD_PRELOAD="$POWERLOSS_SO" RZKV_POWERLOSS_DIR="$T/c/data"
             ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0")
fi

start_nodes() {
    local i
    if [ "$net" = none ]; then
        "${ENVARGS[@]}" "$RZKVCTL" start --local "$nodes" --dir "$T/c" --base-port "$base_port" >/dev/null
        return
    fi
    for i in $(seq 1 "$nodes"); do
        if ! node_serving "$i"; then
            in_ns "$i" "${ENVARGS[@]}" "$RZKVCTL" start "$T/c/node-$i.yml" "$T/c/cluster-$i.yml" >/dev/null || return 1
        fi
    done
}

node_serving() {
    status_json "$1" | grep -q '"state":"serving"'
}

all_serving() {
    local i
    for i in $(seq 1 "$nodes"); do node_serving "$i" || return 1; done
}

stop_nodes() {
    local i p
    for i in $(seq 1 "$nodes"); do
        for p in $(pids_of "$i"); do kill -CONT "$p" 2>/dev/null; done
    done
    if [ "$net" = none ]; then
        "$RZKVCTL" stop --local --dir "$T/c" >/dev/null 2>&1
    else
        for i in $(seq 1 "$nodes"); do
            "$RZKVCTL" stop "$T/c/node-$i.yml" "$T/c/cluster-$i.yml" >/dev/null 2>&1
        done
    fi
    # Whatever did not stop is killed.
    for i in $(seq 1 "$nodes"); do
        for p in $(pids_of "$i"); do kill -9 "$p" 2>/dev/null; done
        [ -f "$T/c/run/$i/rzkvd.pid" ] && kill -9 "$(cat "$T/c/run/$i/rzkvd.pid")" 2>/dev/null
        [ -f "$T/c/run/node-$i/rzkvd.pid" ] && kill -9 "$(cat "$T/c/run/node-$i/rzkvd.pid")" 2>/dev/null
    done
}

# ---- network faults ---------------------------------------------------------
PROXY_CTL=
proxy_rules() {   # blocked-pairs-json delay_ms loss
    printf '{"blocked": %s, "delay_ms": %s, "jitter_ms": %s, "loss": %s, "reset_on_cut": %s}\n' \
        "$1" "$2" "$(( $2 / 2 ))" "$3" "${4:-false}" >"$PROXY_CTL.tmp"
    mv "$PROXY_CTL.tmp" "$PROXY_CTL"
}

# cut "A B" "C D" [RESET]: no traffic between the two groups (proxy: RESET
# true also resets the connections open across the cut).
cut_groups() {
    local a b pairs=
    for a in $1; do
        for b in $2; do
            if [ "$net" = netns ]; then
                ip netns exec "$(ns_of "$a")" nft add rule inet rzkvfault input ip saddr "$(ip_of "$b")" drop
                ip netns exec "$(ns_of "$b")" nft add rule inet rzkvfault input ip saddr "$(ip_of "$a")" drop
            else
                pairs="$pairs,[\"$a\",\"$b\"]"
            fi
        done
    done
    if [ "$net" = proxy ]; then
        proxy_rules "[${pairs#,}]" 0 0 "${3:-false}"
    fi
}

net_heal() {
    local i
    if [ "$net" = netns ]; then
        for i in $(seq 1 "$nodes"); do
            ip netns exec "$(ns_of "$i")" nft flush chain inet rzkvfault input
            ip netns exec "$(ns_of "$i")" tc qdisc del dev eth0 root 2>/dev/null
        done
    elif [ "$net" = proxy ]; then
        proxy_rules "[]" 0 0
    fi
}

net_loss() {   # percent
    local i
    if [ "$net" = netns ]; then
        for i in $(seq 1 "$nodes"); do
            ip netns exec "$(ns_of "$i")" nft add rule inet rzkvfault input numgen random mod 100 '<' "$1" drop
        done
    else
        proxy_rules "[]" 0 "0.0$(( $1 / 10 ))"
    fi
}

net_delay() {  # ms; returns the kind actually injected
    local i
    if [ "$net" = proxy ]; then
        proxy_rules "[]" "$1" 0; echo delay; return
    fi
    for i in $(seq 1 "$nodes"); do
        if [ $has_netem = 1 ]; then
            ip netns exec "$(ns_of "$i")" tc qdisc add dev eth0 root netem delay "${1}ms" "$(( $1 / 2 ))ms"
        else
            ip netns exec "$(ns_of "$i")" tc qdisc add dev eth0 root tbf rate 256kbit burst 4kb latency 400ms
        fi
    done
    [ $has_netem = 1 ] && echo delay || echo slow
}

# ---- the fault schedule -------------------------------------------------------
declare -A fault_count
ineffective=0
membership_failed=0

# Sets order to the nodes in a random order.  (RANDOM is used in this
# shell only, never in a subshell, so the seed fixes the schedule.)
order=()
shuffle_nodes() {
    local i j tmp
    order=()
    for i in $(seq 1 "$nodes"); do order+=("$i"); done
    for ((i = nodes - 1; i > 0; i--)); do
        j=$((RANDOM % (i + 1))); tmp=${order[i]}; order[i]=${order[j]}; order[j]=$tmp
    done
}

# ---- membership changes (rzkv(7), MEMBERSHIP CHANGES) -----------------------

reload_count() { grep -c "coordinator.*reloaded" "$T/c/log/node-$1.log" 2>/dev/null; }
# reload_nodes N...: reload each node's cluster file and wait until its
# coordinator has taken it.
reload_nodes() {
    local n
    reload_wanted=
    for n in "$@"; do
        reload_wanted="$reload_wanted $n:$(( $(reload_count "$n") + 1 ))"
        "$RZKVCTL" reload "$T/c/node-$n.yml" "$T/c/cluster-$n.yml" >/dev/null 2>&1 ||
            return 1
    done
    wait_until 20 reloaded_all
}
reloaded_all() {
    local w
    for w in $reload_wanted; do
        [ "$(reload_count "${w%:*}")" -ge "${w#*:}" ] || return 1
    done
}
# clean_since N MS: node N's last anti-entropy pass with no failure began
# at MS (Unix ms) or later.
clean_since() {
    status_json "$1" | "$PY" -c 'import json,sys
d=json.load(sys.stdin)
if "nodes" in d: d=d["nodes"][0]
ms=[w.get("antientropy_clean_pass_ms",0) for w in d.get("workers",[])
    if w.get("role")=="coordinator"]
sys.exit(0 if ms and max(ms)>=int(sys.argv[1]) else 1)' "$2"
}
# data_moved N...: once nodes N... (in file order) all hold the marked
# file, wait until no write of the view before can land (timeout_ms +
# max_clock_skew_ms), then for a clean pass begun after that on each of
# them but the last, which compares nothing itself.
data_moved() {
    local since n cmp=("${@:1:$#-1}")
    sleep "$(printf '%d.%03d' $(( (1000 + max_skew) / 1000 )) \
             $(( (1000 + max_skew) % 1000 )))"
    since=$(( $(date +%s%N) / 1000000 ))
    for n in "${cmp[@]}"; do
        "$RZKVCTL" repair "$T/c/node-$n.yml" "$T/c/cluster-$n.yml" >/dev/null 2>&1
    done
    for n in "${cmp[@]}"; do
        wait_until 30 clean_since "$n" "$since" || return 1
    done
}
# membership_change V: node V leaves (marked, the data moved, then left
# out of the others' files and stopped), and joins again with an empty
# data directory (marked joining, the data moved, then a member).  Every
# step waits as rzkv(7) says; 0, or 1 with the step that failed in
# $membership_why (the files are then put back as they were at the start
# or left joint, and the checks that follow judge what happened).
membership_change() {
    local v=$1 i p all others=
    all=$(seq 1 "$nodes")
    for i in $all; do [ "$i" != "$v" ] && others="$others $i"; done
    for i in $all; do write_cluster "$i" "$v" leaving; done
    reload_nodes $all || { membership_why="reload (leaving)"; return 1; }
    if ! data_moved $all; then
        # Calling the change off is always safe: every write made during
        # it reached a quorum of the replicas before it.
        for i in $all; do write_cluster "$i"; done
        reload_nodes $all
        membership_why="the data did not move (leaving); called off"
        return 1
    fi
    for i in $others; do write_cluster "$i" "$v" gone; done
    reload_nodes $others || { membership_why="reload (gone)"; return 1; }
    "$RZKVCTL" stop "$T/c/node-$v.yml" "$T/c/cluster-$v.yml" >/dev/null 2>&1
    for p in $(pids_of "$v"); do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T/c/data/node-$v" && mkdir -p "$T/c/data/node-$v"
    for i in $all; do write_cluster "$i" "$v" joining; done
    start_nodes >/dev/null 2>&1
    wait_until 30 node_serving "$v" || { membership_why="start (joining)"; return 1; }
    reload_nodes $others || { membership_why="reload (joining)"; return 1; }
    data_moved $all || { membership_why="the data did not move (joining)"; return 1; }
    for i in $all; do write_cluster "$i"; done
    reload_nodes $all || { membership_why="reload (member)"; return 1; }
}

# inject KIND: one fault, held for a few seconds, then healed.
inject() {
    local kind=$1 hold=$((2 + RANDOM % 4)) victim=$((1 + RANDOM % nodes))
    local at=$(( $(date +%s) - run_start ))
    local what p pids reset=false
    shuffle_nodes
    [ $((RANDOM % 2)) = 0 ] && reset=true
    case $kind in
    kill-node)
        what="node $victim"
        for p in $(pids_of "$victim"); do kill -9 "$p" 2>/dev/null; done
        sleep "$hold"
        start_nodes >/dev/null 2>&1 ;;
    kill-worker)
        pids=($(pids_of "$victim" storage) $(pids_of "$victim" coordinator))
        [ ${#pids[@]} -gt 0 ] || return
        p=${pids[RANDOM % ${#pids[@]}]}
        what="node $victim worker pid $p"
        kill -9 "$p" 2>/dev/null
        sleep "$hold" ;;
    power-loss)
        # Every node at once, as a power cut would: kill -9 everything,
        # then drop every write not fsynced, then start again.
        what="all nodes"
        pids=
        for p in $(seq 1 "$nodes"); do pids="$pids $(pids_of "$p")"; done
        for p in $pids; do kill -9 "$p" 2>/dev/null; done
        for p in $pids; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
        what="$what: $("$POWERLOSS" --revert "$T/c/data" | sed 's/^powerloss: //')"
        sleep 1
        start_nodes >/dev/null 2>&1 ;;
    membership)
        # Once a run: a second change could move keys back to a node that
        # kept copies from the first, which rzkv does not clean up yet
        # (rzkv(7) CAVEATS).
        [ "${fault_count[membership]:-0}" = 0 ] || return
        local began=$(date +%s)
        what="node $victim left the cluster and joined again"
        hold=0
        if ! membership_change "$victim"; then
            membership_failed=$((membership_failed + 1))
            what="$what (FAILED: $membership_why)"
        fi
        what="$what in $(( $(date +%s) - began ))s" ;;
    crash-storage)
        what="node $victim storage workers"
        for p in $(pids_of "$victim" storage); do kill -9 "$p" 2>/dev/null; done
        sleep "$hold" ;;
    pause)
        pids=$(pids_of "$victim")
        what="node $victim for ${hold}s"
        for p in $pids; do kill -STOP "$p" 2>/dev/null; done
        sleep "$hold"
        for p in $pids; do kill -CONT "$p" 2>/dev/null; done ;;
    partition)
        local k=$(( (nodes - 1) / 2 ))
        local minority="${order[*]:0:k}" majority="${order[*]:k}"
        what="{$minority} | {$majority}"
        cut_groups "$minority" "$majority" $reset
        sleep "$hold"; net_heal ;;
    isolate)
        what="node $victim alone"
        local others=
        for p in $(seq 1 "$nodes"); do [ "$p" != "$victim" ] && others="$others $p"; done
        cut_groups "$victim" "$others" $reset
        sleep 1
        # The cut must bite: alone, the node cannot reach a quorum.
        if as_client "$RZKVCTL" get -a "$(node_addr "$victim")" -t 300 \
                "probe-$RANDOM" >/dev/null 2>&1 ||
           [ $? = 1 ]; then
            ineffective=$((ineffective + 1))
            what="$what (INEFFECTIVE: it still answered a QUORUM read)"
        fi
        sleep "$((hold - 1))"; net_heal ;;
    bridge)
        local half=$(( (nodes - 1) / 2 ))
        local left="${order[*]:1:half}" right="${order[*]:1+half}"
        what="{$left} | {$right} bridged by ${order[0]}"
        cut_groups "$left" "$right" $reset
        sleep "$hold"; net_heal ;;
    loss)
        local pct=$((10 + RANDOM % 21))
        what="${pct}%"
        net_loss "$pct"
        sleep "$hold"; net_heal ;;
    delay)
        local ms=$((50 + RANDOM % 151))
        kind=$(net_delay "$ms")
        what="${ms}ms"
        sleep "$hold"; net_heal ;;
    esac
    fault_count[$kind]=$(( ${fault_count[$kind]:-0} + 1 ))
    diag "fault at +${at}s: $kind $what (${hold}s)"
}

# ---- cleanup ----------------------------------------------------------------
cleanup() {
    stop_nodes
    [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null
    [ "$net" = netns ] && netns_down
    if [ -n "$keep" ]; then
        mkdir -p "$keep" && cp -r "$T/c" "$T/history.jsonl" "$keep/" 2>/dev/null
    fi
}
tap_cleanup_hook=cleanup
# A run stopped by a signal still removes its namespaces and processes.
trap 'exit 143' TERM INT HUP

# ---- the run ----------------------------------------------------------------
[ "$net" = none ] && ae_interval=0
if [ "$ae_interval" -gt 0 ]; then plan 11; else plan 10; fi
all_faults="kill-node kill-worker crash-storage pause"
[ -f "$POWERLOSS_SO" ] && [ -x "$POWERLOSS" ] && all_faults="$all_faults power-loss"
[ "$net" != none ] && all_faults="$all_faults partition isolate bridge loss delay"
# A node can leave only if the others have room for every replica, and
# the data moves by anti-entropy.
[ "$net" != none ] && [ "$nodes" -gt "$replicas" ] && [ "$ae_interval" -gt 0 ] &&
    all_faults="$all_faults membership"
[ -n "$faults" ] && all_faults=${faults//,/ }
fault_list=($all_faults)
diag "mode $net, $nodes nodes, replica_count $replicas, duration ${duration}s, faults: $all_faults"

if [ "$net" = netns ]; then
    netns_up || { netns_down; echo "Bail out! network namespaces could not be set up"; exit 1; }
    [ $has_netem = 0 ] && diag "no netem in this kernel: delay faults are tbf rate limits (slow)"
fi
if [ "$net" = proxy ]; then
    PROXY_CTL=$T/proxy.json
    echo '{"blocked": []}' >"$PROXY_CTL"
    maps=()
    for i in $(seq 1 "$nodes"); do for j in $(seq 1 "$nodes"); do
        [ "$i" = "$j" ] && continue
        maps+=(--map "$(proxy_port "$i" "$j"):$i:$j:$((base_port + j - 1))")
    done; done
    "$PY" "$FAULT_DIR/proxy.py" "${maps[@]}" --control "$PROXY_CTL" >"$T/proxy.out" 2>&1 &
    proxy_pid=$!
    wait_until 10 grep -q ready "$T/proxy.out"
fi
[ "$net" != none ] && write_configs
mkdir -p "$T/c"
start_nodes && wait_until 30 all_serving
tap_result $? "cluster of $nodes nodes started ($net)"

ADDRS=$(client_addrs)
HIST=$T/history.jsonl
run_start=$(date +%s)
as_client "$WORKLOAD" -a "$ADDRS" -o "$HIST" -r 4 -k 3 -u 2 -d 2 \
    -D "$duration" -t 1000 -s "$seed" --op-consistency "$consistency" \
    >"$T/workload.out" 2>&1 &
wl_pid=$!
tap_pids="$tap_pids $wl_pid"

# Faults until a few seconds before the end, so the last ones heal in time.
sleep $((1 + RANDOM % 2))
while [ $(( $(date +%s) - run_start )) -lt $((duration - 4)) ]; do
    inject "${fault_list[RANDOM % ${#fault_list[@]}]}"
    sleep $((1 + RANDOM % 3))
done
wait "$wl_pid"
wl_rc=$?
sed 's/^/# /' "$T/workload.out"
ops=$(grep -c '"type":"invoke"' "$HIST" 2>/dev/null || echo 0)
oks=$(grep -c '"type":"ok"' "$HIST" 2>/dev/null || echo 0)
[ "$wl_rc" = 0 ] && [ "$oks" -gt 0 ]
tap_result $? "workload recorded $ops operations under faults ($oks ok)"

total_faults=0
for k in "${!fault_count[@]}"; do total_faults=$((total_faults + fault_count[$k])); done
[ "$total_faults" -gt 0 ] && [ "$ineffective" = 0 ] && [ "$membership_failed" = 0 ]
tap_result $? "$total_faults faults injected ($ineffective isolations had no effect, $membership_failed membership changes failed)"

# ---- heal and check --------------------------------------------------------------
net_heal
for i in $(seq 1 "$nodes"); do for p in $(pids_of "$i"); do kill -CONT "$p" 2>/dev/null; done; done
start_nodes >/dev/null 2>&1
heal_ms=$(( $(date +%s%N) / 1000000 ))
wait_until 30 all_serving
tap_result $? "healed: every node serving"

converged() {
    local i cluster=$T/c/cluster-1.yml
    [ "$net" = none ] && cluster=$T/c/cluster.yml
    for i in $(seq 1 "$nodes"); do
        as_client "$RZKVCTL" keys -a "$(node_addr "$i")" --json >"$T/list-$i.json" 2>/dev/null || return 1
    done
    # Which nodes each key's replicas are: a membership change leaves
    # copies on nodes that are no longer replicas (rzkv(7) CAVEATS).
    "$PY" -c 'import json,sys
for p in sys.argv[1:]:
    for k in json.load(open(p)).get("keys", []): print(k["key"])' "$T"/list-*.json |
        sort -u | "$RZKVCTL" locate --cluster "$cluster" - >"$T/placement.tsv" || return 1
    "$PY" "$FAULT_DIR/analyze.py" converge --placement "$T/placement.tsv" \
        "$replicas" "$T"/list-*.json >"$T/converge.out" 2>&1 && return 0
    [ -f "$T/converge-first.out" ] || cp "$T/converge.out" "$T/converge-first.out"
    return 1
}
# Milliseconds from the heal to the start of the first listing that
# agrees (the listing itself takes a while on big runs and is not part of
# the figure), trying for 60 s; -1 if none did.
ms_to_converge() {
    local deadline=$(( $(date +%s) + 60 )) attempt_ms
    while [ "$(date +%s)" -lt "$deadline" ]; do
        attempt_ms=$(( $(date +%s%N) / 1000000 ))
        if converged; then echo $((attempt_ms - heal_ms)); return; fi
        sleep 0.5
    done
    echo -1
}
# Anti-entropy alone, before any read: a node that was down, cut off or
# lost its unsynced writes must get every version it missed.
if [ "$ae_interval" -gt 0 ]; then
    ae_ms=$(ms_to_converge)
    if [ "$ae_ms" -ge 0 ]; then
        tap_result 0 "anti-entropy alone converged the replicas, $((ae_ms / 1000)).$(( (ae_ms % 1000) / 100 ))s after heal, before any read"
    else
        tap_result 1 "anti-entropy alone did not converge the replicas within 60 s of heal"
        sed 's/^/#   /' "$T/converge.out" | head -12
    fi
    rm -f "$T/converge-first.out"
fi

"$PY" "$FAULT_DIR/analyze.py" keys "$HIST" >"$T/keys.txt"
nkeys=$(wc -l <"$T/keys.txt")
as_client "$WORKLOAD" --verify -a "$ADDRS" -o "$HIST" -t 1000 \
    --verify-threads 16 --consistency quorum --verify-deadline 30 <"$T/keys.txt" >"$T/verify.out" 2>&1
v_rc=$?
# A second pass at ALL: every replica answers, so read repair reaches all.
# (--no-all-readback leaves convergence to QUORUM read repair and the
# background repair alone.)
: >"$T/verify-all.out"
[ "$all_readback" = 1 ] && as_client "$WORKLOAD" --verify -a "$ADDRS" -o "$HIST" -t 2000 \
    --verify-threads 16 --consistency all --verify-deadline 30 <"$T/keys.txt" >"$T/verify-all.out" 2>&1
repair_ms=$(( $(date +%s%N) / 1000000 - heal_ms ))
[ "$v_rc" = 0 ]
tap_result $? "all $nkeys keys read back at QUORUM after healing"
[ "$v_rc" = 0 ] || sed 's/^/#   /' "$T/verify.out" | tail -5

sed 's/^/# read back at ALL: /' "$T/verify-all.out" | head -5
conv_ms=$(ms_to_converge)

"$PY" "$FAULT_DIR/analyze.py" check "$HIST" --json "$T/check.json" >"$T/check.out" 2>&1
check_rc=$?
sed 's/^/# /' "$T/check.out" | head -60
field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], -1))' "$T/check.json" "$1" 2>/dev/null || echo -1; }
anomalies=$(field anomalies); lost=$(field lost); resurrected=$(field resurrected)
if [ "$expect_lost" = 1 ]; then
    tap_result 0 "linearizability anomalies: $anomalies (not judged: writes were lost on purpose)"
elif [ "$expect_anomalies" = 1 ]; then
    # The suite's test of itself: with weak operations under partitions
    # the checker must find something.
    [ "$anomalies" -gt 0 ]
    tap_result $? "anomalies found with $consistency operations: $anomalies"
else
    [ "$anomalies" = 0 ]; tap_result $? "linearizability anomalies: $anomalies"
fi
if [ "$expect_lost" = 1 ]; then
    # The power-loss fault's test of itself: without fsync before the
    # acknowledgement, a power cut must lose acknowledged writes.
    [ "$lost" -gt 0 ]
    tap_result $? "acknowledged writes lost with durability $durability: $lost"
    tap_result 0 "resurrected deletes: $resurrected (not judged)"
elif [ "$expect_anomalies" = 1 ]; then
    tap_result 0 "acknowledged writes lost: $lost (not judged at $consistency)"
    tap_result 0 "resurrected deletes: $resurrected (not judged at $consistency)"
else
    [ "$lost" = 0 ]; tap_result $? "acknowledged writes lost: $lost"
    [ "$resurrected" = 0 ]; tap_result $? "resurrected deletes: $resurrected"
fi

if [ "$conv_ms" -ge 0 ]; then
    [ -f "$T/converge-first.out" ] && sed 's/^/# not yet converged after the read-back: /' "$T/converge-first.out" | head -6
    tap_result 0 "replicas converged $((conv_ms / 1000)).$(( (conv_ms % 1000) / 100 ))s after heal (read-back passes took $((repair_ms / 1000)).$(( (repair_ms % 1000) / 100 ))s)"
else
    tap_result 1 "replicas did not converge within 60 s of the read-back"
    sed 's/^/#   /' "$T/converge.out"
fi

# Under --enable-sanitizers the nodes log what ASan and UBSan find: a
# memory error or undefined behaviour in any node fails the run (leaks are
# only reported: a node killed -9 cannot report them anyway).
san_errors=$(cat "$T"/c/log/*.log 2>/dev/null | grep -cE 'ERROR: AddressSanitizer|runtime error:')
san_leaks=$(cat "$T"/c/log/*.log 2>/dev/null | grep -c 'ERROR: LeakSanitizer')
[ "$san_errors" = 0 ]
tap_result $? "no sanitizer errors in the node logs ($san_errors; leak reports: $san_leaks)"
if [ "$san_errors" != 0 ] || [ "$san_leaks" != 0 ]; then
    grep -hE -A12 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T"/c/log/*.log |
        grep -E 'ERROR|runtime error|#[0-9]+ 0x.* in ' | grep -v '_interceptor_\|libc_start' |
        sed 's/^/#   /' | head -40
fi

# ---- figures ----------------------------------------------------------------------
kinds=
for k in "${!fault_count[@]}"; do kinds="$kinds $k=${fault_count[$k]}"; done
diag "figures: seed $seed, mode $net, nodes $nodes, duration ${duration}s"
diag "figures: operations recorded $(field ops) (workload $ops invokes), faults$kinds"
diag "figures: anomalies $anomalies, lost $lost, resurrected $resurrected, converge_ms $conv_ms (read-back passes ${repair_ms}ms)"
leftover=$(sed -n 's/^leftover copies off their keys. replicas: //p' "$T/converge.out" 2>/dev/null)
diag "figures: copies left on nodes that are no longer replicas ${leftover:-?} (${fault_count[membership]:-0} membership changes)"
purged=$(cat "$T"/c/log/node-*.log 2>/dev/null |
         sed -n 's/.* \([0-9][0-9]*\) tombstones purged.*/\1/p' |
         awk '{n += $1} END {print n + 0}')
diag "figures: tombstones purged by anti-entropy $purged (after ${purge_delay}ms)"
expired=$(cat "$T"/c/log/node-*.log 2>/dev/null |
          sed -n 's/.*refused a write that arrived .* (and \([0-9][0-9]*\) more.*/\1/p' |
          awk '{n += $1 + 1} END {print n + 0}')
diag "figures: replica writes refused as expired $expired"
if [ -n "$summary" ]; then
    printf '{"seed": %s, "mode": "%s", "nodes": %s, "duration": %s, "ops": %s, "faults": {%s}, "anomalies": %s, "lost": %s, "resurrected": %s, "converge_ms": %s}\n' \
        "$seed" "$net" "$nodes" "$duration" "$(field ops)" \
        "$(for k in "${!fault_count[@]}"; do printf '"%s": %s,' "$k" "${fault_count[$k]}"; done | sed 's/,$//')" \
        "$anomalies" "$lost" "$resurrected" "$conv_ms" >>"$summary"
fi
[ "$check_rc" = 0 ] || diag "analyze.py check exited $check_rc"
done_testing
