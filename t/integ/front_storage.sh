#!/usr/bin/env bash
# front_storage.sh - a peer's NodeBatch at a node with one storage worker
# goes from the front door straight to that worker (worker/
# coord_front.c), undecoded; a node with two storage workers
# keeps the coordinator path.  Both answer the same: results in order,
# bad operations refused one by one, and a reply that would not fit a
# message trimmed to TOO_LARGE "resend alone" for its largest results.
# Ports: 3 in 18490-18499 (metrics 19490-19499).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

CLIENT="$RZKV_BUILDDIR/t/storage_client"
LOAD="$RZKV_BUILDDIR/t/coord_load"

D="$T/c"
P=$(free_base 18490 18499 3)
A1=127.0.0.1:$P A2=127.0.0.1:$((P + 1)) A3=127.0.0.1:$((P + 2))
tap_cleanup_hook=stop_local_cluster
ctl() { "$RZKVCTL" "$@"; }
command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"
# ops_sent N: replica operations node N's coordinator has sent so far
ops_sent() {
    "$LOAD" -i "127.0.0.1:$((P + $1 - 1))" |
        sed -n 's/.* coordinator\[0\]:.* ops_sent \([0-9]*\)$/\1/p'
}

# Node 3 gets two storage workers; every node a small max_value_size, so
# a batch of 20 reads of 60 KB values does not fit in one reply.
out=$(ctl start --local 3 --dir "$D" --base-port $P 2>&1) &&
    ctl stop --local --dir "$D" >/dev/null 2>&1; rc=$?
is "a 3-node cluster is made" "$rc" 0
[ "$rc" = 0 ] || { diag "$out"; done_testing; exit 1; }
sed -i 's/max_value_size: [0-9]*/max_value_size: 65536/' "$D"/node-*.yml
sed -i 's/storage_workers: 1/storage_workers: 2/' "$D/node-3.yml"
rm -rf "$D/data/node-3"
out=$(ctl start --local --dir "$D" 2>&1); rc=$?
is "it starts with node 3 on two storage workers" "$rc" 0
[ "$rc" = 0 ] || { diag "$out"; done_testing; exit 1; }
like "node 1's front door sends peers' batches to its storage worker" \
    "$(grep 'front door: serving' "$D/log/node-1.log" | tail -1)" \
    "peers' batches go straight to storage worker 0"
line=$(grep 'front door: serving' "$D/log/node-3.log" | tail -1)
ok "node 3's does not (two storage workers)" \
    test -n "$line" -a "${line#*peers}" = "$line"

# ---- the Cluster API across both kinds of node --------------------------------
letters=(a b c d e f g h i j k l m n o p q r s t)
for i in $(seq 0 19); do
    head -c 60000 /dev/zero | tr '\0' "${letters[$i]}" >"$T/v$i"
    ctl set -a $A2 --file "$T/v$i" "big$i" >/dev/null 2>&1 || break
done
is "20 values of 60 KB written through node 2" "$i" 19
ok "one reads back through node 1" bash -c \
    "'$RZKVCTL' get -a $A1 big7 | cmp -s - '$T/v7'"
ok "one reads back through node 3" bash -c \
    "'$RZKVCTL' get -a $A3 big12 | cmp -s - '$T/v12'"
ok "sets and gets at ALL through every node" bash -c "
    '$RZKVCTL' set -a $A1 -c all k1 one &&
    '$RZKVCTL' set -a $A3 -c all k3 three &&
    [ \"\$('$RZKVCTL' get -a $A2 -c all k1)\" = one ] &&
    [ \"\$('$RZKVCTL' get -a $A1 -c all k3)\" = three ]"

# ---- a peer's batch, as a peer coordinator sends it ---------------------------
before=$(ops_sent 1)
"$CLIENT" -t 3000 tcp://$A1 mget k1 nokey k3 >"$T/m1"
is "a batch at node 1: every result, in order" \
    "$(cut -d' ' -f1-2 "$T/m1" | tr '\n' ' ')" \
    "0 value=one 1 absent 2 value=three "
is "  answered without node 1's coordinator (its ops_sent unchanged)" \
    "$(ops_sent 1)" "$before"
before=$(ops_sent 3)
"$CLIENT" -t 3000 tcp://$A3 mget k1 nokey k3 >"$T/m3"
is "the same batch at node 3 (two storage workers): the same answer" \
    "$(cat "$T/m3")" "$(cat "$T/m1")"
is "  through node 3's coordinator (3 operations sent on)" \
    "$(ops_sent 3)" "$((before + 3))"
for a in $A1 $A3; do
    "$CLIENT" -t 3000 tcp://$a badops >"$T/bad"
    is "bad operations at $a each get their own status" \
        "$(cut -d' ' -f1-2 "$T/bad" | tr '\n' ' ')" \
        "0 INVALID 1 INVALID 2 INVALID 3 INVALID 4 INVALID 5 INVALID 6 OK "
done

# ---- a reply that would not fit ------------------------------------------------
keys=$(for i in $(seq 0 19); do printf 'big%d ' $i; done)
for n in 1 3; do
    a=127.0.0.1:$((P + n - 1))
    "$CLIENT" -t 5000 tcp://$a mget $keys >"$T/big$n"; rc=$?
    is "20 reads of 60 KB at node $n: a reply" "$rc" 0
    whole=$(grep -c ' len=60000$' "$T/big$n")
    again=$(grep -c ' TOO_LARGE result too large for a batch reply; resend alone$' \
        "$T/big$n")
    diag "node $n: $whole whole values, $again to ask for again"
    ok "  some whole values ($whole) and the rest to ask for alone ($again)" \
        test "$whole" -gt 0 -a "$again" -gt 0 -a $((whole + again)) = 20
    ok "  the whole ones are the right values" bash -c "
        grep ' len=60000\$' '$T/big$n' | while read i v l; do
            [ \"\$v\" = value=\$(head -c 16 '$T'/v\$i) ] || exit 1; done"
    first=$(grep -m1 TOO_LARGE "$T/big$n" | cut -d' ' -f1)
    ok "  and one asked for alone comes whole" bash -c \
        "'$CLIENT' -t 5000 tcp://$a get big$first | grep -q '^[0-9.]* .*value=' "
done
ok "the Cluster API reads all 20 through node 2 (reads asked for alone)" \
    bash -c "for i in \$(seq 0 19); do
        '$RZKVCTL' get -a $A2 big\$i | cmp -s - '$T'/v\$i || exit 1; done"

# ---- node 1's storage worker gone: the coordinator answers ----------------------
st=$(ctl status --json --local --dir "$D" | python3 -c "import json,sys
for n in json.load(sys.stdin)['nodes']:
    if n['id'] == '1':
        for w in n['workers']:
            if w['role'] == 'storage' and w['instance'] == 0: print(w['pid'])")
ok "node 1's storage worker is running" test -n "$st"
kill -9 "$st"
# A batch the front door handed to the worker in the instant before it
# died is lost with it (the forwarding does not resend; the asking coordinator
# counts it as that replica's timeout).  So one batch may go unanswered if
# it races the kill; the next one must be answered, by the coordinator or
# by the restarted worker.
"$CLIENT" -t 3000 tcp://$A1 mget k1 k3 >"$T/down"; rc=$?
if [ $rc != 0 ]; then
    diag "first batch raced the kill: $(tr '\n' ' ' <"$T/down")"
    "$CLIENT" -t 3000 tcp://$A1 mget k1 k3 >"$T/down"; rc=$?
fi
diag "$(tr '\n' ' ' <"$T/down")"
is "a batch at node 1 while its storage worker restarts: answered" "$rc" 0
like "  with the values or UNAVAILABLE" "$(head -1 "$T/down")" \
    "^0 (value=one|UNAVAILABLE)"
ok "  and once it is back, from it again" wait_until 10 bash -c \
    "'$CLIENT' -t 1000 tcp://$A1 mget k1 | grep -q '^0 value=one'"

done_testing
