#!/usr/bin/env bash
# cluster.sh - the Cluster API on a 3-node local cluster: set/get/del
# through every node, exact bytes, NOT_FOUND, consistency levels, one
# node down (quorum still met), two down (UNAVAILABLE, fast, naming the
# dead replicas), restart and read repair of the stale replica.
# Ports: 3 in 18400-18429 (metrics 19400-19429).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

D="$T/c"
P=$(free_base 18400 18429 3)
A1=127.0.0.1:$P A2=127.0.0.1:$((P + 1)) A3=127.0.0.1:$((P + 2))
tap_cleanup_hook=stop_local_cluster

ctl() { "$RZKVCTL" "$@"; }
# json_get FILE EXPR: evaluate EXPR on the JSON object j read from FILE
json_get() {
    python3 -c "import json,sys; j=json.load(open('$1')); print($2)"
}
# stamp_on NODE-ADDR KEY: the stamp that node's own storage holds for KEY
stamp_on() {
    ctl keys -a "$1" --json >"$T/keys.json" 2>/dev/null || return 1
    python3 -c "import json
for k in json.load(open('$T/keys.json'))['keys']:
    if k.get('key') == '$2':
        s = k['stamp']; print(s['epoch'], s['counter'], s['writer'], s['nonce'])"
}
# stamp_is NODE-ADDR KEY "E C W N": that node holds exactly that version
stamp_is() { [ "$(stamp_on "$1" "$2")" = "$3" ]; }
kill_node() {
    local pid
    pid=$(cat "$D/run/node-$1/rzkvd.pid")
    # The supervisor and, through PDEATHSIG, its workers.
    local kids
    kids=$(pgrep -P "$pid")
    kill -9 "$pid" $kids 2>/dev/null
    wait_until 5 bash -c "! kill -0 $pid 2>/dev/null"
}

out=$(ctl start --local 3 --dir "$D" --base-port $P 2>&1); rc=$?
is "a 3-node cluster starts" "$rc" 0
[ "$rc" = 0 ] || { diag "$out"; done_testing; exit 1; }

# ---- through every node -----------------------------------------------------
ok "set through node 1" ctl set -a $A1 k1 v1
is "get through node 2" "$(ctl get -a $A2 k1)" v1
is "get through node 3" "$(ctl get -a $A3 k1)" v1
ok "set through node 3 overwrites" ctl set -a $A3 k1 v2
is "  node 1 reads the new value" "$(ctl get -a $A1 k1)" v2
ok "del through node 2" ctl del -a $A2 k1
ctl get -a $A1 k1 >/dev/null 2>&1; rc=$?
is "  a deleted key is NOT_FOUND (exit 1) on node 1" "$rc" 1
ctl get -a $A3 never-written >"$T/nf" 2>&1; rc=$?
is "a never-written key: exit 1" "$rc" 1
like "  that says NOT_FOUND" "$(cat "$T/nf")" "NOT_FOUND"

# ---- exact bytes --------------------------------------------------------------
: >"$T/v0"
printf 'x' >"$T/v1"
head -c 1048576 /dev/urandom >"$T/v1m"
printf '\000\001\377\n\r\000tail' >"$T/vbin"
for v in v0 v1 v1m vbin; do
    ctl set -a $A1 "bytes-$v" --file "$T/$v" >/dev/null 2>&1
    ctl get -a $A2 "bytes-$v" >"$T/$v.out" 2>/dev/null; rc=$?
    is "value $v: get exits 0" "$rc" 0
    ok "  and returns the same $(wc -c <"$T/$v") bytes" cmp "$T/$v" "$T/$v.out"
done
ctl set -a $A1 $'bin\001key\377' --file "$T/vbin" >/dev/null 2>&1
ctl get -a $A3 $'bin\001key\377' >"$T/binkey.out" 2>/dev/null
ok "a binary key round-trips" cmp "$T/vbin" "$T/binkey.out"

# ---- consistency levels and info -----------------------------------------------
ok "set with ALL" ctl set -a $A2 -c all lvl all-v
is "  get with ONE sees it" "$(ctl get -a $A3 -c one lvl)" all-v
is "  get with ALL sees it" "$(ctl get -a $A1 -c all lvl)" all-v
ctl get -a $A1 --json lvl >"$T/lvl.json"
is "get --json carries the stamp's writer" \
    "$(json_get "$T/lvl.json" "j['stamp']['writer']")" "2/c0"
ctl info -a $A1 >"$T/info" 2>&1
like "info names the quorums" "$(cat "$T/info")" "read quorum 2, write quorum 2"
is "  and shows 3 reachable nodes" "$(grep -c ' yes' "$T/info")" 3

# ---- frozen nodes: connected but silent, so only the deadline ends it ----------
node_pids() { echo $(cat "$D/run/node-$1/rzkvd.pid") $(pgrep -P "$(cat "$D/run/node-$1/rzkvd.pid")"); }
frozen="$(node_pids 2) $(node_pids 3)"
kill -STOP $frozen
t0=$(date +%s%N)
ctl set -a $A1 -t 400 frozen x >"$T/frozen" 2>&1; rc=$?
t1=$(date +%s%N)
kill -CONT $frozen
is "with nodes 2 and 3 frozen, a set with -t 400 is UNAVAILABLE" "$rc" 3
like "  because of the timeout" "$(cat "$T/frozen")" "node [23] \\(timeout\\)"
ms=$(( (t1 - t0) / 1000000 ))
ok "  answered after about 400 ms ($ms ms)" test "$ms" -ge 350 -a "$ms" -lt 1500
ok "  and the thawed nodes serve again" wait_until 5 ctl set -a $A2 frozen y

# ---- one node down: the quorum is still there -----------------------------------
ctl set -a $A1 survive before >/dev/null
kill_node 3
ok "with node 3 killed, QUORUM set through node 1 succeeds" \
    ctl set -a $A1 survive after
is "  QUORUM get through node 2 sees it" "$(ctl get -a $A2 survive)" after
ctl info -a $A1 >"$T/info" 2>&1
like "  info says node 3 is not reachable" "$(grep '^3 ' "$T/info")" " no "
ctl set -a $A1 -c all survive all-fails >"$T/all" 2>&1; rc=$?
is "  an ALL set now fails with UNAVAILABLE (exit 3)" "$rc" 3
# The value phase was never sent: nothing may have changed.
is "  and left the value alone" "$(ctl get -a $A2 survive)" after

# ---- two nodes down: UNAVAILABLE, fast, naming them ----------------------------
kill_node 2
t0=$(date +%s%N)
ctl set -a $A1 survive lost >"$T/unav" 2>&1; rc=$?
t1=$(date +%s%N)
is "with nodes 2 and 3 killed, a set is UNAVAILABLE (exit 3)" "$rc" 3
like "  naming node 2" "$(cat "$T/unav")" "node 2 \\("
like "  and node 3" "$(cat "$T/unav")" "node 3 \\("
ms=$(( (t1 - t0) / 1000000 ))
ok "  within the timeout and a margin ($ms ms)" test "$ms" -lt 3000
ctl get -a $A1 survive >"$T/unav" 2>&1; rc=$?
is "  a get is UNAVAILABLE too" "$rc" 3
like "  and says how many replicas it needed" "$(cat "$T/unav")" \
    "2 of 3 replicas needed"

# ---- restart: newest value wins, the stale replica is repaired -----------------
out=$(ctl start --local --dir "$D" 2>&1); rc=$?
is "the two nodes start again" "$rc" 0
ok "  and serve" wait_until 10 ctl get -a $A2 survive
# Node 3 missed "after"; nodes 1 and 2 hold it.
is "a QUORUM read through node 3 returns the newest value" \
    "$(ctl get -a $A3 survive)" after
# Node 1 answers once its coordinator has a peer again (after a restart
# its connections to them come back within a few hundred ms).
winner_json() { ctl get -a $A1 --json survive >"$T/win.json"; }
wait_until 10 winner_json
want=$(json_get "$T/win.json" "' '.join(str(j['stamp'][k]) for k in ('epoch','counter','writer','nonce'))")
ok "  and node 3's own storage now holds it (read repair)" \
    wait_until 5 stamp_is $A3 survive "$want" ||
    diag "want '$want', node 3 lists '$(stamp_on $A3 survive)':" \
         "$(ctl keys -a $A3 --json 2>&1 | head -c 600)"
stamps_agree() {
    local s1 s2 s3
    s1=$(stamp_on $A1 survive); s2=$(stamp_on $A2 survive)
    s3=$(stamp_on $A3 survive)
    [ -n "$s1" ] && [ "$s1" = "$s2" ] && [ "$s2" = "$s3" ]
}
ok "  every replica holds the same version" stamps_agree

done_testing
