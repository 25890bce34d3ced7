#!/usr/bin/env bash
# A replica runs out of space: with one full replica the volume keeps
# serving from the other two and every byte reads back; with all three
# full the write fails (ENOSPC, or EIO once two replicas are faulted),
# never silently, and data flushed before is intact after a restart.
# timeout: 400
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp df
[ "$(id -u)" = 0 ] || skip "needs root (mounts a small tmpfs)"

# small_region NAME EXTRA_KIB: create region NAME on its own tmpfs, then
# shrink the tmpfs to what the empty region uses plus EXTRA_KIB.
small_region () {
  local name=$1 extra=$2 used
  mkdir -p "$tmp/mnt-$name"
  mount -t tmpfs -o size=64m tmpfs "$tmp/mnt-$name" ||
    skip "cannot mount tmpfs here"
  MOUNTS+=("$tmp/mnt-$name")
  "$DOWNSTAIRS" create -d "$tmp/mnt-$name/r" --encrypted -u "$VOL_UUID" \
    --extent-size "$DS_EXTENT_SIZE" --extent-count "$DS_EXTENT_COUNT" \
    >> "$tmp/create.log" 2>&1 || fail "create on tmpfs failed"
  ln -s "$tmp/mnt-$name/r" "$tmp/$name"
  used=$(df -k --output=used "$tmp/mnt-$name" | tail -n 1)
  mount -o remount,size=$((used + extra))k "$tmp/mnt-$name" ||
    fail "cannot shrink tmpfs"
}

# avail_kib NAME: free KiB on NAME's tmpfs.
avail_kib () {
  df -k --output=avail "$tmp/mnt-$1" | tail -n 1 | tr -d ' '
}

M=$((1024 * 1024))
head -c $((28 * M)) /dev/urandom > "$tmp/in.img"

# 1. One replica (f3) has room for about 6 MiB of a 28 MiB write.
VOLUME="f1 f2 f3"
ds_create f1
ds_create f2
small_region f3 6144
volume_start
nbdkit_start
nbdsh_run -u "$URI" -c "
h.pwrite(open('$tmp/in.img', 'rb').read(4 * $M), 0)
h.flush()" || fail "first 4 MiB did not fit on the full replica"
timeout 200 nbdcopy "$tmp/in.img" "$URI" ||
  fail "volume stopped serving when one replica filled up"
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed with one full replica"
[ "$(avail_kib f3)" -lt 1024 ] ||
  fail "test bug: f3 still has $(avail_kib f3) KiB free, it never filled up"
timeout 120 nbdcopy "$URI" "$tmp/out.img" || fail "read back failed"
cmp -n $((28 * M)) "$tmp/in.img" "$tmp/out.img" || fail "data differs"
grep -Eiq 'space|ENOSPC' "$tmp/f3.log" "$tmp/nbdkit.log" ||
  echo "note: neither the downstairs nor nbdkit logged the ENOSPC"
volume_stop || fail "stopping volume f failed"
echo "one full replica: volume kept serving, data intact"

# 2. All three replicas have room for about 6 MiB.
VOL_UUID=$(cat /proc/sys/kernel/random/uuid)
VOLUME="g1 g2 g3"
small_region g1 6144
small_region g2 6144
small_region g3 6144
volume_start
nbdkit_start timeout=20
rm -f "$tmp/out.img"
nbdsh_run -u "$URI" -c "
import errno
data = open('$tmp/in.img', 'rb').read()
h.pwrite(data[:$M], 0)
h.flush()
err = None
for off in range($M, len(data), $M):
    try:
        h.pwrite(data[off:off + $M], off)
    except nbd.Error as e:
        err = e
        break
assert err is not None, 'every write succeeded on three full replicas'
print('write failed at', off, 'errno', errno.errorcode.get(err.errnum), err)
assert err.errnum in (errno.ENOSPC, errno.EIO), 'unexpected errno'
if err.errnum != errno.ENOSPC:
    print('note: got EIO, not ENOSPC')
" || fail "writes to three full replicas did not fail cleanly"
volume_stop || fail "stopping volume g failed"
for ds in g1 g2 g3; do
  mount -o remount,size=64m "$tmp/mnt-$ds" || fail "cannot grow tmpfs"
done
volume_start
nbdkit_start || fail "nbdkit did not start on the refilled volume"
nbdsh_run -u "$URI" -c "
assert h.pread($M, 0) == open('$tmp/in.img', 'rb').read($M), 'flushed data lost'
" || fail "data flushed before the disks filled up is not intact"
echo "three full replicas: write failed, earlier data intact"
