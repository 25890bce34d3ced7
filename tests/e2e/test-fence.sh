#!/usr/bin/env bash
# Fencing: a second nbdkit started on the same volume (gen defaults to one
# above the highest the downstairs report) takes over cleanly; the first
# one is told it is no longer active, logs why, and fails every later
# write and flush; the data the first one wrote is all there through the
# second.  A lower generation is refused with a clear message.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"

DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=8 volume_create
volume_start
nbdkit_start timeout=3
URI_A=$URI
"$NBDVERIFY" --uri "$URI_A" --state "$tmp/st" --seed 4 write --blocks 512 \
  --flush-every 64 > "$tmp/w1.log" 2>&1 || fail "writes on the first failed"

# start_b LOG ARGS...: a second nbdkit on $tmp/b.sock; sets B_PID.
start_b () {
  local log=$1 ds=() i
  shift
  for i in $VOLUME; do ds+=("downstairs=127.0.0.1:${DS_PORT[$i]}"); done
  rm -f "$tmp/b.sock"
  $(nbdkit_cmd) -f -U "$tmp/b.sock" "$PLUGIN" "${ds[@]}" key=+"$KEYFILE" \
    "$@" >> "$tmp/$log" 2>&1 &
  B_PID=$!
  PIDS+=($B_PID)
  for i in $(seq 300); do
    [ -S "$tmp/b.sock" ] && break
    kill -0 "$B_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  timeout 60 nbdinfo --size "nbd+unix:///?socket=$tmp/b.sock" >/dev/null 2>&1
}
start_b nbdkit-b.log timeout=3 || fail "the second nbdkit did not start"
URI_B="nbd+unix:///?socket=$tmp/b.sock"
# The takeover reaches the first through each downstairs.
for i in $(seq 50); do
  grep -q "fenced" "$tmp/nbdkit.log" && break
  sleep 0.1
done
grep -q "fenced: downstairs .* activated generation 2" "$tmp/nbdkit.log" ||
  fail "the first nbdkit did not log that it was fenced"
if nbdsh_run -u "$URI_A" -c 'h.pwrite(b"z" * 4096, 0)' 2> "$tmp/a.err"; then
  fail "the fenced nbdkit still accepted a write"
fi
grep -qi "not permitted\|read-only\|Input/output" "$tmp/a.err" ||
  { cat "$tmp/a.err" >&2; fail "unexpected error from the fenced nbdkit"; }
nbdsh_run -u "$URI_A" -c 'h.flush()' 2>/dev/null &&
  fail "the fenced nbdkit still accepted a flush"
"$NBDVERIFY" --uri "$URI_B" --state "$tmp/st" verify > "$tmp/v.log" 2>&1 ||
  { cat "$tmp/v.log" >&2; fail "data written by the first is not intact"; }
"$NBDVERIFY" --uri "$URI_B" --state "$tmp/st" --seed 4 write --blocks 512 \
  --flush-every 64 > "$tmp/w2.log" 2>&1 || fail "writes on the second failed"
stop_pid "$B_PID" || true

# A generation below the highest accepted one is refused, clearly.
start_b nbdkit-c.log timeout=3 gen=1 && fail "gen=1 was accepted"
grep -q "gen=1 is not above generation 2" "$tmp/nbdkit-c.log" ||
  { cat "$tmp/nbdkit-c.log" >&2; fail "no clear message for a lower gen"; }
echo "fencing: takeover by a newer generation, old writer refused"
