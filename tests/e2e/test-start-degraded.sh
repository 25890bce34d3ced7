#!/usr/bin/env bash
# nbdkit starts with only two of the three downstairs reachable (within
# timeout), says so loudly, and serves reads and writes.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh

volume_create
ds_start ds1
ds_start ds2
DS_PORT[ds3]=$(free_port)          # nothing listens there
nbdkit_start timeout=5 || fail "nbdkit did not start with two downstairs"
grep -q "127.0.0.1:${DS_PORT[ds3]}" "$tmp/nbdkit.log" ||
  { cat "$tmp/nbdkit.log"; fail "nbdkit did not report the missing downstairs"; }
nbdsh_run -u "$URI" -c '
import os
d = os.urandom(1 << 20)
h.pwrite(d, 4096)
h.flush()
assert h.pread(1 << 20, 4096) == d, "read back differs"
' || fail "IO with two downstairs failed"
echo "started and served with two of three"
