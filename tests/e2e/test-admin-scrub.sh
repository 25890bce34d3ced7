#!/usr/bin/env bash
# crucible-admin scrub: an online scrub finds a block corrupted on a
# RUNNING replica's extent data file (one byte flipped, page cache
# dropped), names it (extent + block), heals it from a good replica, and
# afterwards every replica verifies clean offline and the guest data
# reads back.  A second start while one runs is refused; `scrub status`
# reports progress and findings in text and JSON; the stats file counts.
. "$(dirname "$0")/functions.sh"
requires nbdkit nbdcopy python3 timeout
[ -x "$ADMIN" ] || fail "crucible-admin not built"
ASOCK=$tmp/admin.sock
# scrub_wait: poll scrub status until it is no longer running (bounded).
scrub_wait () {
  local i
  for i in $(seq 600); do
    adm --json scrub status > "$tmp/sc.json" || fail "scrub status failed"
    python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["scrub"]["state"] == "running")' < "$tmp/sc.json" && return 0
    sleep 0.1
  done
  fail "scrub did not finish"
}

volume_create
volume_start
nbdkit_start admin="$ASOCK" stats="$tmp/stats.json"
head -c 32M /dev/urandom > "$tmp/data.img"
timeout 60 nbdcopy "$tmp/data.img" "$URI" || fail "nbdcopy failed"
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"

# A clean volume: a scrub finds nothing.
adm scrub start --rate 1000 | grep -q '^scrub started at 1000 MB/s' ||
  fail "scrub start"
scrub_wait
json_check 'd["scrub"]["state"] == "done" and d["scrub"]["blocks_bad"] == 0 and d["scrub"]["blocks_stale"] == 0 and d["scrub"]["findings"] == [] and d["scrub"]["extents_done"] == d["scrub"]["extents_total"] == 16 and d["scrub"]["bytes_done"] == d["scrub"]["bytes_total"]' < "$tmp/sc.json"

# One at a time: a slow scrub, then a second start is refused.
adm scrub start --rate 1 > /dev/null || fail "slow scrub start"
set +e; out=$(adm scrub start 2>&1); rc=$?; set -e
[ "$rc" = 1 ] && echo "$out" | grep -q "already running" ||
  fail "second scrub start: rc $rc: $out"
adm scrub status | grep -q '^scrub: running' || fail "scrub status not running"
adm --json scrub start | json_check 'not d["ok"] and d["code"] == "busy"'
set +e; adm scrub start --rate 0 > /dev/null 2>&1; rc=$?; set -e
[ "$rc" = 1 ] || fail "scrub start --rate 0: rc $rc"

# Restart nbdkit to stop the slow one (scrub stops cleanly at unload).
nbdkit_stop || fail "nbdkit did not stop cleanly with a scrub running"
grep -q "scrub stopped: stopped at unload" "$tmp/nbdkit.log" ||
  fail "no scrub stopped line at unload"
nbdkit_start admin="$ASOCK" stats="$tmp/stats.json"

# Corrupt extent 0 block 5 on ds2 while it runs; drop its page cache.
flip ds2 5
python3 - "$tmp/ds2/00/000/000" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.fdatasync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)
PY

adm scrub start --rate 1000 > /dev/null || fail "scrub start"
scrub_wait
json_check 'd["scrub"]["state"] == "done" and d["scrub"]["blocks_bad"] == 1 and d["scrub"]["blocks_healed"] == 1 and d["scrub"]["blocks_unhealable"] == 0 and len(d["scrub"]["findings"]) == 1 and d["scrub"]["findings"][0]["extent"] == 0 and d["scrub"]["findings"][0]["block"] == 5 and d["scrub"]["findings"][0]["kind"] == "bad" and d["scrub"]["findings"][0]["healed"] and d["scrub"]["findings"][0]["downstairs"].endswith(":'"${DS_PORT[ds2]}"'")' < "$tmp/sc.json"
adm scrub status > "$tmp/sc.txt"
grep -q "^scrub: done, 16/16 extents, .* 1 bad, 0 stale, 1 healed, 0 unhealable" "$tmp/sc.txt" ||
  { cat "$tmp/sc.txt" >&2; fail "scrub status text"; }
grep -q "^finding: bad downstairs 127.0.0.1:${DS_PORT[ds2]} extent 0 block 5 (lba 5): .*: healed" "$tmp/sc.txt" ||
  { cat "$tmp/sc.txt" >&2; fail "finding not named in text"; }
grep -q "scrub: downstairs 127.0.0.1:${DS_PORT[ds2]} extent 0 block 5 (lba 5): bad: .*healed" "$tmp/nbdkit.log" ||
  fail "no log line for the finding"
stats_wait 'd["scrub"]["blocks_healed"] == 1 and d["scrub"]["state"] == "done"' 5 ||
  fail "stats file does not count the scrub"

# A second scrub: nothing left.
adm scrub start --rate 1000 > /dev/null || fail "scrub start (again)"
scrub_wait
json_check 'd["scrub"]["blocks_bad"] == 0 and d["scrub"]["findings"] == []' < "$tmp/sc.json"

# A stale (rolled-back) block: ds2's block 7 of extent 0 put back, bytes
# and context row, to an older authentic version while ds2 is stopped;
# its extent numbers are unchanged, so live repair sees nothing to do.
healthy_wait () {
  local i
  for i in $(seq 300); do
    adm status 2>/dev/null | grep -q '^volume: healthy' && return 0
    sleep 0.1
  done
  fail "volume not healthy again"
}
ds_restart_ds2 () { ds_start ds2; healthy_wait; }
extdb=$tmp/ds2/00/000/000.db
nbdsh_run -u "$URI" -c 'h.pwrite(b"\x11" * 4096, 7 * 4096); h.flush()' ||
  fail "write A"
ds_kill ds2
dd if="$tmp/ds2/00/000/000" of="$tmp/old7" bs=4096 skip=7 count=1 status=none
sqlite3 -batch "$extdb" ".mode insert block_context" \
  "SELECT * FROM block_context WHERE block = 7" > "$tmp/old7.sql"
[ "$(wc -l < "$tmp/old7.sql")" = 1 ] || fail "test bug: block 7 has not one row"
ds_restart_ds2
nbdsh_run -u "$URI" -c 'h.pwrite(b"\x22" * 4096, 7 * 4096); h.flush()' ||
  fail "write B"
ds_kill ds2
dd if="$tmp/old7" of="$tmp/ds2/00/000/000" bs=4096 seek=7 count=1 conv=notrunc status=none
{ echo "DELETE FROM block_context WHERE block = 7;"; cat "$tmp/old7.sql"; } |
  sqlite3 -batch "$extdb" || fail "forging ds2's block 7 failed"
ds_restart_ds2
adm scrub start --rate 1000 > /dev/null || fail "scrub start (stale)"
scrub_wait
json_check 'd["scrub"]["blocks_stale"] == 1 and d["scrub"]["blocks_bad"] == 0 and d["scrub"]["blocks_healed"] == 1 and len(d["scrub"]["findings"]) == 1 and d["scrub"]["findings"][0]["kind"] == "stale" and d["scrub"]["findings"][0]["extent"] == 0 and d["scrub"]["findings"][0]["block"] == 7 and d["scrub"]["findings"][0]["version"] < d["scrub"]["findings"][0]["good_version"] and d["scrub"]["findings"][0]["downstairs"].endswith(":'"${DS_PORT[ds2]}"'")' < "$tmp/sc.json"
adm scrub start --rate 1000 > /dev/null || fail "scrub start (after stale)"
scrub_wait
json_check 'd["scrub"]["blocks_stale"] == 0 and d["scrub"]["findings"] == []' < "$tmp/sc.json"
python3 -c 'import sys; d = bytearray(open(sys.argv[1], "rb").read()); d[7*4096:8*4096] = b"\x22" * 4096; open(sys.argv[1], "wb").write(d)' "$tmp/data.img"

timeout 60 nbdcopy "$URI" "$tmp/back.img" || fail "read back failed"
cmp -n 33554432 "$tmp/back.img" "$tmp/data.img" || fail "guest data differs"
volume_stop || fail "stop failed"
for i in $VOLUME; do
  "$DOWNSTAIRS" verify -d "$tmp/$i" > "$tmp/verify-$i.txt" 2>&1 ||
    { cat "$tmp/verify-$i.txt" >&2; fail "verify $i failed"; }
  grep -q "checked [0-9]* blocks, 0 bad" "$tmp/verify-$i.txt" ||
    { cat "$tmp/verify-$i.txt" >&2; fail "$i not clean after the scrub"; }
done
echo "$test_name: PASS"
