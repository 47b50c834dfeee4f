#!/usr/bin/env bash
# bench.sh - rzkvctl bench against a local 3-node cluster: the JSON report
# has the documented fields and counts that add up, -n is honoured (64 in
# flight: none lost or counted twice), gets
# after --prefill find their keys (and NOT_FOUND without), the writes are
# real, the timeline is written, --rps paces requests, a dead address
# gives errors and exit 5.  Functional only: no throughput is asserted.
# Ports 18700-18702 (metrics 19700-19702); 18709 is never listened on.
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"
[ -x "$RZKVD" ] || skip_all "rzkvd is not built"

D="$T/c"
A=127.0.0.1:18700,127.0.0.1:18701,127.0.0.1:18702
tap_cleanup_hook=stop_local_cluster

# jq_py FILE EXPR: print a Python expression of the JSON object j in FILE.
jq_py() {
    python3 -c "import json,sys
j = json.load(open(sys.argv[1]))
print($2)" "$1" 2>&1
}
bench() { "$RZKVCTL" bench -a "$A" --no-progress -t 3000 "$@"; }

plan 39

out=$("$RZKVCTL" start --local 3 --dir "$D" --base-port 18700 2>&1)
is "a local cluster starts" "$?" 0
[ "$(printf '%s\n' "$out" | grep -c serving)" = 3 ] ||
    diag "start said: $out"

# ---- set: fields, counts, -n -----------------------------------------------
bench --op set -n 200 -c 4 --value-size 100 --json >"$T/set.json" \
    2>"$T/set.err"
is "set -n 200 exits 0" "$?" 0
is "  one JSON object with the documented fields" "$(jq_py "$T/set.json" \
    "sorted(set(['ops_per_sec','ok','results','latency_ms','op','concurrency','value_size','duration_s']) - set(j))")" "[]"
is "  results has every status" "$(jq_py "$T/set.json" \
    "sorted(j['results'])")" \
    "['ERROR', 'INVALID', 'NOT_FOUND', 'OK', 'UNAVAILABLE', 'UNKNOWN']"
is "  latency_ms has p50 p90 p99 p999 max" "$(jq_py "$T/set.json" \
    "sorted(set(['p50','p90','p99','p999','max']) - set(j['latency_ms']))")" "[]"
is "  exactly 200 requests, all OK" "$(jq_py "$T/set.json" \
    "j['requests'], sum(j['results'].values()), j['ok'], j['results']['OK']")" \
    "200 200 200 200"
is "  op, concurrency and value size echoed" "$(jq_py "$T/set.json" \
    "j['op'], j['concurrency'], j['value_size']")" "set 4 100"
is "  percentiles ordered, positive" "$(jq_py "$T/set.json" \
    "0 < j['latency_ms']['p50'] <= j['latency_ms']['p90'] <= j['latency_ms']['p99'] <= j['latency_ms']['p999'] <= j['latency_ms']['max']")" \
    "True"
is "  throughput is requests over the measured time" "$(jq_py "$T/set.json" \
    "abs(j['ops_per_sec'] * j['duration_s'] - 200) < 2")" "True"

# Many requests in flight on few library threads: every one is answered
# and counted once, none lost or doubled.
bench --op set -n 2000 -c 64 --value-size 64 --json >"$T/many.json" \
    2>/dev/null
is "set -n 2000 -c 64: 2000 requests, 2000 results, 2000 OK, none extra" \
    "$(jq_py "$T/many.json" "j['requests'], sum(j['results'].values()), j['ok'], j['requests_all']")" \
    "2000 2000 2000 2000"

# ---- prefill and get -------------------------------------------------------
bench --op get --prefill --keys 50 --value-size 300 -n 150 -c 3 --json \
    --key-prefix pf: >"$T/get.json" 2>"$T/get.err"
is "get --prefill exits 0" "$?" 0
is "  the prefill wrote every key without error" "$(jq_py "$T/get.json" \
    "j['prefill']['keys'], j['prefill']['errors']")" "50 0"
like "  and said so on stderr" "$(cat "$T/get.err")" \
    "prefill: 50 keys in .* 0 errors"
is "  every get found its key" "$(jq_py "$T/get.json" \
    "j['requests'], j['results']['OK'], j['results']['NOT_FOUND']")" \
    "150 150 0"
val=$("$RZKVCTL" get -a 127.0.0.1:18701 pf:0000000049)
is "  a prefilled key holds a value of --value-size bytes" "${#val}" 300
is "  the first key is there too" \
    "$("$RZKVCTL" get -a 127.0.0.1:18702 pf:0000000000 | wc -c)" 300

bench --op get --keys 1000 -n 40 -c 2 --json --key-prefix fresh: \
    >"$T/fresh.json" 2>/dev/null
is "get on a fresh keyspace exits 0" "$?" 0
is "  and answers NOT_FOUND, which is not an error" "$(jq_py "$T/fresh.json" \
    "j['results']['NOT_FOUND'], j['errors']")" "40 0"

# ---- other ops -------------------------------------------------------------
bench --op health -n 100 -c 8 --json >"$T/health.json" 2>/dev/null
is "health -n 100: 100 OK" "$(jq_py "$T/health.json" \
    "j['results']['OK'], j['requests'], j['op']")" "100 100 health"

bench --op mix:50/50 --keys 50 --key-prefix pf: -n 300 -c 4 --dist zipf \
    --json >"$T/mix.json" 2>/dev/null
is "mix:50/50 -n 300 over prefilled keys, zipf: all 300 OK" \
    "$(jq_py "$T/mix.json" "j['results']['OK'], j['op'], j['dist']")" \
    "300 mix:50/50 zipf"

bench --op del --keys 50 --key-prefix pf: -n 60 -c 2 --json \
    >"$T/del.json" 2>/dev/null
is "del -n 60: all OK" "$(jq_py "$T/del.json" "j['results']['OK']")" 60
bench --op get --keys 50 --key-prefix pf: -n 400 -c 4 --json \
    >"$T/afterdel.json" 2>/dev/null
is "  gets afterwards find some keys deleted" "$(jq_py "$T/afterdel.json" \
    "j['results']['NOT_FOUND'] > 0, j['errors']")" "True 0"

bench --op set -n 20 -c 2 --consistency all --json >"$T/all.json" 2>/dev/null
is "--consistency all is used and reported" "$(jq_py "$T/all.json" \
    "j['consistency'], j['ok']")" "all 20"

# ---- duration, warmup, timeline, text report -------------------------------
bench --op health -c 2 --duration 2 --warmup 1 --csv-timeline "$T/tl.csv" \
    >"$T/text.out" 2>/dev/null
is "--duration 2 --warmup 1 exits 0" "$?" 0
like "  the text report names the percentiles" "$(cat "$T/text.out")" \
    "p50 [0-9.]+  p90 [0-9.]+  p99 [0-9.]+  p99.9 [0-9.]+  max [0-9.]+"
like "  and the measured time" "$(grep '^measured' "$T/text.out")" \
    "in 2\.[0-9]+ s \(after 1\.0 s warmup\)"
is "  timeline header" "$(head -1 "$T/tl.csv")" \
    "second,ops,ok,errors,p50_ms,p99_ms"
is "  rows for the measured seconds only, then the short remainder" \
    "$(python3 -c "import csv,sys
rows = list(csv.reader(open(sys.argv[1])))[1:]
s = [float(r[0]) for r in rows if len(r) == 6]
print(len(s) == len(rows) and s[:2] == [1.0, 2.0] and
      all(2.0 < x < 5.0 for x in s[2:]) and len(s) <= 3)" "$T/tl.csv")" True ||
    diag "the timeline: $(tr '\n' ' ' <"$T/tl.csv")"
measured=$(sed -n 's/^measured *\([0-9]*\) requests.*/\1/p' "$T/text.out")
rows=$(awk -F, 'NR > 1 { s += $2 } END { print s }' "$T/tl.csv")
is "  timeline ops add up to the measured requests (+-5%)" \
    "$(python3 -c "print(abs($rows - $measured) <= 0.05 * $measured + 2)")" \
    "True"

bench --op health -c 4 --rps 200 --duration 2 --json >"$T/rps.json" \
    2>/dev/null
is "--rps 200 for 2 s sends about 400 requests" "$(jq_py "$T/rps.json" \
    "360 <= j['requests'] <= 402, j['rps']")" "True 200.0"
bench --op health -c 64 --rps 400 --duration 2 --json >"$T/rps64.json" \
    2>/dev/null
is "--rps 400 -c 64 for 2 s: about 800 requests at about 400/s" \
    "$(jq_py "$T/rps64.json" "720 <= j['requests'] <= 802, 360 <= j['ops_per_sec'] <= 410, j['errors']")" \
    "True True 0"
bench --op set -c 8 --rps 1000 -n 300 --value-size 32 --json \
    >"$T/rpsn.json" 2>/dev/null
is "--rps 1000 -n 300: exactly 300 OK, paced over about 0.3 s" \
    "$(jq_py "$T/rpsn.json" "j['requests'], j['ok'], 0.25 <= j['duration_s'] < 1.5")" \
    "300 300 True"
bench --op set -c 16 -n 500 --warmup 0.5 --value-size 32 --json \
    >"$T/warm.json" 2>/dev/null
is "-n 500 after --warmup 0.5: 500 measured, more sent" \
    "$(jq_py "$T/warm.json" "j['requests'], sum(j['results'].values()), j['requests_all'] > 500")" \
    "500 500 True"

# ---- failures --------------------------------------------------------------
"$RZKVCTL" bench -a 127.0.0.1:18709 --no-progress --op set -n 3 -c 1 \
    --json >"$T/dead.json" 2>"$T/dead.err"
is "a dead address: exit 5" "$?" 5
is "  every request UNAVAILABLE" "$(jq_py "$T/dead.json" \
    "j['results']['UNAVAILABLE'], j['ok'], j['errors']")" "3 0 3"
like "  the first error says why" "$(jq_py "$T/dead.json" \
    "j['first_error']['message']")" "refused|18709"

"$RZKVCTL" bench -n 5 --duration 1 >/dev/null 2>&1
is "-n with --duration is a usage error" "$?" 2
"$RZKVCTL" bench --op frob >/dev/null 2>&1
is "an unknown op is a usage error" "$?" 2
"$RZKVCTL" bench -c 0 >/dev/null 2>&1
is "-c 0 is a usage error" "$?" 2

done_testing
