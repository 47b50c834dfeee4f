#!/bin/sh
# fault3_proxy.sh - the CI-sized fault run: 3 nodes, node links through the userspace fault proxy,
# 15 s of workload under faults from a random seed (printed first: replay
# with t/fault/run.sh --seed N --nodes 3 --net proxy).  Ports 21180.. on 127.0.0.1.
: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
export RZKV_SRCDIR
exec bash "$RZKV_SRCDIR/t/fault/run.sh" --nodes 3 --duration 15 --net proxy \
    --base-port 21180 "$@"
