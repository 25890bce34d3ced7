#!/usr/bin/env bash
# Start-up reconciliation after kill -9 of nbdkit, on create's default
# geometry (128 MiB extents), block by block (docs/DESIGN.md):
#   A. One replica's copy of an unflushed block is corrupt (a byte flipped
#      while it was down).  Its downstairs finds the block matches none of
#      its contexts; reconciliation must take the block from the good
#      replicas and copy nothing else: the data reads back intact and all
#      three replicas pass `verify`.  (The extent-level rule "dirty, equal
#      numbers, lowest index wins" once copied replica 1 over the other
#      two, so the block failed on all three and read EIO.)
#   B. Write A to a block on all three (unflushed), kill -9 ds1, write B
#      (acked by ds2 and ds3), kill -9 nbdkit: after the restart the block
#      reads B, the newest version a majority held.  (It once read A.)
# Each restart copies exactly the blocks that differ.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp python3

DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=2 # 256 MiB
bs=4096

# crash: kill -9 nbdkit and every downstairs.
crash () {
  kill -KILL "$NBDKIT_PID"
  wait "$NBDKIT_PID" 2>/dev/null || true
  NBDKIT_PID=
  for i in $VOLUME; do ds_kill "$i" KILL; done
}

# settled: every downstairs holds every write sent so far (the stats file,
# rewritten each second, shows no job in flight anywhere).
settled () {
  stats_wait 'all(x["state"] == "active" and x["inflight_jobs"] == 0
                   for x in ds)' 10 || fail "the downstairs did not settle"
}

# copied N: the last reconciliation copied exactly N blocks, trimmed none.
copied () {
  grep "reconciliation done" "$tmp/nbdkit.log" | tail -n 1 |
    grep -q " $1 blocks copied, 0 trimmed, 0 without" ||
    { grep "reconcil" "$tmp/nbdkit.log" >&2
      fail "$2: expected exactly $1 blocks copied"; }
}

volume_create
volume_start
nbdkit_start stats="$tmp/stats.json"
len=$((16 * 1024 * 1024))
random_image "$tmp/in.img" $len
timeout 120 nbdcopy "$tmp/in.img" "$URI" || fail "write failed"
settled # else the crash may leave the third replica behind: more to copy

# A. Corrupt block 1 of replica 1 while everything is down, unflushed.
crash
flip ds1 1
"$DOWNSTAIRS" verify -d "$tmp/ds1" > "$tmp/v0.out" 2>&1 &&
  fail "test bug: verify does not see the flipped block"
volume_start
: > "$tmp/nbdkit.log"
nbdkit_start || fail "nbdkit did not start after the crash"
grep -q "reconcile: .*lba 1\b\|reconcile extent 0: 1 blocks copied" \
  "$tmp/nbdkit.log" || true
copied 1 "A (one corrupt block)"
volume_check "$tmp/in.img" "A: read back differs"
nbdkit_stop
for i in $VOLUME; do ds_kill "$i"; done
for i in $VOLUME; do
  "$DOWNSTAIRS" verify -d "$tmp/$i" > "$tmp/verify-$i.out" 2>&1 ||
    { cat "$tmp/verify-$i.out" >&2; fail "A: $i fails verify"; }
done
cmp -n $len "$tmp/ds1/00/000/000" "$tmp/ds2/00/000/000" ||
  fail "A: replica 1's extent differs from replica 2's"
echo "A: the corrupt block was healed from the good replicas, nothing spread"

# B. A on all three, B on ds2 and ds3 only, then a crash.
volume_start
nbdkit_start stats="$tmp/stats.json" || fail "B: nbdkit did not start"
lba=100
nbdsh_run -u "$URI" -c "h.pwrite(b'A' * $bs, $lba * $bs)" || fail "B: write A"
settled # A on all three
ds_kill ds1 KILL
nbdsh_run -u "$URI" -c "h.pwrite(b'B' * $bs, $lba * $bs)" || fail "B: write B"
crash
volume_start
: > "$tmp/nbdkit.log"
nbdkit_start || fail "B: nbdkit did not start after the crash"
copied 1 "B (ds1 missed one write)"
nbdsh_run -u "$URI" -c "
for i in range(6):  # reads rotate over the replicas
    got = h.pread($bs, $lba * $bs)
    assert got == b'B' * $bs, 'block reads %r, not B' % got[:1]
" || fail "B: the newest write two replicas held was lost"
ds_kill ds2 KILL # and ds1, which was behind, serves it too
nbdsh_run -u "$URI" -c "
assert h.pread($bs, $lba * $bs) == b'B' * $bs
" || fail "B: ds1 was not brought level"
echo "B: the write a majority held survived the crash"
