#!/usr/bin/env bash
# The plugin's admin socket (admin=PATH) and crucible-admin: `status` in
# text and JSON through every health state: healthy; degraded with one
# downstairs killed (named, with its reason); healthy again once it
# restarted and was live-repaired; failed with two gone.  The socket is
# mode 0600 and removed at unload; a stale one is replaced, a live one or
# a non-socket refused in one line.  Bad requests (unknown command,
# another version, garbage, an over-long line, silence) get one error and
# nbdkit keeps serving.  Default geometry.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh python3 socat

DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=default
ADMIN=$top/crucible-admin
ASOCK=$tmp/admin.sock

status_json () {
  "$ADMIN" -s "$ASOCK" --json status > "$tmp/st.json" ||
    fail "status --json: exit status $?"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1]));
assert d["version"] == 1 and d["ok"] is True, d
print(eval(sys.argv[2]))' "$tmp/st.json" "$1"
}

wait_health () {
  local i
  for i in $(seq $(($2 * 5))); do
    [ "$(status_json 'd["status"]["health"]' 2>/dev/null)" = "$1" ] && return 0
    sleep 0.2
  done
  cat "$tmp/st.json" >&2
  return 1
}

volume_create
volume_start
nbdkit_start admin="$ASOCK" timeout=5 || fail "nbdkit with admin="
[ "$(stat -c %a "$ASOCK")" = 600 ] || fail "admin socket mode $(stat -c %a "$ASOCK")"

# Healthy, in both formats.
"$ADMIN" -s "$ASOCK" status > "$tmp/st.txt" || fail "status: exit $?"
cat "$tmp/st.txt"
grep -q "^volume: healthy (3 of 3 downstairs active), running, generation 1, " \
  "$tmp/st.txt" || fail "status text: no healthy line"
[ "$(grep -c '^downstairs 127.0.0.1:[0-9]*: active, ' "$tmp/st.txt")" = 3 ] ||
  fail "status text: not three active downstairs"
[ "$(status_json 'd["status"]["health"]')" = healthy ] || fail "json health"
[ "$(status_json '[x["state"] for x in d["status"]["downstairs"]]')" = \
  "['active', 'active', 'active']" ] || fail "json states"
nbdsh_run -u "$URI" -c 'h.pwrite(b"\x42" * 65536, 0)' -c 'h.flush()' || fail "write"
[ "$(status_json 'd["status"]["flush"] >= 1')" = True ] || fail "flush number"

# Degraded: ds2 killed; it is named, with its reason.
p2=${DS_PORT[ds2]}
ds_kill ds2 KILL
nbdsh_run -u "$URI" -c 'h.pwrite(b"\x43" * 65536, 1 << 20)' -c 'h.flush()' ||
  fail "write with ds2 dead"
wait_health degraded 30 || fail "not degraded with ds2 dead"
"$ADMIN" -s "$ASOCK" status > "$tmp/st.txt" || fail "status while degraded"
cat "$tmp/st.txt"
grep -q "^volume: degraded (2 of 3 downstairs active)" "$tmp/st.txt" ||
  fail "degraded not in the text"
grep -Eq "^downstairs 127.0.0.1:$p2: (faulted|connecting|offline) \(" "$tmp/st.txt" ||
  fail "ds2 not named with a reason"

# Back: live repair, then healthy.
ds_start ds2 "$p2" || fail "restart ds2"
wait_health healthy 60 || fail "not healthy after ds2 returned"
[ "$(status_json '[x["repair"]["extents_total"] for x in d["status"]["downstairs"]][1] >= 1')" = True ] ||
  fail "ds2's repair progress not reported"

# Bad requests: one error each, and the volume keeps serving.
bad () {
  local what=$1 want=$2 got
  shift 2
  got=$(printf "%s" "$*" | timeout 10 socat -t 8 - UNIX-CONNECT:"$ASOCK") ||
    fail "$what: no answer"
  grep -q "$want" <<< "$got" || fail "$what: answer '$got', want /$want/"
  [ "$(wc -l <<< "$got")" = 1 ] || fail "$what: more than one line"
  echo "$what: $got"
}
bad "unknown command" '"ok":false,"error":"unknown command .frob.' $'1 json frob\n'
bad "text error" '^error: unknown command' $'1 text frob\n'
bad "another version" 'version not supported' $'2 json status\n'
bad "garbage" 'not one line of printable ASCII' $'\x01\x02\xff\n'
bad "too short" 'expected: VERSION FORMAT COMMAND' $'1\n'
bad "over-long line" 'longer than 1024 bytes' "$(head -c 2000 /dev/zero | tr '\0' a)"
expect 1 "CLI: unknown command" "unknown command 'frob'" "$ADMIN" -s "$ASOCK" frob
expect 2 "CLI: no socket" "$tmp/none.sock: No such file" "$ADMIN" -s "$tmp/none.sock" status
expect 2 "CLI: no command" "missing COMMAND" "$ADMIN" -s "$ASOCK"
nbdsh_run -u "$URI" -c 'assert h.pread(65536, 0) == b"\x42" * 65536' ||
  fail "the volume stopped serving after bad admin requests"

# Failed: two gone.
ds_kill ds1 KILL
ds_kill ds3 KILL
wait_health failed 30 || fail "not failed with two downstairs gone"
"$ADMIN" -s "$ASOCK" status | grep -q "^volume: failed (1 of 3 downstairs active)" ||
  fail "failed not in the text"

# Unload removes the socket; a stale one is replaced; a live one and a
# regular file are refused in one line.
nbdkit_stop || fail "nbdkit stop"
[ ! -e "$ASOCK" ] || fail "admin socket left after unload"
volume_start || fail "restart the volume"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$ASOCK"
nbdkit_start admin="$ASOCK" || fail "a stale admin socket was not replaced"
"$ADMIN" -s "$ASOCK" status > /dev/null || fail "status after a stale socket"
ds=()
for n in $VOLUME; do ds+=("downstairs=127.0.0.1:${DS_PORT[$n]}"); done
expect 1 "admin socket in use" "admin=$ASOCK: another process is serving it" \
  $(nbdkit_cmd) -f -U "$tmp/x.sock" "$PLUGIN" "${ds[@]}" key=+"$KEYFILE" admin="$ASOCK"
echo > "$tmp/file"
expect 1 "admin= a regular file" "admin=$tmp/file: exists and is not a socket" \
  $(nbdkit_cmd) -f -U "$tmp/y.sock" "$PLUGIN" "${ds[@]}" key=+"$KEYFILE" admin="$tmp/file"
echo "admin socket: ok"
