# local.sh - helpers for tests of a `rzkvctl start --local` cluster whose
# directory is $D (node-N.yml, data/node-N/).  Needs python3.
#
#   . "$RZKV_SRCDIR/t/lib/local.sh"     (after tap.sh)
#   node_metric N NAME           node N's value of a series, by its name
#                                as served (labels included, if any)
#   storage_sql SQL DIR...       the first column of every row SQL gives
#                                in each shard file under the data
#                                directories DIR..., bytes as text (read
#                                as files, not through rzkvd)
#   storage_tombstones DIR...    the key of every tombstone row there
#   node_listing ADDR            "key epoch counter writer nonce" for each
#                                live key the storage of the node at ADDR
#                                holds (rzkvctl keys), sorted
#   same_listings A B            the nodes at A and B list the same keys
#                                at the same stamps (the listings are
#                                left in $T/la and $T/lb)

node_metric() {
    local addr
    addr=$(sed -n 's/^ *local_metrics_address: *//p' "$D/node-$1.yml")
    python3 - "http://$addr/metrics" "$2" <<'EOF'
import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
for line in body.splitlines():
    if line.split(' ')[0] == sys.argv[2]:
        print(int(float(line.split(' ')[1])))
EOF
}

storage_sql() {
    python3 - "$@" <<'EOF'
import glob, sqlite3, sys
for d in sys.argv[2:]:
    for f in sorted(glob.glob(d + '/shard-*.db')):
        db = sqlite3.connect('file:' + f + '?mode=ro', uri=True, timeout=10)
        for row in db.execute(sys.argv[1]):
            v = row[0]
            print(v.decode() if isinstance(v, bytes) else v)
        db.close()
EOF
}

storage_tombstones() {
    storage_sql 'SELECT key FROM kv WHERE tombstone = 1' "$@"
}

node_listing() {
    "$RZKVCTL" keys -a "$1" --json >"$T/keys.json" 2>/dev/null || return 1
    python3 -c "import json, sys
for k in json.load(open(sys.argv[1]))['keys']:
    s = k['stamp']
    print(k['key'], s['epoch'], s['counter'], s['writer'], s['nonce'])" \
        "$T/keys.json" | sort
}

same_listings() {
    node_listing "$1" >"$T/la" && node_listing "$2" >"$T/lb" &&
        cmp -s "$T/la" "$T/lb"
}
