#!/bin/sh
# Run every unit test binary of another build: DIR/test_* (make
# check-unsigned-char: build/uchar/tests; make check-arm64:
# build/arm64/tests under qemu-user).
#
#   sh tests/arm64/unit.sh DIR [WRAPPER...]   WRAPPER: e.g. qemu-aarch64-static
#
# One line per test (PASS: name (Ns) / FAIL: name), the tail of the log of
# each failure, the summary "N passed, N failed" last; logs in
# DIR/../test-logs/.  Each test is bounded by UNIT_TIMEOUT seconds (120;
# more under emulation).  Exit 1 if any failed or none was found.

[ $# -ge 1 ] || { echo "usage: $0 DIR [WRAPPER...]" >&2; exit 2; }
dir=$1
shift
limit=${UNIT_TIMEOUT:-120}
logdir=$dir/../test-logs
mkdir -p "$logdir" || exit 1
passed=0
failed=0
for t in "$dir"/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  case "$t" in *.d | *.o) continue ;; esac
  name=$(basename "$t")
  log=$logdir/$name.log
  start=$(date +%s)
  timeout -k 10 "$limit" "$@" "$t" > "$log" 2>&1 < /dev/null
  rc=$?
  secs=$(($(date +%s) - start))
  if [ $rc = 0 ]; then
    passed=$((passed + 1))
    echo "PASS: $name (${secs}s)"
  else
    failed=$((failed + 1))
    echo "FAIL: $name (exit $rc, ${secs}s)"
    tail -n 20 "$log" | sed 's/^/    /'
  fi
done
echo "$passed passed, $failed failed"
[ $failed = 0 ] && [ $passed -gt 0 ]
