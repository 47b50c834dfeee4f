#!/usr/bin/env bash
# manlint.sh - the man pages are clean mdoc and describe the code as built.
#
# 1. mandoc -Tlint -Wwarning prints nothing for every page.
# 2. They follow the code, so that a change on either side shows here:
#    rzkvd's options and exit statuses, rzkvctl's commands, options and exit
#    statuses, every config key of conf.c's tables (both ways), every
#    function of rzkv.h (both ways), and rzkv(3)'s example, which must be
#    examples/hello.c and compile against rzkv.h.
# A command that rzkvctl(1) documents but rzkvctl lacks is a TODO line,
# not a failure (it shows in the log while a command is being written).
. "${RZKV_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/t/lib/tap.sh"

command -v mandoc >/dev/null 2>&1 || skip_all "mandoc is not installed"

MAN=$RZKV_SRCDIR/man
PAGES="rzkvd.8 rzkvctl.1 rzkv.yml.5 rzkv.3 rzkv.7"

todo() {
    tap_n=$((tap_n + 1))
    echo "not ok $tap_n - $1 # TODO $2"
}

# ---- 1. lint ----------------------------------------------------------------
for page in $PAGES; do
    out=$(mandoc -Tlint -Wwarning "$MAN/$page" 2>&1)
    rc=$?
    is "mandoc -Tlint -Wwarning $page is clean" "$rc:$out" "0:"
done

# documented(PAGE, ERE): a line of the page matches.
documented() { grep -Eq -- "$2" "$MAN/$1"; }

# ---- 2a. rzkvd ----------------------------------------------------------------
usage=$("$RZKVD" 2>&1)
is "rzkvd without arguments exits 64 (usage)" "$("$RZKVD" >/dev/null 2>&1; echo $?)" 64
opts=$(printf '%s\n' "$usage" | sed -n 's/^  *-\([a-zA-Z]\) .*/\1/p')
[ -n "$opts" ] || { tap_result 1 "rzkvd usage lists options"; }
for o in $opts; do
    ok "rzkvd.8 documents -$o" documented rzkvd.8 "^\.It Fl $o\$"
done
for n in $(sed -n 's/^#define RZKV_EXIT_[A-Z]* *\([0-9]*\).*/\1/p' \
           "$RZKV_SRCDIR/common/contract.h"); do
    ok "rzkvd.8 documents exit status $n" \
        sh -c "sed -n '/^\.Sh EXIT STATUS/,/^\.Sh /p' '$MAN/rzkvd.8' |
               grep -q '^\.It $n\$'"
done

# ---- 2b. rzkvctl --------------------------------------------------------------
help=$("$RZKVCTL" --help 2>&1)
is "rzkvctl --help exits 0" "$("$RZKVCTL" --help >/dev/null 2>&1; echo $?)" 0
cmds=$(printf '%s\n' "$help" | sed -n 's/^  *rzkvctl \([a-z]*\).*/\1/p' | sort -u)
[ -n "$cmds" ] || tap_result 1 "rzkvctl --help lists commands"
for c in $cmds; do
    ok "rzkvctl.1 documents command $c" \
        documented rzkvctl.1 "^\.It Cm $c( |\$)"
    # Every long option the command's --help names.
    for o in $("$RZKVCTL" "$c" --help 2>&1 |
               grep -Eo -- '--[a-z][a-z-]*' | sort -u); do
        [ "$o" = --help ] && continue
        ok "rzkvctl.1 documents $c $o" documented rzkvctl.1 "Fl -${o#--}"
    done
done
for c in $(sed -n 's/^\.It Cm \([a-z]*\).*/\1/p' "$MAN/rzkvctl.1" | sort -u); do
    if printf '%s\n' "$cmds" | grep -qx "$c"; then
        tap_result 0 "rzkvctl has the documented command $c"
    else
        todo "rzkvctl has the documented command $c" "not in rzkvctl yet"
    fi
done
for n in $(sed -n 's/^#define CTL_EXIT_[A-Z_]* *\([0-9]*\).*/\1/p' \
           "$RZKV_SRCDIR/ctl/ctl.h"); do
    ok "rzkvctl.1 documents exit status $n" \
        sh -c "sed -n '/^\.Sh EXIT STATUS/,/^\.Sh /p' '$MAN/rzkvctl.1' |
               grep -q '^\.It $n\$'"
done

# ---- 2c. config keys, both ways ----------------------------------------------
keys=$(sed -n 's/^ *{ "\([a-z_]*\)", CT_.*/\1/p' "$RZKV_SRCDIR/common/conf.c" |
       sort -u)
[ -n "$keys" ] || tap_result 1 "found the key tables in common/conf.c"
for k in $keys; do
    # A leaf (node.log.level) or a section on the way to one (node.log.).
    ok "rzkv.yml.5 documents $k" \
        documented rzkv.yml.5 "^\.It Ic (.*[. ])?$k([ .]|\$)"
done
for k in $(sed -n 's/^\.It Ic \(node\|cluster\)\.\([a-z_.]*\).*/\2/p' \
           "$MAN/rzkv.yml.5" | sed 's/.*\.//; /^$/d' | sort -u); do
    ok "conf.c has the documented key $k" \
        sh -c "printf '%s\n' '$keys' | grep -qx '$k'"
done
# remote_address is written after an Ar id in the page.
ok "rzkv.yml.5 documents cluster.nodes.ID.remote_address" \
    documented rzkv.yml.5 '^\.It Ic cluster\.nodes\. Ns Ar id Ns Ic \.remote_address'

# ---- 2d. the client library ---------------------------------------------------
H=$RZKV_SRCDIR/api/rzkv.h
if [ -f "$H" ]; then
    fns=$(sed -n 's/^[a-z_ *]*[ *]\(rzkv_[a-z_]*\)(.*/\1/p' "$H" | sort -u)
    [ -n "$fns" ] || tap_result 1 "found the functions of rzkv.h"
    for f in $fns; do
        ok "rzkv.3 documents $f" documented rzkv.3 "^\.(Fn|Fo) $f( |\$)"
        ok "rzkv.3 names $f" documented rzkv.3 "^\.Nm $f( ,)?\$"
    done
    for f in $(sed -n 's/^\.Nm \(rzkv_[a-z_]*\).*/\1/p' "$MAN/rzkv.3"); do
        ok "rzkv.h declares the documented $f" \
            sh -c "printf '%s\n' '$fns' | grep -qx '$f'"
    done
    # The first literal block of EXAMPLES, as C.
    sed -n '/^\.Sh EXAMPLES/,/^\.Sh /p' "$MAN/rzkv.3" |
        awk '/^\.Bd -literal/ { n++; next } /^\.Ed/ { if (n == 1) exit }
             n == 1' | sed 's/\\e/\\/g; s/^\\&//' >"$T/example.c"
    ok "rzkv.3's example compiles against rzkv.h" \
        ${CC:-cc} -std=c11 -Wall -Wextra -Werror -fsyntax-only \
        -I"$RZKV_SRCDIR/api" "$T/example.c"
    hello=$RZKV_SRCDIR/examples/hello.c
    ok "rzkv.3's example is examples/hello.c" \
        sh -c "sed -n '/^#include <stdio.h>/,\$p' '$hello' | diff - '$T/example.c'"
else
    tap_result 1 "api/rzkv.h exists"
fi

done_testing
