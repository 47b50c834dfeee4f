#!/usr/bin/env bash
# deb-test.sh - build rzkv's Debian packages and try them as a user would.
#
#   t/pkg/deb-test.sh [--install-deps] [--check] [--keep]
#
# Copies the source tree (git's tracked and untracked-but-not-ignored
# files) to a scratch directory, builds the binary packages there with
# `dpkg-buildpackage -us -uc -b`, installs them with dpkg -i, and checks
# from the installed paths only:
#   - the files are where rzkvd(8), rzkv.yml(5) and rzkv(3) say;
#   - rzkvd -t accepts the installed example configurations;
#   - rzkvctl --help works;
#   - the unit passes systemd-analyze verify (where systemd-analyze exists);
#   - examples/hello.c, built with nothing but `pkg-config rzkv`, talks to
#     a 3-node cluster run by the installed rzkvd on 127.0.0.1;
# then purges the packages again (also on failure or interrupt), so the
# machine is left as it was.
#
#   --install-deps  apt-get install the missing build dependencies first
#   --check         run make check during the package build (default: the
#                   build sets DEB_BUILD_OPTIONS=nocheck, since .ci/run runs
#                   the test suite on its own)
#   --keep          keep the scratch directory (its path is printed)
#
# Needs root (dpkg -i) and the packages dpkg-dev and debhelper besides the
# build dependencies of debian/control.  Not part of make check.
# Prints TAP-like lines and ends with "N passed, N failed".
set -uo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
PKGS="rzkvd librzkv0 librzkv-dev"
BASE_PORT=${RZKV_DEB_TEST_PORT:-18431}   # client ports BASE..BASE+2
install_deps=0 check=0 keep=0
for arg in "$@"; do
    case $arg in
    --install-deps) install_deps=1 ;;
    --check) check=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "deb-test.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

passed=0 failed=0 n=0 installed=0
W=$(mktemp -d "${TMPDIR:-/tmp}/rzkv-deb.XXXXXX")
started_pids=

result() {  # result STATUS NAME
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2"; passed=$((passed + 1))
    else
        echo "not ok $n - $2"; failed=$((failed + 1))
    fi
}
ok() {      # ok NAME command...: passes if the command exits 0
    local name=$1; shift
    "$@" >"$W/.out" 2>&1
    local rc=$?
    result $rc "$name"
    [ $rc = 0 ] || sed 's/^/#   /' "$W/.out" | tail -n 40
    return $rc
}
finish() {
    for p in $started_pids; do
        kill -9 "$p" 2>/dev/null
    done
    if [ $installed = 1 ]; then
        # shellcheck disable=SC2086
        dpkg -P $PKGS >/dev/null 2>&1 || echo "# could not purge $PKGS" >&2
    fi
    if [ $keep = 1 ]; then
        echo "# kept $W"
    else
        rm -rf "$W"
    fi
}
trap finish EXIT
trap 'exit 130' INT TERM
die() { echo "deb-test.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages with dpkg -i)"
for p in $PKGS; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' installed'; then
        die "$p is already installed; remove it first (this test purges what it installs)"
    fi
done
command -v dpkg-buildpackage >/dev/null || die "install dpkg-dev"
command -v dh >/dev/null || die "install debhelper"
t0=$(date +%s)

# ---- the source, as git sees it ---------------------------------------------
mkdir "$W/src" "$W/rzkv"
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$SRC" ls-files -z --cached --others --exclude-standard |
        (cd "$SRC" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' _) |
        (cd "$SRC" && tar --null -T - -cf -) | tar -xf - -C "$W/rzkv"
else
    cp -a "$SRC/." "$W/rzkv/"
fi
[ -f "$W/rzkv/debian/control" ] || die "no debian/control under $SRC"
# make check (--check) reads the placement vectors beside the source tree.
[ -d "$SRC/../shared" ] && ln -s "$(cd "$SRC/../shared" && pwd)" "$W/shared"

# ---- build dependencies -------------------------------------------------------
cd "$W/rzkv" || exit 1
profiles=
[ $check = 1 ] || profiles="-Pnocheck"
if ! missing=$(dpkg-checkbuilddeps $profiles 2>&1); then
    pkgs=$(printf '%s\n' "$missing" | sed -n 's/.*Unmet build dependencies: //p' |
           sed 's/([^)]*)//g; s/<[^>]*>//g; s/|/ /g; s/debhelper-compat/debhelper/g')
    if [ $install_deps = 1 ] && [ -n "$pkgs" ]; then
        echo "# installing build dependencies: $pkgs"
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends $pkgs >/dev/null || die "apt-get failed"
    else
        die "missing build dependencies: ${pkgs:-$missing} (or use --install-deps)"
    fi
fi

# ---- build ------------------------------------------------------------------
b0=$(date +%s)
if [ $check = 1 ]; then
    ok "dpkg-buildpackage -us -uc -b (with make check)" \
        dpkg-buildpackage -us -uc -b
else
    ok "dpkg-buildpackage -us -uc -b" \
        env DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -us -uc -b -Pnocheck
fi || { cp "$W/.out" "$W/build.log"; echo "# build log: $W/build.log"; keep=1; exit 1; }
echo "# build took $(( $(date +%s) - b0 )) s"
debs=$(ls "$W"/rzkvd_*.deb "$W"/librzkv0_*.deb "$W"/librzkv-dev_*.deb 2>/dev/null)
result $([ "$(printf '%s\n' "$debs" | grep -c .)" = 3 ]; echo $?) \
    "three packages built: $(printf '%s ' $debs | sed "s|$W/||g")"

# ---- install ----------------------------------------------------------------
# shellcheck disable=SC2086
ok "dpkg -i the three packages" dpkg -i $debs && installed=1
[ $installed = 1 ] || { dpkg -P $PKGS >/dev/null 2>&1; installed=0; exit 1; }

dpkg -L $PKGS >"$W/installed.list" 2>/dev/null
has() {     # has PACKAGE-LIST-FILE PATH: dpkg lists it and it exists
    grep -qx -- "$1" "$W/installed.list" && [ -e "$1" ]
}
for f in /usr/sbin/rzkvd /usr/bin/rzkvctl \
         /etc/rzkv/3-local-nodes/node-1.yml /etc/rzkv/3-local-nodes/cluster.yml \
         /etc/rzkv/5-nodes/node-5.yml /etc/rzkv/5-nodes/cluster.yml \
         /lib/systemd/system/rzkvd@.service \
         /usr/share/man/man1/rzkvctl.1.gz /usr/share/man/man3/rzkv.3.gz \
         /usr/share/man/man5/rzkv.yml.5.gz /usr/share/man/man7/rzkv.7.gz \
         /usr/share/man/man8/rzkvd.8.gz \
         /usr/include/rzkv.h; do
    ok "installed: $f" has "$f"
done
ok "installed: librzkv.so.0, librzkv.so, librzkv.a, rzkv.pc" sh -c '
    grep -q "/librzkv\.so\.0$" "$1" && grep -q "/librzkv\.so$" "$1" &&
    grep -q "/librzkv\.a$" "$1" && grep -q "/pkgconfig/rzkv\.pc$" "$1"' _ \
    "$W/installed.list"
ok "example configurations are conffiles" \
    grep -qx /etc/rzkv/3-local-nodes/cluster.yml /var/lib/dpkg/info/rzkvd.conffiles

# ---- run from the installed paths ----------------------------------------------
for d in 3-local-nodes 5-nodes; do
    ok "rzkvd -t accepts /etc/rzkv/$d/node-1.yml" sh -c "
        out=\$(/usr/sbin/rzkvd -t /etc/rzkv/$d/node-1.yml /etc/rzkv/$d/cluster.yml 2>&1)
        rc=\$?; echo \"\$out\"; [ \$rc = 0 ] && echo \"\$out\" | grep -q 'configuration OK'"
done
ok "rzkvd -t refuses a broken cluster file (exit 78)" sh -c "
    printf 'cluster:\n  replica_count: 5\n  nodes:\n    a: {remote_address: :1}\n' >'$W/bad.yml'
    /usr/sbin/rzkvd -t /etc/rzkv/3-local-nodes/node-1.yml '$W/bad.yml'; [ \$? = 78 ]"
ok "rzkvctl --help" sh -c '/usr/bin/rzkvctl --help | grep -q "rzkvctl"'
ok "rzkvctl locate with the installed cluster file" sh -c "
    [ \$(/usr/bin/rzkvctl locate --cluster /etc/rzkv/3-local-nodes/cluster.yml greeting | wc -l) = 3 ]"
if command -v systemd-analyze >/dev/null 2>&1; then
    ok "systemd-analyze verify rzkvd@.service" \
        systemd-analyze verify /lib/systemd/system/rzkvd@.service
fi
if command -v man >/dev/null 2>&1; then
    ok "man -w finds every page" sh -c \
        'for p in rzkvctl.1 rzkv.3 rzkv.yml.5 rzkv.7 rzkvd.8; do
             man -w "${p##*.}" "${p%.*}" || exit 1; done'
fi

# ---- the example program against a cluster run by the installed rzkvd ----------
# The installed example configuration, moved to free ports and a scratch
# directory (relative paths in it are taken from its own directory).
C=$W/cluster
mkdir "$C"
moves=
for i in 1 2 3; do
    moves="$moves -e s/127\.0\.0\.1:800$i\b/127.0.0.1:$((BASE_PORT + i - 1))/g"
    moves="$moves -e s/127\.0\.0\.1:900$i\b/127.0.0.1:$((BASE_PORT + 100 + i - 1))/g"
done
for f in node-1.yml node-2.yml node-3.yml cluster.yml; do
    # shellcheck disable=SC2086
    sed $moves /etc/rzkv/3-local-nodes/$f >"$C/$f"
done
ok "the moved configuration names ports $BASE_PORT.." sh -c "
    grep -q ':$BASE_PORT\$' '$C/cluster.yml' && grep -q ':$BASE_PORT\$' '$C/node-1.yml' &&
    ! cat '$C'/*.yml | grep -v '^ *#' | grep -q ':[89]00[1-3]'"
for i in 1 2 3; do
    /usr/sbin/rzkvd -f "$C/node-$i.yml" "$C/cluster.yml" >"$C/node-$i.log" 2>&1 &
    started_pids="$started_pids $!"
done
serving() {
    local rc
    for i in 1 2 3; do
        /usr/bin/rzkvctl -a ":$((BASE_PORT + i - 1))" get deb-test-probe \
            >/dev/null 2>&1
        rc=$?
        [ $rc = 0 ] || [ $rc = 1 ] || return 1
    done
}
up=1
for _ in $(seq 1 300); do serving && { up=0; break; }; sleep 0.1; done
result $up "the installed rzkvd serves a 3-node cluster"
[ $up = 0 ] || for i in 1 2 3; do sed 's/^/#   /' "$C/node-$i.log" | tail -n 15; done

mkdir "$W/hello"
cp /usr/share/doc/librzkv-dev/examples/hello.c "$W/hello/" 2>/dev/null
ok "hello.c builds from the installed package alone" sh -c "
    cd '$W/hello' && cc -o hello hello.c \$(pkg-config --cflags --libs rzkv)"
ok "hello talks to the cluster" sh -c "
    cd '$W/hello' && ldd ./hello | grep -q '/librzkv.so.0 ' &&
    ./hello :$BASE_PORT :$((BASE_PORT + 1)) :$((BASE_PORT + 2))"
ok "rzkvctl reads through another node" sh -c "
    /usr/bin/rzkvctl -a :$((BASE_PORT + 2)) set deb-test value-1 &&
    [ \"\$(/usr/bin/rzkvctl -a :$((BASE_PORT + 1)) get deb-test)\" = value-1 ]"

stopped=0
for p in $started_pids; do kill -TERM "$p" 2>/dev/null; done
for p in $started_pids; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    wait "$p" 2>/dev/null || stopped=1
done
started_pids=
result $stopped "SIGTERM stops the three nodes with exit 0"

# ---- remove -----------------------------------------------------------------------
# shellcheck disable=SC2086
ok "dpkg -P removes the packages" dpkg -P $PKGS && installed=0
ok "nothing left behind" sh -c '
    ! [ -e /usr/sbin/rzkvd ] && ! [ -e /usr/bin/rzkvctl ] &&
    ! [ -e /etc/rzkv/3-local-nodes ] && ! [ -e /lib/systemd/system/rzkvd@.service ] &&
    ! ls /usr/lib/*/librzkv* >/dev/null 2>&1'

echo "# took $(( $(date +%s) - t0 )) s in all"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
