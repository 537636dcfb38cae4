#!/usr/bin/env bash
# resolverd and resolverctl are programs on the library's public header
# (issue 13): a file in src/ may include <resolver.h>, autoconfig.h (the
# build's own) and the headers of src/, and no other header of lib/.
#
# STILL_PRIVATE lists what the daemon still reaches past resolver.h for,
# as "file:header"; an entry goes when the public API covers it.  An
# include outside the rule and the list fails, and so does an entry no
# longer needed (the list only shrinks).
set -u
. "$(dirname "$0")/lib.sh"
t_init includes
: "${abs_top_srcdir:?}"
SRC=$abs_top_srcdir/src
LIB=$abs_top_srcdir/lib

STILL_PRIVATE=""

# Every "file:header" of src/ that names a header of lib/ (other than
# resolver.h), whether written "x.h", "../lib/x.h" or <x.h>.
private_includes() {
    local f h base
    for f in "$SRC"/*.c "$SRC"/*.h; do
        base=${f##*/}
        sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]\([^>"]*\)[>"].*/\1/p' "$f" |
            while read -r h; do
                h=${h##*/}
                [[ $h == resolver.h || $h == autoconfig.h ]] && continue
                [[ -e $SRC/$h ]] && continue
                [[ -e $LIB/$h || -e $LIB/includes/$h ]] && echo "$base:$h"
            done
    done | sort -u
}
found=$(private_includes)
t_ok "src/ scanned: $(wc -w <<<"$found") includes of lib/ headers other than resolver.h"

new=$(comm -23 <(echo "$found") <(tr ' ' '\n' <<<"$STILL_PRIVATE" | sed '/^$/d' | sort -u) | xargs)
t_eq "src/ includes no lib/ header beyond resolver.h (and the list above)" "" "$new"
gone=$(comm -13 <(echo "$found") <(tr ' ' '\n' <<<"$STILL_PRIVATE" | sed '/^$/d' | sort -u) | xargs)
t_eq "every entry of the list is still needed (strike the others)" "" "$gone"

# The checker itself: a private include in a copy of src/ is found.
mkdir -p "$T_DIR/src"
cp "$SRC"/*.c "$SRC"/*.h "$T_DIR/src/"
echo '#include "picker.h"' >>"$T_DIR/src/resolverctl.c"
SRC=$T_DIR/src
t_check "a new private include is caught" bash -c "grep -q 'resolverctl.c:picker.h' <<<'$(private_includes)'"
t_done
