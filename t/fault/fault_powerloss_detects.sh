#!/bin/sh
# fault_powerloss_detects.sh - the power-loss fault's test of itself: with
# node.durability normal (commits not fsynced) a power cut must lose
# acknowledged writes, and the run must count them.  If this passes and
# fault_powerloss.sh passes too, fsync-before-acknowledge is what saves
# the writes.  3 nodes; ports 21240.. on 127.0.0.1 when not root.
: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
export RZKV_SRCDIR
exec bash "$RZKV_SRCDIR/t/fault/run.sh" --nodes 3 --duration 12 --net auto \
    --base-port 21240 --faults power-loss --durability normal --expect-lost "$@"
