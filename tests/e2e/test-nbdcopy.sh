#!/usr/bin/env bash
# nbdcopy on the geometry `create` makes by default (128 MiB extents): a
# 48 MiB random image into the volume and back out: identical; then a
# sparse raw image (data islands, holes nbdcopy turns into zeroing) over
# it, read back identical; no downstairs ever left `active`.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdinfo cmp

DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=2 # 256 MiB
volume_create
volume_start
nbdkit_start

len=$((48 * 1024 * 1024))
random_image "$tmp/in.img" $len
timeout 200 nbdcopy "$tmp/in.img" "$URI" || fail "nbdcopy in failed"
timeout 200 nbdcopy "$URI" "$tmp/out.img" || fail "nbdcopy out failed"
cmp -n $len "$tmp/in.img" "$tmp/out.img" || fail "data read back differs"
# The tail of the volume was never written: it must read as zeroes.
size=$(size_of "$URI")
cmp -n $((size - len)) -i $len:0 "$tmp/out.img" /dev/zero ||
  fail "never-written area does not read as zeroes"
echo "48 MiB round trip OK"

# A sparse image of the volume's size: three islands of data, holes
# between them (over the random data written above).
rm -f "$tmp/out.img"
truncate -s "$size" "$tmp/sparse.img"
for mib in 3 129 $((size / 1048576 - 2)); do
  head -c $((1024 * 1024)) /dev/urandom |
    dd of="$tmp/sparse.img" bs=1M seek=$mib conv=notrunc status=none
done
timeout 200 nbdcopy "$tmp/sparse.img" "$URI" || fail "nbdcopy of the sparse image failed"
timeout 200 nbdcopy "$URI" "$tmp/out.img" || fail "nbdcopy out failed"
cmp "$tmp/sparse.img" "$tmp/out.img" || fail "sparse image read back differs"
grep -E "offline|faulted|malformed" "$tmp/nbdkit.log" && fail "a downstairs left active"
echo "sparse image round trip OK"
