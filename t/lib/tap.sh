# tap.sh - TAP helpers for rzkv's shell integration tests.
#
#   . "$RZKV_SRCDIR/t/lib/tap.sh"
#   plan 3
#   ok "name" command args...       passes if the command exits 0
#   is "name" "$got" "$want"
#   like "name" "$got" "regex"     (ok, is and like return 1 when they
#                                   fail, so "... || diag ..." can say more)
#   skip_all "reason"
#   done_testing                    prints the plan when no plan was given
#   free_base FIRST LAST N          a free block of N ports on 127.0.0.1
#   run command args...             sets $rc, $out (stdout) and $err (stderr)
#   stop_local_cluster              stop the `rzkvctl start --local` cluster
#                                   in $D; as tap_cleanup_hook=stop_local_cluster,
#                                   whatever the test leaves running at exit
#
# Every test runs in its own scratch directory ($T) that is removed at
# exit, and every process started with `bg` is killed at exit.

: "${RZKV_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${RZKV_BUILDDIR:=$RZKV_SRCDIR}"
RZKVD="$RZKV_BUILDDIR/rzkvd"
RZKVCTL="$RZKV_BUILDDIR/rzkvctl"

tap_n=0
tap_failed=0
tap_planned=
tap_pids=

T=$(mktemp -d "${TMPDIR:-/tmp}/rzkv-test.XXXXXX")

tap_cleanup() {
    for p in $tap_pids; do
        kill -9 "$p" 2>/dev/null
    done
    [ -n "${tap_cleanup_hook:-}" ] && $tap_cleanup_hook
    rm -rf "$T"
}
trap tap_cleanup EXIT

stop_local_cluster() { "$RZKVCTL" stop --local --dir "$D" >/dev/null 2>&1; }

plan() { tap_planned=$1; echo "1..$1"; }
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
diag() { echo "# $*"; }

tap_result() {
    tap_n=$((tap_n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $tap_n - $2"
    else
        echo "not ok $tap_n - $2"
        tap_failed=$((tap_failed + 1))
    fi
}

ok() {
    local name=$1; shift
    "$@" >"$T/.ok.out" 2>&1
    local rc=$?
    tap_result $rc "$name"
    [ $rc = 0 ] || sed 's/^/#   /' "$T/.ok.out"
    return $rc
}

is() {
    if [ "$2" = "$3" ]; then
        tap_result 0 "$1"
    else
        tap_result 1 "$1"
        diag "  got:  '$2'"
        diag "  want: '$3'"
        return 1
    fi
}

like() {
    if printf '%s' "$2" | grep -Eq -- "$3"; then
        tap_result 0 "$1"
    else
        tap_result 1 "$1"
        diag "  got:  '$2'"
        diag "  want: /$3/"
        return 1
    fi
}

# run CMD...: sets $rc, $out (stdout) and $err (stderr)
run() {
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    out=$(cat "$T/out")
    err=$(cat "$T/err")
}

# Run a command in the background and remember it for cleanup.
bg() {
    "$@" &
    tap_pids="$tap_pids $!"
}

# free_base FIRST LAST N: the first port p in FIRST..LAST (stepping by N)
# such that p..p+N-1 are all free, and so are the metrics ports 1000 above
# them that `rzkvctl start --local` gives its nodes (another build's run
# of the same test, or a cluster started by hand, may hold the first
# block).
# (Probes with bash's /dev/tcp; written in POSIX sh because /bin/sh tests
# source this file too.)
free_base() {
    local p i
    p=$1
    while [ $((p + $3 - 1)) -le "$2" ]; do
        i=0
        while [ $i -lt "$3" ]; do
            (exec 3<>/dev/tcp/127.0.0.1/$((p + i))) 2>/dev/null && break
            (exec 3<>/dev/tcp/127.0.0.1/$((p + i + 1000))) 2>/dev/null &&
                break
            i=$((i + 1))
        done
        [ $i = "$3" ] && { echo $p; return 0; }
        p=$((p + $3))
    done
    echo $1
}

# wait_until SECONDS command...: retry every 0.1 s until it succeeds.
# term_wait PID: SIGTERM, then at most 20 s for it to exit (SIGKILL after);
# returns its exit status, 124 if it had to be killed.  PID must be a
# child of this shell (started with bg).
term_wait() {
    kill -TERM "$1"
    local n=0
    while kill -0 "$1" 2>/dev/null && [ $n -lt 200 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -9 "$1"
        wait "$1" 2>/dev/null
        return 124
    fi
    wait "$1"
}

wait_until() {
    local limit=$1; shift
    local end=$(( $(date +%s%N) / 1000000 + limit * 1000 ))
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ $(( $(date +%s%N) / 1000000 )) -ge $end ] && return 1
        sleep 0.1
    done
}

done_testing() {
    [ -z "$tap_planned" ] && echo "1..$tap_n"
    [ $tap_failed = 0 ]
}
