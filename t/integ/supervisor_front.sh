#!/usr/bin/env bash
# supervisor_front.sh - the front door: each node's one TCP address is bound
# by its supervisor and served by its coordinators, so it keeps
# serving through kill -9 of a coordinator or a storage worker; it carries
# large values, and refuses messages larger than node.max_value_size allows.
# Ports 18250-18252 (metrics 19250-19252).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

D="$T/c"
tap_cleanup_hook=stop_local_cluster
A1=127.0.0.1:18250
A3=127.0.0.1:18252

# wpid NODE ROLE: pid of worker ROLE[0] of node NODE (and the supervisor's
# with ROLE "rzkvd")
wpid() {
    "$RZKVCTL" status --json "$D/node-$1.yml" | python3 -c "import json,sys
d = json.load(sys.stdin)['nodes'][0]
if '$2' == 'rzkvd':
    print(d['pid'])
else:
    print([w for w in d['workers'] if w['role'] == '$2'][0]['pid'])"
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

ok "a local cluster of 3 starts" \
    "$RZKVCTL" start --local 3 --dir "$D" --base-port 18250
ok "set through node 1's front door" "$RZKVCTL" -a "$A1" set greeting hello
is "get through node 3's front door" "$("$RZKVCTL" -a "$A3" get greeting)" hello

sup=$(wpid 1 rzkvd)
kill -9 "$(wpid 1 coordinator)"
t0=$(now_ms)
out=$("$RZKVCTL" -a "$A1" get greeting 2>&1); rc=$?
t1=$(now_ms)
is "kill -9 of node 1's coordinator: a get through node 1 still answers" \
    "$rc:$out" "0:hello"
diag "  answered in $((t1 - t0)) ms, coordinator restart included"
ok "  and a set" "$RZKVCTL" -a "$A1" set greeting again
is "  the supervisor (and its listener) stayed" "$(wpid 1 rzkvd)" "$sup"

kill -9 "$(wpid 1 storage)"
out=$("$RZKVCTL" -a "$A1" get greeting 2>&1); rc=$?
is "kill -9 of a storage worker of node 1: get through node 1 answers" \
    "$rc:$out" "0:again"
serving1() { "$RZKVCTL" status "$D/node-1.yml" >/dev/null; }
ok "  node 1 serves again" wait_until 10 serving1

head -c $((3 * 1024 * 1024)) /dev/urandom >"$T/big"
ok "a 3 MiB value goes in through the front door" \
    "$RZKVCTL" -a "$A1" set big - <"$T/big"
"$RZKVCTL" -a "$A3" get big >"$T/big.out"
ok "  and comes back out intact" cmp "$T/big" "$T/big.out"

# node.max_value_size is 16 MiB: the front door refuses messages over
# 17 MiB (value plus envelope) before they cost the supervisor memory.
head -c $((18 * 1024 * 1024)) /dev/zero >"$T/huge"
t0=$(now_ms)
timeout 30 "$RZKVCTL" -a "$A1" set huge - <"$T/huge" >/dev/null 2>&1; rc=$?
t1=$(now_ms)
ok "an 18 MiB message is refused at the front door (exit $rc)" \
    test "$rc" -ne 0 -a "$rc" -ne 124
ok "  at once ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 5000
is "  the supervisor is unharmed" "$(wpid 1 rzkvd)" "$sup"
ok "  and node 1 still serves" "$RZKVCTL" -a "$A1" get greeting

# More requests at once than a coordinator takes (COORD_SLOTS, 512):
# it stops reading until slots come free, and every request is answered.
out=$(timeout 60 "$RZKVCTL" bench -a "$A1" -c 700 -n 14000 --op health \
      --no-progress --json 2>&1)
is "700 requests at once through one node: all 14000 answered OK" \
    "$(printf '%s' "$out" | python3 -c 'import json,sys
d = json.load(sys.stdin); print(d["ok"], d["results"].get("OK"))' 2>&1)" \
    "14000 14000"

# Stop while clients are connected and busy: nng_device() deadlocked in
# nng_close() here (nanomsg/nng#1503), and so could the client's own
# nng_close(); neither may hang the stop or the client.
"$RZKVCTL" bench -a "$A1,$A3" -c 8 -d 4 --op health >/dev/null 2>&1 &
BENCH=$!
tap_pids="$tap_pids $BENCH"
sleep 1
t0=$(now_ms)
ok "stop --local while clients are busy" \
    timeout 20 "$RZKVCTL" stop --local --dir "$D"
t1=$(now_ms)
ok "  within 6 s ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 6000
gone() { ! kill -0 "$BENCH" 2>/dev/null; }
ok "  and the busy client exits too" wait_until 15 gone
wait "$BENCH" 2>/dev/null
refused() { ! bash -c "exec 3<>/dev/tcp/127.0.0.1/18250" 2>/dev/null; }
ok "  the front door is closed" refused

done_testing
