#!/usr/bin/env bash
# Online extend (`crucible-admin extend SIZE`, docs/DESIGN.md "Extend"):
#  - while nbdverify writes (its connection keeps its size), 64 -> 128
#    MiB; every block it wrote verifies; a new connection (nbdinfo) sees
#    the new size at once, and so do stats and status; blocks at the new
#    end write and read back; shrinking and a bad size are refused in one
#    line; a size not a whole extent is rounded up and says so;
#  - ds3 killed -9 as an extend runs: the volume grows on two; ds3,
#    restarted, is extended at admission ("missed an extend") and
#    live-repaired;
#  - ds2 killed -9, extend on two, data written past the old end, then
#    nbdkit killed -9 right after: at restart the smaller replica is
#    levelled up to the largest before reconciliation, the data there
#    reads back, every replica has one size;
#  - a replica larger than the running volume is refused at rejoin until
#    an extend to its size admits it;
#  - at the end every region verifies offline (crucible-downstairs verify)
#    and nbdverify's blocks are still its last acked versions.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdinfo nbdsh python3 timeout
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"
[ -x "$ADMIN" ] || fail "crucible-admin not built"
ASOCK=$tmp/admin.sock
S=$tmp/stats.json
M=$((1024 * 1024))

# region_count NAME: the extent count in region.json of $tmp/NAME.
region_count () {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["extent_count"])' \
    "$tmp/$1/region.json"
}
# pattern FILE SEED: 4 MiB of bytes from SEED.
pattern () {
  python3 -c 'import random,sys; r=random.Random(int(sys.argv[2])); open(sys.argv[1],"wb").write(r.randbytes(4<<20))' "$1" "$2"
}
# put FILE OFF / get_check FILE OFF: write FILE at OFF and flush; read
# back at OFF and compare.
put () {
  nbdsh_run -u "$URI" -c "
h.pwrite(open('$1', 'rb').read(), $2)
h.flush()" || fail "write of $1 at $2 failed"
}
get_check () {
  nbdsh_run -u "$URI" -c "
import sys
want = open('$1', 'rb').read()
sys.exit(h.pread(len(want), $2) != want)" || fail "$1 at $2 does not read back"
}

volume_create        # 16 extents of 4 MiB: 64 MiB
volume_start
nbdkit_start admin="$ASOCK" stats="$S"
[ "$(nbdinfo --size "$URI")" = $((64 * M)) ] || fail "not 64 MiB at start"

# 1. Online, under a writer.
"$NBDVERIFY" --uri "$URI" --state "$tmp/va" --seed 7 write --random \
  --flush-every 64 --duration 6 > "$tmp/va.log" 2>&1 &
W=$!
PIDS+=($W)
sleep 2
adm extend 128M > "$tmp/ext1.txt" || fail "extend 128M failed"
grep -q "^extended from $((64 * M)) to $((128 * M)) bytes in [0-9]* ms$" \
  "$tmp/ext1.txt" || { cat "$tmp/ext1.txt" >&2; fail "extend: no 'extended' line"; }
[ "$(nbdinfo --size "$URI")" = $((128 * M)) ] ||
  fail "a new connection does not see 128 MiB"
wait "$W" || { cat "$tmp/va.log" >&2; fail "the writer failed across the extend"; }
"$NBDVERIFY" --uri "$URI" --state "$tmp/va" verify > "$tmp/vv.log" 2>&1 ||
  { cat "$tmp/vv.log" >&2; fail "writer's blocks do not verify after the extend"; }
grep -q "volume extended from $((64 * M)) to $((128 * M)) bytes" \
  "$tmp/nbdkit.log" || fail "no notice line for the extend"
stats_wait "d['size'] == $((128 * M))" 10 || fail "stats: size not 128 MiB"
adm --json status | json_check \
  'd["status"]["size"] == 128 << 20 and d["extend"]["state"] == "idle" and d["extend"]["extends"] == 1'
for d in ds1 ds2 ds3; do
  [ "$(region_count $d)" = 32 ] || fail "$d: region.json not 32 extents"
done
pattern "$tmp/p1" 1
put "$tmp/p1" $((124 * M))             # the last 4 MiB
get_check "$tmp/p1" $((124 * M))
nbdsh_run -u "$URI" -c "h.pread(4096, $((128 * M)))" 2>/dev/null &&
  fail "a read past the new end succeeded"
echo "online extend under a writer: ok"

# Refusals, one line each; rounding.
expect 1 "shrink" "shrinking is not supported: the volume is $((128 * M)) bytes, $((64 * M)) asked" \
  "$ADMIN" -s "$ASOCK" extend 64M
expect 1 "bad size" "usage: extend SIZE" "$ADMIN" -s "$ASOCK" extend 12X
adm --json extend 0 | json_check 'not d["ok"] and d["code"] == "usage"'
adm extend 128M | grep -q "^the volume already has $((128 * M)) bytes$" ||
  fail "same size: not a no-op"
adm extend $((130 * M)) > "$tmp/ext2.txt" || fail "extend 130M failed"
grep -q "to $((132 * M)) bytes .*(rounded up to a whole extent)" "$tmp/ext2.txt" ||
  { cat "$tmp/ext2.txt" >&2; fail "130M: not rounded up to 132M"; }

# 2. ds3 killed -9 as an extend runs; levelled when it returns.
ds_kill ds3 9 &
KP=$!
adm --json extend 192M > "$tmp/ext3.json" || { cat "$tmp/ext3.json" >&2; fail "extend with ds3 dying failed"; }
json_check 'd["ok"] and d["size"] == 192 << 20' < "$tmp/ext3.json"
wait "$KP"
[ "$(nbdinfo --size "$URI")" = $((192 * M)) ] || fail "not 192 MiB"
pattern "$tmp/p2" 2
put "$tmp/p2" $((188 * M))
[ "$(region_count ds3)" -lt 48 ] && echo "ds3 missed it ($(region_count ds3) extents)"
ds_start ds3
stats_wait "d['health'] == 'healthy'" 40 || fail "ds3 did not come back"
[ "$(region_count ds3)" = 48 ] || fail "ds3 not levelled to 48 extents"
if grep -q "region has\|has 33 extents, the volume 48\|has 32 extents, the volume 48" "$tmp/nbdkit.log"; then
  grep -q "(it missed an extend): extending it before its live repair" \
    "$tmp/nbdkit.log" || fail "no admission levelling line"
fi
echo "a downstairs away during extend: levelled at its return"

# 3. ds2 away, extend on two, data past the old end, nbdkit killed -9.
ds_kill ds2 9
stats_wait "d['health'] == 'degraded'" 20 || fail "not degraded without ds2"
adm extend 256M > /dev/null || fail "extend 256M on two failed"
pattern "$tmp/p3" 3
put "$tmp/p3" $((200 * M))
put "$tmp/p3" $((252 * M))
kill -9 "$NBDKIT_PID"
wait "$NBDKIT_PID" 2>/dev/null || true
NBDKIT_PID=
[ "$(region_count ds1)" = 64 ] && [ "$(region_count ds3)" = 64 ] &&
  [ "$(region_count ds2)" = 48 ] || fail "test bug: not a 64/48/64 volume"
ds_start ds2
nbdkit_start admin="$ASOCK" stats="$S"
grep -q "has 48 extents, the largest replica 64 (an extend that did not finish everywhere): extending it" \
  "$tmp/nbdkit.log" || fail "no start-up levelling line"
[ "$(nbdinfo --size "$URI")" = $((256 * M)) ] || fail "not 256 MiB after restart"
for d in ds1 ds2 ds3; do
  [ "$(region_count $d)" = 64 ] || fail "$d: not 64 extents after restart"
done
get_check "$tmp/p1" $((124 * M))
get_check "$tmp/p2" $((188 * M))
get_check "$tmp/p3" $((200 * M))
get_check "$tmp/p3" $((252 * M))
echo "nbdkit killed -9 after a degraded extend: levelled at start"

# 4. A replica larger than the volume (an extend that reached it alone:
# made here with the protocol tool while nbdkit is down) is refused at
# rejoin, in one line, until an extend to its size admits it.
nbdkit_stop || fail "nbdkit stop"
python3 - 127.0.0.1 "${DS_PORT[ds1]}" <<PY || fail "test bug: cannot grow ds1 alone"
import sys
sys.path.insert(0, "$top/tests/tools")
import dsproto
c = dsproto.Conn(sys.argv[1], int(sys.argv[2]))
c.hello(encrypted=1)
c.activate(dsproto.next_gen(c))
sys.exit(c.extend(1, 66))
PY
[ "$(region_count ds1)" = 66 ] || fail "test bug: ds1 not 66 extents"
ds_kill ds1
G=$(python3 -c 'import json,sys; print(1 + max(json.load(open(p))["highest_gen"] for p in sys.argv[1:]))' \
  "$tmp"/ds[123]/region.json)
nbdkit_start admin="$ASOCK" stats="$S" gen="$G"
[ "$(nbdinfo --size "$URI")" = $((256 * M)) ] || fail "not 256 MiB without ds1"
ds_start ds1
wait_log "downstairs 127.0.0.1:${DS_PORT[ds1]}: has 66 extents, the volume 64 (an extend that did not finish): extend the volume to its size or restart: not admitted" 20 ||
  fail "the larger replica was not refused in one line"
adm extend 264M > /dev/null || fail "extend 264M failed"
stats_wait "d['health'] == 'healthy'" 40 || fail "ds1 not admitted after the extend"
[ "$(region_count ds2)" = 66 ] || fail "ds2 not 66 extents"
echo "a larger replica: refused, then admitted by an extend to its size"

"$NBDVERIFY" --uri "nbd+unix:///?socket=$tmp/none" --state "$tmp/va" verify \
  > /dev/null 2>&1 && fail "test bug: nbdverify without a server"
volume_stop
for d in ds1 ds2 ds3; do
  "$DOWNSTAIRS" verify -d "$tmp/$d" > "$tmp/verify-$d.log" 2>&1 ||
    { cat "$tmp/verify-$d.log" >&2; fail "$d does not verify"; }
done
volume_start
nbdkit_start admin="$ASOCK"
[ "$(nbdinfo --size "$URI")" = $((264 * M)) ] || fail "not 264 MiB at the end"
"$NBDVERIFY" --uri "$URI" --state "$tmp/va" verify > "$tmp/vv2.log" 2>&1 ||
  { cat "$tmp/vv2.log" >&2; fail "writer's blocks do not verify at the end"; }
get_check "$tmp/p3" $((252 * M))
echo "test-extend: ok"
