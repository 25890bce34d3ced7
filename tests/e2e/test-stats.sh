#!/usr/bin/env bash
# stats=FILE and the status lines: the stats file parses and shows three
# active downstairs; under a write/read load the counters grow and p50 is
# a number; kill -9 one downstairs: it leaves "active" within seconds and
# a status line names it; restarted, it goes through live-repair
# (repair: only the extent written meanwhile) back to "active"; no FILE.tmp is left; at
# stop the file says "stopped".  Then a short captive nbdkit with
# -D crucible.net=1 and an unwritable stats path: frame debug lines, and
# exactly one warning for the stats file.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh python3

# 64 MiB in 64 extents: the repair compares one of them.
DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=64 volume_create
volume_start
S=$tmp/stats.json
STATS=$S
NBDKIT_VERBOSE=1 nbdkit_start timeout=3 stats="$S" || fail "nbdkit start"
p2=${DS_PORT[ds2]}

# 1. Three active downstairs, the document is complete.
stats_wait 'd["phase"] == "running" and [x["state"] for x in ds] == ["active"] * 3' 10 ||
  { cat "$S" >&2; fail "not 3 active downstairs in $S"; }
[ "$(stats_q 'd["version"] == 1 and len(ds) == 3 and d["gen"] > 0 and
       d["size"] == 64 << 20 and
       ds[1]["address"] == "127.0.0.1:'"$p2"'" and
       all(k in x for x in ds for k in ("inflight_jobs", "inflight_bytes",
           "reads", "writes", "flushes", "read_bytes", "write_bytes",
           "latency_us", "errors", "reconnects", "repair")) and
       all(k in d["volume"] for k in ("reads", "writes", "flushes",
           "read_bytes", "write_bytes", "errors"))')" = True ] ||
  { cat "$S" >&2; fail "stats document incomplete"; }
grep -q "downstairs 127.0.0.1:$p2: active" "$tmp/nbdkit.log" ||
  fail "no 'active' status line"
w0=$(stats_q 'd["volume"]["writes"]')
r0=$(stats_q 'd["volume"]["reads"]')

# 2. Load for 4 s: 64 KiB writes and reads; p50 must be a number while it
# runs, and every counter grows.
nbdsh_run -u "$URI" -c '
import os, time
buf = os.urandom(65536)
end = time.time() + 4
i = 0
while time.time() < end:
    h.pwrite(buf, (i % 512) * 65536)
    assert h.pread(65536, (i % 512) * 65536) == buf
    i += 1
h.flush()
' > "$tmp/load.log" 2>&1 &
lpid=$!
PIDS+=($lpid)
stats_wait 'all(isinstance(x["latency_us"]["p50"], int) and
            x["latency_us"]["p99"] >= x["latency_us"]["p50"] > 0 for x in ds)' 6 ||
  { cat "$S" >&2; fail "no p50 latency during the load"; }
wait "$lpid" || { cat "$tmp/load.log" >&2; fail "load failed"; }
sleep 1.2
[ "$(stats_q 'd["volume"]["writes"] > '"$w0"' and d["volume"]["reads"] > '"$r0"' and
       d["volume"]["write_bytes"] >= 65536 * (d["volume"]["writes"] - '"$w0"') and
       d["volume"]["flushes"] >= 1 and d["volume"]["errors"] == 0 and
       all(x["writes"] >= d["volume"]["writes"] and x["flushes"] >= 1 and
           x["write_bytes"] > 0 and x["errors"] == 0 for x in ds) and
       sum(x["reads"] for x in ds) >= d["volume"]["reads"] and
       all(x["inflight_jobs"] == 0 for x in ds)')" = True ] ||
  { cat "$S" >&2; fail "counters did not grow as expected"; }
echo "load: $(stats_q 'd["volume"]')"

# 3. kill -9 ds2: it leaves "active" within a few seconds.
ds_kill ds2 KILL
stats_wait 'ds[1]["state"] in ("faulted", "offline", "connecting")' 5 ||
  { cat "$S" >&2; fail "ds2 still active in $S"; }
wait_log "downstairs 127.0.0.1:$p2: faulted: " 5 ||
  fail "no 'faulted' status line for ds2"
[ "$(stats_q 'ds[1]["faults"] >= 1 and ds[0]["state"] == ds[2]["state"] == "active"')" = True ] ||
  { cat "$S" >&2; fail "fault not counted"; }
# Writes go on with two.
nbdsh_run -u "$URI" -c 'h.pwrite(b"x" * 65536, 0); h.flush()' ||
  fail "write with ds2 down failed"

# 4. Restart it: live-repair, then active again; sample the file fast.
ds_start ds2 || fail "ds2 did not restart"
seen=
for i in $(seq 600); do
  s=$(stats_q 'ds[1]["state"]' 2>/dev/null) || s=
  [ "$s" = live-repair ] && seen=1
  [ "$s" = active ] && break
  sleep 0.05
done
[ "$s" = active ] || { cat "$S" >&2; fail "ds2 not active again within 30 s"; }
# Only extent 0 was written while it was away: only that one is
# compared, and only the 16 blocks written are copied.
[ "$(stats_q 'ds[1]["repair"] == {"extents_total": 1, "extents_done": 1,
       "bytes_total": 1048576, "bytes_done": 1048576,
       "copied_bytes": 65536} and ds[1]["reconnects"] >= 1')" = True ] ||
  { cat "$S" >&2; fail "repair progress not reported for ds2"; }
grep -q "downstairs 127.0.0.1:$p2: live-repair 0/1" "$tmp/nbdkit.log" ||
  fail "no 'live-repair 0/1' status line"
grep -q "live repair of 127.0.0.1:$p2: 1/1 extents, 1.0/1.0 MiB compared, 0.1 MiB copied" "$tmp/nbdkit.log" ||
  fail "no final live-repair progress line"
grep -A3 "live repair of 127.0.0.1:$p2: 1/1 extents" "$tmp/nbdkit.log" |
  grep -q "downstairs 127.0.0.1:$p2: active" ||
  fail "no 'active' status line right after the live repair"
# The file is rewritten at every state change, so a 50 ms poll normally
# catches the repair (under a second here); the log lines above are the
# proof when it does not.
echo "ds2 in live-repair in the stats file: ${seen:+seen}${seen:-missed (repair too fast)}"
grep "downstairs 127.0.0.1:$p2: " "$tmp/nbdkit.log" | sed 's/^/  /'
[ ! -e "$S.tmp" ] || fail "$S.tmp left behind"

# 5. At stop: phase stopped, every downstairs offline.
nbdkit_stop || fail "nbdkit stop"
[ "$(stats_q 'd["phase"] == "stopped" and all(x["state"] == "offline" for x in ds)')" = True ] ||
  { cat "$S" >&2; fail "final stats not 'stopped'"; }
[ ! -e "$S.tmp" ] || fail "$S.tmp left behind at stop"

# 6. -D crucible.net=1, and a stats file that cannot be written: one
# warning only, over several seconds.
PATH=/usr/bin:$PATH timeout 60 $(nbdkit_cmd) -U - -v -D crucible.net=1 "$PLUGIN" \
  downstairs=127.0.0.1:${DS_PORT[ds1]} downstairs=127.0.0.1:$p2 \
  downstairs=127.0.0.1:${DS_PORT[ds3]} key=+"$KEYFILE" \
  stats="$tmp/no-such-dir/stats.json" \
  --run 'nbdsh -u "$uri" -c "h.pwrite(b\"y\" * 4096, 0); h.flush()" && sleep 3' \
  > "$tmp/net.log" 2>&1 || { tail -n 20 "$tmp/net.log" >&2; fail "net run failed"; }
for pat in "net: 127.0.0.1:$p2: connecting" "net: 127.0.0.1:$p2: sent HELLO " \
           "net: 127.0.0.1:$p2: received HELLO_OK" \
           "net: 127.0.0.1:$p2: sent WRITE job [0-9]" \
           "net: 127.0.0.1:$p2: received JOB_DONE job [0-9]"; do
  grep -q "$pat" "$tmp/net.log" || fail "no '$pat' line with -D crucible.net=1"
done
[ "$(grep -c 'stats file .*cannot write' "$tmp/net.log")" = 1 ] ||
  { grep 'stats file' "$tmp/net.log" >&2; fail "not exactly one stats warning"; }
echo "stats file, status lines and net debug: ok"
