#!/bin/sh
# fuzz.sh - make check's short fuzz run: every libFuzzer target for
# $RZKV_FUZZ_SECONDS seconds (default 20) from the seed corpus, under
# ASan and UBSan (t/fuzz/run.sh; skips without clang's libFuzzer).
: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
export RZKV_SRCDIR
exec bash "$RZKV_SRCDIR/t/fuzz/run.sh" --seconds "${RZKV_FUZZ_SECONDS:-20}"
