#!/usr/bin/env bash
# nbdcopy a 48 MiB random image into the volume and back out: identical.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdinfo cmp

volume_create
volume_start
nbdkit_start

len=$((48 * 1024 * 1024))
head -c $len /dev/urandom > "$tmp/in.img"
timeout 200 nbdcopy "$tmp/in.img" "$URI" || fail "nbdcopy in failed"
timeout 200 nbdcopy "$URI" "$tmp/out.img" || fail "nbdcopy out failed"
cmp -n $len "$tmp/in.img" "$tmp/out.img" || fail "data read back differs"
# The tail of the volume was never written: it must read as zeroes.
size=$(size_of "$URI")
cmp -n $((size - len)) -i $len:0 "$tmp/out.img" /dev/zero ||
  fail "never-written area does not read as zeroes"
echo "48 MiB round trip OK"
