#!/usr/bin/env bash
# cluster_faults.sh - the coordinator under faults, on 3 local nodes:
# a storage worker or a coordinator killed mid-load loses no acknowledged
# write; malformed, truncated, unknown and oversize requests get error
# answers (or a dropped connection) and the node keeps serving; a reload
# is applied, a bad one refused, and requests go on throughout.
# Ports: 3 in 18460-18489 (metrics 19460-19489).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"
LOAD="$RZKV_BUILDDIR/t/coord_load"
[ -x "$LOAD" ] || skip_all "t/coord_load is not built"

D="$T/c"
P=$(free_base 18460 18489 3)
A1=127.0.0.1:$P A2=127.0.0.1:$((P + 1)) A3=127.0.0.1:$((P + 2))
tap_cleanup_hook=stop_local_cluster
ctl() { "$RZKVCTL" "$@"; }
# worker_pid NODE ROLE INSTANCE
worker_pid() {
    ctl status --json --local --dir "$D" | python3 -c "import json,sys
for n in json.load(sys.stdin)['nodes']:
    if n['id'] == '$1':
        for w in n['workers']:
            if w['role'] == '$2' and w['instance'] == $3: print(w['pid'])"
}
# acked_writes_survive FILE SIZE: every key of FILE reads back its value
acked_writes_survive() {
    "$LOAD" -m verify -c 8 -d 30 -s "$2" -f "$1" "$A2,$A3,$A1" \
        >"$T/verify.out" 2>&1
}

out=$(ctl start --local 3 --dir "$D" --base-port $P 2>&1); rc=$?
is "a 3-node cluster starts" "$rc" 0
[ "$rc" = 0 ] || { diag "$out"; done_testing; exit 1; }

# ---- a storage worker killed under load -----------------------------------------
"$LOAD" -m seq -p st -c 16 -d 5 -s 512 -f "$T/acked1" "$A1,$A2,$A3" \
    >"$T/load1.out" 2>&1 &
lp=$!
sleep 1.5
victim=$(worker_pid 1 storage 0)
ok "storage worker 0 of node 1 is running" test -n "$victim"
kill -9 "$victim"
sleep 1
victim2=$(worker_pid 2 storage 0)
kill -9 "$victim2"
wait $lp
diag "$(cat "$T/load1.out")"
n=$(wc -l <"$T/acked1")
ok "the load got writes acknowledged ($n)" test "$n" -gt 100
ok "every acknowledged write reads back after two storage workers died" \
    acked_writes_survive "$T/acked1" 512
[ -s "$T/verify.out" ] && diag "$(tail -3 "$T/verify.out")"
ok "  and the storage workers were restarted" \
    wait_until 10 bash -c "[ -n \"\$(\"$RZKVCTL\" status --local --dir \"$D\" | grep -c ready)\" ]"

# ---- a coordinator killed under load --------------------------------------------
"$LOAD" -m seq -p co -c 16 -d 4 -s 256 -f "$T/acked2" "$A1,$A3" \
    >"$T/load2.out" 2>&1 &
lp=$!
sleep 1
c2=$(worker_pid 2 coordinator 0)
kill -9 "$c2"
wait $lp
diag "$(cat "$T/load2.out")"
ok "writes through nodes 1 and 3 went on while node 2's coordinator died" \
    test "$(wc -l <"$T/acked2")" -gt 100
ok "  and every acknowledged one reads back" \
    acked_writes_survive "$T/acked2" 256
ok "  node 2's coordinator was restarted and serves" \
    wait_until 10 ctl set -a $A2 after-crash yes

# ---- malformed requests -------------------------------------------------------
cpid=$(worker_pid 1 coordinator 0)
"$LOAD" -b $A1 >"$T/bad.out" 2>&1
bad() { sed -n "s/^$1 //p" "$T/bad.out"; }
is "garbage bytes: INVALID" "$(bad garbage)" INVALID
is "a truncated protobuf: INVALID" "$(bad truncated)" INVALID
is "an unknown message type: UNSUPPORTED" "$(bad unknown)" UNSUPPORTED
is "an empty message: UNSUPPORTED" "$(bad empty)" UNSUPPORTED
is "an empty key: INVALID" "$(bad emptykey)" INVALID
is "a 65537-byte key: INVALID" "$(bad bigkey)" INVALID
is "an unknown consistency: INVALID" "$(bad badconsistency)" INVALID
is "a cluster request with no operation: INVALID" "$(bad noop)" INVALID
is "a value over max_value_size: TOO_LARGE" "$(bad toolarge)" TOO_LARGE
like "a message over the size limit: no answer or an error" \
    "$(bad oversize)" "^(none|TOO_LARGE|INVALID)$"
is "a batch operation without a key: INVALID result" "$(bad badbatch)" INVALID
# Raw bytes that are not even the SP protocol.
( exec 3<>/dev/tcp/127.0.0.1/$P && head -c 4096 /dev/urandom >&3 &&
  sleep 0.2 ) 2>/dev/null
( exec 3<>/dev/tcp/127.0.0.1/$P && printf '\0SP\0\0\020\0\0' >&3 &&
  head -c 100 /dev/urandom >&3 && sleep 0.2 ) 2>/dev/null
is "the coordinator survived all of it (same pid)" \
    "$(worker_pid 1 coordinator 0)" "$cpid"
ok "  and still serves" ctl set -a $A1 still-here yes
is "  correctly" "$(ctl get -a $A1 still-here)" yes

# ---- reload ---------------------------------------------------------------------
sed -i 's/timeout_ms: 2000/timeout_ms: 3000/' "$D/cluster.yml"
ok "reload with a changed timeout" ctl reload --local --dir "$D"
ok "  is applied by the coordinators" \
    wait_until 5 grep -q "coordinator.*reloaded" "$D/log/node-1.log"
ok "  which keep serving" ctl set -a $A3 after-reload yes
cp "$D/cluster.yml" "$T/cluster.good"
sed -i 's/replica_count: 3/replica_count: 9/' "$D/cluster.yml"
ctl reload --local --dir "$D" >/dev/null 2>&1
cp "$T/cluster.good" "$D/cluster.yml"
is "after a refused reload, reads still work" \
    "$(ctl get -a $A2 after-reload)" yes

# ---- stop under load --------------------------------------------------------------
"$LOAD" -m mix -c 8 -d 3 "$A1,$A2,$A3" >"$T/load3.out" 2>&1 &
lp=$!
sleep 0.5
t0=$(date +%s)
ctl stop --local --dir "$D" >/dev/null 2>&1
t1=$(date +%s)
wait $lp; rc=$?
is "stopping under load: the load tool saw no wrong answer" "$rc" 0
ok "  and the nodes stopped within 10 s" test $((t1 - t0)) -lt 10 ||
    diag "$(grep -h 'stop\|unanswered' "$D"/log/node-*.log | tail -20)"
ok "  every coordinator exited 0 on stop" \
    bash -c "! grep -q 'coordinator\[0\].*exited with status [1-9]' '$D'/log/node-*.log"

# ---- big values read in batches ----------------------------------------------------
# With max_value_size 1 MiB, a peer's reply to a batch of reads of 400 KB
# values would not fit in one message: the coordinators must still get
# every value (results that don't fit are asked for again, alone).
sed -i 's/max_value_size: [0-9]*/max_value_size: 1048576/' "$D"/node-*.yml
out=$(ctl start --local --dir "$D" 2>&1); rc=$?
is "the cluster starts again with max_value_size 1 MiB" "$rc" 0
"$LOAD" -m set -c 8 -n 200 -k 20 -s 400000 "$A1" >"$T/bigset.out" 2>&1
"$LOAD" -m get -c 48 -d 3 -k 20 -s 400000 "$A1,$A2,$A3" >"$T/bigget.out" 2>&1
rc=$?
diag "$(tail -1 "$T/bigget.out")"
is "48 concurrent reads of 400 KB values: no wrong value" "$rc" 0
like "  and none failed" "$(tail -1 "$T/bigget.out")" \
    "unavailable 0 unknown 0 other 0 wrong 0"

done_testing
