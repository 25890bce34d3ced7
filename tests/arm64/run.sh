#!/usr/bin/env bash
# make check-arm64: the unit tests of the aarch64 build under qemu-user,
# then the mixed-architecture volume (tests/arm64/mixed.sh).  Expects
# `make all cross-unit` done.  Environment: XB (build/arm64), QEMU_ARCH
# (aarch64), UNIT_TIMEOUT (600 s per unit test under emulation).
# Exit 77 when qemu-user is missing; else 0 only if everything passed.
set -u
cd "$(dirname "$0")/../.." || exit 1
XB=${XB:-build/arm64}
QEMU_ARCH=${QEMU_ARCH:-aarch64}
QEMU=
for q in qemu-$QEMU_ARCH-static qemu-$QEMU_ARCH; do
  command -v "$q" > /dev/null 2>&1 && { QEMU=$(command -v "$q"); break; }
done
[ -n "$QEMU" ] ||
  { echo "check-arm64: SKIP: requires qemu-$QEMU_ARCH(-static) (make cross-deps)"; exit 77; }
export QEMU XB
start=$(date +%s)
echo "== unit tests of $XB under $(basename "$QEMU")"
UNIT_TIMEOUT=${UNIT_TIMEOUT:-600} sh tests/arm64/unit.sh "$XB/tests" "$QEMU" ||
  exit 1
echo "== mixed volume: native nbdkit + crucible.so, $QEMU_ARCH downstairs"
timeout -k 10 900 bash tests/arm64/mixed.sh || exit 1
echo "check-arm64: passed in $(($(date +%s) - start)) s"
