#!/bin/sh
# Run every crucible-c test: the unit binaries build/tests/test_*, then the
# end-to-end scripts tests/e2e/test-*.sh.  Called by `make check`.
#
#   sh tests/run-tests.sh [PATTERN...]   only tests whose name contains a
#                                        PATTERN (e.g. nbdcopy, test_proto)
#
# Each test runs under timeout(1): 120 s for a unit binary, 300 s for an
# e2e script unless the script says "# timeout: N" with a larger N.  Exit
# status 77 means skipped.  One line per test (PASS: name (Ns) / FAIL: name
# / SKIP: name), the tail of the log of each failure, and the summary
# "N passed, N failed[, N skipped]" last.  Logs: build/test-logs/NAME.log.
# Exit 1 if any test failed.

cd "$(dirname "$0")/.." || exit 1
logdir=build/test-logs
mkdir -p "$logdir"

passed=0
failed=0
skipped=0
failures=

# selected NAME: true if no patterns were given or NAME contains one.
selected () {
  [ $# -eq 1 ] && return 0
  _n=$1
  shift
  for _p in "$@"; do
    case "$_n" in *"$_p"*) return 0 ;; esac
  done
  return 1
}

# run_one NAME LIMIT CMD...: run, time and report one test.
run_one () {
  name=$1
  limit=$2
  shift 2
  log=$logdir/$name.log
  start=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$log" 2>&1 < /dev/null
  rc=$?
  secs=$(($(date +%s) - start))
  case $rc in
    0)
      passed=$((passed + 1))
      echo "PASS: $name (${secs}s)"
      ;;
    77)
      skipped=$((skipped + 1))
      why=$(grep -h 'SKIP:' "$log" | tail -n 1 | sed 's/.*SKIP: *//')
      echo "SKIP: $name${why:+ ($why)}"
      ;;
    *)
      failed=$((failed + 1))
      failures="$failures $name"
      if [ $rc = 124 ] || [ $rc = 137 ]; then
        echo "FAIL: $name (timed out after ${limit}s)"
      else
        echo "FAIL: $name (exit $rc, ${secs}s)"
      fi
      # The test's own last words come before the logs its cleanup
      # dumps ("--- tail of X.log"), which would push them out of a tail.
      echo "---- the test's last lines before its cleanup's log dump:"
      sed '/^--- tail of /,$d' "$log" | tail -n 15 | sed 's/^/    /'
      echo "---- last lines of $log:"
      tail -n 40 "$log" | sed 's/^/    /'
      echo "----"
      ;;
  esac
}

# e2e_limit SCRIPT: 300, or the larger "# timeout: N" the script declares.
e2e_limit () {
  n=$(sed -n 's/^# *timeout: *\([0-9][0-9]*\).*/\1/p' "$1" | head -n 1)
  if [ -n "$n" ] && [ "$n" -gt 300 ]; then echo "$n"; else echo 300; fi
}

for t in build/tests/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  case "$t" in *.d | *.o) continue ;; esac
  name=$(basename "$t")
  selected "$name" "$@" || continue
  run_one "$name" 120 "$t"
done

for t in tests/e2e/test-*.sh; do
  [ -f "$t" ] || continue
  name=$(basename "$t" .sh)
  selected "$name" "$@" || continue
  run_one "$name" "$(e2e_limit "$t")" bash "$t"
done

[ $failed -gt 0 ] && echo "failed:$failures"
summary="$passed passed, $failed failed"
[ $skipped -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ $failed -eq 0 ]
