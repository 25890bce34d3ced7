#!/usr/bin/env bash
# A live repair interrupted by kill -9 of any party ends with three
# identical replicas and the newest data.  Volume: 4 extents of 8 MiB,
# filled; before each case ds3 is killed and the whole volume rewritten
# (flushed), so its return starts a live repair of every extent.  To make
# that repair last seconds, every downstairs sits behind
# tests/tools/faultproxy.py, throttled to 2 MB/s while a repair is to be
# interrupted: repair data flows source -> upstairs -> target, so the
# target's link bounds it whichever replica serves as source, and the
# sources' links bound a build that copies extents directly between
# downstairs.  "Mid-repair" is seen in the stats file: ds3 in live-repair
# with 1 <= repair.extents_done <= extents_total - 2 (each 8 MiB extent
# then takes about 4 s, more than the timeout of 5 s).
#   a. kill -9 the target mid-repair, restart it: the repair completes,
#      the data reads back, the replicas are identical.
#   b. kill -9 the source ds1 mid-repair: with one active replica and one
#      being repaired the volume is "failed" and a write fails with EIO
#      (within the timeout, no hang); ds1 restarts; both end active, the
#      data reads back, the replicas are identical.
#   c. kill -9 nbdkit mid-repair, restart it: start-up reconciliation
#      brings ds3 level; the data reads back, the replicas are identical.
# "Identical": the volume stopped cleanly, every extent data file equal
# on ds1, ds2 and ds3, `dump` without differences.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh python3 cmp

rate=2000000
proxied_volume
p3=${DS_PORT[ds3]}

# healthy SECS: wait until all three are active.
healthy () {
  stats_wait 'd["health"] == "healthy" and
              [x["state"] for x in ds] == ["active"] * 3' "$1"
}

# stale IMG: ds3 misses IMG written over the whole volume (flushed), then
# returns through a throttled link and waits there mid-repair.
stale () {
  fp_stale ds3 "$1"
  stats_wait 'ds[2]["state"].startswith("live-repair") and
              1 <= ds[2]["repair"]["extents_done"] <=
                   ds[2]["repair"]["extents_total"] - 2' 60 ||
    { cat "$STATS" >&2; fail "ds3 never seen mid-repair"; }
  echo "  mid-repair: ds3 $(stats_q 'ds[2]["state"] + " " + str(ds[2]["repair"])')"
}

# level IMG WHAT: the volume reads back as IMG; stopped cleanly, the three
# replicas hold identical extent data and `dump` shows no difference;
# then everything is started again (throttle off).
level () {
  local f
  rm -f "$tmp/out.img"
  timeout 60 nbdcopy "$URI" "$tmp/out.img" || fail "$2: read back failed"
  cmp "$1" "$tmp/out.img" || fail "$2: data differs"
  volume_stop || fail "$2: clean stop failed"
  for f in 00/000/000 00/000/001 00/000/002 00/000/003; do
    cmp "$tmp/ds1/$f" "$tmp/ds2/$f" || fail "$2: ds2 $f differs from ds1"
    cmp "$tmp/ds1/$f" "$tmp/ds3/$f" || fail "$2: ds3 $f differs from ds1"
  done
  "$DOWNSTAIRS" dump -d "$tmp/ds1" -d "$tmp/ds2" -d "$tmp/ds3" \
    > "$tmp/dump.txt" || fail "$2: dump failed"
  grep -q '\*' "$tmp/dump.txt" &&
    { cat "$tmp/dump.txt" >&2; fail "$2: dump shows differences"; }
  throttle 0 || fail "faultproxy did not answer"
  for f in ds1 ds2 ds3; do ds_up $f || fail "$f did not restart"; done
  NBDKIT_VERBOSE=1 nbdkit_start timeout=5 stats="$STATS" ||
    fail "nbdkit did not restart"
  healthy 30 || fail "not healthy after a restart"
  echo "$2: data read back, replicas identical"
}

# a. The target dies mid-repair.
echo "a. kill -9 the target mid-repair"
stale "$tmp/b.img"
ds_kill ds3 KILL
throttle 0 || fail "faultproxy did not answer"
ds_up ds3 || fail "a: ds3 did not restart"
healthy 60 || { cat "$STATS" >&2; fail "a: ds3 not repaired after its restart"; }
grep "live repair of 127.0.0.1:$p3: starting" "$tmp/nbdkit.log" | tail -n 2 |
  sed 's/^/  /'
level "$tmp/b.img" "a. target killed mid-repair"

# b. A source dies mid-repair: 1 active + 1 repairing is not enough for IO.
echo "b. kill -9 the source ds1 mid-repair"
stale "$tmp/a.img"
ds_kill ds1 KILL
stats_wait 'ds[0]["state"] != "active"' 10 || fail "b: ds1 still active"
[ "$(stats_q 'ds[2]["state"] != "active" and d["health"] == "failed"')" = True ] ||
  { cat "$STATS" >&2; fail "b: not 'failed' with ds1 dead and ds3 repairing"; }
# The probe writes the bytes already there: whether or not it lands on
# ds2 or ds3, the data stays a.img.
t0=$(date +%s)
timeout 60 env PATH=/usr/bin:$PATH nbdsh -u "$URI" -c "
import errno, sys
buf = open('$tmp/a.img', 'rb').read(65536)
try:
    h.pwrite(buf, 0)
    h.flush()
except nbd.Error as e:
    print('write failed:', e.string)
    sys.exit(0 if e.errnum == errno.EIO else 2)
print('write succeeded')
sys.exit(1)
" > "$tmp/probe.log" 2>&1 || { rc=$?; cat "$tmp/probe.log" >&2
  fail "b: a write with ds1 dead and ds3 repairing did not fail with EIO (exit $rc)"; }
cat "$tmp/probe.log"
echo "  EIO after $(($(date +%s) - t0)) s"
throttle 0 || fail "faultproxy did not answer"
ds_up ds1 || fail "b: ds1 did not restart"
healthy 60 || { cat "$STATS" >&2; fail "b: ds1 and ds3 not both repaired"; }
level "$tmp/a.img" "b. source killed mid-repair"

# c. nbdkit dies mid-repair: reconciliation at start finishes the job.
echo "c. kill -9 nbdkit mid-repair"
stale "$tmp/b.img"
stop_pid "$NBDKIT_PID" KILL || true
NBDKIT_PID=
throttle 0 || fail "faultproxy did not answer"
n=$(wc -l < "$tmp/nbdkit.log")
NBDKIT_VERBOSE=1 nbdkit_start timeout=5 stats="$STATS" ||
  fail "c: nbdkit did not restart"
tail -n "+$((n + 1))" "$tmp/nbdkit.log" | grep 'reconciliation done' |
  sed 's/^/  /'
tail -n "+$((n + 1))" "$tmp/nbdkit.log" |
  grep -q 'reconciliation done: [1-9][0-9]* extents compared' ||
  fail "c: reconciliation at start compared no extent"
healthy 30 || fail "c: not healthy after the restart"
level "$tmp/b.img" "c. nbdkit killed mid-repair"
echo "interrupted live repairs: target, source and nbdkit killed; replicas identical"
