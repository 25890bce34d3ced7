#!/usr/bin/env bash
# A source of a live repair that is lost and comes back while the repair
# goes on ends level with the others: stopped cleanly, `dump` shows no
# difference (the flake of test-repair-interrupt.sh case a, pinned).
# Volume: 4 extents of 8 MiB behind throttled faultproxies (2 MB/s), as in
# test-repair-interrupt.sh.  ds3 misses a rewrite of the whole volume and
# returns: its repair from ds1 and ds2 copies every extent, each block's
# data read from ds1 (ties: lowest index), about 4 s per extent.  Then:
#   1. ds1's link stalls mid-copy: its data read times out (timeout=5),
#      ds1 is faulted, the repair goes on from ds2 alone; the link resumes
#      and ds1 is back (a live-repair target waiting its turn), pending
#      only where ds3's repair levelled an extent meanwhile.
#   2. The repair of ds3 finishes, then ds1's; all active, read back,
#      clean stop; every extent's (gen, flush, dirty) equal on the three.
# Before the fix, two rules broke it: (a) the chunk whose data read was
# lost wrote its blocks to ds1 (the lost winner was made a target) on
# ds1's new connection, unmarked, after nothing was pending there: the
# stop's FLUSH gave that extent a number on ds1 alone (higher); (b) the
# EXTENT_FLUSH of each extent levelled after ds1's return went to ds3's
# sources (ds2) and ds3 only: ds1, not pending there, kept the older
# number (lower).
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy python3 cmp

rate=2000000
proxied_volume
fp_stale ds3 "$tmp/b.img"
stats_wait 'ds[2]["state"].startswith("live-repair") and
            ds[2]["repair"]["extents_done"] == 1' 60 ||
  { cat "$STATS" >&2
    # What faulted or restarted the repair (a CI run once saw ds1 time
    # out a job before the stall below, and this wait missed the moment).
    grep -i 'timed out\|timeout\|faulted\|live repair of' "$tmp/nbdkit.log" |
      head -n 20 >&2
    fail "ds3 never seen mid-repair"; }
# 1. ds1 lost mid-copy, back while ds3's repair goes on.
fp_ctl ds1 stall > /dev/null || fail "faultproxy did not answer"
stats_wait 'ds[0]["state"] != "active"' 20 || fail "ds1 not faulted"
fp_ctl ds1 resume > /dev/null || fail "faultproxy did not answer"
stats_wait 'ds[0]["state"].startswith("live-repair")' 20 ||
  { cat "$STATS" >&2; fail "ds1 not back"; }
grep 'is back\|interrupted\|live repair of .*: starting' "$tmp/nbdkit.log" |
  sed 's/^nbdkit: [a-z ]*: //; s/^/  /'
[ "$(stats_q 'ds[2]["state"].startswith("live-repair")')" = True ] ||
  fail "ds3's repair ended before ds1 was back: nothing tested"
# 2. Both repaired; level.
throttle 0 || fail "faultproxy did not answer"
stats_wait 'd["health"] == "healthy" and
            [x["state"] for x in ds] == ["active"] * 3' 90 ||
  { cat "$STATS" >&2; fail "ds1 and ds3 not both repaired"; }
timeout 60 nbdcopy "$URI" "$tmp/out.img" || fail "read back failed"
cmp "$tmp/b.img" "$tmp/out.img" || fail "data differs"
volume_stop || fail "clean stop failed"
"$DOWNSTAIRS" dump -d "$tmp/ds1" -d "$tmp/ds2" -d "$tmp/ds3" \
  > "$tmp/dump.txt" || fail "dump failed"
grep -q '\*' "$tmp/dump.txt" &&
  { cat "$tmp/dump.txt" >&2; fail "dump shows differences"; }
echo "a source lost and back mid-repair: replicas level"
