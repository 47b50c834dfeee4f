#!/bin/bash
# storage_handshake.sh - a standalone storage worker (rzkvd -P storage)
# whose IPC socket sees peers leave in the middle of the handshake.  That
# froze nng 1.5's IPC listeners for good (nng#1518, fixed in nng 1.6); the
# storage worker serves its socket with rzkv's own loop (sp_loop.c), so a
# new client must be answered at once, every time, and the worker still
# stops cleanly.  IPC only, no ports.
. "$RZKV_SRCDIR/t/lib/tap.sh"

CLIENT="$RZKV_BUILDDIR/t/storage_client"
POKE="$RZKV_BUILDDIR/t/handshake_poke"
[ -x "$CLIENT" ] || skip_all "t/storage_client is not built"
[ -x "$POKE" ] || skip_all "t/handshake_poke is not built"
[ -x "$RZKVD" ] || skip_all "rzkvd is not built"

RUN="$T/run"
URL="ipc://$RUN/storage-0.ipc"
LOG="$T/worker.log"
C="$CLIENT -t 2000 $URL"

cat >"$T/node.yml" <<EOF2
node:
  id: g1
  local_address: 127.0.0.1:1
  data_dir: $T/data
  run_dir: $RUN
  storage_workers: 1
  durability: normal
  log:
    level: info
EOF2
cat >"$T/cluster.yml" <<EOF2
cluster:
  replica_count: 1
  nodes:
    g1: { remote_address: 127.0.0.1:1 }
EOF2

stop() { term_wait "$1"; }     # its exit status (124: killed)
up() {
    wait_until 10 test -S "$RUN/storage-0.ipc" &&
        wait_until 10 bash -c "$C health | grep -q '^OK'"
}

plan 9

bg "$RZKVD" -P storage -I 0 "$T/node.yml" "$T/cluster.yml" 2>>"$LOG"
PID=$!
ok "the worker answers" up
for round in 1 2 3; do
    for i in $(seq 20); do "$POKE" "$URL" 1; done
    ok "round $round: after 20 peers left mid-handshake a new client is answered" \
        sh -c "$C health | grep -q '^OK'"
done
is "set" "$($C set k v 9 5 w 0)" "applied=1 clock=9.5"
is "get" "$($C get k)" "9.5 w 0 value=v"
stop $PID
is "the worker stops cleanly" $? 0
ok "  and logged no warning" sh -c "! grep -q ' warn ' '$LOG'"
ok "  nor an error" sh -c "! grep -q ' error ' '$LOG'"
done_testing
