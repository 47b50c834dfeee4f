#!/bin/sh
# fault_powerloss.sh - power cuts: every node killed at once during writes,
# every write not yet fsynced undone (t/fault/powerloss.c), restart; with
# storage workers also crashed alone.  No acknowledged write may be lost.
# 3 nodes; ports 21260.. on 127.0.0.1 when not root.
: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
export RZKV_SRCDIR
exec bash "$RZKV_SRCDIR/t/fault/run.sh" --nodes 3 --duration 15 --net auto \
    --base-port 21260 --faults power-loss,crash-storage "$@"
