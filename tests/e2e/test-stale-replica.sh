#!/usr/bin/env bash
# A downstairs that missed writes and flushes while it was dead must not
# serve reads after a restart: it is behind on some extent, so the
# upstairs leaves it out (it needs repair) and reads come only from the
# two up-to-date replicas.  Without that check, reads rotating onto it
# return the older (authentic!) data.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy cmp

volume_create
volume_start
nbdkit_start

len=$((8 * 1024 * 1024))
head -c $len /dev/urandom > "$tmp/old.img"
head -c $len /dev/urandom > "$tmp/new.img"
timeout 120 nbdcopy "$tmp/old.img" "$URI" || fail "writing old data failed"
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"

ds_kill ds3 KILL
timeout 120 nbdcopy "$tmp/new.img" "$URI" || fail "writing new data failed"
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush on two failed"
nbdkit_stop || fail "nbdkit stop failed"

ds_start ds3 || fail "ds3 did not restart"
nbdkit_start || fail "nbdkit did not start with a stale replica"
grep -q "ds3\|needs repair" "$tmp/nbdkit.log" ||
  fail "no log line about the stale replica"
grep -q "needs repair" "$tmp/nbdkit.log" ||
  fail "stale replica not reported as needing repair"
# Read several times: reads rotate over the active replicas.
for i in 1 2 3; do
  rm -f "$tmp/out.img"
  timeout 120 nbdcopy "$URI" "$tmp/out.img" || fail "read back failed"
  cmp -n $len "$tmp/new.img" "$tmp/out.img" ||
    fail "read returned stale data (round $i)"
done
echo "stale replica left out; reads return the newest data"
