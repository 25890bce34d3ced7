#!/usr/bin/env bash
# Every request nbdkit can send works on every geometry `create` accepts:
# block sizes 512 and 64 KiB, one-block extents, odd extent sizes.  On
# each: unaligned writes, reads, zeroes and trims crossing extents, a
# 32 MiB write and read (nbdkit's largest requests are far above one
# 4 MiB job), a whole-volume zero; every read checked against a model,
# and no downstairs ever leaves `active`.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh

# one BS ES EC: a volume of EC extents of ES blocks of BS bytes.
one () {
  local bs=$1 es=$2 ec=$3 p=g${1}x${2}x$3
  volume_create "$p" --block-size "$bs" --extent-size "$es" \
    --extent-count "$ec" || fail "$p: create"
  volume_start || fail "$p: start"
  nbdkit_start || fail "$p: nbdkit"
  nbdsh_run -u "$URI" -c "
import random
h.set_strict_mode(0)        # unaligned requests reach the plugin
size = h.get_size()
assert size == $bs * $es * $ec, size
rng = random.Random($bs + $es)
model = bytearray(size)
def check(what):
    got = h.pread(size, 0) if size <= 64 << 20 else None
    if got is not None and got != bytes(model):
        bad = next(i for i in range(size) if got[i] != model[i])
        raise AssertionError('$p: %s: first difference at %d' % (what, bad))
big = min(32 << 20, size - 3)
data = rng.randbytes(big)
h.pwrite(data, 3); model[3:3 + big] = data
got = h.pread(big, 3)
assert got == data, '$p: 32 MiB read back differs'
for i in range(60):
    off = rng.randrange(size)
    n = rng.randrange(1, min(size - off, 3 * $bs * $es + 777) + 1)
    op = rng.choice('wwzt')
    if op == 'w':
        b = rng.randbytes(n); h.pwrite(b, off); model[off:off + n] = b
    elif op == 'z':
        h.zero(n, off); model[off:off + n] = bytes(n)
    else:
        h.trim(n, off); model[off:off + n] = bytes(n)
    if i % 10 == 9:
        h.flush(); check('op %d (%s %d+%d)' % (i, op, off, n))
h.zero(size, 0); model[:] = bytes(size)
h.flush()
check('whole-volume zero')
" || fail "$p: model check failed"
  grep -E "faulted|offline:|malformed" "$tmp/nbdkit.log" &&
    fail "$p: a downstairs left active"
  volume_stop
  echo "$p: ok"
}

one 512 3 7          # 512-byte blocks, extents of 1.5 KiB
one 4096 1 9         # one block per extent: every request crosses
one 65536 5 40       # 64 KiB blocks (4 MiB job = 64 blocks), 12.5 MiB
one 4096 1000 12     # extents not a power of two, 46.9 MiB
echo "$test_name: ok"
