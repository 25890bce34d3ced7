#!/usr/bin/env bash
# The benchmark harness still works: `bench/bench.sh --smoke` measures
# nbdkit file and crucible-c (encrypted) for a few seconds and fails if
# fio fails or any figure is zero.  Speed is never asserted here.
# timeout: 200
. "$(dirname "$0")/functions.sh"
requires_build
requires fio nbdkit python3 ss
# The harness starts plain nbdkit; an ASan-built plugin needs libasan
# preloaded, and figures from it mean nothing: the plain build covers it.
[ "${SANITIZE:-}" = 1 ] && skip "ASan build: the benchmark harness runs in plain builds"
cd "$(dirname "$0")/../.." || fail "cannot find the source tree"
bash bench/bench.sh --smoke > "$tmp/smoke.log" 2>&1 ||
  { tail -n 20 "$tmp/smoke.log"; fail "bench smoke failed"; }
grep -q "smoke: all figures non-zero" "$tmp/smoke.log" ||
  { tail -n 20 "$tmp/smoke.log"; fail "bench smoke printed no verdict"; }
grep -q "crucible-enc" "$tmp/smoke.log" || fail "no crucible figures"
echo "bench smoke OK"
