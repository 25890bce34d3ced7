#!/usr/bin/env bash
# Start-up with one downstairs port refusing connections (nothing listens
# there): the volume serves on the two others after a short grace (2 s),
# not after the whole timeout (30 s, the default); the missing one is
# logged as refused, and once started on that port it is live-repaired
# back to active.  A silent downstairs (stopped process) still gets the
# whole timeout: test-start-degraded.sh.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh python3

volume_create
ds_start ds1
ds_start ds2
DS_PORT[ds3]=$(free_port) # nothing listens there (yet)
t0=$(date +%s.%N)
nbdkit_start stats="$tmp/stats.json" || fail "nbdkit start"
t=$(echo "$(date +%s.%N) - $t0" | bc)
echo "serving after ${t}s with ds3 refusing (timeout=30)"
[ "$(echo "$t < 6" | bc)" = 1 ] ||
  fail "took ${t}s to serve: waited out timeout instead of the grace"
grep -q "127.0.0.1:${DS_PORT[ds3]} is missing (connection refused)" \
  "$tmp/nbdkit.log" || fail "no 'missing (connection refused)' line"
[ "$(stats_q 'd["health"]')" = degraded ] || fail "health not degraded"
nbdsh_run -u "$URI" -c 'h.pwrite(b"\x33" * 65536, 0)' -c 'h.flush()' ||
  fail "write on two"
ds_start ds3
stats_wait 'd["health"] == "healthy"' 60 ||
  { cat "$tmp/stats.json" >&2; fail "ds3 did not become active"; }
echo "ok"
