#!/bin/sh
# fault_detects.sh - the fault suite's test of itself: reads and writes at
# consistency ONE while nodes are isolated and partitioned must produce
# stale reads, and the run must report them (anomalies > 0).  A suite that
# passes this and the QUORUM runs can tell the two apart.  3 nodes; ports
# 21220.. on 127.0.0.1 when not root.
: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
export RZKV_SRCDIR
exec bash "$RZKV_SRCDIR/t/fault/run.sh" --nodes 3 --duration 20 --net auto \
    --base-port 21220 --faults isolate,partition --consistency one \
    --expect-anomalies "$@"
