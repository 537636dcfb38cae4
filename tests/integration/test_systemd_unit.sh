#!/usr/bin/env bash
# contrib/resolverd.service (issue 12, systemd and checks): systemd accepts
# it (systemd-analyze verify), its hardening keeps the exposure at most 2.0
# (systemd-analyze security), it checks the configuration before starting
# (ExecStartPre= --check-config), and its commands work as written with a
# password handed over by LoadCredential= ($CREDENTIALS_DIRECTORY).
set -u
. "$(dirname "$0")/lib.sh"
t_init systemd_unit
: "${RESOLVERD:?}" "${RESOLVERCTL:?}" "${abs_top_srcdir:?}"
UNIT=$abs_top_srcdir/contrib/resolverd.service

key() { sed -n "s/^$1=//p" "$UNIT"; }
t_eq "RuntimeDirectory=resolverd" resolverd "$(key RuntimeDirectory)"
t_check "ExecStartPre= runs --check-config on ExecStart's file" bash -c "
    pre=\$(sed -n 's/^ExecStartPre=//p' '$UNIT'); start=\$(sed -n 's/^ExecStart=//p' '$UNIT')
    [[ \$pre == *' --check-config '* && \$pre == *' -c '\"\${start##* -c }\" ]]"
t_check "the unit documents SupplementaryGroups= for client access" grep -q '^#SupplementaryGroups=' "$UNIT"
t_check "the unit documents LoadCredential= for the etcd password" grep -q '^#LoadCredential=etcd-password:' "$UNIT"

# The unit with this build's resolverd, LoadCredential= and
# SupplementaryGroups= enabled as its comments say.
sed -e "s|/usr/sbin/resolverd|$RESOLVERD|g" -e 's/^#LoadCredential=/LoadCredential=/' \
    -e 's/^#SupplementaryGroups=.*/SupplementaryGroups=nogroup/' "$UNIT" >"$T_DIR/resolverd.service"
if command -v systemd-analyze >/dev/null; then
    t_check "systemd-analyze verify accepts the unit" \
        systemd-analyze verify --man=no "$T_DIR/resolverd.service"
    t_check "systemd-analyze verify accepts the unit as shipped" bash -c \
        "systemd-analyze verify --man=no '$UNIT' 2>&1 | grep -v 'is not executable' | { ! grep .; }"
    exposure=$(systemd-analyze security --offline=yes "$UNIT" 2>/dev/null |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    echo "# systemd-analyze security: exposure $exposure"
    t_check "exposure $exposure <= 2.0" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }'
else
    t_ok "# skipped systemd-analyze (install the Debian package systemd)"
fi

# ExecStartPre= and ExecStart= as systemd would run them: the config under
# /etc replaced by a test file, the password in $CREDENTIALS_DIRECTORY.
DEAD=$(t_free_port)
mkdir -p "$T_DIR/creds" "$T_DIR/run"
echo secret >"$T_DIR/creds/etcd-password"
cat >"$T_DIR/resolverd.json" <<JSON
{ "etcd": { "endpoints": ["http://127.0.0.1:$DEAD"], "username": "u", "password_file": "etcd-password" },
  "socket": { "path": "$T_DIR/run/resolverd/resolverd.sock" } }
JSON
run_line() { # KEY: the unit's command line for KEY, on the test config
    local line
    line=$(sed -n "s/^$1=//p" "$T_DIR/resolverd.service")
    echo "${line//\/etc\/resolverd.json/$T_DIR/resolverd.json}"
}
pre=$(run_line ExecStartPre)
rc=0
# shellcheck disable=SC2086 # the command line, split as systemd splits it
out=$(CREDENTIALS_DIRECTORY=$T_DIR/creds $pre 2>&1) || rc=$?
t_eq "ExecStartPre= passes with the credential" 0 "$rc"
t_check "... quietly (no configuration dumped into the journal)" test "$(wc -l <<<"$out")" -le 1
rc=0
# shellcheck disable=SC2086
out=$(CREDENTIALS_DIRECTORY=$T_DIR/nocreds $pre 2>&1) || rc=$?
t_eq "ExecStartPre= fails when the credential is missing" 1 "$rc"
t_check "... naming etcd.password_file" grep -q "etcd.password_file: cannot read \"$T_DIR/nocreds/etcd-password\"" <<<"$out"
start=$(run_line ExecStart)
# shellcheck disable=SC2086
t_spawn daemon env CREDENTIALS_DIRECTORY="$T_DIR/creds" $start
t_wait_for "ExecStart= serves the socket (its directory made)" 5 test -S "$T_DIR/run/resolverd/resolverd.sock"
t_check "resolverctl reaches it" "$RESOLVERCTL" -s "$T_DIR/run/resolverd/resolverd.sock" ping
t_kill daemon TERM >/dev/null
t_done
