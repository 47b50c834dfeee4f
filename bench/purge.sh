#!/usr/bin/env bash
# purge.sh - what purging tombstones costs anti-entropy, on a fresh local
# 3-node cluster.
#
#   bench/purge.sh [--keys N] [--base-port P]
#
# Sets N keys (default 50,000; 1 KiB values, 2N random sets), deletes 2N
# random ones (most keys, many twice), then measures the CPU time of every
# cluster process between consecutive anti-entropy passes of node 1: the
# first ones purge the tombstones, the later ones find nothing to do.
# Node 2 makes no passes (node 3, last in the file, never does), so each
# interval holds exactly one pass; the interval is 20 s and the purge
# delay 1 s.  Prints one line an interval: its length, the cluster's CPU
# time in it, and the replicas' tombstones purged.  rzkvctl is taken from
# $RZKVCTL, else $RZKV_BUILDDIR/rzkvctl, else $PATH.  Needs curl.
set -eu

KEYS=50000
BASE_PORT=18800
while [ $# -gt 0 ]; do
    case $1 in
    --keys) KEYS=$2; shift ;;
    --base-port) BASE_PORT=$2; shift ;;
    *) sed -n '5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
    shift
done
if [ -n "${RZKVCTL:-}" ]; then C=$RZKVCTL
elif [ -n "${RZKV_BUILDDIR:-}" ]; then C=$RZKV_BUILDDIR/rzkvctl
else C=rzkvctl; fi

D=$(mktemp -d "${TMPDIR:-/tmp}/rzkv-purge.XXXXXX")
trap '"$C" stop --local --dir "$D" >/dev/null 2>&1; rm -rf "$D"' EXIT
"$C" start --local 3 --dir "$D" --base-port "$BASE_PORT" >/dev/null
"$C" stop --local --dir "$D" >/dev/null
for i in 1 2 3; do
    ae=20000
    [ $i = 2 ] && ae=0
    sed -i -e "s/^\(  anti_entropy_interval_ms:\).*/\1 $ae/" \
        -e 's/^\(  tombstone_purge_delay_ms:\).*/\1 1000/' "$D/node-$i.yml"
done
"$C" start --local --dir "$D" >/dev/null
A=127.0.0.1:$BASE_PORT,127.0.0.1:$((BASE_PORT + 1)),127.0.0.1:$((BASE_PORT + 2))
METRICS=http://127.0.0.1:$((BASE_PORT + 1000))/metrics

"$C" bench -a "$A" --no-progress --op set --value-size 1024 -c 64 \
    -n $((2 * KEYS)) --keys "$KEYS" >/dev/null
"$C" bench -a "$A" --no-progress --op del -c 64 -n $((2 * KEYS)) \
    --keys "$KEYS" >/dev/null

cluster_ticks() {
    local p
    for p in $(pgrep -f "rzkvd.* $D/node-" || :); do
        awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || :
    done | awk '{s += $1} END {print s + 0}'
}
metric() { curl -s "$METRICS" | awk -v n="$1" '$1 == n {print $2}'; }
passes() { metric rzkv_antientropy_passes_total; }

n=$(passes)
while [ "$(passes)" = "$n" ]; do sleep 0.2; done
for k in 1 2 3 4; do
    c0=$(cluster_ticks); n=$(passes); p0=$(metric rzkv_antientropy_purged_total)
    t0=$(date +%s%N)
    while [ "$(passes)" = "$n" ]; do sleep 0.2; done
    c1=$(cluster_ticks)
    echo "interval $k: $(( ($(date +%s%N) - t0) / 1000000 )) ms," \
         "cluster CPU $(( (c1 - c0) * 10 )) ms," \
         "tombstones purged $(( $(metric rzkv_antientropy_purged_total) - p0 ))"
done
