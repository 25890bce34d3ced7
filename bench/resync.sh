#!/usr/bin/env bash
# bench/resync.sh: what a returning or replaced downstairs costs (issue 11).
#
#   bash bench/resync.sh
#
# One encrypted 1 GiB volume (64 extents of 16 MiB), three downstairs and
# nbdkit + crucible.so on 127.0.0.1, filled once (fio, 1M sequential).
#   a. short outage: kill -9 ds3, write 4 MiB into one extent (flushed),
#      restart ds3 on its port.  Reported: MiB the restarted ds3 process
#      wrote until it is active (/proc/PID/io wchar: files and sockets),
#      seconds from its restart to active (includes the upstairs'
#      reconnect backoff, 1..8 s) and of the live repair itself (state
#      live-repair to active).
#   b. full rebuild, idle: kill -9 ds3, replace its region by an empty one
#      with the volume's uuid and geometry, restart it.  Reported: seconds
#      of the rebuild and MB/s = repair.bytes_total / those seconds
#      (bytes_total is extents_total x 16 MiB on a build without it).
#   c. full rebuild under `fio --ioengine=nbd --rw=randwrite --bs=64k
#      --iodepth=8`: the guest's write MB/s in a window before the
#      replacement, during the rebuild and after it, and during/before.
#   Then the volume stops cleanly and the rebuilt ds3 is checked offline:
#   extent data files identical to ds1's and ds2's, `dump` level, `verify`
#   clean.
# Times come from the stats file, sampled every 0.1 s by one poller (it is
# rewritten every second and at each state change); guest MB/s from its
# volume write_bytes.  nbdkit runs without -v (its per-request debug lines
# would slow the guest).  Environment: RESYNC_WINDOW (seconds per window,
# default 10), BENCH_TMPDIR (where the volume lives; default /tmp).  Prints
# a table; numbers are of this machine and this build only.

set -u -o pipefail
. "$(dirname "$0")/lib.sh"

case ${1:-} in
  -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) say "unknown argument: $1"; exit 2 ;;
esac
WINDOW=${RESYNC_WINDOW:-10}
[[ $WINDOW =~ ^[0-9]+$ ]] && [ "$WINDOW" -ge 2 ] ||
  { say "RESYNC_WINDOW must be a number >= 2"; exit 2; }
for tool in fio nbdkit python3 ss cmp; do
  command -v $tool >/dev/null || { say "$tool not found (make deps)"; exit 2; }
done
fio --enghelp=nbd >/dev/null 2>&1 || { say "fio lacks the nbd engine"; exit 2; }
DS=$ROOT/crucible-downstairs
[ -x "$DS" ] && [ -f "$ROOT/crucible.so" ] || { say "run make first"; exit 2; }

bench_init
LOG=$BT/log
EXT_BLOCKS=4096
EXT=$((EXT_BLOCKS * 4096))
COUNT=64
STATS=$BT/stats.json
TRACE=$BT/trace
EVENTS=$BT/events
SOCK=$BT/nbd.sock
URI="nbd+unix:///?socket=$SOCK"
: > "$EVENTS"

die() { say "$*"; say "log tail:"; tail -n 15 "$LOG" >&2; exit 1; }
mark() { echo "$1 $(date +%s.%N)" >> "$EVENTS"; }

# stq EXPR: a python expression on the stats file (d, ds as in the tests).
stq() {
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1])); ds = d["downstairs"]
print(eval(sys.argv[2]))' "$STATS" "$1" 2>/dev/null
}
# until_stats EXPR SECS: poll every 0.1 s until EXPR is True.
until_stats() {
  local i
  for i in $(seq $(($2 * 10))); do
    [ "$(stq "$1")" = True ] && return 0
    sleep 0.1
  done
  return 1
}

crucible_regions "$BT/r" 1024 $EXT_BLOCKS 1 "$LOG" || die "create failed"
UUID=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["uuid"])' \
  "$BT/r0/region.json")
PORT=() DSPID=()
ds_run() {
  spawn "$LOG" "$DS" run -d "$BT/r$1" -p "${PORT[$1]}" -a 127.0.0.1
  DSPID[$1]=$SPAWNED
  wait_port "${PORT[$1]}" "$SPAWNED" || die "downstairs r$1 did not start"
}
ds_kill9() { kill -KILL "${DSPID[$1]}"; wait "${DSPID[$1]}" 2>/dev/null; forget_pids "${DSPID[$1]}"; }
for i in 0 1 2; do PORT[$i]=$(freeport); ds_run $i; done
make_keyfile "$BT/key"
spawn "$LOG" nbdkit -f -U "$SOCK" "$ROOT/crucible.so" \
  downstairs=127.0.0.1:${PORT[0]} downstairs=127.0.0.1:${PORT[1]} \
  downstairs=127.0.0.1:${PORT[2]} key=+"$BT/key" stats="$STATS" timeout=10
NBDKIT=$SPAWNED
wait_socket "$SOCK" "$NBDKIT" 60 || die "nbdkit did not start"
until_stats 'd["health"] == "healthy"' 30 || die "volume not healthy"

# The poller: one line per change of the ds3 state, its repair or the
# volume's write_bytes, with the time it was seen.
python3 - "$STATS" "$TRACE" <<'EOF' &
import json, sys, time
src, out, last = sys.argv[1], open(sys.argv[2], "w", buffering=1), None
while True:
    try:
        d = json.load(open(src))
        s = (d["downstairs"][2]["state"], d["downstairs"][2]["repair"],
             d["volume"]["write_bytes"], d["health"])
    except (OSError, ValueError, KeyError, IndexError):
        s = None
    if s is not None and s != last:
        out.write(json.dumps({"t": time.time(), "st": s[0], "rep": s[1],
                              "wb": s[2], "health": s[3]}) + "\n")
        last = s
    time.sleep(0.1)
EOF
ALL_PIDS+=($!)

fio_run() { # LIMIT NAME fio-options...: one fio job, json output, bounded
  local lim=$1 name=$2; shift 2
  timeout -k 5 "$lim" fio --name="$name" --ioengine=nbd --uri="$URI" \
    --direct=1 --output-format=json --output="$BT/$name.json" "$@" >>"$LOG" 2>&1
}
say "filling 1 GiB"
fio_run 300 fill --rw=write --bs=1M --iodepth=8 --size=1G --end_fsync=1 ||
  die "fill failed"

wchar() { awk '$1 == "wchar:" { print $2 }' "/proc/$1/io"; }

# a. Short outage.
say "a. short outage"
ds_kill9 2
until_stats 'ds[2]["state"] != "active"' 30 || die "ds3 still active"
fio_run 60 small --rw=write --bs=1M --iodepth=4 --size=4M \
  --offset=$((37 * EXT + (5 << 20))) --end_fsync=1 || die "4 MiB write failed"
mark a_restart
ds_run 2
until_stats 'ds[2]["state"] == "active"' 300 || die "a: ds3 not active"
mark a_active
echo "a_wchar $(wchar "${DSPID[2]}")" >> "$EVENTS"
echo "a_repair $(stq 'json.dumps(ds[2]["repair"])' | tr -d ' ')" >> "$EVENTS"

# replace: kill -9 ds3, empty region with the volume's uuid, restart.
replace() {
  ds_kill9 2
  until_stats 'ds[2]["state"] != "active"' 30 || die "ds3 still active"
  rm -rf "$BT/r2"
  "$DS" create -d "$BT/r2" -u "$UUID" --encrypted --extent-size $EXT_BLOCKS \
    --extent-count $COUNT >>"$LOG" 2>&1 || die "create of the replacement failed"
  mark "$1_restart"
  ds_run 2
  until_stats 'ds[2]["state"] == "active"' 900 || die "$1: ds3 not rebuilt"
  mark "$1_active"
  echo "$1_wchar $(wchar "${DSPID[2]}")" >> "$EVENTS"
  echo "$1_repair $(stq 'json.dumps(ds[2]["repair"])' | tr -d ' ')" >> "$EVENTS"
}

# b. Idle rebuild.
say "b. full rebuild, idle"
replace b

# c. Rebuild under random writes.
say "c. full rebuild under fio randwrite 64k qd8"
# In the background, stopped by SIGTERM (fio then ends the job and writes
# its report; an async command ignores SIGINT).
spawn "$LOG" timeout -k 5 3600 fio --name=load --ioengine=nbd --uri="$URI" \
  --direct=1 --output-format=json --output="$BT/load.json" --rw=randwrite \
  --bs=64k --iodepth=8 --size=1G --time_based --runtime=3600
FIO=$SPAWNED
sleep 3
mark c_before0
sleep "$WINDOW"
mark c_before1
replace c
sleep 1
mark c_after0
sleep "$WINDOW"
mark c_after1
kill -TERM $FIO
wait $FIO
[ -s "$BT/load.json" ] || die "fio randwrite failed"
forget_pids $FIO

# Offline: the rebuilt replica equals the others.
say "stopping; checking the rebuilt replica"
stop_pids "$NBDKIT" || true
forget_pids "$NBDKIT"
stop_pids "${DSPID[@]}"
forget_pids "${DSPID[@]}"
check=ok
for f in $(cd "$BT/r0" && find . -type f ! -name '*.db*' ! -name '*.json'); do
  cmp -s "$BT/r0/$f" "$BT/r2/$f" && cmp -s "$BT/r1/$f" "$BT/r2/$f" ||
    { check="FAILED: $f differs"; break; }
done
if [ "$check" = ok ]; then
  "$DS" dump -d "$BT/r0" -d "$BT/r1" -d "$BT/r2" > "$BT/dump" 2>&1 &&
    ! grep -q '\*' "$BT/dump" || check="FAILED: dump shows differences"
fi
if [ "$check" = ok ]; then
  "$DS" verify -d "$BT/r2" > "$BT/verify" 2>&1 || check="FAILED: verify of ds3"
fi
echo "check $check" >> "$EVENTS"

python3 - "$EVENTS" "$TRACE" "$BT/load.json" "$EXT" "$WINDOW" \
  "$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')" <<'EOF'
import json, sys
evf, trf, fiof, ext, window, rev = sys.argv[1:]
ext, window = int(ext), int(window)
ev = {}
for line in open(evf):
    k, v = line.rstrip("\n").split(" ", 1)
    ev[k] = v
t = {k: float(v) for k, v in ev.items() if k.endswith(("restart", "active"))
     or k[-1:].isdigit() and k.startswith("c_")}
tr = [json.loads(l) for l in open(trf)]

def repair_start(t0, t1):
    """First time after t0 (and before t1) ds3 was seen in live-repair."""
    for s in tr:
        if t0 <= s["t"] <= t1 + 0.5 and s["st"].startswith("live-repair"):
            return s["t"]
    return None

def wb_at(x):
    """volume write_bytes as last seen at or before time x (and when)."""
    best = tr[0]
    for s in tr:
        if s["t"] <= x:
            best = s
    return best["t"], best["wb"]

def rate(a, b):
    (ta, wa), (tb, wb) = wb_at(a), wb_at(b)
    return (wb - wa) / (tb - ta) / 1e6 if tb > ta else float("nan")

def total(rep):
    r = json.loads(rep)
    if "bytes_total" in r:
        return r["bytes_total"], ""
    return r["extents_total"] * ext, "; est. as extents_total x 16 MiB"

rows = []
a0, a1 = t["a_restart"], t["a_active"]
ra = repair_start(a0, a1)
rows.append(("a. short outage: ds3 wrote until active",
             "%.1f MiB (4 MiB changed)" % (int(ev["a_wchar"]) / 2**20)))
rows.append(("a. ds3 restart -> active", "%.1f s" % (a1 - a0)))
rows.append(("a. live repair (live-repair -> active)",
             "%.1f s" % (a1 - ra) if ra else "not seen"))
rows.append(("a. repair stats", ev["a_repair"]))
for c, what in (("b", "idle"), ("c", "under randwrite")):
    r0, r1 = t[c + "_restart"], t[c + "_active"]
    rs = repair_start(r0, r1) or r0
    n, note = total(ev[c + "_repair"])
    rows.append(("%s. rebuild %s: seconds" % (c, what), "%.1f s" % (r1 - rs)))
    rows.append(("%s. rebuild %s: MB/s" % (c, what),
                 "%.0f MB/s (%d MiB%s)" % (n / (r1 - rs) / 1e6, n >> 20, note)))
    rows.append(("%s. ds3 wrote" % c, "%.0f MiB" % (int(ev[c + "_wchar"]) / 2**20)))
    rows.append(("%s. repair stats" % c, ev[c + "_repair"]))
before = rate(t["c_before0"], t["c_before1"])
rs = repair_start(t["c_restart"], t["c_active"]) or t["c_restart"]
during = rate(rs, t["c_active"])
after = rate(t["c_after0"], t["c_after1"])
rows.append(("c. guest randwrite 64k qd8 before", "%.0f MB/s (%d s)" % (before, window)))
rows.append(("c. guest randwrite during rebuild",
             "%.0f MB/s (%.1f s)" % (during, t["c_active"] - rs)))
rows.append(("c. guest randwrite after", "%.0f MB/s (%d s)" % (after, window)))
rows.append(("c. during / before", "%.2f" % (during / before if before else 0)))
try:
    job = json.load(open(fiof))["jobs"][0]["write"]
    rows.append(("c. fio whole run", "%.0f MB/s, p99 %.1f ms" % (
        job["bw_bytes"] / 1e6,
        job["clat_ns"]["percentile"].get("99.000000", 0) / 1e6)))
except (OSError, ValueError, KeyError, IndexError):
    pass
rows.append(("rebuilt ds3 offline (cmp, dump, verify)", ev["check"]))
print("resync bench: crucible-c %s, 1 GiB encrypted volume, 64 x 16 MiB extents"
      % rev)
w = max(len(r[0]) for r in rows)
for k, v in rows:
    print("  %-*s  %s" % (w, k, v))
EOF
[ "$(sed -n 's/^check //p' "$EVENTS")" = ok ]
