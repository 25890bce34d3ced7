#!/usr/bin/env bash
# A replaced replica is rebuilt under guest writes (issue 11).  The volume
# has create's default 128 MiB extents (what users run: a rebuild then
# compares large extents block by block while the guest writes into them)
# but only 3 of them, 256 MiB of which are filled, so that filling,
# rebuilding and verifying twice stay within tens of seconds in CI.
# While build/tools/nbdverify writes random 64 KiB blocks: kill -9 ds3,
# replace its region directory by an empty region created like an
# operator would (`create -u` with the uuid and geometry found in ds1's
# region.json), restart ds3 on the same port.  Asserted:
#   - no guest write fails, before, during or after the rebuild;
#   - "live repair of ds3 complete ... active again (3 of 3)" and ds3
#     active and the volume healthy in the stats file;
#   - every block reads back as the newest acknowledged write (nbdverify
#     verify), again with ds1 killed (reads from ds2 and the rebuilt ds3);
#   - offline: ds3's extent data files are byte-identical to ds2's, `dump`
#     of ds2 and ds3 shows no difference, ds3 scrubs clean (`verify`);
#   - the rebuild compared exactly the extents that hold data ("starting,
#     2 of 3 extents to compare": the never written third is equal on an
#     empty replica) and copied about the data: copied_bytes is at least
#     the filled blocks the writer did not rewrite (those can reach an
#     empty replica only through the rebuild) and at most bytes_total.
# The last two are checked last, so that on a build without them the
# data checks above still run.
# timeout: 400
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh python3 cmp
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"

bs=65536
nblk=4096                         # 4096 x 64 KiB = 256 MiB: extents 0, 1
DS_EXTENT_SIZE=default DS_EXTENT_COUNT=3 volume_create # 3 x 128 MiB
volume_start
STATS=$tmp/stats.json
NBDKIT_VERBOSE=1 nbdkit_start timeout=5 stats="$STATS" ||
  fail "nbdkit did not start"
p3=${DS_PORT[ds3]}
nv=("$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 11)

# Fill 256 MiB (one sequential pass, flushed).
timeout 200 "${nv[@]}" write --block-size $bs --blocks $nblk --flush-every 256 \
  > "$tmp/fill.log" 2>&1 || { cat "$tmp/fill.log" >&2; fail "fill failed"; }
cat "$tmp/fill.log"

# The guest keeps writing, at random, until ds3 is rebuilt.
"${nv[@]}" write --block-size $bs --blocks $nblk --random --duration 300 \
  --flush-every 64 > "$tmp/w.log" 2>&1 &
wpid=$!
PIDS+=($wpid)
sleep 2

# ds3's host is replaced: kill -9, an empty region with the same uuid and
# geometry, the same port.
ds_kill ds3 KILL
read -r uuid es ec < <(python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(r["uuid"], r["extent_size"]["value"], r["extent_count"])' \
  "$tmp/ds1/region.json") || fail "cannot read ds1's region.json"
rm -rf "$tmp/ds3"
"$DOWNSTAIRS" create -d "$tmp/ds3" -u "$uuid" --encrypted --extent-size "$es" \
  --extent-count "$ec" >> "$tmp/create.log" 2>&1 ||
  { tail -n 3 "$tmp/create.log" >&2; fail "create of the replacement failed"; }
t0=$(date +%s.%N)
ds_start ds3 || fail "the replacement ds3 did not start"
wait_log "live repair of 127.0.0.1:$p3 complete" 240 ||
  { tail -n 20 "$tmp/nbdkit.log" >&2; fail "rebuild of ds3 did not complete"; }
t1=$(date +%s.%N)
stats_wait 'ds[2]["state"] == "active" and d["health"] == "healthy"' 30 ||
  { cat "$STATS" >&2; fail "ds3 not active after its rebuild"; }
kill -0 $wpid 2>/dev/null ||
  { cat "$tmp/w.log" >&2; fail "the writer stopped during the rebuild"; }
sleep 2                           # a few writes with all three active
kill -TERM $wpid
wait $wpid || { cat "$tmp/w.log" >&2; fail "guest writes failed"; }
cat "$tmp/w.log"
grep -q ' 0 write errors, .* 0 flush errors, 0 reconnects' "$tmp/w.log" ||
  fail "the writer saw errors"
grep "live repair of 127.0.0.1:$p3" "$tmp/nbdkit.log" | sed 's/^/  /'
echo "rebuild of 256 MiB under writes: $(python3 -c "print('%.1f' % ($t1 - $t0))") s" \
  "from restart to complete; repair $(stats_q 'ds[2]["repair"]')"

timeout 120 "${nv[@]}" verify > "$tmp/v1.log" 2>&1 ||
  { cat "$tmp/v1.log" >&2; fail "verify after the rebuild failed"; }
cat "$tmp/v1.log"
ds_kill ds1 KILL
stats_wait 'ds[0]["state"] != "active"' 20 || fail "ds1 still active"
timeout 120 "${nv[@]}" verify > "$tmp/v2.log" 2>&1 ||
  { cat "$tmp/v2.log" >&2; fail "verify from ds2 and the rebuilt ds3 failed"; }
cat "$tmp/v2.log"
cp "$STATS" "$tmp/stats-rebuilt.json"

# Offline: the rebuilt replica equals ds2.
nbdkit_stop || fail "nbdkit stop failed"
ds_kill ds2
ds_kill ds3
for f in $(cd "$tmp/ds2" && find . -type f ! -name '*.db*' ! -name '*.json' |
             sort); do
  cmp "$tmp/ds2/$f" "$tmp/ds3/$f" || fail "rebuilt ds3 $f differs from ds2"
done
"$DOWNSTAIRS" dump -d "$tmp/ds2" -d "$tmp/ds3" > "$tmp/dump.txt" ||
  fail "dump failed"
grep -q '\*' "$tmp/dump.txt" &&
  { cat "$tmp/dump.txt" >&2; fail "dump of ds2 and ds3 shows differences"; }
"$DOWNSTAIRS" verify -d "$tmp/ds3" > "$tmp/verify-ds3.out" 2>&1 ||
  { cat "$tmp/verify-ds3.out" >&2; fail "verify of the rebuilt ds3 failed"; }
cat "$tmp/verify-ds3.out"
echo "data: verified twice, rebuilt ds3 identical to ds2 and clean"

# What the rebuild did: the extents with data, about the data (both
# checks reported before failing).
bad=()
n=$(sed -n "s/.*live repair of 127\.0\.0\.1:$p3: starting, \([0-9]*\) of 3 extents to compare.*/\1/p" \
  "$tmp/nbdkit.log" | tail -n 1)
[ "$n" = 2 ] ||
  bad+=("rebuild started with '${n:-no} of 3 extents to compare', want 2")
kept=$(python3 -c 'import struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack_from("<Q", b, 16)[0]
print(sum(1 for i in range(n)
          if struct.unpack_from("<III", b, 48 + 12 * i)[2] == 1))' "$tmp/st")
echo "$kept of $nblk filled blocks were not rewritten by the writer"
STATS=$tmp/stats-rebuilt.json
[ "$(stats_q 'ds[2]["repair"]["copied_bytes"] >= '$((kept * bs))' and
              0 < ds[2]["repair"]["copied_bytes"] <= ds[2]["repair"]["bytes_total"]' 2>&1)" = True ] ||
  bad+=("copied_bytes not in [$((kept * bs)), bytes_total]: $(stats_q 'ds[2]["repair"]')")
if [ ${#bad[@]} -gt 0 ]; then
  printf '%s\n' "${bad[@]}" | sed 's/^/  rebuild: /' >&2
  fail "${#bad[@]} of 2 rebuild checks failed; first: ${bad[0]}"
fi
echo "rebuild: 2 of 3 extents compared, copied_bytes $(stats_q 'ds[2]["repair"]["copied_bytes"]')" \
  ">= $((kept * bs)) never rewritten"
