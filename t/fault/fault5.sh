#!/bin/sh
# fault5.sh - the CI-sized fault run: 5 nodes, network namespaces when root (else the proxy),
# 25 s of workload under faults from a random seed (printed first: replay
# with t/fault/run.sh --seed N --nodes 5 --net auto).  Ports 21140.. on 127.0.0.1.
: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
export RZKV_SRCDIR
exec bash "$RZKV_SRCDIR/t/fault/run.sh" --nodes 5 --duration 25 --net auto \
    --base-port 21140 "$@"
