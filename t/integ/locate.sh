#!/bin/sh
# locate.sh - `rzkvctl locate` prints the replicas of a key, best first,
# exactly as the original system placed them (vectors/placement.tsv), and
# refuses a broken cluster file with FILE:LINE:COLUMN on stderr.
#
# No daemon is started: locate only reads the cluster file.

. "$RZKV_SRCDIR/t/lib/tap.sh"

TSV="${RZKV_VECTORS:-$RZKV_SRCDIR/../shared/vectors}/placement.tsv"
[ -r "$TSV" ] || skip_all "no placement vectors at $TSV"
[ -x "$RZKVCTL" ] || skip_all "rzkvctl not built"

# write_cluster FILE SEED N IDS: one node per id, on unused addresses (the
# file is only read, nothing listens there).
write_cluster() {
    {
        printf 'cluster:\n  seed: %s\n  replica_count: %s\n  nodes:\n' "$2" "$3"
        port=20000
        for id in $(printf '%s' "$4" | tr ',' ' '); do
            port=$((port + 1))
            printf '    "%s": {remote_address: "127.0.0.1:%d"}\n' "$id" $port
        done
    } >"$1"
}

# ~20 vectors whose key decodes to printable ASCII without spaces (so it
# is one argv word): every 7th such line, so that every seed and
# replica_count of the file is covered.  awk does the decoding: fast, and
# POSIX awk has no hex input.
pick_vectors() {
    awk -F '\t' '
    BEGIN { for (i = 0; i < 16; i++) hex[substr("0123456789abcdef", i + 1, 1)] = i }
    /^#/ || NF < 5 { next }
    {
        h = tolower($4); key = ""; ok = length(h) % 2 == 0 && length(h) > 0
        for (i = 1; ok && i < length(h); i += 2) {
            a = substr(h, i, 1); b = substr(h, i + 1, 1)
            if (!(a in hex) || !(b in hex)) { ok = 0; break }
            c = hex[a] * 16 + hex[b]
            if (c <= 32 || c >= 127) { ok = 0; break }
            key = key sprintf("%c", c)
        }
        if (ok && usable++ % 7 == 0 && picked++ < 20)
            printf "%s\t%s\t%s\t%s\t%s\n", $1, $2, $3, key, $5
    }' "$TSV"
}

cases=0
tab=$(printf '\t')
pick_vectors >"$T/vectors"
while IFS="$tab" read -r seed rc ids key want; do
    cases=$((cases + 1))
    f="$T/cluster-$cases.yml"
    write_cluster "$f" "$seed" "$rc" "$ids"
    # "--": a key may start with "-".
    got=$("$RZKVCTL" locate --cluster "$f" -- "$key" 2>"$T/err")
    status=$?
    want_lines=$(printf '%s\n' "$want" | tr ',' '\n')
    name="locate seed=$seed n=$rc nodes=$ids key=$(printf '%s' "$key" | tr '#' '_')"
    if [ $status != 0 ]; then
        tap_result 1 "$name"
        sed 's/^/#   /' "$T/err"
    else
        is "$name" "$got" "$want_lines"
    fi
done <"$T/vectors"
[ $cases -ge 15 ] || { tap_result 1 "found only $cases usable vectors"; }

# Output is one id per line, in order, and nothing else.
write_cluster "$T/three.yml" 0 3 "1,2,3"
got=$("$RZKVCTL" locate --cluster "$T/three.yml" key-768283)
is "vector 1 of placement.tsv, line by line" "$got" "1
3
2"

# KEY "-": keys from standard input, each with its nodes on one line.
got=$(printf 'key-768283\nanother key\n' |
      "$RZKVCTL" locate --cluster "$T/three.yml" -)
want=$(printf 'key-768283\t1 3 2\nanother key\t%s' \
       "$("$RZKVCTL" locate --cluster "$T/three.yml" "another key" | paste -sd' ')")
is "keys from standard input, a line each" "$got" "$want"

# A broken cluster file: non-zero exit, FILE:LINE:COLUMN: KEY on stderr.
cat >"$T/broken.yml" <<'EOF'
cluster:
  seed: 0
  replica_count: 4
  nodes:
    a: {remote_address: "127.0.0.1:20001"}
    b: {remote_address: "127.0.0.1:20002"}
EOF
"$RZKVCTL" locate --cluster "$T/broken.yml" somekey >"$T/out" 2>"$T/err"
status=$?
ok "broken cluster file exits non-zero" [ $status != 0 ]
is "nothing on stdout" "$(cat "$T/out")" ""
like "stderr names file:line:column, key and expectation" "$(cat "$T/err")" \
    "broken\\.yml:3:18: cluster\\.replica_count: expected an integer in 1\\.\\.2 \\(the number of nodes\\), got \"4\""

cat >"$T/syntax.yml" <<'EOF'
cluster:
  replica_count: 1
  nodes: {a: {remote_address: "127.0.0.1:20001"}
EOF
"$RZKVCTL" locate --cluster "$T/syntax.yml" somekey >/dev/null 2>"$T/err"
status=$?
ok "YAML syntax error exits non-zero" [ $status != 0 ]
like "syntax error located" "$(cat "$T/err")" "syntax\\.yml:[0-9]+:[0-9]+: YAML syntax error: "

"$RZKVCTL" locate --cluster "$T/missing.yml" somekey >/dev/null 2>"$T/err"
status=$?
ok "missing cluster file exits non-zero" [ $status != 0 ]
like "missing file named" "$(cat "$T/err")" "missing\\.yml: cannot open: No such file or directory"

done_testing
