#!/usr/bin/env bash
# One volume health value in the stats file and the status lines:
# "healthy" with 3 active downstairs, kill -9 one -> "degraded", kill -9
# another -> "failed" (phase stays "running"), both restarted -> back to
# "healthy" after live repair; each change is one "volume: HEALTH" line.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh python3

volume_create
volume_start
nbdkit_start timeout=3 stats="$tmp/stats.json" || fail "nbdkit start"

# expect_health H SECS: the stats file says H within SECS, and so does a
# status line.
expect_health () {
  stats_wait 'd["health"] == "'"$1"'"' "$2" ||
    { cat "$tmp/stats.json" >&2; fail "health is not $1 within $2 s"; }
  wait_log "volume: $1 " 5 || fail "no status line 'volume: $1'"
  echo "$1: phase $(stats_q 'd["phase"]'), states" \
       "$(stats_q '" ".join(x["state"] for x in ds)')"
}

expect_health healthy 10
nbdsh_run -u "$URI" -c 'h.pwrite(b"\x5a" * (1 << 20), 0)' -c 'h.flush()' ||
  fail "write"
ds_kill ds1 KILL
expect_health degraded 10
ds_kill ds2 KILL
expect_health failed 10
[ "$(stats_q 'd["phase"]')" = running ] || fail "phase is not running"
ds_start ds1
ds_start ds2
expect_health healthy 60
grep 'volume: ' "$tmp/nbdkit.log"
n=$(grep -c 'volume: ' "$tmp/nbdkit.log")
nbdsh_run -u "$URI" -c 'assert h.pread(1 << 20, 0) == b"\x5a" * (1 << 20)' ||
  fail "data after recovery"
echo "ok ($n health lines)"
