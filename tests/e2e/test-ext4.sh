#!/usr/bin/env bash
# A real filesystem on the volume, on the geometry `create` makes by
# default (128 MiB extents): nbdfuse, mkfs.ext4 with its default options
# (it discards the whole device first), mount -o loop, copy a tree and a
# 20 MiB random file, delete a 30 MiB file and fstrim, unmount, restart
# everything, e2fsck is clean and every checksum matches; no downstairs
# ever left `active`.
# timeout: 400
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdfuse fusermount3 mkfs.ext4 e2fsck mount umount losetup sha256sum
[ "$(id -u)" = 0 ] || skip "needs root (loop mount of the FUSE file)"
[ -c /dev/fuse ] || skip "needs /dev/fuse"
[ -e /dev/loop-control ] || skip "needs loop devices (/dev/loop-control)"

DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=2       # 256 MiB
volume_create
volume_start
nbdkit_start

fuse=$tmp/fuse
fs=$tmp/fs
mkdir -p "$fs"
fuse_mount "$fuse" || fail "nbdfuse failed"
img=$fuse/nbd
mkfs.ext4 -q -F "$img" > "$tmp/mkfs.log" 2>&1 ||
  { cat "$tmp/mkfs.log"; fail "mkfs.ext4 failed"; }
mount -o loop "$img" "$fs" || fail "mount -o loop of the new filesystem failed"
MOUNTS+=("$fs")

src=/usr/include/openssl
[ -d "$src" ] || src=/usr/share/doc
cp -a "$src" "$fs/tree"
head -c $((20 * 1024 * 1024)) /dev/urandom > "$fs/random.bin"
(cd "$fs" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
  > "$tmp/sums"
files=$(wc -l < "$tmp/sums")
[ "$files" -gt 10 ] || fail "test bug: only $files files copied"
head -c $((30 * 1024 * 1024)) /dev/urandom > "$fs/gone.bin"
sync
rm "$fs/gone.bin"
fstrim -v "$fs" > "$tmp/fstrim.log" 2>&1 ||
  { cat "$tmp/fstrim.log"; fail "fstrim failed"; }
cat "$tmp/fstrim.log"

umount "$fs" || fail "umount failed"
fuse_umount "$fuse" || fail "fusermount3 -u failed"
volume_stop || fail "stopping the volume failed"

volume_start
nbdkit_start || fail "nbdkit did not restart"
fuse_mount "$fuse" || fail "nbdfuse failed after restart"
e2fsck -fn "$img" > "$tmp/fsck.log" 2>&1 ||
  { cat "$tmp/fsck.log"; fail "e2fsck -fn found problems after restart"; }
mount -o loop,ro "$img" "$fs" || fail "mount after restart failed"
(cd "$fs" && sha256sum --quiet -c "$tmp/sums") ||
  fail "checksums differ after restart"
umount "$fs"
fuse_umount "$fuse"
grep -E "offline|faulted|malformed" "$tmp/nbdkit.log" && fail "a downstairs left active"
echo "ext4: $files files intact after restart, fsck clean"
