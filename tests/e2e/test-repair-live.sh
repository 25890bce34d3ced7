#!/usr/bin/env bash
# Live repair: kill -9 one downstairs under write load; writes continue on
# two with no error; the downstairs restarts and is live-repaired extent
# by extent while the writes go on; afterwards every replica's extent data
# files are byte-identical and `dump` shows no difference.  Then a
# different downstairs is killed and everything reads back (served by the
# repaired one and the third).
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"

DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=16 volume_create  # 16 MiB, 1 MiB extents
volume_start
NBDKIT_VERBOSE=1 nbdkit_start timeout=3


"$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 7 write --random \
  --duration 12 --flush-every 64 > "$tmp/w1.log" 2>&1 &
wpid=$!
PIDS+=($wpid)
sleep 2
ds_kill ds2 KILL
sleep 2
ds_start ds2 || fail "ds2 did not restart"
wait_log "live repair of 127.0.0.1:${DS_PORT[ds2]} complete" 60 ||
  fail "live repair of ds2 did not complete"
# The last progress line counts every extent the repair set out to do
# (E/E: all 16 when every extent is copied, those that differ when only
# they are compared).
grep -q "live repair of 127.0.0.1:${DS_PORT[ds2]}: \([1-9][0-9]*\)/\1 extents" \
  "$tmp/nbdkit.log" || fail "no final progress line (E/E extents)"
wait "$wpid" || { cat "$tmp/w1.log" >&2; fail "writes failed during the fault or repair"; }
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v1.log" 2>&1 ||
  { cat "$tmp/v1.log" >&2; fail "verify after live repair failed"; }

# Flush, stop, compare the replicas file by file.
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"
volume_stop || fail "stop failed"
for f in $(cd "$tmp/ds1" && find . -type f ! -name '*.db*' ! -name '*.json'); do
  cmp "$tmp/ds1/$f" "$tmp/ds2/$f" || fail "ds2 $f differs from ds1"
  cmp "$tmp/ds1/$f" "$tmp/ds3/$f" || fail "ds3 $f differs from ds1"
done
"$DOWNSTAIRS" dump -d "$tmp/ds1" -d "$tmp/ds2" -d "$tmp/ds3" \
  > "$tmp/dump.txt" || fail "dump failed"
grep -q '\*' "$tmp/dump.txt" && { cat "$tmp/dump.txt" >&2; fail "dump shows differences"; }

# Kill another one: the repaired ds2 must serve the data.
volume_start
nbdkit_start timeout=3 || fail "nbdkit did not restart"
ds_kill ds1 KILL
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v2.log" 2>&1 ||
  { cat "$tmp/v2.log" >&2; fail "verify without ds1 failed"; }
echo "live repair under load: replicas identical, data verified"
