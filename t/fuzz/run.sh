#!/usr/bin/env bash
# run.sh - build rzkv's libFuzzer targets with clang and run each a while.
#
#   t/fuzz/run.sh [--seconds N] [--out DIR] [TARGET...]
#
# Targets (t/fuzz/*.c), each with its seed corpus in t/fuzz/corpus/NAME:
#   envelope      wire_unpack_envelope + walk + re-encode (every request)
#   reply         wire_unpack_reply + quorum merge of batch results
#   conf_node     conf_parse_node (node.yml)
#   conf_cluster  conf_parse_cluster (cluster.yml)
#
# Built with -fsanitize=fuzzer,address,undefined from the sources in
# $RZKV_SRCDIR, with config.h and the generated protocol code taken from
# $RZKV_BUILDDIR when it has them (else generated here with protoc-c).
# The repository's corpus is only read: new inputs go to DIR/corpus-NAME.
# A crash leaves DIR/crash-* and is reported with the command to replay
# it.  TAP output; needs clang and libFuzzer's runtime (Debian: clang,
# libclang-rt-14-dev), and skips without them.
#
# CI runs it from make check for ~30 s a target (t/fuzz/fuzz.sh); a longer
# run: t/fuzz/run.sh --seconds 3600 --out /var/tmp/rzkv-fuzz
set -u

: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${RZKV_BUILDDIR:=$RZKV_SRCDIR}"
S=$RZKV_SRCDIR
seconds=30
out=
targets=
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -*) echo "usage: run.sh [--seconds N] [--out DIR] [TARGET...]" >&2; exit 64 ;;
    *) targets="$targets $1"; shift ;;
    esac
done
[ -n "$targets" ] || targets="envelope reply conf_node conf_cluster"
keep_out=1
if [ -z "$out" ]; then
    out=$(mktemp -d "${TMPDIR:-/tmp}/rzkv-fuzz.XXXXXX")
    keep_out=0
fi
mkdir -p "$out"

CC=${FUZZ_CC:-clang}
if ! command -v "$CC" >/dev/null 2>&1; then
    echo "1..0 # SKIP $CC not found (Debian: clang, libclang-rt-14-dev)"
    exit 0
fi
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' >"$out/probe.c"
if ! "$CC" -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" 2>"$out/probe.err"; then
    echo "1..0 # SKIP $CC cannot link libFuzzer (Debian: libclang-rt-14-dev)"
    exit 0
fi

# config.h and the protocol code: from the build tree, or made here.
gen=$out/gen
mkdir -p "$gen/api"
if [ -f "$RZKV_BUILDDIR/config.h" ]; then
    cp "$RZKV_BUILDDIR/config.h" "$gen/config.h"
else
    echo '#define _GNU_SOURCE 1' >"$gen/config.h"
fi
if [ -f "$RZKV_BUILDDIR/api/rzkv.pb-c.c" ]; then
    cp "$RZKV_BUILDDIR"/api/rzkv.pb-c.[ch] "$gen/api/"
else
    protoc-c -I"$S/api" --c_out="$gen/api" "$S/api/rzkv.proto" || {
        echo "Bail out! protoc-c could not generate the protocol code"; exit 1; }
fi

FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
INC="-I$gen -I$gen/api -I$S/common -I$S/worker -I$S/api"
PKG=$(pkg-config --cflags --libs libprotobuf-c yaml-0.1 libmurmurhash 2>/dev/null)
COMMON="$S/common/wire.c $S/common/arena.c $S/common/stamp.c $S/common/conf.c $S/common/ring.c $S/common/log.c $gen/api/rzkv.pb-c.c"

n=0
failed=0
result() {
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}

for t in $targets; do
    src=$S/t/fuzz/fuzz_$t.c
    extra=
    case $t in
    conf_node) src=$S/t/fuzz/fuzz_conf.c ;;
    conf_cluster) src=$S/t/fuzz/fuzz_conf.c; extra=-DFUZZ_CLUSTER ;;
    reply) extra=$S/worker/quorum.c ;;
    esac
    bin=$out/fuzz_$t
    # shellcheck disable=SC2086
    "$CC" $FLAGS $INC $extra "$src" $COMMON $PKG -lnng -lpthread -o "$bin" >"$out/build-$t.log" 2>&1
    rc=$?
    result $rc "fuzz_$t builds with clang (fuzzer, ASan, UBSan)"
    [ $rc = 0 ] || { sed 's/^/#   /' "$out/build-$t.log" | head -30; continue; }

    mkdir -p "$out/corpus-$t"
    ( cd "$out" && "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$out/$t-" -print_final_stats=1 \
        "$out/corpus-$t" "$S/t/fuzz/corpus/$t" >"$out/run-$t.log" 2>&1 )
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/run-$t.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$out/run-$t.log" | tail -1)
    result $rc "fuzz_$t ran ${seconds}s: ${runs:-?} inputs, ${cov:-cov: ?}, no crash"
    if [ $rc != 0 ]; then
        grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ 0x.* in ' "$out/run-$t.log" | head -25 | sed 's/^/#   /'
        for a in "$out/$t-"*; do
            [ -f "$a" ] && echo "#   replay: $bin $a   (kept in $out)"
        done
        keep_out=1
    fi
done
echo "1..$n"
[ $keep_out = 1 ] || rm -rf "$out"
[ $failed = 0 ]
