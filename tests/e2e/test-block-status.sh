#!/usr/bin/env bash
# timeout: 600
# Block status (NBD base:allocation, plugin/extents.c): on a 1 GiB volume
# of `create`'s default geometry (128 MiB extents),
#  1. `nbdinfo --map` after written, trimmed (aligned, as fstrim sends),
#     zeroed and never-written ranges (one crossing an extent boundary,
#     trims flushed and not) equals a model computed here, at 4 KiB
#     granularity; the same after kill -9 of nbdkit and a restart, after
#     kill -9 of every downstairs too (maps rebuilt from the rows their
#     recovery kept), and with one downstairs down;
#  2. nbdcopy of the volume with 16 MiB more written reads less than
#     64 MiB from it (the plugin's stats counters) and the copy is
#     byte-identical (sha256 of a full read); `qemu-img compare` of the
#     volume against the copy says identical;
#  3. each replica lies (its rows of a different 1 MiB deleted offline,
#     the bytes left): the map still says data there (the union of
#     answers), and reads of those ranges still return the data.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdinfo nbdcopy nbdsh qemu-img sqlite3 python3 sha256sum

DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=8 # 1 GiB
volume_create
volume_start
STATS=$tmp/stats.json
nbdkit_start stats="$STATS" || fail "nbdkit start"
MiB=1048576

# The operations, as "op offset length" (op w: write random bytes, t:
# trim, z: NBD zero, f: flush), applied by nbdsh (apply FILE) and by the
# model (every file so far, in order).  Writes first, then trims over
# them once the downstairs hold their maps (so the trims must clear
# bits, not only a later load skip them).
cat > "$tmp/ops1" <<EOF
w 0 $((1 * MiB))
w $((8 * MiB + 4096)) 4096
w $((128 * MiB - 32768)) 65536
w $((300 * MiB)) $((2 * MiB))
w $((600 * MiB)) 65536
w $((1024 * MiB - 4096)) 4096
f 0 0
EOF
cat > "$tmp/ops2" <<EOF
t 0 $((512 * 1024))
t $((300 * MiB + 512 * 1024)) $((1 * MiB))
z $((600 * MiB)) 65536
f 0 0
w $((700 * MiB)) 8192
t $((700 * MiB)) 4096
t $((128 * MiB - 4096)) 8192
EOF
apply () {
  nbdsh_run -u "$URI" -c '
import random
rng = random.Random(15)
for line in open("'"$1"'"):
    op, off, n = line.split()
    off, n = int(off), int(n)
    if op == "w":
        h.pwrite(rng.randbytes(n), off)
    elif op == "t":
        h.trim(n, off)
    elif op == "z":
        h.zero(n, off)
    else:
        h.flush()
' || fail "applying $1 failed"
  cat "$1" >> "$tmp/ops"
}
: > "$tmp/ops"
apply "$tmp/ops1"

# model: the expected runs, "offset length data|hole", 4 KiB blocks.
model () {
python3 - "$tmp/ops" $((1024 * MiB)) > "$tmp/expected" <<'PY'
import sys
size, bs = int(sys.argv[2]), 4096
data = bytearray(size // bs)
for line in open(sys.argv[1]):
    op, off, n = line.split()
    off, n = int(off), int(n)
    for b in range(off // bs, (off + n) // bs):
        if op == "w":
            data[b] = 1
        elif op in "tz":
            data[b] = 0
start = 0
for b in range(1, len(data) + 1):
    if b == len(data) or data[b] != data[start]:
        print(start * bs, (b - start) * bs, "data" if data[start] else "hole")
        start = b
PY
}
model

# check_map WHAT: nbdinfo --map of the volume, coalesced, equals expected.
check_map () {
  timeout 120 nbdinfo --map "$URI" > "$tmp/map.raw" 2>> "$tmp/nbdinfo.log" ||
    fail "$1: nbdinfo --map failed"
  python3 - "$tmp/map.raw" > "$tmp/map" <<'PY'
import sys
runs = []
for line in open(sys.argv[1]):
    off, n, t = (int(x) for x in line.split()[:3])
    kind = "hole" if t & 1 else "data"   # 3 = hole,zero; 0 = data
    if t not in (0, 3):
        sys.exit("unexpected extent type %d" % t)
    if runs and runs[-1][2] == kind and runs[-1][0] + runs[-1][1] == off:
        runs[-1][1] += n
    else:
        runs.append([off, n, kind])
for r in runs:
    print(*r)
PY
  diff "$tmp/expected" "$tmp/map" > "$tmp/map.diff" ||
    { cat "$tmp/map.diff" >&2; fail "$1: the map differs from the model"; }
  echo "$1: map matches the model ($(wc -l < "$tmp/map") runs)"
}
check_map "written"
apply "$tmp/ops2"
model
check_map "trimmed"
grep -q hole "$tmp/expected" || fail "test bug: no hole in the model"

# After kill -9 of nbdkit (the downstairs keep their maps).
stop_pid "$NBDKIT_PID" KILL || true
nbdkit_start stats="$STATS" || fail "nbdkit restart"
check_map "nbdkit restarted after kill -9"
# After kill -9 of everything: the maps come from the rows (dirty
# extents recovered first: the unflushed trims keep only their rows).
stop_pid "$NBDKIT_PID" KILL || true
for i in $VOLUME; do ds_kill "$i" KILL; done
volume_start
nbdkit_start stats="$STATS" || fail "nbdkit restart"
check_map "everything restarted after kill -9"
# One downstairs down: two answer.
ds_kill ds3 KILL
check_map "ds3 down"
ds_start ds3
stats_wait '[x["state"] for x in ds] == ["active"] * 3' 60 ||
  { cat "$STATS" >&2; fail "ds3 did not come back"; }
check_map "ds3 back"

# 2. 16 MiB more, then nbdcopy: it reads only what the map calls data.
nbdsh_run -u "$URI" -c '
import os
for i in range(4):
    h.pwrite(os.urandom(4 << 20), (512 << 20) + (i << 22))
h.flush()
' || fail "writing 16 MiB failed"
echo "w $((512 * MiB)) $((16 * MiB))" >> "$tmp/ops"
model
check_map "16 MiB more"
sleep 1.2 # the stats file is rewritten every second
r0=$(stats_q 'd["volume"]["read_bytes"]')
timeout 200 nbdcopy "$URI" "$tmp/copy.img" || fail "nbdcopy failed"
sleep 1.2
r1=$(stats_q 'd["volume"]["read_bytes"]')
read_mib=$(( (r1 - r0) / MiB ))
echo "nbdcopy of 1 GiB (about 17.6 MiB data) read $read_mib MiB from the volume"
[ $((r1 - r0)) -ge $((16 * MiB)) ] || fail "nbdcopy read less than the data"
[ $((r1 - r0)) -lt $((64 * MiB)) ] || fail "nbdcopy read $read_mib MiB, want < 64"
want=$(nbdsh_run -u "$URI" -c '
import hashlib
s = hashlib.sha256()
for off in range(0, h.get_size(), 4 << 20):
    s.update(h.pread(4 << 20, off))
print(s.hexdigest())
') || fail "full read failed"
got=$(sha256sum < "$tmp/copy.img" | cut -d" " -f1)
[ "$want" = "$got" ] || fail "the copy differs from the volume"
echo "copy identical (sha256 $got)"
timeout 200 qemu-img compare -f raw -F raw "$tmp/copy.img" "$URI" \
  > "$tmp/compare.out" 2>&1 || { cat "$tmp/compare.out" >&2; fail "qemu-img compare failed"; }
grep -q "Images are identical" "$tmp/compare.out" ||
  { cat "$tmp/compare.out" >&2; fail "qemu-img compare: not identical"; }
echo "qemu-img compare: $(cat "$tmp/compare.out")"

# 3. Lying replicas: each forgets (offline) the rows of a different 1 MiB
# of the 16 MiB, in extent 4 (512 MiB), keeping the bytes.
nbdkit_stop || fail "nbdkit stop"
for i in $VOLUME; do ds_kill "$i"; done
k=0
for i in $VOLUME; do
  lo=$((k * 2 * 256)) # blocks of extent 4: MiB 0, 2 and 4 of it
  sqlite3 -batch "$tmp/$i/00/000/004.db" \
    "DELETE FROM block_context WHERE block >= $lo AND block < $((lo + 256));
     SELECT changes();" > "$tmp/lie.out" || fail "editing $i failed"
  [ "$(cat "$tmp/lie.out")" = 256 ] || fail "test bug: $i had no rows there"
  k=$((k + 1))
done
volume_start
nbdkit_start stats="$STATS" || fail "nbdkit restart"
check_map "every replica lying about a different MiB"
cmp -n $((6 * MiB)) <(nbdsh_run -u "$URI" -c '
import sys
sys.stdout.buffer.write(h.pread(6 << 20, 512 << 20))') \
  <(dd if="$tmp/copy.img" bs=1M skip=512 count=6 status=none) ||
  fail "data under the lies does not read back"
echo "lies outvoted: map and reads keep the data"

# 4. Too few answers: ds3 down, ds1 cannot map extent 4 (its data file cut
# short: the extent fails to open), ds2 lies about the extent's first MiB
# (the reads above healed its earlier lie: deleted again).  One answer is
# not enough to call anything a hole: extent 4 must be data throughout
# (ds2's word alone would make a hole of written data), the rest still
# matches the model.
nbdkit_stop || fail "nbdkit stop"
for i in $VOLUME; do ds_kill "$i"; done
truncate -s $((128 * MiB - 4096)) "$tmp/ds1/00/000/004"
sqlite3 -batch "$tmp/ds2/00/000/004.db" \
  "DELETE FROM block_context WHERE block < 256; SELECT changes();" \
  > "$tmp/lie.out" || fail "editing ds2 failed"
[ "$(cat "$tmp/lie.out")" = 256 ] || fail "test bug: ds2 had no rows there"
ds_start ds1
ds_start ds2
nbdkit_start stats="$STATS" || fail "nbdkit start with two"
echo "w $((512 * MiB)) $((128 * MiB))" >> "$tmp/ops" # the model only
model
check_map "one answer for extent 4"
grep -q "block status lba $((512 * 256)) failed" "$tmp/nbdkit.log" ||
  fail "test bug: ds1 answered extent 4"
