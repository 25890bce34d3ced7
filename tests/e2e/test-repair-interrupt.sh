#!/usr/bin/env bash
# An extent copy interrupted by kill -9 of either side leaves the target
# extent old or new, never half, and the repair is redone later.  The
# source (ds1) sits behind tests/tools/faultproxy.py throttled to 4 MB/s
# so that each 8 MiB extent copy takes about two seconds.  Extent copies
# are live repair's: ds3 joins a volume already serving on ds1 and ds2
# (start-up reconciliation is block level and goes through the upstairs).
#   1. kill -9 the target (ds3) mid-copy: its extent files are still the
#      old ones, the .copy/ leftover is discarded at restart, and live
#      repair then makes ds3 identical to ds1.
#   2. kill -9 the source (ds1) mid-copy: the copy fails cleanly (the
#      target's extent is unchanged, nothing left over) and the repair
#      completes from ds2.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy python3 cmp

DS_EXTENT_SIZE=2048 DS_EXTENT_COUNT=4 volume_create   # 4 x 8 MiB
volume_start
nbdkit_start
len=$((16 * 1024 * 1024))
head -c $len /dev/urandom > "$tmp/old.img"
head -c $len /dev/urandom > "$tmp/new.img"
timeout 120 nbdcopy "$tmp/old.img" "$URI" || fail "writing old data failed"
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"
ds_kill ds3 KILL
timeout 120 nbdcopy "$tmp/new.img" "$URI" || fail "writing new data failed"
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"
volume_stop
cp "$tmp/ds3/00/000/000" "$tmp/ds3-old-000"

# ds1 behind a throttled proxy.
volume_start
faultproxy_start ds1 || fail "faultproxy did not start"
fp_ctl ds1 throttle 4000000 > /dev/null || fail "faultproxy did not answer"
pport=${DS_PORT[ds1]}
real1=${REAL_PORT[ds1]}

# wait_file PATH SECS
wait_file () {
  local i
  for i in $(seq $(($2 * 20))); do [ -e "$1" ] && return 0; sleep 0.05; done
  return 1
}

# kill_mid_copy NAME: in the background, kill -9 NAME once ds3 is
# copying extent 0.
kill_mid_copy () {
  local pid=${DS_PID[$1]}
  ( wait_file "$tmp/ds3/00/000/000.copy/000" 60 && sleep 0.5 &&
    kill -KILL "$pid" ) &
  killer=$!
}

# 1. Kill the target mid-copy: ds3 joins late, live repair copies.
ds_kill ds3 KILL
NBDKIT_VERBOSE=1 nbdkit_start timeout=5 ||
  fail "nbdkit did not start without the target"
ds_start ds3 || fail "ds3 did not start"
kill_mid_copy ds3
wait "$killer" || fail "no copy in progress"
ds_kill ds3 KILL
cmp -s "$tmp/ds3/00/000/000" "$tmp/ds3-old-000" ||
  fail "target extent changed by an interrupted copy"
ds_start ds3 || fail "ds3 did not restart"
grep -q "discarding an interrupted repair copy" "$tmp/ds3.log" ||
  fail "leftover copy not discarded at restart"
[ -e "$tmp/ds3/00/000/000.copy" ] && fail ".copy/ still there"
wait_log "live repair of 127.0.0.1:${DS_PORT[ds3]} complete" 120 ||
  fail "ds3 not repaired after the interrupted copy"
nbdkit_stop
DS_PORT[ds1]=$real1
volume_stop
for f in 00/000/000 00/000/001 00/000/000.db 00/000/001.db; do
  cmp "$tmp/ds1/$f" "$tmp/ds3/$f" || fail "after repair: ds3 $f differs"
done
echo "target killed mid-copy: old kept, repaired later"

# 2. Make ds3 stale again, then kill the source mid-copy.
volume_start
DS_PORT[ds1]=$pport
nbdkit_start || fail "nbdkit did not start"
ds_kill ds3 KILL
timeout 120 nbdcopy "$tmp/old.img" "$URI" || fail "rewriting failed"
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"
nbdkit_stop
cp "$tmp/ds3/00/000/000" "$tmp/ds3-old-000"
: > "$tmp/nbdkit.log"
NBDKIT_VERBOSE=1 nbdkit_start timeout=5 ||
  fail "nbdkit did not start without ds3"
ds_start ds3 || fail "ds3 did not restart"
kill_mid_copy ds1
wait "$killer" || fail "no copy in progress (2)"
DS_PORT[ds1]=$real1
ds_kill ds1 KILL
cmp -s "$tmp/ds3/00/000/000" "$tmp/ds3-old-000" ||
  cmp "$tmp/ds3/00/000/000" "$tmp/ds2/00/000/000" ||
  fail "target extent is neither old nor new"
wait_log "live repair of 127.0.0.1:${DS_PORT[ds3]} complete" 120 ||
  fail "ds3 not repaired from ds2 after the source died"
timeout 120 nbdcopy "$URI" "$tmp/out.img" || fail "read back failed"
cmp -n $len "$tmp/old.img" "$tmp/out.img" || fail "data differs"
nbdkit_stop
for n in ds2 ds3; do ds_kill $n; done
[ -e "$tmp/ds3/00/000/000.copy" ] && fail ".copy/ left after a failed copy"
for f in 00/000/000 00/000/001; do
  cmp "$tmp/ds2/$f" "$tmp/ds3/$f" || fail "after repair from ds2: $f differs"
done
echo "source killed mid-copy: target intact, repaired from the other"
