#!/usr/bin/env bash
# The seed's user runs `create` once per host without agreeing on a uuid
# first.  A region created without -u has no volume yet ("uuid":null in
# region.json) and takes the volume's uuid at its first activation,
# persisted before anything else; explicit, different uuids are still
# refused with one line that says how to fix it.  Default geometry.
#  1. three regions without -u: nbdkit makes a new uuid, all three adopt
#     it; data survives kill -9 of nbdkit and a restart with the same uuid
#  2. a fresh region without -u replaces a lost replica of the running
#     volume: it adopts the uuid at readmission and is live-repaired
#  3. two regions with -u X and one without: the third adopts X
#  4. two different explicit uuids: refused, one line naming the fix, and
#     the region without a uuid in that set stays without one
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh python3 cmp

DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=default

uuid_of () {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"])' \
    "$tmp/$1/region.json"
}

# 1. Three without -u.
for n in ds1 ds2 ds3; do
  "$DOWNSTAIRS" create -d "$tmp/$n" --encrypted > "$tmp/create-$n.out" 2>&1 ||
    { cat "$tmp/create-$n.out"; fail "create $n"; }
  grep -q "uuid none" "$tmp/create-$n.out" ||
    { cat "$tmp/create-$n.out"; fail "create without -u does not say uuid none"; }
  [ "$(uuid_of $n)" = None ] || fail "$n: region.json uuid is not null"
done
VOLUME="ds1 ds2 ds3"
volume_start || fail "start downstairs"
nbdkit_start stats="$tmp/stats.json" || fail "nbdkit refused three regions made without -u"
grep -q "new volume: uuid" "$tmp/nbdkit.log" || fail "no 'new volume' line"
u=$(uuid_of ds1)
[ "$u" != None ] || fail "ds1 did not adopt a uuid"
[ "$(uuid_of ds2)" = "$u" ] && [ "$(uuid_of ds3)" = "$u" ] ||
  fail "the three regions adopted different uuids: $u $(uuid_of ds2) $(uuid_of ds3)"
grep -q "$u" "$tmp/nbdkit.log" || fail "nbdkit log does not name uuid $u"
grep -q "adopts volume uuid $u" "$tmp/ds2.log" || fail "ds2 did not log the adoption"
random_image "$tmp/a.img" 8M
volume_fill "$tmp/a.img" "write"
stop_pid "$NBDKIT_PID" KILL || true
NBDKIT_PID=
nbdkit_start stats="$tmp/stats.json" || fail "restart after kill -9"
[ "$(grep -c "new volume" "$tmp/nbdkit.log")" = 1 ] ||
  fail "the restart made another uuid"
timeout 120 nbdcopy "$URI" - | head -c 8M | cmp - "$tmp/a.img" ||
  fail "data differs after the restart"
[ "$(uuid_of ds3)" = "$u" ] || fail "uuid changed across the restart"
echo "1: three regions without -u adopt one new uuid: ok ($u)"

# 2. Replace a lost replica by a fresh region made without -u.
ds_kill ds3 KILL
rm -rf "$tmp/ds3"
"$DOWNSTAIRS" create -d "$tmp/ds3" --encrypted > /dev/null 2>&1 || fail "recreate ds3"
stats_wait 'd["health"] == "degraded"' 30 || fail "the loss of ds3 was not seen"
ds_start ds3 || fail "start the new ds3"
stats_wait 'd["health"] == "healthy"' 120 ||
  { tail -n 20 "$tmp/nbdkit.log"; fail "the new ds3 was not live-repaired"; }
grep -q "${DS_PORT[ds3]}: live-repair" "$tmp/nbdkit.log" || fail "no live repair seen"
[ "$(uuid_of ds3)" = "$u" ] || fail "the new ds3 did not adopt $u"
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush after repair"
nbdkit_stop || fail "nbdkit stop"
ds_kill ds2   # serve from ds1 and the new ds3 only
nbdkit_start || fail "start on ds1 + new ds3"
timeout 120 nbdcopy "$URI" - | head -c 8M | cmp - "$tmp/a.img" ||
  fail "the repaired replica does not hold the data"
volume_stop
echo "2: a replacement made without -u adopts the uuid and is repaired: ok"

# 3. Two with -u X, one without.
X=$(cat /proc/sys/kernel/random/uuid)
for n in m1 m2; do
  "$DOWNSTAIRS" create -d "$tmp/$n" --encrypted -u "$X" > /dev/null 2>&1 || fail "create $n"
done
"$DOWNSTAIRS" create -d "$tmp/m3" --encrypted > /dev/null 2>&1 || fail "create m3"
VOLUME="m1 m2 m3"
volume_start || fail "start m1..m3"
nbdkit_start || fail "nbdkit refused two named regions and one without"
[ "$(uuid_of m3)" = "$X" ] || fail "m3 adopted $(uuid_of m3), want $X"
[ "$(grep -c "new volume" "$tmp/nbdkit.log")" = 1 ] ||
  fail "made a new uuid despite X"
nbdsh_run -u "$URI" -c 'h.pwrite(b"\x5a" * 4096, 0)' -c 'h.flush()' || fail "write"
volume_stop
echo "3: a region without -u joins two named X: ok"

# 4. Two different explicit uuids (and one without): refused.
for n in x1 x2; do
  "$DOWNSTAIRS" create -d "$tmp/$n" --encrypted -u "$(cat /proc/sys/kernel/random/uuid)" \
    > /dev/null 2>&1 || fail "create $n"
done
"$DOWNSTAIRS" create -d "$tmp/x3" --encrypted > /dev/null 2>&1 || fail "create x3"
VOLUME="x1 x2 x3"
volume_start || fail "start x1..x3"
ds=()
for n in $VOLUME; do ds+=("downstairs=127.0.0.1:${DS_PORT[$n]}"); done
expect 1 "different uuids" \
  "region uuid differs from .*: create all three with the same -u UUID, or without -u" \
  $(nbdkit_cmd) -f -U "$tmp/x.sock" "$PLUGIN" "${ds[@]}" key=+"$KEYFILE" timeout=20
[ "$(uuid_of x3)" = None ] || fail "x3 adopted a uuid from a refused start"
volume_stop
echo "4: two different uuids are refused with the fix: ok"
