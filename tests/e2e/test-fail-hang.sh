#!/usr/bin/env bash
# A hung downstairs (SIGSTOP) is faulted within timeout= (3 s here) while
# writes go on with no error on the other two; after SIGCONT it rejoins
# through live repair, and every block verifies.  Prints the time from
# SIGSTOP to the fault.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"

DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=8 volume_create
volume_start
NBDKIT_VERBOSE=1 nbdkit_start timeout=3


"$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 3 write --random \
  --duration 14 --flush-every 32 > "$tmp/w.log" 2>&1 &
wpid=$!
PIDS+=($wpid)
sleep 2
p3=${DS_PORT[ds3]}
t0=$(date +%s.%N)
kill -STOP "${DS_PID[ds3]}"
wait_log "downstairs 127.0.0.1:$p3: faulted" 10 ||
  { kill -CONT "${DS_PID[ds3]}"; fail "hung downstairs not faulted within 10 s"; }
t1=$(date +%s.%N)
echo "hung downstairs faulted after $(echo "$t1 - $t0" | bc) s (timeout=3)"
sleep 2
kill -CONT "${DS_PID[ds3]}"
wait_log "live repair of 127.0.0.1:$p3 complete" 60 ||
  fail "ds3 did not rejoin through live repair"
wait "$wpid" || { cat "$tmp/w.log" >&2; fail "writes failed while ds3 hung"; }
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v.log" 2>&1 ||
  { cat "$tmp/v.log" >&2; fail "verify failed"; }
# ds3 serves reads again: stop the other two one at a time and verify.
ds_kill ds1 KILL
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v2.log" 2>&1 ||
  { cat "$tmp/v2.log" >&2; fail "verify from ds2+ds3 failed"; }
echo "hung downstairs faulted, rejoined by live repair, data verified"
