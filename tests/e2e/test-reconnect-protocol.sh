#!/usr/bin/env bash
# A downstairs dropped for a protocol error comes back: through
# tests/tools/faultproxy.py, one WRITE frame to ds3 gets an unknown flag
# (ds3 refuses it with an ERROR naming the frame type and closes), later
# one JOB_DONE from ds3 gets one (the upstairs refuses it).  Each time the
# nbdkit log names the frame type and the reason, the upstairs reconnects
# with backoff, ds3 is live-repaired and "active" again in the stats file
# with its reconnects counted, and the data reads back.  Only a newer
# generation may make a downstairs offline for good (test-fence.sh).
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh python3

volume_create
volume_start
faultproxy_start ds3 || fail "faultproxy"
pport=${DS_PORT[ds3]}
nbdkit_start timeout=5 stats="$tmp/stats.json" || fail "nbdkit start"
stats_wait '[x["state"] for x in ds] == ["active"] * 3' 10 ||
  { cat "$tmp/stats.json" >&2; fail "not 3 active at start"; }

# write_at MIB BYTE: write 1 MiB of BYTE at MIB MiB, flush.
write_at () {
  nbdsh_run -u "$URI" -c "h.pwrite(bytes([$2]) * (1 << 20), $1 << 20)" \
    -c 'h.flush()'
}

# round N TYPE DIR RE: corrupt the next TYPE frame going DIR, write, and
# expect the log line RE, then ds3 active again with N reconnects.
round () {
  local n=$1 type=$2 dir=$3 re=$4
  fp_ctl ds3 corrupt "$dir" "$type" > /dev/null || fail "fp corrupt"
  write_at "$n" "$((0x40 + n))" || fail "write $n"
  wait_log "$re" 10 ||
    fail "round $n: no log line /$re/ (frame type and reason)"
  echo "round $n: $(grep -m1 "$re" "$tmp/nbdkit.log")"
  stats_wait 'ds[2]["state"] == "active" and ds[2]["reconnects"] >= '"$n" 30 ||
    { grep "127.0.0.1:$pport" "$tmp/nbdkit.log" >&2; cat "$tmp/stats.json" >&2
      fail "round $n: ds3 not active again with $n reconnects within 30 s" \
           "(state $(stats_q 'ds[2]["state"]'), reconnects" \
           "$(stats_q 'ds[2]["reconnects"]'))"; }
  echo "round $n: ds3 $(stats_q 'ds[2]["state"]'), reconnects" \
       "$(stats_q 'ds[2]["reconnects"]')"
}

# 1. The downstairs refuses a malformed WRITE (ERROR, then close).
round 1 10 up "127.0.0.1:$pport: malformed WRITE frame"
# 2. The upstairs refuses a malformed JOB_DONE.
round 2 14 down "127.0.0.1:$pport: bad frame (JOB_DONE)"

# The data: every round's MiB, read from every replica in turn (ds1 and
# ds2 down one at a time would need a restart; verify=all reads all).
nbdkit_stop || fail "nbdkit stop"
nbdkit_start verify=all || fail "nbdkit restart"
for n in 1 2; do
  nbdsh_run -u "$URI" -c "assert h.pread(1 << 20, $n << 20) == bytes([$((0x40 + n))]) * (1 << 20)" ||
    fail "data of round $n"
done
echo "ok"
