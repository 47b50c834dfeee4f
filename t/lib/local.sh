# local.sh - helpers for tests of a `rzkvctl start --local` cluster whose
# directory is $D (node-N.yml, data/node-N/).  Needs python3.
#
#   . "$RZKV_SRCDIR/t/lib/local.sh"     (after tap.sh)
#   node_metric N NAME           node N's value of an unlabelled series
#   storage_tombstones DIR...    the key of every tombstone row in the
#                                shard files under the data directories
#                                DIR... (read as files, not through rzkvd)

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

storage_tombstones() {
    python3 - "$@" <<'EOF'
import glob, sqlite3, sys
for d in sys.argv[1:]:
    for f in sorted(glob.glob(d + '/shard-*.db')):
        db = sqlite3.connect('file:' + f + '?mode=ro', uri=True, timeout=10)
        for (k,) in db.execute('SELECT key FROM kv WHERE tombstone = 1'):
            print(k.decode())
        db.close()
EOF
}
