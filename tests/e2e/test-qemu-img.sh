#!/usr/bin/env bash
# qemu-img convert a raw image onto the volume; qemu-img compare agrees
# (including the never-written tail, which must read as zeroes).
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit qemu-img

volume_create
volume_start
nbdkit_start

head -c $((24 * 1024 * 1024)) /dev/urandom > "$tmp/in.img"
timeout 200 qemu-img convert -n -f raw -O raw "$tmp/in.img" "nbd:unix:$SOCK" ||
  fail "qemu-img convert failed"
timeout 200 qemu-img compare -f raw -F raw "$tmp/in.img" "nbd:unix:$SOCK" ||
  fail "qemu-img compare: images differ"
echo "qemu-img convert + compare OK"
