#!/usr/bin/env bash
# Trims and zeroes far larger than one job's 4 MiB of data, on the
# geometry `create` makes by default (128 MiB extents): a 5 MiB trim, a
# 64 MiB write-zeroes, a trim of the whole volume.  Each once killed every
# downstairs ("malformed TRIM frame"): the upstairs built TRIM jobs the
# codec refuses.  Afterwards every range reads back as the model says and
# no downstairs ever left `active`.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh

DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=3 # 384 MiB: trims cross extent boundaries
volume_create
volume_start
nbdkit_start

nbdsh_run -u "$URI" -c '
import os
M = 1 << 20
size = h.get_size()
assert size == 384 * M, size
pat = os.urandom(M)
def fill(off, n):
    for o in range(off, off + n, M):
        h.pwrite(pat, o)
def expect(off, n, zero, what):
    for o in range(off, off + n, M):
        got = h.pread(M, o)
        want = bytes(M) if zero else pat
        assert got == want, "%s: wrong data at %d" % (what, o)
fill(0, 16 * M)
h.trim(5 * M, 0)
expect(0, 5 * M, True, "5 MiB trim")
expect(5 * M, 11 * M, False, "after the 5 MiB trim")
fill(100 * M, 64 * M)          # crosses the first extent boundary (128 MiB)
h.zero(64 * M, 100 * M)
expect(100 * M, 64 * M, True, "64 MiB zero")
h.flush()
fill(250 * M, 8 * M)
h.trim(size, 0)                # the whole volume in one request
expect(0, 8 * M, True, "whole-volume trim")
expect(250 * M, 8 * M, True, "whole-volume trim")
h.flush()
'
grep -E "offline|faulted|malformed" "$tmp/nbdkit.log" && fail "a downstairs left active"
for i in $VOLUME; do
  grep -E "malformed|Protocol error" "$tmp/$i.log" && fail "$i refused a frame"
done
nbdkit_stop
echo "$test_name: ok"
