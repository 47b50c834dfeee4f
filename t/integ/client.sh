#!/usr/bin/env bash
# client.sh - rzkvctl get/set/del/info/keys against a real 3-node cluster:
# exit statuses, raw and binary values (command line, stdin, file), JSON,
# client options before and after the command, failover from a stopped
# node, UNAVAILABLE without a quorum, UNKNOWN for a write that timed out.
# Ports 18400-18402 (metrics 19400-19402), and 18405 for a mute node.
. "${RZKV_SRCDIR:-$(dirname "$0")/../..}/t/lib/tap.sh"

command -v python3 >/dev/null || skip_all "python3 is needed to read JSON"

D="$T/c"
stopped_pid=
cleanup() {
    [ -n "$stopped_pid" ] && kill -CONT "$stopped_pid" 2>/dev/null
    "$RZKVCTL" stop --local --dir "$D" >/dev/null 2>&1
}
tap_cleanup_hook=cleanup

ctl() { "$RZKVCTL" "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

export RZKV_ADDRESS=127.0.0.1:18400

run ctl start --local 3 --dir "$D" --base-port 18400
is "a 3-node cluster starts" "$rc" 0
[ "$rc" = 0 ] || { diag "$err"; done_testing; exit 1; }

# ---- set, get, del -------------------------------------------------------
run ctl set greeting hello
is "set exits 0" "$rc" 0
is "  and prints nothing" "$out$err" ""
ctl get greeting >"$T/value"
is "get exits 0" "$?" 0
printf 'hello' >"$T/want"
ok "  and writes the value with nothing added" cmp "$T/value" "$T/want"

run ctl -a :18401 get greeting
is "-a before the command reads through node 2" "$out" "hello"
run ctl get -a 127.0.0.1:18402 greeting
is "-a after the command reads through node 3" "$out" "hello"
run env RZKV_ADDRESS=:18402 "$RZKVCTL" get greeting
is "RZKV_ADDRESS names the node" "$out" "hello"
run ctl get greeting -a :18401 -c all -t 1500
is "options after the key, -c all, -t" "$rc/$out" "0/hello"

run ctl del greeting
is "del exits 0" "$rc" 0
run ctl get greeting
is "get of a deleted key exits 1" "$rc" 1
like "  saying NOT_FOUND on stderr" "$err" "^rzkvctl get: NOT_FOUND: "
is "  and nothing on stdout" "$out" ""
run ctl del greeting
is "deleting an absent key succeeds" "$rc" 0
run ctl get never-written
is "get of a key never written exits 1" "$rc" 1

# ---- binary values -------------------------------------------------------
head -c 65536 /dev/urandom >"$T/bin"
printf 'a\0b\0\0c\n' >>"$T/bin"
run ctl set blob - <"$T/bin"
is "set KEY - reads the value from stdin" "$rc" 0
ctl -a :18402 get blob >"$T/got"
ok "  binary value read back through another node is identical" \
    cmp "$T/bin" "$T/got"
head -c 300000 /dev/urandom >"$T/file"
run ctl set --file "$T/file" filed
is "set --file PATH KEY" "$rc" 0
ctl get filed >"$T/got"
ok "  reads back identical" cmp "$T/file" "$T/got"
head -c 3000000 /dev/urandom >"$T/big"
run ctl set big - <"$T/big"
is "a 3 MB value (over nng's default 1 MiB message limit) is stored" "$rc" 0
ctl -a :18401 get big >"$T/got"
ok "  and reads back identical" cmp "$T/big" "$T/got"
ctl del big
head -c 17000000 /dev/zero >"$T/huge"
run ctl set huge - <"$T/huge"
is "a value over max_value_size (16 MiB) is refused (5)" "$rc" 5
like "  as INVALID" "$err" "^rzkvctl set: INVALID: "
: >"$T/empty"
run ctl set empty - <"$T/empty"
is "an empty value is stored" "$rc" 0
ctl get empty >"$T/got"
is "  and read back empty" "$?/$(wc -c <"$T/got")" "0/0"

# ---- JSON ----------------------------------------------------------------
ctl set text 'snow ☃ "quoted"' >/dev/null
run ctl get --json text
is "get --json exits 0" "$rc" 0
is "  with the text value" "$(printf '%s' "$out" | json "d['value']")" \
    'snow ☃ "quoted"'
like "  and its stamp" "$(printf '%s' "$out" | json "d['stamp']['epoch']")" \
    '^[0-9]+$'
run ctl -j get blob
is "a binary value is base64 in JSON" \
    "$(printf '%s' "$out" | json "'value' in d, len(__import__('base64').b64decode(d['value_base64']))")" \
    "False 65543"
run ctl set --json j v
is "set --json reports the stamp" \
    "$(printf '%s' "$out" | json "d['status'], d['key'], d['stamp']['counter'] > 0")" \
    "OK j True"
run ctl get --json gone-key
is "get --json of an absent key exits 1" "$rc" 1
is "  and says NOT_FOUND" "$(printf '%s' "$out" | json "d['status']")" "NOT_FOUND"

# ---- info and keys -------------------------------------------------------
run ctl info
is "info exits 0" "$rc" 0
like "  names the replica count and quorums" "$out" \
    "replicas 3, read quorum 2, write quorum 2"
is "  and lists three reachable nodes" \
    "$(printf '%s\n' "$out" | grep -c '127.0.0.1:1840[0-2] *yes')" 3
run ctl info --json -a :18401
is "info --json from node 2" \
    "$(printf '%s' "$out" | json "d['node_id'], d['replica_count'], [n['reachable'] for n in d['nodes']]")" \
    "2 3 [True, True, True]"

for k in k1 k2 k3 k4; do ctl set "$k" "v$k" >/dev/null; done
run ctl keys
is "keys exits 0" "$rc" 0
is "  and lists every live key in order" "$(printf '%s\n' "$out" | tr '\n' ' ')" \
    "blob empty filed j k1 k2 k3 k4 text "
run ctl keys --limit 2 --start k2
is "keys --limit 2 --start k2" "$(printf '%s\n' "$out" | tr '\n' ' ')" "k2 k3 "
like "  says where to go on" "$err" "continue with --start k4"
run ctl keys --json --limit 3
# next_key: where the next page starts, the next live key (j) or a deleted
# one before it (greeting), as the storage workers' pages fall.
like "keys --json" \
    "$(printf '%s' "$out" | json "[k['key'] for k in d['keys']], d['next_key']")" \
    "^\\['blob', 'empty', 'filed'\\] (greeting|j)\$"

ctl del k3 >/dev/null
run ctl keys --start k1 --limit 3
is "keys leaves a deleted key out" "$(printf '%s\n' "$out" | tr '\n' ' ')" \
    "k1 k2 k4 "
run ctl keys --deleted --start k1 --limit 3
like "keys --deleted lists it, marked, in its place" \
    "$(printf '%s\n' "$out" | tr '\n' '|')" \
    "^k1\|k2\|k3	deleted [0-9]+s ago\|\$"
run ctl keys -d --json --start k3 --limit 2
is "keys --deleted --json says which, and since when" \
    "$(printf '%s' "$out" | json "[(k['key'], k['deleted'], k.get('deleted_ms_ago', -1) >= 0) for k in d['keys']]")" \
    "[('k3', True, True), ('k4', False, False)]"

# ---- usage errors --------------------------------------------------------
run ctl get
is "get without a key is a usage error (2)" "$rc" 2
run ctl get --bogus k
is "an unknown option is a usage error" "$rc" 2
run ctl -c sometimes get k1
is "a bad consistency is a usage error" "$rc" 2
run ctl get -t soon k1
is "a bad timeout is a usage error" "$rc" 2
run ctl -a nowhere get k1
is "a bad address is a usage error" "$rc" 2
like "  that names it" "$err" 'bad address "nowhere"'
run ctl set k1 v --file "$T/file"
is "VALUE and --file together are a usage error" "$rc" 2
run ctl set --help
is "set --help exits 0" "$rc" 0
like "  and describes stdin values" "$out" "A VALUE of - reads the value"

# ---- failover and lost quorums -------------------------------------------
ok "stop node 1" ctl stop "$D/node-1.yml"
t0=$(now_ms)
run ctl -a :18400,:18401 get k1
t1=$(now_ms)
is "a read fails over from a stopped node" "$rc/$out" "0/vk1"
ok "  without waiting out a timeout ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 1500
run ctl -a :18400,:18402 set k5 v5
is "so does a write" "$rc" 0
run ctl -a :18400 get k1
is "the stopped node alone: UNAVAILABLE (3)" "$rc" 3
like "  connection refused" "$err" \
    "^rzkvctl get: UNAVAILABLE: connection refused to :18400"

ok "stop node 2" ctl stop "$D/node-2.yml"
run ctl -a :18402 -t 1000 set k6 v6
is "without a quorum a write is UNAVAILABLE (3)" "$rc" 3
like "  with the node's reason" "$err" "^rzkvctl set: UNAVAILABLE: :18402: "
run ctl -a :18402 -t 1000 get k1
is "  and so is a quorum read" "$rc" 3
run ctl -a :18402 -c one get k1
is "  but -c one reads from the one replica left" "$rc/$out" "0/vk1"

# ---- UNKNOWN: a write that timed out after it was sent --------------------
# A mute node: it takes connections and requests (nng's SP handshake, as
# REP) and never answers.
python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 18405))
s.listen(16)
print("ready", flush=True)
held = []
while True:
    c, _ = s.accept()
    c.sendall(b"\0SP\0\x00\x31\0\0")
    held.append(c)
' >"$T/mute.out" 2>&1 &
mute=$!
tap_pids="$tap_pids $mute"
run ctl start --local --dir "$D"
is "restart nodes 1 and 2" "$rc" 0
if wait_until 5 grep -q ready "$T/mute.out"; then
    t0=$(now_ms)
    run ctl -a :18405,:18400 -t 300 set late value
    t1=$(now_ms)
    is "a write to a node that does not answer is UNKNOWN (4)" "$rc" 4
    like "  and says so" "$err" \
        "^rzkvctl set: UNKNOWN: timed out after 550 ms waiting for :18405"
    ok "  within the timeout and its grace ($((t1 - t0)) ms)" \
        test $((t1 - t0)) -lt 2000
    run ctl -a :18400 get late
    is "  it was not sent to the next node" "$rc" 1
    run ctl -a :18405,:18400 -t 300 get k1
    is "a read moves on to the next node" "$rc/$out" "0/vk1"
else
    tap_result 1 "the mute node listens"
fi
kill "$mute" 2>/dev/null

# A node whose coordinator hangs (SIGSTOP) takes no connection: the kernel
# queues it, the handshake never comes, and a write was never sent, so it
# goes to the next node.
coord=$(ctl status --json --local --dir "$D" | json "[w['pid'] for n in d['nodes'] if n['id'] == '3' for w in n['workers'] if w['role'] == 'coordinator'][0]")
if [ -n "$coord" ] && kill -STOP "$coord" 2>/dev/null; then
    stopped_pid=$coord
    run ctl -a :18402,:18400 -t 1000 set hung value
    is "a write through a node whose coordinator hangs goes to the next" \
        "$rc" 0
    is "  and is there" "$(ctl -a :18400 get hung 2>&1)" value
    kill -CONT "$coord"
    stopped_pid=
    run ctl -a :18402 get k1
    is "node 3 answers again once it goes on" "$rc/$out" "0/vk1"
else
    tap_result 1 "find the coordinator of node 3 (got '$coord')"
fi

run ctl stop --local --dir "$D"
is "the cluster stops" "$rc" 0
done_testing
