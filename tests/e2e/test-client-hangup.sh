#!/usr/bin/env bash
# One client's abrupt hang-up must not take nbdkit down for everyone:
# nbdcopy reads the volume over 4 connections with many requests in
# flight; two downstairs are killed (kill -9) mid-copy, so reads fail with
# EIO while others return data; nbdcopy gives up at the first error and
# hangs up with replies still being sent.  nbdkit 1.32.4..1.33.9 then
# abort()ed in raw_send_socket (`sock >= 0`) when two worker threads of
# one connection replied at once (upstream commit 9d82aa4f); the plugin's
# reply gate (plugin/replygate.h) prevents that with parallel requests
# (without it this test aborts nbdkit in round 1).  nbdkit must
# survive each round and serve the next client once the downstairs are
# back.
# timeout: 400
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh python3

DS_EXTENT_SIZE=default DS_EXTENT_COUNT=2 volume_create
volume_start
nbdkit_start timeout=3 stats="$tmp/stats.json" || fail "nbdkit start"
head -c $((160 << 20)) /dev/urandom > "$tmp/in.img"
timeout 200 nbdcopy "$tmp/in.img" "$URI" || fail "fill"
rm -f "$tmp/in.img"

for round in 1 2 3 4 5; do
  timeout 100 nbdcopy --requests=64 --connections=4 "$URI" null: \
    > "$tmp/copy.log" 2>&1 &
  cpid=$!
  PIDS+=($cpid)
  sleep 0.$((RANDOM % 3 + 1))
  ds_kill ds1 KILL
  ds_kill ds2 KILL
  rc=0
  wait "$cpid" || rc=$?
  sleep 1
  kill -0 "$NBDKIT_PID" 2>/dev/null ||
    { grep -E "Assert|Broken pipe" "$tmp/nbdkit.log" | tail -3 >&2
      fail "round $round: nbdkit died after the client hung up (nbdcopy exit $rc)"; }
  ds_start ds1
  ds_start ds2
  stats_wait 'd["health"] == "healthy"' 60 ||
    fail "round $round: volume not healthy again"
  nbdsh_run -u "$URI" -c 'h.pread(1 << 20, 5 << 20)' ||
    fail "round $round: next client not served"
  echo "round $round: nbdcopy exit $rc, nbdkit alive, next client served"
done
echo "ok"
