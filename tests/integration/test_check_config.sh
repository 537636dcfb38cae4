#!/usr/bin/env bash
# resolverd --check-config finds what would fail at start, naming the key
# (issue 12, systemd and checks): unreadable files, a cache_file directory
# that is missing or not writable, groups that do not exist, a listen
# address that does not resolve, a socket directory that cannot be made,
# near-miss keys; etcd files under $CREDENTIALS_DIRECTORY; and the socket
# directory made at start.
set -u
. "$(dirname "$0")/lib.sh"
t_init check_config
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"

# bad NAME JSON REGEX...: --check-config fails, and stderr matches every REGEX.
bad() {
    local name=$1 json=$2 rc=0
    shift 2
    printf '%s\n' "$json" >"$T_DIR/$name.json"
    ${WRAP[@]+"${WRAP[@]}"} "$RESOLVERD" --check-config -c "$T_DIR/$name.json" \
        >/dev/null 2>"$T_DIR/$name.err" || rc=$?
    if [[ $rc == 0 ]]; then
        t_fail "$name: --check-config fails" "exit 0; stderr: $(cat "$T_DIR/$name.err")"
        return
    fi
    local re
    for re in "$@"; do
        grep -qE -- "$re" "$T_DIR/$name.err" ||
            { t_fail "$name: names the problem" "no /$re/ in: $(cat "$T_DIR/$name.err")"; return; }
    done
    t_ok "$name: --check-config fails naming $(head -c 100 "$T_DIR/$name.err" | sed -n 's/.*json: \([a-z_.]*\).*/\1/p' | head -1)"
}
good() { # NAME JSON: --check-config passes
    printf '%s\n' "$2" >"$T_DIR/$1.json"
    t_check "$1: --check-config passes" "$RESOLVERD" --check-config -c "$T_DIR/$1.json"
}
WRAP=()
S=$T_DIR/rd.sock
sock() { printf '"socket": {"path": "%s"}' "${1:-$S}"; }
: >"$T_DIR/readable"

good ok "{ $(sock), \"etcd\": {\"username\": \"u\", \"password_file\": \"$T_DIR/readable\"} }"

# ---- files readable ----
bad password "{ $(sock), \"etcd\": {\"username\": \"u\", \"password_file\": \"$T_DIR/nope\"} }" \
    "etcd\.password_file: cannot read \"$T_DIR/nope\": No such file"
bad ca "{ $(sock), \"etcd\": {\"ca_file\": \"$T_DIR/no-ca.pem\"} }" 'etcd\.ca_file: cannot read'
bad cert_key "{ $(sock), \"etcd\": {\"cert_file\": \"$T_DIR/c.pem\", \"key_file\": \"$T_DIR/k.pem\"} }" \
    'etcd\.cert_file: cannot read' 'etcd\.key_file: cannot read' '2 problems'
bad cache_dir "{ $(sock), \"cache_file\": \"$T_DIR/no/such/dir/cache.json\" }" \
    "cache_file: the directory $T_DIR/no/such/dir of .* does not exist"
bad password_user "{ $(sock), \"etcd\": {\"password_file\": \"$T_DIR/readable\"} }" \
    'etcd\.password_file: set without etcd\.username'

# ---- groups exist, listen addresses resolve ----
bad group "{ \"socket\": {\"path\": \"$S\", \"group\": \"no-such-group-rd\"} }" \
    'socket\.group: no such group "no-such-group-rd"'
bad admin_group "{ \"socket\": {\"path\": \"$S\", \"admin_group\": \"no-such-admins\"} }" \
    'socket\.admin_group: no such group "no-such-admins"'
bad listen "{ $(sock), \"metrics\": {\"listen\": \"no-such-host.invalid:9100\"} }" \
    'metrics\.listen: "no-such-host\.invalid:9100": '

# ---- the socket's directory exists or can be made ----
bad sockdir_file "{ $(sock "$T_DIR/readable/rd.sock") }" \
    "socket\.path: \"$T_DIR/readable/rd.sock\": $T_DIR/readable is not a directory"
good sockdir_missing "{ $(sock "$T_DIR/fresh/a/rd.sock") }"
t_check "--check-config made no directory" test ! -e "$T_DIR/fresh"

# As a user who may not write there (root may write anywhere).
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
    mkdir -p "$T_DIR/ro"
    chmod 0711 "$T_DIR"
    chmod 0755 "$T_DIR/ro"
    WRAP=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    bad sockdir_perm "{ $(sock "$T_DIR/ro/sub/rd.sock") }" \
        "socket\.path: .*$T_DIR/ro/sub is missing and cannot be made in $T_DIR/ro: Permission denied"
    bad cache_perm "{ $(sock /tmp/x.sock), \"cache_file\": \"$T_DIR/ro/cache.json\" }" \
        "cache_file: .*cannot create files in $T_DIR/ro: Permission denied"
    WRAP=()
else
    t_ok "# skipped the permission checks: they need root and setpriv"
fi

# ---- near misses are named ----
bad near_backoff '{"defaults": {"backoff": {"initial": 100}}}' \
    'unknown key "defaults\.backoff\.initial" \(did you mean "initial_ms"\?\)'
bad near_password '{"etcd": {"password": "secret"}}' \
    'unknown key "etcd\.password" \(did you mean "password_file"\?\)'
bad near_policy '{"services": [{"name": "a", "policy": "least-request"}]}' \
    'services\[0\]\.policy: unknown policy "least-request" \(did you mean "least_request"\?'

# ---- etcd files from systemd's LoadCredential= ----
mkdir -p "$T_DIR/creds"
echo secret >"$T_DIR/creds/etcd-password"
printf '{ %s, "etcd": {"username": "u", "password_file": "etcd-password"} }\n' "$(sock)" >"$T_DIR/cred.json"
t_check "password_file relative to \$CREDENTIALS_DIRECTORY: passes" \
    env CREDENTIALS_DIRECTORY="$T_DIR/creds" "$RESOLVERD" --check-config -c "$T_DIR/cred.json"
t_check "... and is resolved there" bash -c "CREDENTIALS_DIRECTORY='$T_DIR/creds' '$RESOLVERD' --check-config -c '$T_DIR/cred.json' 2>/dev/null | grep -qF '\"password_file\": \"$T_DIR/creds/etcd-password\"'"
rc=0
CREDENTIALS_DIRECTORY=$T_DIR/empty "$RESOLVERD" --check-config -c "$T_DIR/cred.json" >/dev/null 2>"$T_DIR/cred.err" || rc=$?
t_check "a credential that is not there: fails naming the key and the path" \
    grep -qF "etcd.password_file: cannot read \"$T_DIR/empty/etcd-password\"" "$T_DIR/cred.err"
bad cred_unset '{"etcd": {"username": "u", "password_file": "$CREDENTIALS_DIRECTORY/etcd-password"}}' \
    'etcd\.password_file: .* names \$CREDENTIALS_DIRECTORY, which is not set'

# ---- resolverd --socket on a fresh machine: the directory is made ----
DEAD=$(t_free_port)
FRESH=$T_DIR/run/resolverd/rd.sock
t_spawn fresh "$RESOLVERD" --etcd "http://127.0.0.1:$DEAD" --socket "$FRESH"
t_wait_for "resolverd --socket in a missing directory serves it" 5 test -S "$FRESH"
t_eq "the directories it made are 0755" "755 755" "$(stat -c %a "$T_DIR/run" "$T_DIR/run/resolverd" | tr '\n' ' ' | sed 's/ $//')"
t_check "the log says the directory was made" grep -q "made the missing directory $T_DIR/run/resolverd" "$T_DIR/fresh.log"
t_check "it answers" "$RESOLVERCTL" -s "$FRESH" ping
t_kill fresh TERM >/dev/null
rc=0
"$RESOLVERD" --etcd "http://127.0.0.1:$DEAD" --socket "$T_DIR/readable/x/rd.sock" >/dev/null 2>"$T_DIR/nodir.err" || rc=$?
t_eq "a socket directory that cannot be made: exit 1" 1 "$rc"
t_check "... saying which directory and why" grep -q "socket.path: .*$T_DIR/readable.*is not a directory" "$T_DIR/nodir.err"
t_done
