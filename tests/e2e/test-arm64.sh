#!/usr/bin/env bash
# timeout: 1200
# make check-arm64 inside make check: the aarch64 build (make cross
# cross-unit), its unit tests under qemu-user and the mixed-architecture
# volume (tests/arm64/).  Skipped (77) unless the cross compiler, the
# arm64 libraries and qemu-user are installed (make cross-deps).
. "$(dirname "$0")/functions.sh"
requires_build
requires make aarch64-linux-gnu-gcc
command -v qemu-aarch64-static > /dev/null 2>&1 ||
  command -v qemu-aarch64 > /dev/null 2>&1 ||
  skip "requires qemu-aarch64(-static) (make cross-deps)"
[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/libuv.pc ] ||
  skip "requires the arm64 libraries (make cross-deps)"
timeout 900 make -s cross-unit > "$tmp/build.out" 2>&1 ||
  { tail -n 20 "$tmp/build.out" >&2; fail "make cross-unit failed"; }
timeout 1100 bash tests/arm64/run.sh || fail "check-arm64 failed"
