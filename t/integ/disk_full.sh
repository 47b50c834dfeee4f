#!/usr/bin/env bash
# disk_full.sh - a full disk fails writes cleanly and nothing else: the
# three nodes keep their shards on a small tmpfs, 10 KiB values fill it.
# Writes must fail (never crash or restart a worker), the failures must be
# logged and counted, values written before must still read back, and once
# the disk has room again writes must succeed with no restart, on shards
# that pass SQLite's quick_check.  A write every replica refused with
# nothing written is answered UNAVAILABLE, not UNKNOWN.  Needs root (it
# mounts a tmpfs).
# Ports: 3 in 18860-18889 (metrics 19860-19889).
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/local.sh"

command -v python3 >/dev/null || skip_all "python3 is needed"
DISK="$T/disk"
mkdir -p "$DISK"
mount -t tmpfs -o size=24m rzkv-test "$DISK" 2>/dev/null ||
    skip_all "cannot mount a tmpfs (needs root)"

D="$T/df"
P=$(free_base 18860 18889 3)
A=127.0.0.1:$P,127.0.0.1:$((P + 1)),127.0.0.1:$((P + 2))
cleanup() {
    "$RZKVCTL" stop --local --dir "$D" >/dev/null 2>&1
    umount "$DISK" 2>/dev/null || umount -l "$DISK" 2>/dev/null
}
tap_cleanup_hook=cleanup

ctl() { "$RZKVCTL" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# restarts N: node N's worker restarts, storage and coordinator, summed
restarts() {
    echo $(( $(node_metric "$1" \
        'rzkv_worker_restarts_total{role="storage",instance="0"}') +
        $(node_metric "$1" \
        'rzkv_worker_restarts_total{role="coordinator",instance="0"}') ))
}
serving() {
    ctl status --json --local --dir "$D" |
        json "' '.join(n['health'] for n in d['nodes'])"
}

plan 17

# The configurations come from a first start; the data moves to the tmpfs.
ctl start --local 3 --dir "$D" --base-port "$P" >/dev/null 2>&1 &&
    ctl stop --local --dir "$D" >/dev/null 2>&1
for n in 1 2 3; do
    sed -i "s|^\( *data_dir:\).*|\1 $DISK/node-$n|" "$D/node-$n.yml"
done
run ctl start --local 3 --dir "$D" --base-port "$P"
is "a 3-node cluster starts with its data on a 24 MiB tmpfs" "$rc" 0
[ "$rc" = 0 ] || { diag "$err"; done_testing; exit 1; }
run ctl -a ":$P" set before value
is "a write succeeds while there is room" "$rc" 0

# 4,000 values of 10 KiB on each of three replicas: five times the room.
out=$(ctl bench -a "$A" --no-progress --json --op set --value-size 10240 \
    -c 16 -n 4000 --keys 4000 2>/dev/null)
read -r okn failn < <(echo "$out" | json "d['results']['OK'], \
sum(v for k, v in d['results'].items() if k != 'OK')")
diag "filling: $okn writes OK, $failn failed: $(echo "$out" | json "d['results']")"
ok "filling the disk: some writes succeed, then writes fail" \
    test "${okn:-0}" -gt 0 -a "${failn:-0}" -gt 0
like "  the tmpfs is full" "$(df -P "$DISK" | awk 'NR == 2 {print $5}')" \
    '^(9[0-9]|100)%$'
ok "  the storage workers log why" \
    grep -q "operations refused: database or disk is full" \
    "$D"/log/node-1.log "$D"/log/node-2.log "$D"/log/node-3.log
ok "  and count the failed commits" \
    test "$(node_metric 1 'rzkv_storage_commit_failures_total{shard="0"}')" \
    -gt 0
is "  no worker crashed or restarted" \
    "$(restarts 1) $(restarts 2) $(restarts 3)" "0 0 0"
is "  every node still serves" "$(serving)" "serving serving serving"

# Writes on the full disks: each replica rolls back with nothing written
# and says so, and the coordinator, hearing it from all three, answers
# UNAVAILABLE (nothing applied anywhere), not UNKNOWN.  A write may be
# UNKNOWN only if some replica still found room for it.
big=$(head -c 10240 /dev/zero | tr '\0' x)
held() {
    storage_sql "SELECT count(*) FROM kv WHERE key = CAST('$1' AS BLOB)" \
        "$D"/data/node-* | awk '{ n += $1 } END { print n + 0 }'
}
unavailable=0 wrong=
for i in 1 2 3 4 5; do
    run ctl -a ":$P" set "probe$i" "$big"
    case $rc in
    3) unavailable=$((unavailable + 1)) ;;
    4) [ "$(held "probe$i")" -gt 0 ] || wrong="$wrong probe$i: $err" ;;
    *) wrong="$wrong probe$i: rc $rc: $err" ;;
    esac
done
is "writes on the full disks: UNAVAILABLE, or UNKNOWN where a replica stored them" \
    "${wrong:-none}" none
ok "  and some UNAVAILABLE ($unavailable of 5)" test "$unavailable" -ge 1
run ctl -a ":$((P + 2))" get before
is "a value written before the disk filled still reads back" \
    "$rc/$out" "0/value"

# A storage worker that dies while the disk is full: restarted, it may
# not be able to open its shard (a start commits a new clock epoch, which
# needs room unless its WAL file has some), and then waits for room
# rather than exit until the supervisor gives up on it.
# (t/integ/sync_failure.sh makes the same wait happen every time.)
storage1=$(ctl status --json --local --dir "$D" | json "' '.join(
    str(w['pid']) for n in d['nodes'] if n['id'] == '1'
    for w in n['workers'] if w['role'] == 'storage')")
kill -9 "$storage1"
sleep 2
diag "node 1's storage worker, killed on the full disk: $(grep -q \
    "trying again every second" "$D/log/node-1.log" && echo "waits for room" ||
    echo "started at once")"

# The operator makes room: the nodes take writes again, and node 1's
# storage worker is serving, not given up on.
mount -o remount,size=256m "$DISK"
ok "node 1, whose storage worker was killed on the full disk, serves" \
    wait_until 20 eval '[ "$(serving)" = "serving serving serving" ]'
run ctl -a ":$P" set after value2
is "with room again, a write succeeds" "$rc" 0
run ctl -a ":$((P + 1))" get after
is "  and reads back" "$rc/$out" "0/value2"
out=$(ctl bench -a "$A" --no-progress --json --op set --value-size 1024 \
    -c 8 -n 500 --keys 500 2>/dev/null)
is "  500 more writes all succeed" "$(echo "$out" | json "d['results']['OK']")" 500
is "  with no worker restarted but the one killed" \
    "$(restarts 1) $(restarts 2) $(restarts 3)" "1 0 0"
is "every shard passes quick_check" \
    "$(storage_sql 'PRAGMA quick_check' "$DISK"/node-* | xargs)" "ok ok ok"

run ctl stop --local --dir "$D"
done_testing
