#!/bin/sh
# checker.sh - run the linearizability checker's own tests (TAP) under
# make check: known-good and known-bad histories, random register
# histories and their stale-read mutants, and a size test.
: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
command -v python3 >/dev/null 2>&1 || { echo "1..0 # SKIP python3 not found"; exit 0; }
exec python3 "$RZKV_SRCDIR/t/fault/test_linearize.py"
