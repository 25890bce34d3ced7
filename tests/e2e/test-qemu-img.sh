#!/usr/bin/env bash
# qemu-img on the geometry `create` makes by default (128 MiB extents):
# convert a raw image onto the volume and compare (including the
# never-written tail, which must read as zeroes); then convert a sparse
# qcow2 (a few data clusters, the rest holes: qemu-img writes zeroes
# there) over it and compare again; no downstairs ever left `active`.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit qemu-img qemu-io

DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=2 # 256 MiB
volume_create
volume_start
nbdkit_start

head -c $((24 * 1024 * 1024)) /dev/urandom > "$tmp/in.img"
timeout 200 qemu-img convert -n -f raw -O raw "$tmp/in.img" "nbd:unix:$SOCK" ||
  fail "qemu-img convert failed"
timeout 200 qemu-img compare -f raw -F raw "$tmp/in.img" "nbd:unix:$SOCK" ||
  fail "qemu-img compare: images differ"
echo "qemu-img convert + compare of a raw image OK"

size=$(size_of "$URI")
qemu-img create -q -f qcow2 "$tmp/sparse.qcow2" "$size" || fail "qemu-img create"
qemu-io -f qcow2 -c "write -P 0x5a 1M 64k" -c "write -P 0xa5 130M 3M" \
  -c "write -P 0x11 $((size - 65536)) 64k" "$tmp/sparse.qcow2" > /dev/null ||
  fail "qemu-io on the qcow2"
timeout 200 qemu-img convert -n -f qcow2 -O raw "$tmp/sparse.qcow2" \
  "nbd:unix:$SOCK" || fail "qemu-img convert of the sparse qcow2 failed"
timeout 200 qemu-img compare -f qcow2 -F raw "$tmp/sparse.qcow2" \
  "nbd:unix:$SOCK" || fail "qemu-img compare: sparse qcow2 differs"
grep -E "offline|faulted|malformed" "$tmp/nbdkit.log" && fail "a downstairs left active"
echo "qemu-img convert + compare of a sparse qcow2 OK"
