#!/usr/bin/env bash
# write_outcome.sh - a write whose value left the coordinator is never
# answered UNAVAILABLE, which promises that nothing was applied and lets
# a client retry the write elsewhere.  Node 1 is real; nodes 2 and 3 are
# stand-ins (t/lib/fakepeer.py) that answer clock reads but refuse every
# value with UNAVAILABLE, as a node whose storage worker is late does.
# With node 1's storage worker stopped, the clocks still come from a
# quorum and the value goes out; no replica acknowledges it.  The answer
# must be UNKNOWN, and the value is indeed stored once the worker goes on,
# unless it was held up past its expiry (cluster.max_clock_skew_ms).
# Ports: 3 in 18830-18859 (metrics 19830-19859).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/local.sh"

command -v python3 >/dev/null || skip_all "python3 is needed"

D="$T/wo"
P=$(free_base 18830 18859 3)
stopped_pid=
cleanup() {
    [ -n "$stopped_pid" ] && kill -CONT "$stopped_pid" 2>/dev/null
    "$RZKVCTL" stop --local --dir "$D" >/dev/null 2>&1
}
tap_cleanup_hook=cleanup

ctl() { "$RZKVCTL" "$@"; }
# workers ROLE: the pids of node 1's workers of ROLE
workers() {
    ctl status --json --local --dir "$D" | python3 -c "import json, sys
d = json.load(sys.stdin)
print(' '.join(str(w['pid']) for n in d['nodes'] if n['id'] == '1'
               for w in n['workers'] if w['role'] == '$1'))"
}

run ctl start --local 3 --dir "$D" --base-port "$P"
is "a 3-node cluster starts" "$rc" 0
[ "$rc" = 0 ] || { diag "$err"; done_testing; exit 1; }
run ctl -a ":$P" set before value
is "a write through node 1 succeeds while all three nodes run" "$rc" 0

ctl stop "$D/node-2.yml" >/dev/null 2>&1
ctl stop "$D/node-3.yml" >/dev/null 2>&1
python3 "$RZKV_SRCDIR/t/lib/fakepeer.py" $((P + 1)) $((P + 2)) \
    >"$T/fake.log" 2>&1 &
fake=$!
tap_pids="$tap_pids $fake"
coords=$(workers coordinator)
ncoord=$(echo "$coords" | wc -w)
# Every coordinator of node 1 must reach both stand-ins.
connected() {
    [ "$(grep -c "^conn $((P + 1))" "$T/fake.log")" -ge "$ncoord" ] &&
        [ "$(grep -c "^conn $((P + 2))" "$T/fake.log")" -ge "$ncoord" ]
}
ok "node 1's $ncoord coordinators reach the stand-ins for nodes 2 and 3" \
    wait_until 20 connected

storage=$(workers storage)
is "node 1 has one storage worker" "$(echo "$storage" | wc -w)" 1
kill -STOP "$storage" && stopped_pid=$storage
run ctl -a ":$P" -t 1500 set lost-or-not value
is "a write whose value left but was acknowledged by no replica: UNKNOWN" \
    "$rc" 4
like "  and the coordinator says so (not the client's own timeout)" "$err" \
    "^rzkvctl set: UNKNOWN: outcome unknown \(the write may still take effect\)"
ok "  the stand-ins were sent the value" grep -q "ops.*set" "$T/fake.log"
kill -CONT "$storage"
stopped_pid=

stored() {
    storage_sql "SELECT value FROM kv WHERE key = CAST('lost-or-not' AS BLOB)" \
        "$D/data/node-1"
}
ok "  once node 1's storage worker goes on, the value is stored there" \
    wait_until 10 eval '[ "$(stored)" = value ]'

run ctl -a ":$P" -t 1500 set after value
is "with node 1's storage answering, the write still fails (no quorum)" \
    "$rc" 4

# An UNKNOWN write may land only until it expires: its request's deadline
# plus cluster.max_clock_skew_ms.  With an allowance of 1 s, a write held
# up for 4 s in a stopped storage worker is refused when it gets there.
sed -i 's/^  max_clock_skew_ms: .*/  max_clock_skew_ms: 1000/' "$D/cluster.yml"
run ctl reload "$D/node-1.yml" "$D/cluster.yml"
is "node 1 reloads cluster.yml with max_clock_skew_ms 1000" "$rc" 0
expired() { node_metric 1 'rzkv_storage_writes_expired_total{shard="0"}'; }
kill -STOP "$storage" && stopped_pid=$storage
run ctl -a ":$P" -t 500 set held-up value
is "a write no replica acknowledged in 500 ms: UNKNOWN" "$rc" 4
sleep 4
kill -CONT "$storage"
stopped_pid=
ok "  it reached node 1's storage worker after it expired: refused" \
    wait_until 10 eval '[ "$(expired)" -ge 1 ]'
is "  and not stored" "$(storage_sql \
    "SELECT count(*) FROM kv WHERE key = CAST('held-up' AS BLOB)" \
    "$D/data/node-1")" 0
like "  and logged" "$(cat "$D/log/node-1.log")" \
    "refused a write that arrived [0-9]+ ms after it expired"

kill "$fake" && wait "$fake" 2>/dev/null
run ctl stop --local --dir "$D"
is "the cluster stops" "$rc" 0
done_testing
