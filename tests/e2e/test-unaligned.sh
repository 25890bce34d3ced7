#!/usr/bin/env bash
# Unaligned reads and writes through the plugin's read-modify-write path
# (libnbd strict alignment off, so nbdkit passes them through as is),
# including concurrent unaligned writes to the same block.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh

volume_create
volume_start
nbdkit_start

nbdsh_run -u "$URI" -c '
import os, random
h.set_strict_mode(0)
random.seed(1234)
size = h.get_size()
ref = bytearray(8 << 20)   # model of the first 8 MiB
for i in range(300):
    n = random.choice([1, 7, 511, 512, 4095, 4097, 10000, 70000])
    off = random.randrange(0, len(ref) - n)
    buf = os.urandom(n)
    h.pwrite(buf, off)
    ref[off:off + n] = buf
    if i % 50 == 0:
        h.flush()
for i in range(300):
    n = random.choice([1, 100, 4096, 5000, 65537])
    off = random.randrange(0, len(ref) - n)
    assert h.pread(n, off) == bytes(ref[off:off + n]), "read %d@%d" % (n, off)

# Several in-flight unaligned writes to neighbouring parts of one block:
# the plugin must serialize the read-modify-writes.
base = 6 << 20
cookies = []
for k in range(8):
    buf = bytes([k + 1]) * 512
    ref[base + k * 512 : base + (k + 1) * 512] = buf
    cookies.append(h.aio_pwrite(buf, base + k * 512))
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    assert h.aio_command_completed(c)
h.flush()
assert h.pread(len(ref), 0) == bytes(ref), "final image differs"
print("unaligned OK")
' || fail "unaligned checks failed"
