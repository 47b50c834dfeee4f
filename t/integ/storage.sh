#!/bin/bash
# storage.sh - one standalone storage worker (rzkvd -P storage) over IPC:
# durability across kill -9, the epoch and clock across restarts, bad input
# answered while another client is served, refusing foreign databases
# (exit 78), and a clean stop on SIGTERM.
. "$RZKV_SRCDIR/t/lib/tap.sh"

CLIENT="$RZKV_BUILDDIR/t/storage_client"
[ -x "$CLIENT" ] || skip_all "t/storage_client is not built"
[ -x "$RZKVD" ] || skip_all "rzkvd is not built"

plan 43

# Unusual directories: nested, a dot and a dash in the names.
DATA="$T/da-ta/shards.d"
RUN="$T/r.un"
URL="ipc://$RUN/storage-0.ipc"
LOG="$T/worker.log"
C="$CLIENT -t 3000 $URL"

write_node() {     # write_node FILE DATA_DIR WORKERS
    cat >"$1" <<EOF
node:
  id: s1
  local_address: 127.0.0.1:1
  data_dir: $2
  run_dir: $RUN
  storage_workers: $3
  durability: full
  max_value_size: 4096
  log:
    level: info
EOF
}
write_node "$T/node.yml" "$DATA" 1
cat >"$T/cluster.yml" <<EOF
cluster:
  replica_count: 1
  nodes:
    s1: { remote_address: 127.0.0.1:1 }
EOF

start() {          # start [NODE.yml]: the worker in the background, $PID
    bg "$RZKVD" -P storage -I 0 "${1:-$T/node.yml}" "$T/cluster.yml" \
        2>>"$LOG"
    PID=$!
}
stop() { term_wait "$1"; }
healthy() { $C health | grep -q '^OK'; }
field() { $C info | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# A clock E.C as one sortable string.
clock_key() { awk -F. '{ printf "%020d%020d\n", $1, $2 }'; }

# ---- start, basic operations ---------------------------------------------
start
ok "worker starts and answers health" wait_until 10 healthy
is "first epoch is 1" "$(field epoch)" 1
is "set applies" "$($C set k1 v1 1 5 w 0)" "applied=1 clock=1.5"
is "older set is acknowledged, not applied" "$($C set k1 old 1 4 w 0)" \
    "applied=0 clock=1.5"
is "equal set is not applied" "$($C set k1 same 1 5 w 0)" "applied=0 clock=1.5"
is "get returns the newest" "$($C get k1)" "1.5 w 0 value=v1"
is "tombstone over a value" "$($C del k1 1 6 w 0)" "applied=1 clock=1.6"
is "get sees the tombstone" "$($C get k1)" "1.6 w 0 tombstone"
is "absent key" "$($C get nothing-here)" "absent"
is "clock set raises" "$($C clockset 1 20)" "1.20"
is "clock set never lowers" "$($C clockset 1 3)" "1.20"
like "a clock near 2^64 is refused" "$($C clockset 18446744073709551615 0)" \
    "^INVALID clock out of range"
like "a stamp near 2^64 is refused" "$($C set k2 v 1 4611686018427387904)" \
    "^INVALID stamp out of range"
# A write that arrives after it expired is refused, not applied.
like "an expired write is refused" "$($CLIENT -t 3000 -e -50 "$URL" set k3 late 1 30)" \
    "^UNAVAILABLE write expired"
is "  and not applied" "$($C get k3)" "absent"
like "  and logged" "$(cat "$LOG")" "refused a write that arrived [0-9]+ ms after it expired"
is "a write before its expiry applies" "$($CLIENT -t 3000 -e 5000 "$URL" del k3 1 31)" \
    "applied=1 clock=1.31"

# ---- kill -9 under load: every acknowledged write survives ---------------
bg $CLIENT -t 2000 "$URL" load 100000 crash- 16 >"$T/acks"
LOAD=$!
wait_until 20 sh -c "[ \$(grep -c '^ack' '$T/acks') -ge 300 ]"
kill -9 "$PID"
wait "$LOAD" 2>/dev/null
wait "$PID" 2>/dev/null
ACKED=$(grep -c '^ack' "$T/acks")
MAX_BEFORE=$( (sed -n 's/.*clock=//p' "$T/acks"; echo 1.20) | clock_key |
    sort | tail -1)
diag "acknowledged before kill -9: $ACKED"

start
ok "worker restarts on the same files" wait_until 10 healthy
like "stale socket removed at restart" "$(cat "$LOG")" "removed stale socket"
is "epoch moved on to 2" "$(field epoch)" 2
$C check "$T/acks" >"$T/check"
is "every acknowledged write is present and current" "$(tail -1 "$T/check")" \
    "checked=$ACKED missing=0 older=0"
ok "at least 300 writes were acknowledged" test "$ACKED" -ge 300
AFTER=$($C clock | clock_key)
ok "clock after restart is above every clock handed out before" \
    test "$AFTER" \> "$MAX_BEFORE"

# ---- bad input while another client is served ----------------------------
bg $CLIENT -t 10000 "$URL" load 2000 busy- 8 >"$T/busy"
BUSY=$!
is "malformed bytes: INVALID reply" "$($C raw 0a0b0c0d0e)" \
    "INVALID malformed message"
like "unknown message type: UNSUPPORTED" "$($C unknown)" "^UNSUPPORTED "
like "Cluster API request: UNSUPPORTED" "$($C cluster)" "^UNSUPPORTED "
$C badops >"$T/badops"
is "bad operations each get their own status" \
    "$(cut -d' ' -f1-2 "$T/badops" | tr '\n' ' ')" \
    "0 INVALID 1 INVALID 2 INVALID 3 INVALID 4 INVALID 5 INVALID 6 OK "
like "value over max_value_size: TOO_LARGE" "$($C oversize 5000)" \
    "^TOO_LARGE "
like "message over RECVMAXSZ is dropped" \
    "$($CLIENT -t 1500 "$URL" oversize 2000000)" "^no reply"
ok "worker still healthy after bad input" healthy
wait "$BUSY"
is "concurrent client got every write acknowledged" "$(tail -1 "$T/busy")" \
    "done 2000"
like "bad input is logged" "$(cat "$LOG")" "bad_request: malformed message"

# ---- clean stop, under load: every acknowledged write survives ----------
bg $CLIENT -t 3000 "$URL" load 100000 stop- 16 >"$T/stopacks"
LOAD=$!
wait_until 20 sh -c "[ \$(grep -c '^ack' '$T/stopacks') -ge 100 ]"
stop "$PID"
is "SIGTERM: exit 0" "$?" 0
like "stop is logged" "$(tail -2 "$LOG")" "stopped"
wait "$LOAD" 2>/dev/null
start
wait_until 10 healthy
ACKED=$(grep -c '^ack' "$T/stopacks")
$C check "$T/stopacks" >"$T/check"
is "writes acknowledged before the stop are all present" \
    "$(tail -1 "$T/check")" "checked=$ACKED missing=0 older=0"
stop "$PID"

# ---- databases that are not this worker's: exit 78 -----------------------
write_node "$T/node2.yml" "$DATA" 2
"$RZKVD" -P storage -I 0 "$T/node2.yml" "$T/cluster.yml" 2>"$T/err"
is "other storage worker count: exit 78" "$?" 78
like "the message names the file" "$(cat "$T/err")" \
    "shard-0.db: wrong storage worker count"
mkdir -p "$T/junk"
echo "not a database, just text" >"$T/junk/shard-0.db"
write_node "$T/node3.yml" "$T/junk" 1
"$RZKVD" -P storage -I 0 "$T/node3.yml" "$T/cluster.yml" 2>"$T/err"
is "not an rzkv database: exit 78" "$?" 78
touch "$T/afile"
write_node "$T/node4.yml" "$T/afile/data" 1
"$RZKVD" -P storage -I 0 "$T/node4.yml" "$T/cluster.yml" 2>"$T/err"
is "data_dir can't be created: exit 78" "$?" 78

# ---- durability normal: no fsync at commit, and the log says so ----------
sed -e 's/durability: full/durability: normal/' -e "s|$DATA|$T/normal|" \
    "$T/node.yml" >"$T/node6.yml"
start "$T/node6.yml"
wait_until 10 healthy
$C set n1 v 1 1 >/dev/null
is "durability normal: a commit without fsync" \
    "$(field commits) $(field fsyncs)" "1 0"
like "durability normal is logged at start" "$(cat "$LOG")" \
    "durability normal \(no fsync at commit"
stop "$PID"

# ---- two workers: each refuses keys that belong to the other ------------
write_node "$T/node5.yml" "$T/two" 2
bg "$RZKVD" -P storage -I 1 "$T/node5.yml" "$T/cluster.yml" 2>>"$LOG"
PID=$!
C1="$CLIENT -t 3000 ipc://$RUN/storage-1.ipc"
ok "worker 1 of 2 starts" wait_until 10 sh -c "$C1 health | grep -q ^OK"
for k in 0 1 2 3 4 5 6 7 8 9; do $C1 set "key$k" v 1 1; done >"$T/routed"
like "keys of shard 1 are stored, those of shard 0 refused" \
    "$(sort -u "$T/routed" | cut -d' ' -f1 | tr '\n' ' ')" \
    "^INVALID applied=1 $"
stop "$PID"

done_testing
