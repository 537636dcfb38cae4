#!/usr/bin/env bash
# What etcd may hold, against one etcd and real backends:
#  - lease expiry removes instances (several keys on one lease: one revision);
#  - bad values of every kind beside good ones: skipped with a warning
#    naming the key, counted in decode_errors, never removing a good one;
#  - every registry format of doc/design.md (Registry formats) picked through the CLI;
#  - one address under two keys is one instance, gone with its last key;
#  - an IPv6 backend ([::1]:PORT);
#  - cache_file: a restarted daemon serves the cached instances while etcd
#    is down (status says STALE), then converges when etcd is back.
set -u
. "$(dirname "$0")/lib.sh"
t_init etcd-values
t_require etcd etcdctl
: "${RESOLVERD:?}" "${RESOLVERCTL:?}"
. "$(dirname "$0")/etcd_common.sh"
[[ -n ${H2SERVER:-} && -x ${H2SERVER:-} ]] || t_require nghttpd

t_etcd_start e1 || t_done
SOCK=$T_DIR/rd.sock
CACHE=$T_DIR/cache.json
declare -a B=()
for i in 1 2 3 4; do
    backend_start "backend$i" || t_done
    B+=("127.0.0.1:$BACKEND_PORT")
done

# The lease expiry below takes 2 of 3 instances in one revision, which
# self-preservation (test_self_preservation.sh) would keep as STALE: off here,
# where the removal itself is under test.
cat >"$T_DIR/rd.json" <<EOF
{ "etcd": { "endpoints": ["$ETCD_ENDPOINT"], "dial_timeout_ms": 1000 },
  "socket": { "path": "$SOCK" },
  "cache_file": "$CACHE",
  "defaults": { "backoff": { "initial_ms": 200, "max_ms": 1000 }, "self_preservation_percent": 0 },
  "services": [ { "name": "kratos.user", "prefix": "/microservices/user/" },
                { "name": "kitex.echo", "prefix": "kitex/registry-etcd/echo/" },
                { "name": "forced", "prefix": "forced/", "format": "gozero" } ] }
EOF
t_check "--check-config accepts the config" "$RESOLVERD" --check-config -c "$T_DIR/rd.json"
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level debug
t_wait_for "resolverd serves its socket" 10 test -S "$SOCK"
state_of() { instance_field "$1" "$2" state; }
is_state() { [[ $(state_of "$1" "$2") == "$3" ]]; }

# ---- lease expiry ----
ec put lease/stay "${B[0]}" >/dev/null
lease=$(ec lease grant 2 | awk '/granted/ { print $2 }')
t_check "lease granted" test -n "$lease"
granted_ms=$(_t_now_ms)
ec put --lease="$lease" lease/a "${B[1]}" >/dev/null
ec put --lease="$lease" lease/b "${B[2]}" >/dev/null
t_check "first pick of lease (on demand) answers" pick_done lease
t_wait_for "the three lease instances are listed" 3 views_equal lease lease/
# TTL 2 s; etcd checks expiry every 500 ms: gone within TTL + 2 s of the grant
# (~2.4 s measured; the slack is for a loaded machine).
t_wait_until 10 bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK' --json instances lease | grep -c '\"address\"') == 1 ]]"
gone_ms=$(($(_t_now_ms) - granted_ms))
echo "# both leased instances left ${gone_ms} ms after the grant (TTL 2000 ms)"
t_check "both keys of the expired lease left within TTL + 2 s" test "$gone_ms" -le 4000
t_eq "the unleased instance stays" "${B[0]}" "$(daemon_addrs lease all)"
t_check "and etcd agrees" views_equal lease lease/

# ---- bad values beside good ones ----
ec put bad/good1 "${B[0]}" >/dev/null
ec put bad/good2 "${B[1]}" >/dev/null
t_check "first pick of bad (on demand) answers" pick_done bad
t_wait_for "the two good instances are READY" 10 bash -c \
    "[[ \$('$RESOLVERCTL' -s '$SOCK' --json instances bad | grep -c '\"READY\"') == 2 ]]"
printf 'garbage here' >"$T_DIR/v-junk"
printf '{"Addr": ' >"$T_DIR/v-badjson"
printf '{"foo": 1, "bar": [1, 2]}' >"$T_DIR/v-unknown"
printf '10.0.0.1' >"$T_DIR/v-noport"
printf '127.0.0.1:0' >"$T_DIR/v-port0"
printf '127.0.0.1:70000' >"$T_DIR/v-port70000"
: >"$T_DIR/v-empty"
head -c 700000 /dev/zero | tr '\0' 'x' >"$T_DIR/v-huge"
printf '\x00\x01\x02\xff\xfe127.0.0.1:80\x00' >"$T_DIR/v-binary"
printf '{"id":"1","name":"user","endpoints":["http://127.0.0.1:8000","https://127.0.0.1:8443"]}' >"$T_DIR/v-kratos-http"
printf '{"network":"tcp","address":"%s","weight":-5,"tags":{}}' "${B[2]}" >"$T_DIR/v-kitex-negweight"
printf '[::1:80' >"$T_DIR/v-badv6"
printf '{"address":"%s","weight":10,"zone":7}' "${B[2]}" >"$T_DIR/v-native-badzone"
printf '{"Op":3,"Addr":"%s"}' "${B[2]}" >"$T_DIR/v-naming-badop"
BAD_KEYS=(junk badjson unknown noport port0 port70000 empty huge binary kratos-http
    kitex-negweight badv6 native-badzone naming-badop)
errors0=$(service_field bad decode_errors)
for k in "${BAD_KEYS[@]}"; do
    gw_put "bad/$k" "$T_DIR/v-$k" || t_fail "put bad/$k"
done
# A good key turning bad keeps its instance (the last good value stands).
printf 'now junk' >"$T_DIR/v-turned"
gw_put bad/good2 "$T_DIR/v-turned" || t_fail "put bad/good2 (turned bad)"
n_bad=$((${#BAD_KEYS[@]} + 1))
t_wait_for "decode_errors counts the $n_bad bad values" 5 bash -c \
    "(( \$('$RESOLVERCTL' -s '$SOCK' --json services | $PY -c 'import json,sys; print([s for s in json.load(sys.stdin) if s[\"name\"] == \"bad\"][0][\"decode_errors\"])') >= $errors0 + $n_bad ))"
missing=""
for k in "${BAD_KEYS[@]}" good2; do
    grep -q "skipping key \"bad/$k\"" "$T_DIR/resolverd.log" || missing+=" $k"
done
t_eq "every bad value got a warning naming its key" "" "$missing"
echo "# some reasons: $(grep -o 'skipping key "bad/[a-z0-9-]*": [^;]*' "$T_DIR/resolverd.log" | head -6 | sed 's/skipping key //' | tr '\n' '|')"
t_eq "only the two good instances are listed" "$(printf '%s\n' "${B[0]}" "${B[1]}" | sort | tr '\n' ' ')" \
    "$(daemon_addrs bad all | tr '\n' ' ')"
t_check "good1 is READY" is_state bad "${B[0]}" READY
t_check "good2 (its key now bad) is still READY" is_state bad "${B[1]}" READY
picks=""
for _ in 1 2 3 4; do picks+="$(pick_done bad) "; done
t_eq "picks go to both good instances" 2 "$(tr ' ' '\n' <<<"$picks" | grep . | sort -u | wc -l)"
t_check "the huge value was not logged whole" bash -c "[[ \$(wc -c <'$T_DIR/resolverd.log') -lt 600000 ]]"
t_check "the daemon is alive after the bad values" t_alive resolverd
ec del bad/good2 >/dev/null
t_wait_for "deleting the key that turned bad removes its instance" 5 bash -c \
    "! '$RESOLVERCTL' -s '$SOCK' --json instances bad | grep -q '\"${B[1]}\"'"

# ---- every registry format, picked through the CLI ----
# go-zero
ec put user.rpc/7587869981229590045 "${B[0]}" >/dev/null
t_eq "go-zero value picked" "${B[0]}" "$(pick_done user.rpc)"
# etcd naming endpoints: Op 0 adds, Op 1 deletes the address.
ec put "naming.svc/${B[1]}" "{\"Op\":0,\"Addr\":\"${B[1]}\",\"Metadata\":null}" >/dev/null
ec put "naming.svc/${B[2]}" "{\"Op\":0,\"Addr\":\"${B[2]}\",\"Metadata\":null}" >/dev/null
t_check "naming endpoints: first pick answers" pick_done naming.svc
t_wait_for "naming endpoints: both listed" 5 bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK' --json instances naming.svc | grep -c '\"address\"') == 2 ]]"
ec put "naming.svc/${B[2]}" "{\"Op\":1,\"Addr\":\"${B[2]}\",\"Metadata\":null}" >/dev/null
t_wait_for "naming endpoints: Op 1 removes the address" 5 bash -c \
    "[[ \$('$RESOLVERCTL' -s '$SOCK' --json instances naming.svc | grep -c '\"address\"') == 1 ]]"
t_eq "naming endpoints: the remaining address is picked" "${B[1]}" "$(pick_done naming.svc)"
# Kratos: the grpc:// endpoint, not the http:// one.
ec put /microservices/user/a1 "{\"id\":\"a1\",\"name\":\"user\",\"version\":\"v1\",\"metadata\":{\"weight\":\"3\"},\"endpoints\":[\"http://127.0.0.1:8000\",\"grpc://${B[2]}\"]}" >/dev/null
picked_is() { [[ $(pick_done "$1" 2>/dev/null) == "$2" ]]; }
t_wait_for "Kratos: the grpc:// endpoint is picked" 5 picked_is kratos.user "${B[2]}"
t_eq "Kratos: metadata weight read" 3 "$(instance_field kratos.user "${B[2]}" weight)"
# Kitex with a weight.
ec put "kitex/registry-etcd/echo/${B[3]}" "{\"network\":\"tcp\",\"address\":\"${B[3]}\",\"weight\":10,\"tags\":{}}" >/dev/null
t_wait_for "Kitex: picked" 5 picked_is kitex.echo "${B[3]}"
t_eq "Kitex: weight 10" 10 "$(instance_field kitex.echo "${B[3]}" weight)"
# native with weight and zone.
ec put native.svc/n1 "{\"address\":\"${B[0]}\",\"weight\":7,\"zone\":\"zone-a\",\"metadata\":{\"v\":\"1\"}}" >/dev/null
t_eq "native: picked" "${B[0]}" "$(pick_done native.svc)"
t_eq "native: weight 7" 7 "$(instance_field native.svc "${B[0]}" weight)"
t_eq "native: zone" zone-a "$(instance_field native.svc "${B[0]}" zone)"
# A service forced to gozero rejects a JSON value and takes a plain one.
ec put forced/j "{\"address\":\"${B[1]}\"}" >/dev/null
ec put forced/p "${B[2]}" >/dev/null
t_wait_for "format forced to gozero: the plain value is listed" 5 bash -c \
    "'$RESOLVERCTL' -s '$SOCK' --json instances forced | grep -q '\"${B[2]}\"'"
t_check "format forced to gozero: the JSON value is skipped with a warning" \
    grep -q 'skipping key "forced/j"' "$T_DIR/resolverd.log"
t_eq "format forced to gozero: one instance" "${B[2]}" "$(daemon_addrs forced all)"

# ---- one address under two keys ----
ec put dup/lease-old "${B[3]}" >/dev/null
t_check "dup: first pick" pick_done dup
t_spawn dupwatch "$RESOLVERCTL" -s "$SOCK" --json watch dup
t_wait_until 5 bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK' --json status | grep -o '\"clients\": [0-9]*' | grep -o '[0-9]*$') -ge 2 ]]" || true
ec put dup/lease-new "${B[3]}" >/dev/null
t_wait_for "dup: one instance with two keys" 5 bash -c \
    "[[ \$('$RESOLVERCTL' -s '$SOCK' --json instances dup | tr -d ' \n') == *'\"keys\":2'* ]]"
t_eq "dup: listed once" "${B[3]}" "$(daemon_addrs dup all)"
ec del dup/lease-old >/dev/null
ec put dup/marker "${B[0]}" >/dev/null # ordered after the delete: seen means the delete was applied
t_wait_for "dup: the marker arrives" 5 bash -c "'$RESOLVERCTL' -s '$SOCK' --json instances dup | grep -q '\"${B[0]}\"'"
t_eq "dup: still listed after its first key went" "${B[3]}" "$(daemon_addrs dup all | grep -F "${B[3]}")"
t_eq "dup: one key left" 1 "$(instance_field dup "${B[3]}" keys)"
t_check "dup: no removed event while a key remained" bash -c "! grep -F '\"${B[3]}\"' '$T_DIR/dupwatch.log' | grep -q '\"removed\"'"
ec del dup/lease-new >/dev/null
t_wait_for "dup: gone with its last key" 5 bash -c "! '$RESOLVERCTL' -s '$SOCK' --json instances dup | grep -q '\"${B[3]}\"'"

# ---- IPv6 ----
backend_start backend6 ::1 || t_done
V6="[::1]:$BACKEND_PORT"
ec put v6/1 "$V6" >/dev/null
t_wait_for "an IPv6 backend is picked" 5 picked_is v6 "$V6"
t_check "the IPv6 instance is READY" is_state v6 "$V6" READY
ec put v6/2 "[0:0:0:0:0:0:0:1]:$BACKEND_PORT" >/dev/null
ec put v6/marker "${B[0]}" >/dev/null
t_wait_for "v6: the marker arrives" 5 bash -c "'$RESOLVERCTL' -s '$SOCK' --json instances v6 | grep -q '\"${B[0]}\"'"
t_eq "an IPv6 address in another spelling is the same instance" "$V6" "$(daemon_addrs v6 all | grep -v "${B[0]}")"
ec del v6/marker >/dev/null

# ---- cache_file: restart with etcd down ----
t_wait_for "the cache_file holds the instances" 5 grep -q "${B[0]}" "$CACHE"
t_wait_for "the cache_file holds user.rpc" 5 grep -q 'user.rpc' "$CACHE"
t_eq "no ticket left outstanding" 0 "$(status_field tickets_outstanding)"
rc=0
t_kill resolverd TERM || rc=$?
t_eq "SIGTERM stops resolverd at once (nothing to drain), status 0" 0 "$rc"
t_check "the graceful stop did not empty the cache_file" grep -q "${B[0]}" "$CACHE"
t_etcd_stop e1 KILL || true
t_spawn resolverd "$RESOLVERD" -c "$T_DIR/rd.json" --log-level debug
t_wait_for "restarted resolverd serves its socket" 10 test -S "$SOCK"
start=$(_t_now_ms)
t_wait_for "with etcd down it picks user.rpc from the cache" 3 pick_done user.rpc
echo "# first pick from the cache after $(($(_t_now_ms) - start)) ms"
t_eq "the cached address is the one picked" "${B[0]}" "$(pick_done user.rpc)"
t_check "a configured service is served from the cache too" pick_done kitex.echo
t_check "status says STALE" bash -c "'$RESOLVERCTL' -s '$SOCK' status | grep -q STALE"
t_check "status --json counts stale services" test "$(status_field stale_services)" -ge 1
t_check "the log says the cache was loaded" grep -q 'cache_file .*loaded' "$T_DIR/resolverd.log"
# While etcd was down, user.rpc changed: the daemon must follow when it is back.
t_etcd_start e1 || t_done
ec put user.rpc/2 "${B[1]}" >/dev/null
t_wait_for "once etcd answers, stale clears" 15 bash -c "[[ \$('$RESOLVERCTL' -s '$SOCK' --json status | grep -o '\"stale_services\": [0-9]*') == '\"stale_services\": 0' ]]"
t_check "status no longer says STALE" bash -c "! '$RESOLVERCTL' -s '$SOCK' status | grep -q STALE"
t_wait_for "user.rpc converges to etcd's view" 10 views_equal user.rpc user.rpc/
t_wait_for "lease converges to etcd's view" 10 views_equal lease lease/
t_check "the daemon is alive" t_alive resolverd
t_done
