#!/usr/bin/env bash
# The documentation says what the programs do (issue 12, Docs): the verbs
# and options of `resolverctl --help` and `resolverd --help` are those of
# their man pages, each man page carries the version and a release date,
# every function of resolver.h is in libresolver(3) and `man FUNCTION`
# opens it once installed, the README's configuration shows the defaults,
# every field of a STATUS reply is in doc/protocol.md, whose limits are
# src/wire.h's.
set -u
. "$(dirname "$0")/lib.sh"
t_init docs
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${abs_top_builddir:?}" "${abs_top_srcdir:?}"
CHECK="python3 $abs_top_srcdir/tests/integration/doccheck.py"
MAN=$abs_top_builddir/doc
HEADER=$abs_top_srcdir/lib/includes/resolver.h
PROTOCOL=$abs_top_srcdir/doc/protocol.md

# ---- --help and the man pages ----
"$RESOLVERCTL" --help >"$T_DIR/ctl.help"
"$RESOLVERD" --help >"$T_DIR/rd.help"
t_check "resolverctl --help lists the verbs of resolverctl(1)" \
    $CHECK verbs "$T_DIR/ctl.help" "$MAN/resolverctl.1"
t_check "resolverctl --help lists the options of resolverctl(1)" \
    $CHECK options "$T_DIR/ctl.help" "$MAN/resolverctl.1"
t_check "resolverd --help lists the options of resolverd(8)" \
    $CHECK options "$T_DIR/rd.help" "$MAN/resolverd.8"

# The checker itself: a verb or option missing on either side is reported.
sed '/^  ping /d' "$T_DIR/ctl.help" >"$T_DIR/ctl-noping.help"
t_check "a verb missing from --help is found" \
    bash -c "! $CHECK verbs '$T_DIR/ctl-noping.help' '$MAN/resolverctl.1'"
echo "  -x, --extra  an option the man page does not have" >>"$T_DIR/rd.help"
t_check "an option missing from the man page is found" \
    bash -c "! $CHECK options '$T_DIR/rd.help' '$MAN/resolverd.8'"

version=$("$RESOLVERD" --version | awk '{ print $NF }')
for page in resolverd.8 resolverctl.1 libresolver.3; do
    t_check "$page is dated and versioned $version" $CHECK header "$MAN/$page" "$version"
done

# ---- the README's configuration: the defaults as the code has them ----
echo '{}' >"$T_DIR/empty.json"
"$RESOLVERD" --check-config -c "$T_DIR/empty.json" >"$T_DIR/effective.json" 2>/dev/null
t_check "the README's configuration shows the defaults and names every key" \
    $CHECK config "$abs_top_srcdir/README.md" "$T_DIR/effective.json"

# ---- the C API: every function documented, and a man page of its own ----
t_check "every RESOLVER_API function is in the SYNOPSIS of libresolver(3)" \
    $CHECK api "$HEADER" "$MAN/libresolver.3"
DEST=$T_DIR/dest
t_check "make install-man installs the pages and their links" \
    make -s -C "$abs_top_builddir" install-man install-man-links DESTDIR="$DEST"
mandir=$(find "$DEST" -type d -name man3 -print -quit)
mandir=${mandir%/man3}
functions=$(sed -n 's/^RESOLVER_API[^(]*[ *]\(resolver_[a-z0-9_]*\)(.*/\1/p' "$HEADER")
n=$(wc -w <<<"$functions")
bad=''
for f in $functions; do
    page=$(man -M "$mandir" -w "$f" 2>/dev/null) || page=''
    [[ $page == "$mandir/man3/libresolver.3" ]] || bad+=" $f(${page:-none})"
done
t_eq "man -w FUNCTION is libresolver(3) for the $n exported functions" "" "$bad"
t_check "man resolver_engine_pick shows libresolver(3)" \
    bash -c "man -M '$mandir' -P cat resolver_engine_pick 2>/dev/null | grep -q '^LIBRESOLVER(3)'"
t_check "uninstall removes the links" \
    bash -c "make -s -C '$abs_top_builddir' uninstall-man-links DESTDIR='$DEST' &&
             ! ls '$mandir/man3' | grep -q '^resolver_'"

# ---- doc/protocol.md: limits and STATUS fields ----
t_check "protocol.md states src/wire.h's limits" \
    $CHECK limits "$abs_top_srcdir/src/wire.h" "$PROTOCOL"

t_require etcd etcdctl
. "$(dirname "$0")/etcd_common.sh"
t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock
echo '{ "services": [ { "name": "svc" } ] }' >"$T_DIR/rd.json"
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --etcd "$ETCD_ENDPOINT" --socket "$SOCK"
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
# After a reload, so that last_reload is an object with its own fields.
t_signal resolverd HUP
t_wait_for "the reload shows in status" 10 \
    bash -c "\"$RESOLVERCTL\" -s \"$SOCK\" --json status | grep -q '\"ok\": true'"
"$RESOLVERCTL" -s "$SOCK" --json status >"$T_DIR/status.json"
t_check "every field of status --json is in protocol.md's STATUS fields, and back" \
    $CHECK status "$T_DIR/status.json" "$PROTOCOL"
t_done
