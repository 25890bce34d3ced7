#!/usr/bin/env bash
# kill -9 a random downstairs at a random moment during writes and
# flushes, KILL_LOOPS times (default 50): writes never fail, the victim
# restarts and is live-repaired, and after each round every block
# verifies.  A small volume keeps each round short.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"
loops=${KILL_LOOPS:-50}

DS_EXTENT_SIZE=64 DS_EXTENT_COUNT=4 volume_create   # 1 MiB, 4 extents
volume_start
NBDKIT_VERBOSE=1 nbdkit_start timeout=3

# wait_count PATTERN N SECS: until nbdkit.log has N lines matching.
wait_count () {
  local i
  for i in $(seq $(($3 * 10))); do
    [ "$(grep -c "$1" "$tmp/nbdkit.log")" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

for round in $(seq "$loops"); do
  victim=ds$((RANDOM % 3 + 1))
  "$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 11 write --random \
    --duration 1 --flush-every 16 > "$tmp/w.log" 2>&1 &
  wpid=$!
  PIDS+=($wpid)
  sleep "0.$((RANDOM % 4))$((RANDOM % 10))"
  ds_kill "$victim" KILL 2>/dev/null
  ds_start "$victim" || fail "round $round: $victim did not restart"
  wait "$wpid" || { cat "$tmp/w.log" >&2; fail "round $round: writes failed"; }
  wait_count "live repair of .* complete" "$round" 60 ||
    fail "round $round: $victim was not repaired"
  "$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v.log" 2>&1 ||
    { cat "$tmp/v.log" >&2; fail "round $round: verify failed"; }
done
echo "$loops random kills during writes and flushes: all data verified"
