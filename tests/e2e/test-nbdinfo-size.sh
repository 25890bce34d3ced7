#!/usr/bin/env bash
# nbdinfo reports the size of the volume: extent_count * extent_size *
# block_size (here 16 * 1024 * 4096 = 64 MiB).
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdinfo

volume_create
volume_start
nbdkit_start

want=$((DS_EXTENT_COUNT * DS_EXTENT_SIZE * 4096))
size=$(nbdinfo --size "$URI")
[ "$size" = "$want" ] || fail "nbdinfo --size: got $size, want $want"

# The full report must agree too and show the advertised capabilities.
nbdinfo "$URI" > "$tmp/info.txt"
grep -Eq "export-size: *$want\b" "$tmp/info.txt" ||
  { cat "$tmp/info.txt"; fail "nbdinfo report lacks export-size: $want"; }
grep -Eq "can_flush: *true" "$tmp/info.txt" ||
  { cat "$tmp/info.txt"; fail "volume cannot flush"; }
echo "size $size OK"
