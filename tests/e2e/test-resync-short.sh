#!/usr/bin/env bash
# A short outage costs a short resync (issue 11).  A 1 GiB encrypted
# volume of 64 extents of 16 MiB is filled and flushed; ds3 is killed -9,
# 4 MiB are written into one extent and flushed on the other two; ds3
# restarts on its port and is live-repaired.  The repair must compare only
# the extent that changed ("starting, 1 of 64 extents to compare", at
# most 2 allowed) and move only the blocks that differ: the restarted
# ds3 process writes (its /proc/PID/io wchar: files, databases and
# sockets alike) less than 64 MiB by the time it is active again, where
# copying every extent writes over 1 GiB, and the stats file counts at
# least the 4 MiB written and less than one extent as copied_bytes.
# Then the volume stops cleanly and the replicas are checked offline:
# every extent data file identical on ds1, ds2 and ds3, `dump` shows no
# difference, `verify` (scrub) is clean on each.  The cost checks fail
# the test only at the end, so the data checks run on a build that still
# copies every extent.
# timeout: 400
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp python3

ext=$((16 << 20))
len=$((4 << 20))
eid=37                        # the extent written while ds3 is away
off=$((eid * ext + (5 << 20))) # 4 MiB inside it, away from its edges

DS_EXTENT_SIZE=4096 DS_EXTENT_COUNT=64 volume_create # 64 x 16 MiB = 1 GiB
volume_start
STATS=$tmp/stats.json
NBDKIT_VERBOSE=1 nbdkit_start timeout=5 stats="$STATS" ||
  fail "nbdkit did not start"
p3=${DS_PORT[ds3]}
stats_wait '[x["state"] for x in ds] == ["active"] * 3' 20 ||
  fail "not 3 active downstairs"

# Fill the whole volume once, flushed every 128 MiB: one flush of 1 GiB
# of page cache outlasted timeout=5 on a loaded disk (seen in CI).
PATH=/usr/bin:$PATH timeout 200 python3 - "$SOCK" $((64 * ext)) <<'EOF' ||
import os, sys, nbd
h = nbd.NBD()
h.connect_unix(sys.argv[1])
step, chunk = 128 << 20, 4 << 20
for base in range(0, int(sys.argv[2]), step):
    for off in range(base, base + step, chunk):
        h.pwrite(os.urandom(chunk), off)
    h.flush()
h.shutdown()
EOF
  fail "fill failed"

# ds3 away while 4 MiB of one extent change (flushed on ds1 and ds2).
ds_kill ds3 KILL
stats_wait 'ds[2]["state"] != "active"' 20 || fail "ds3 still active"
random_image "$tmp/new.img" $len
nbdsh_run -u "$URI" -c "
h.pwrite(open('$tmp/new.img', 'rb').read(), $off)
h.flush()
" || fail "write with ds3 away failed"

# ds3 returns: time and count what it writes until it is active.
t0=$(date +%s.%N)
ds_start ds3 || fail "ds3 did not restart"
pid3=${DS_PID[ds3]}
stats_wait 'ds[2]["state"] == "active" and d["health"] == "healthy"' 180 ||
  { cat "$STATS" >&2; fail "ds3 not active again within 180 s"; }
t1=$(date +%s.%N)
wchar=$(awk '$1 == "wchar:" { print $2 }' "/proc/$pid3/io") ||
  fail "cannot read /proc/$pid3/io"
[ -n "$wchar" ] || fail "no wchar in /proc/$pid3/io"
secs=$(python3 -c "print('%.1f' % ($t1 - $t0))")
echo "ds3 restart to active: $secs s, wchar $wchar bytes" \
  "($((wchar >> 20)) MiB; copying every extent writes over 1024 MiB)"
grep "live repair of 127.0.0.1:$p3" "$tmp/nbdkit.log" | sed 's/^/  /'
echo "  stats repair of ds3: $(stats_q 'ds[2]["repair"]')"

# The cost checks; a failure is reported at the end, after the data
# checks below have run too (they hold on a build that copies everything).
bad=()
[ "$wchar" -lt $((64 << 20)) ] ||
  bad+=("restarted ds3 wrote $((wchar >> 20)) MiB to resync 4 MiB (limit 64)")
n=$(sed -n "s/.*live repair of 127\.0\.0\.1:$p3: starting, \([0-9]*\) of 64 extents to compare.*/\1/p" \
  "$tmp/nbdkit.log" | tail -n 1)
if [ -z "$n" ]; then
  bad+=("no 'starting, N of 64 extents to compare' line for ds3")
elif [ "$n" -lt 1 ] || [ "$n" -gt 2 ]; then
  bad+=("live repair compared $n of 64 extents, want the 1 that changed")
fi
grep -q "live repair of 127.0.0.1:$p3 complete: .*; active again (3 of 3)" \
  "$tmp/nbdkit.log" || bad+=("no 'complete: ...; active again (3 of 3)' line")
[ "$(stats_q 'ds[2]["repair"]["copied_bytes"] >= '$len' and
              ds[2]["repair"]["copied_bytes"] < '$ext' and
              ds[2]["repair"]["bytes_done"] == ds[2]["repair"]["bytes_total"]' 2>&1)" = True ] ||
  bad+=("stats: copied_bytes not in [4 MiB, 16 MiB) or bytes_done != bytes_total")

# The new bytes read back (the files are ciphertext: this is the data
# check; the cmp below shows ds3 holds the same blocks).
nbdsh_run -u "$URI" -c "
assert h.pread($len, $off) == open('$tmp/new.img', 'rb').read()
" || fail "the 4 MiB written while ds3 was away do not read back"

# Offline: three identical, clean replicas.
volume_stop || fail "clean stop failed"
for f in $(cd "$tmp/ds1" && find . -type f ! -name '*.db*' ! -name '*.json' |
             sort); do
  cmp "$tmp/ds1/$f" "$tmp/ds2/$f" || fail "ds2 $f differs from ds1"
  cmp "$tmp/ds1/$f" "$tmp/ds3/$f" || fail "ds3 $f differs from ds1"
done
"$DOWNSTAIRS" dump -d "$tmp/ds1" -d "$tmp/ds2" -d "$tmp/ds3" \
  > "$tmp/dump.txt" || fail "dump failed"
grep -q '\*' "$tmp/dump.txt" &&
  { cat "$tmp/dump.txt" >&2; fail "dump shows differences"; }
for i in ds1 ds2 ds3; do
  "$DOWNSTAIRS" verify -d "$tmp/$i" > "$tmp/verify-$i.out" 2>&1 ||
    { cat "$tmp/verify-$i.out" >&2; fail "verify of $i failed"; }
  grep -q ", 0 bad" "$tmp/verify-$i.out" ||
    { cat "$tmp/verify-$i.out" >&2; fail "verify of $i not clean"; }
done
echo "data: the new 4 MiB read back; replicas identical, dump level, verify clean"
if [ ${#bad[@]} -gt 0 ]; then
  printf '%s\n' "${bad[@]}" | sed 's/^/  cost: /' >&2
  fail "${#bad[@]} of 4 cost checks failed; first: ${bad[0]}"
fi
echo "short resync: ds3 wrote $((wchar >> 20)) MiB in $secs s for 4 MiB" \
  "changed; replicas identical, dump level, verify clean"
