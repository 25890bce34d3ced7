#!/usr/bin/env bash
# qemu-io: aligned and unaligned writes land exactly where asked; the
# untouched neighbours keep their bytes; never-written areas read zero.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit qemu-io

volume_create
volume_start
nbdkit_start

# qemu_io CMD...: run qemu-io commands on the volume; any failed command or
# pattern mismatch fails the test.
qemu_io () {
  local args=() c
  for c in "$@"; do args+=(-c "$c"); done
  timeout 120 qemu-io -f raw "${args[@]}" "$URI" > "$tmp/qemu-io.out" 2>&1 ||
    { cat "$tmp/qemu-io.out"; fail "qemu-io exited non-zero: $*"; }
  if grep -Eiq 'fail|error|mismatch' "$tmp/qemu-io.out"; then
    cat "$tmp/qemu-io.out"
    fail "qemu-io: $*"
  fi
}

# Aligned: 64 KiB of 0x11 at 0, 1 MiB of 0x22 across the first extent
# boundary at 16 MiB (extents are 4 MiB).
qemu_io "write -P 0x11 0 64k" "write -P 0x22 15M 1572864" "flush"
# Unaligned: 512 B inside a 4 KiB block, a write straddling two blocks,
# and a few bytes in the middle of a never-written block.
qemu_io "write -P 0xab 4608 512" \
        "write -P 0xcd 8000 300" \
        "write -P 0xee 2097252 10" \
        "write -P 0x33 16773120 8192" \
        "flush"

qemu_io "read -P 0x11 0 4608" \
        "read -P 0xab 4608 512" \
        "read -P 0x11 5120 2880" \
        "read -P 0xcd 8000 300" \
        "read -P 0x11 8300 57236" \
        "read -P 0 64k 1984k" \
        "read -P 0 2M 100" \
        "read -P 0xee 2097252 10" \
        "read -P 0 2097262 4082" \
        "read -P 0 2101248 13627392" \
        "read -P 0x22 15M 1020k" \
        "read -P 0x33 16773120 8192" \
        "read -P 0x22 16781312 508k" \
        "read -P 0 17301504 49807360"
echo "qemu-io patterns OK"
