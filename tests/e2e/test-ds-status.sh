#!/usr/bin/env bash
# crucible-downstairs status -p PORT: a running downstairs' region and
# connections, without the data key: with no upstairs, with one attached
# (session, address), with --auth-key (required, wrong one refused),
# against a closed port (one line, exit 2).  The downstairs keeps serving.
. "$(dirname "$0")/functions.sh"
requires nbdkit nbdinfo timeout
volume_create
volume_start
P=${DS_PORT[ds1]}
st () { timeout 20 "$DOWNSTAIRS" status "$@"; }

# No upstairs.
st -p "$P" > "$tmp/s.txt" 2> "$tmp/e.txt" || { cat "$tmp/e.txt" >&2; fail "status failed"; }
grep -q "^region $VOL_UUID (instance [0-9a-f-]*): 16 extents of 1024 x 4096-byte blocks, encrypted$" "$tmp/s.txt" ||
  { cat "$tmp/s.txt" >&2; fail "region line"; }
grep -q "^highest generation 0, 1 connection$" "$tmp/s.txt" || { cat "$tmp/s.txt" >&2; fail "connections line"; }
grep -q "^upstairs: none active$" "$tmp/s.txt" || fail "active upstairs reported without one"
grep -q "status peer" "$tmp/ds1.log" || fail "downstairs did not log the status peer"

# With an upstairs attached.
nbdkit_start
st -p "$P" -a 127.0.0.1 > "$tmp/s.txt" || fail "status (attached) failed"
grep -q "^highest generation 1, 2 connections$" "$tmp/s.txt" || { cat "$tmp/s.txt" >&2; fail "attached: connections"; }
grep -q "^upstairs: session [0-9a-f]\{16\} gen 1 from 127.0.0.1:[0-9]*, last activity [0-9.]* s ago$" "$tmp/s.txt" ||
  { cat "$tmp/s.txt" >&2; fail "attached: upstairs line"; }
nbdinfo --size "$URI" > /dev/null || fail "volume stopped serving after status"

# A status peer may send nothing else: a PING (legal for an upstairs
# here) after HELLO is refused with ERROR "not allowed".
# The protocol version is the tree's (common/proto.h), not a copy here.
PV=$(sed -n 's/^#define PROTO_VERSION \([0-9]*\)$/\1/p' "$top/common/proto.h")
[ -n "$PV" ] || fail "no PROTO_VERSION in common/proto.h"
python3 - "$P" "$PV" <<'PY' || fail "status peer allowed another frame"
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
hello = struct.pack("<IHHIBBBB16sQQ32s", 80, 1, 0, int(sys.argv[2]), 3, 0, 0, 0, bytes(16), 0, 0, bytes(32))
s.sendall(hello)
b = s.recv(4); n = struct.unpack("<I", b)[0]
while len(b) < n: b += s.recv(n - len(b))
assert struct.unpack("<H", b[4:6])[0] == 2, "no HELLO_OK"
s.sendall(struct.pack("<IHHQ", 16, 16, 0, 7))
b = s.recv(4096)
assert b and struct.unpack("<H", b[4:6])[0] == 3 and b"not allowed" in b, "no ERROR for PING from a status peer: %r" % b
PY
nbdinfo --size "$URI" > /dev/null || fail "volume stopped serving"
volume_stop

# With an auth key.
head -c 32 /dev/urandom | base64 -w0 > "$tmp/auth.key" # text: a NUL is refused
head -c 32 /dev/urandom | base64 -w0 > "$tmp/wrong.key"
DS_ARGS=(--auth-key "$tmp/auth.key")
ds_start ds1
set +e
st -p "$P" > /dev/null 2> "$tmp/e.txt"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "requires an auth key" "$tmp/e.txt" &&
  [ "$(wc -l < "$tmp/e.txt")" = 1 ] || fail "no key: rc $rc: $(cat "$tmp/e.txt")"
st -p "$P" --auth-key "$tmp/auth.key" > "$tmp/s.txt" || fail "status with the key failed"
grep -q "^region $VOL_UUID" "$tmp/s.txt" || fail "status with the key: no region"
set +e
st -p "$P" --auth-key "$tmp/wrong.key" > /dev/null 2> "$tmp/e.txt"; rc=$?
set -e
[ "$rc" = 1 ] && [ "$(wc -l < "$tmp/e.txt")" = 1 ] || fail "wrong key: rc $rc: $(cat "$tmp/e.txt")"
ds_kill ds1
DS_ARGS=()
# A key the downstairs does not ask for: refused (no downgrade).
ds_start ds1
set +e
st -p "$P" --auth-key "$tmp/auth.key" > /dev/null 2> "$tmp/e.txt"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "does not ask for the auth key" "$tmp/e.txt" || fail "downgrade: rc $rc: $(cat "$tmp/e.txt")"
ds_kill ds1

# A closed port: one line, exit 2.
set +e
st -p "$P" > /dev/null 2> "$tmp/e.txt"; rc=$?
set -e
[ "$rc" = 2 ] && [ "$(wc -l < "$tmp/e.txt")" = 1 ] && grep -q "refused" "$tmp/e.txt" ||
  fail "closed port: rc $rc: $(cat "$tmp/e.txt")"
set +e; st > /dev/null 2>&1; rc=$?; set -e
[ "$rc" = 2 ] || fail "no -p: rc $rc"
echo "$test_name: PASS"
