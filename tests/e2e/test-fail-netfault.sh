#!/usr/bin/env bash
# Network faults between the upstairs and one downstairs (ds3, behind
# tests/tools/faultproxy.py), each under a write load: 50 ms of delay
# (slow but correct), a stall longer than timeout= (ds3 is faulted, then
# live-repaired once the stall ends), and repeated connection cuts.  The
# volume stays correct throughout, and at the end ds3's extent data
# files are byte-identical to the others'.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit python3
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"

DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=8 volume_create
volume_start
faultproxy_start ds3 || fail "faultproxy did not start"
ctl () { fp_ctl ds3 "$@" > /dev/null; }
pport=${DS_PORT[ds3]}
real3=${REAL_PORT[ds3]}
NBDKIT_VERBOSE=1 nbdkit_start timeout=3 stats="$tmp/stats.json"
DS_PORT[ds3]=$real3

wait_count () {
  local i
  for i in $(seq $(($3 * 10))); do
    [ "$(grep -c "$1" "$tmp/nbdkit.log")" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
write_bg () {
  "$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 8 write --random \
    --duration "$1" --flush-every 32 > "$tmp/w.log" 2>&1 &
  wpid=$!
  PIDS+=($wpid)
}
verify () {
  wait "$wpid" || { cat "$tmp/w.log" >&2; fail "$1: writes failed"; }
  "$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v.log" 2>&1 ||
    { cat "$tmp/v.log" >&2; fail "$1: verify failed"; }
}
done_re="live repair of 127.0.0.1:$pport complete"

# 1. Delay: slower, no fault needed, correct.
ctl delay 50
write_bg 3
verify "delay"
ctl delay 0

# 2. A stall past timeout=3: faulted, then repaired after resume.
write_bg 8
sleep 1
ctl stall
wait_count "downstairs 127.0.0.1:$pport: faulted" 1 10 ||
  fail "stalled downstairs not faulted"
sleep 4
ctl resume
wait_count "$done_re" 1 60 || fail "no live repair after the stall"
verify "stall"

# 3. Repeated cuts.
write_bg 8
for i in 1 2 3 4 5; do
  sleep 1
  ctl cut
done
verify "cuts"
wait_count "$done_re" 2 60 || fail "no live repair after the cuts"
# The last cut may have come after that repair: wait until the stats file
# shows ds3 active (repaired) in two reads a second apart.
ok=0
for i in $(seq 60); do
  if python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(d["downstairs"][2]["state"] != "active")' "$tmp/stats.json"; then
    ok=$((ok + 1))
    [ $ok -ge 2 ] && break
  else
    ok=0
  fi
  sleep 1
done
[ $ok -ge 2 ] || { cat "$tmp/stats.json" >&2; fail "ds3 not active again"; }

# The affected replica is identical to the others.
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"
volume_stop
for f in $(cd "$tmp/ds1" && find . -type f ! -name '*.db*' ! -name '*.json'); do
  cmp "$tmp/ds1/$f" "$tmp/ds3/$f" || fail "ds3 $f differs from ds1"
done
echo "delay, stall and cuts: volume correct, ds3 repaired"
