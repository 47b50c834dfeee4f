#!/bin/bash
# sync_failure.sh - a failing disk: when the fsync of a commit fails, the
# storage worker must not acknowledge the commit's writes and must not go
# on as if the file were sound.  It exits at once (status 1, so that the
# supervisor restarts it), and at the restart every write acknowledged
# before is there, the refused one is not, and the shard is sound.  A
# worker that starts while the disk fails waits, not serving, and opens
# its shard once the disk works (rather than exit for good).  The disk is t/fault/libpowerloss.so preloaded: with RZKV_POWERLOSS_FAIL_SYNC
# naming a file that exists, fsync and fdatasync of the shard's files fail
# with EIO, and `powerloss --revert` then drops what was never synced.
. "$RZKV_SRCDIR/t/lib/tap.sh"

CLIENT="$RZKV_BUILDDIR/t/storage_client"
SHIM="$RZKV_BUILDDIR/t/fault/.libs/libpowerloss.so"
REVERT="$RZKV_BUILDDIR/t/fault/powerloss"
[ -x "$CLIENT" ] || skip_all "t/storage_client is not built"
[ -x "$RZKVD" ] || skip_all "rzkvd is not built"
[ -f "$SHIM" ] && [ -x "$REVERT" ] || skip_all "t/fault/libpowerloss is not built"
# A sanitizer's runtime must come first in a process: no shim then.
if ldd "$RZKVD" | grep -q 'libasan'; then
    skip_all "rzkvd is built with sanitizers"
fi

plan 16

DATA="$T/data"
RUN="$T/run"
LOG="$T/worker.log"
URL="ipc://$RUN/storage-0.ipc"
C="$CLIENT -t 3000 $URL"
FAIL="$T/disk-fails"
cat >"$T/node.yml" <<EOF2
node:
  id: s1
  local_address: 127.0.0.1:1
  data_dir: $DATA
  run_dir: $RUN
  durability: full
EOF2
cat >"$T/cluster.yml" <<EOF2
cluster:
  replica_count: 1
  nodes:
    s1: { remote_address: 127.0.0.1:1 }
EOF2

start() {
    mkdir -p "$DATA"
    LD_PRELOAD="$SHIM" RZKV_POWERLOSS_DIR="$DATA" \
        RZKV_POWERLOSS_FAIL_SYNC="$FAIL" \
        bg "$RZKVD" -P storage -I 0 "$T/node.yml" "$T/cluster.yml" 2>>"$LOG"
    PID=$!
}
healthy() { $C health | grep -q '^OK'; }

start
ok "the storage worker starts" wait_until 10 healthy
is "a write while the disk works is acknowledged" "$($C set k1 v1 1 5 w 0)" \
    "applied=1 clock=1.5"

touch "$FAIL"
out=$($C set k2 v2 1 6 w 0)
like "a write whose commit cannot be synced is not acknowledged" "$out" \
    "^no reply"
wait_until 10 sh -c "! kill -0 $PID 2>/dev/null"
wait "$PID"
is "  the worker exits, status 1 (restart)" "$?" 1
diag "$(grep "in doubt" "$LOG")"
like "  and says why" "$(cat "$LOG")" \
    "COMMIT of 1 operations failed in doubt \(.*\): exiting"

# The power goes too: what was never synced is lost.
rm -f "$FAIL"
"$REVERT" --revert "$DATA" >/dev/null 2>&1
start
ok "the worker starts again on the same files" wait_until 10 healthy
is "  the acknowledged write is there" "$($C get k1)" "1.5 w 0 value=v1"
is "  the refused one is not" "$($C get k2)" "absent"
term_wait "$PID"
is "  and it stops cleanly" "$?" 0

# A worker that starts on the failing disk cannot commit the new clock
# epoch of its start: it waits, not serving, and opens its shard once
# the disk works again (a full disk is waited for the same way).
touch "$FAIL"
start
ok "a worker starting on the failing disk waits" \
    wait_until 10 grep -q "trying again every second" "$LOG"
diag "$(grep "trying again" "$LOG" | tail -1)"
ok "  not serving" sh -c "! $C health"
ok "  and alive" kill -0 "$PID"
rm -f "$FAIL"
ok "  then, with the disk working, it opens its shard and serves" \
    wait_until 10 healthy
like "  as its log says" "$(cat "$LOG")" "opened after [0-9]+ s of trying"
is "  with the acknowledged write" "$($C get k1)" "1.5 w 0 value=v1"
term_wait "$PID"
is "  and it stops cleanly" "$?" 0

done_testing
