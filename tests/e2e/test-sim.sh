#!/usr/bin/env bash
# The seeded, randomized whole-system test (tests/tools/sim/;
# its header comment states the model rule and the fault rules).  Three
# downstairs with create's default geometry (128 MiB extents, 3 of them)
# and nbdkit with crucible.so, encrypted; 4 NBD connections issue random
# reads, writes, FUA writes, trims, zeroes and flushes (1 B .. 32 MiB,
# unaligned, across extents, trims up to the whole volume), every read
# checked against a model, while downstairs are killed, stopped, corrupted
# or away for a while (kill -9 or SIGTERM, some ops, back: a live repair
# of what changed) or rolled back (put back to an older copy of its
# region with its extent metadata forged: only the read path's freshness
# check, issue 12, keeps its old blocks out of reads; `--no rollback`
# leaves it out), and nbdkit is killed or everything restarted cleanly.
# At the end: a verify=all read of the whole volume, `crucible-downstairs
# verify` on each replica, and identical extent data on the three.
#
# First a self-check: a 2-second run with --inject-bug (one write recorded
# under a wrong id in the model) must fail with MISMATCH, so the model is
# not vacuous.  Then the run proper.
#
#   SIM_SEED=N      seed (default 1 in make check; `make soak` picks one)
#   SIM_SECONDS=S   how long to drive IO (default 60)
#   SIM_ARGS="..."  more crucible-sim options, e.g. "--no flip"
#
# A failure prints the seed, the command to replay it and the last 50
# operations and faults; KEEP_TMP=1 keeps the directory (sim.log has every
# event, nbdkit.log and ds*.log the daemons' output).
# timeout: 600
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit
SIM=$top/build/tools/crucible-sim
[ -x "$SIM" ] || skip "build/tools/crucible-sim not built (run make check)"

# Under SANITIZE=1 the plugin is built with ASan and nbdkit is not: the
# sim starts nbdkit, so preload libasan for it (as nbdkit_cmd does) by
# running the sim, and all it starts, with the runtime preloaded.
if [ "${SANITIZE:-}" = 1 ]; then
  export LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0
fi

seed=${SIM_SEED:-1}
secs=${SIM_SECONDS:-60}

# sim DIR ARGS...: run crucible-sim in $tmp/DIR in the background (so the
# EXIT trap can stop it by pid) and return its exit status.
sim () {
  local d=$tmp/$1 rc=0
  shift
  mkdir -p "$d"
  "$SIM" --dir "$d" --downstairs "$DOWNSTAIRS" --plugin "$PLUGIN" "$@" &
  PIDS+=($!)
  wait $! || rc=$?
  return $rc
}

echo "self-check: an injected wrong expectation must be detected"
rc=0
sim selfcheck --seed "$seed" --seconds 2 --inject-bug \
  > "$tmp/selfcheck.out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'FAIL.*MISMATCH' "$tmp/selfcheck.out" &&
  grep -q "seed $seed (replay:" "$tmp/selfcheck.out" &&
  grep -q 'INJECT: op' "$tmp/selfcheck.out" || {
  cat "$tmp/selfcheck.out"
  fail "the model did not catch the injected bug (exit $rc)"
}
echo "self-check: ok (exit 1, MISMATCH reported with seed and history)"
rm -rf "$tmp/selfcheck"

# shellcheck disable=SC2086 # SIM_ARGS is a list of options
sim run --seed "$seed" --seconds "$secs" ${SIM_ARGS:-} ||
  fail "crucible-sim failed (seed $seed); replay: SIM_SEED=$seed SIM_SECONDS=$secs${SIM_ARGS:+ SIM_ARGS=\"$SIM_ARGS\"} bash tests/e2e/test-sim.sh"
