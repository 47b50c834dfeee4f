#!/bin/sh
# fault3.sh - the CI-sized fault run: 3 nodes, network namespaces when root (else the proxy),
# 25 s of workload under faults from a random seed (printed first: replay
# with t/fault/run.sh --seed N --nodes 3 --net auto).  Ports 21100.. on 127.0.0.1.
: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
export RZKV_SRCDIR
exec bash "$RZKV_SRCDIR/t/fault/run.sh" --nodes 3 --duration 25 --net auto \
    --base-port 21100 "$@"
