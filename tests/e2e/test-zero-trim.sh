#!/usr/bin/env bash
# NBD zero and trim: the ranges read back as zeroes afterwards, aligned or
# not, with the neighbouring data intact; never-written areas read zero.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh

volume_create
volume_start
nbdkit_start

nbdsh_run -u "$URI" -c '
import os
h.set_strict_mode(0)   # let unaligned requests reach the plugin
assert h.can_zero() and h.can_trim(), "zero/trim not advertised"
size = h.get_size()
M = 1 << 20
data = bytearray(os.urandom(4 * M))
h.pwrite(bytes(data), 0)
h.flush()

def clear(off, n):
    data[off:off + n] = bytes(n)

def check(what):
    got = h.pread(len(data), 0)
    if got != bytes(data):
        bad = next(i for i in range(len(data)) if got[i] != data[i])
        raise AssertionError("%s: first difference at byte %d" % (what, bad))

h.zero(64 * 1024, 0); clear(0, 64 * 1024)
check("aligned zero")
h.trim(M, M); clear(M, M)
check("aligned trim")
h.zero(5000, 3 * M + 100); clear(3 * M + 100, 5000)
check("unaligned zero")
h.trim(10000, 2 * M + 777); clear(2 * M + 777, 10000)
check("unaligned trim")
h.zero(4096, 200 * 1024, nbd.CMD_FLAG_NO_HOLE); clear(200 * 1024, 4096)
check("zero with NO_HOLE")
h.flush()
check("after flush")
assert h.pread(M, size - M) == bytes(M), "never-written tail is not zero"
print("zero/trim OK")
' || fail "zero/trim checks failed"
