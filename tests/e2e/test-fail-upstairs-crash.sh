#!/usr/bin/env bash
# kill -9 of nbdkit (the upstairs) in the middle of writes, three times:
# each restart reconciles the replicas (dirty extents are copied from a
# source to the others), everything flushed before the crash reads back
# identical, and blocks written after the last flush read back as old or
# new content, never an error (nbdverify verify --unflushed-ok).  After
# the reconciliation the replicas agree (dump shows no difference).
# The third round never flushes: a kill that lands while a flush is in
# flight leaves every extent clean (the downstairs still execute the jobs
# they received), so only a flush-free round is sure to leave dirty
# extents for the restart to reconcile.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"

DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=8 volume_create   # 8 MiB
volume_start
repaired=0
for round in 1 2 3; do
  NBDKIT_VERBOSE=1 nbdkit_start timeout=3 || fail "round $round: no start"
  if [ "$round" -gt 1 ]; then
    # A crash right after a flush leaves nothing dirty: "0 of N to
    # compare" is a reconciliation that found nothing to do.
    grep -Eq "reconciliation done|reconciliation: 0 of" "$tmp/nbdkit.log" ||
      fail "round $round: no reconciliation after crash"
    grep -q "reconciliation done: [1-9][0-9]* extents compared" \
      "$tmp/nbdkit.log" && repaired=$((repaired + 1))
    "$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify --unflushed-ok \
      > "$tmp/v.log" 2>&1 ||
      { cat "$tmp/v.log" >&2; fail "round $round: verify after crash failed"; }
  fi
  : > "$tmp/nbdkit.log"
  every=200
  [ "$round" -eq 3 ] && every=0
  "$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 9 write --random \
    --duration 5 --flush-every $every > "$tmp/w.log" 2>&1 &
  wpid=$!
  PIDS+=($wpid)
  sleep 1.$((RANDOM % 10))
  kill -KILL "$NBDKIT_PID"
  wait "$NBDKIT_PID" 2>/dev/null || true
  NBDKIT_PID=
  wait "$wpid" && fail "round $round: writer did not notice the crash"
done
NBDKIT_VERBOSE=1 nbdkit_start timeout=3 || fail "no start after the last crash"
grep -q "reconciliation done: [1-9][0-9]* extents compared" \
  "$tmp/nbdkit.log" && repaired=$((repaired + 1))
[ "$repaired" -gt 0 ] || fail "no crash left a dirty extent to reconcile"
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify --unflushed-ok \
  > "$tmp/v.log" 2>&1 || { cat "$tmp/v.log" >&2; fail "final verify failed"; }
volume_stop
"$DOWNSTAIRS" dump -d "$tmp/ds1" -d "$tmp/ds2" -d "$tmp/ds3" \
  > "$tmp/dump.txt" || fail "dump failed"
grep -q '\*' "$tmp/dump.txt" &&
  { cat "$tmp/dump.txt" >&2; fail "replicas differ after reconciliation"; }
echo "upstairs crashes: flushed data intact, replicas reconciled"
