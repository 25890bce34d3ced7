#!/usr/bin/env bash
# Two downstairs die: IO fails with an error within timeout= (never
# hangs); when they return, both are live-repaired from the survivor and
# IO works again by itself, with every block verified.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"

DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=8 volume_create   # 8 MiB
volume_start
NBDKIT_VERBOSE=1 nbdkit_start timeout=3


"$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 5 write --blocks 1024 \
  --flush-every 64 > "$tmp/w1.log" 2>&1 || fail "initial writes failed"
ds_kill ds2 KILL
ds_kill ds3 KILL
t0=$(date +%s)
# A write outside nbdverify's area must fail, not hang (timeout 30 is the
# backstop that would report a hang).
rc=0
timeout 30 env PATH=/usr/bin:$PATH nbdsh -u "$URI" \
  -c 'h.pwrite(b"x" * 4096, 4096 * 2000)' -c 'h.flush()' \
  > "$tmp/io.log" 2>&1 || rc=$?
t1=$(date +%s)
[ "$rc" = 124 ] && fail "IO hung with two downstairs down"
[ "$rc" = 0 ] && fail "IO succeeded with only one downstairs"
echo "IO failed after $((t1 - t0)) s with two downstairs down (timeout=3)"

ds_start ds2 || fail "ds2 did not restart"
ds_start ds3 || fail "ds3 did not restart"
wait_log "live repair of 127.0.0.1:${DS_PORT[ds2]} complete" 60 ||
  fail "ds2 not repaired"
wait_log "live repair of 127.0.0.1:${DS_PORT[ds3]} complete" 60 ||
  fail "ds3 not repaired"
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v1.log" 2>&1 ||
  { cat "$tmp/v1.log" >&2; fail "verify after recovery failed"; }
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 5 write --blocks 1024 \
  --flush-every 64 > "$tmp/w2.log" 2>&1 || fail "writes after recovery failed"
ds_kill ds1 KILL
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v2.log" 2>&1 ||
  { cat "$tmp/v2.log" >&2; fail "verify from the repaired pair failed"; }
echo "two down: IO errors, no hang; recovered by itself, data verified"
