#!/usr/bin/env bash
# Serving a snapshot read-only (snapshot=NAME) on a volume of `create`'s
# default geometry (1 GiB, 128 MiB extents), encrypted (key=+FILE): data
# written, `snapshot create s1` through the admin socket, part of the
# volume overwritten, trimmed and extended live; then two snapshot=s1
# nbdkits at once serve exactly the pre-snapshot image, at its own size
# (nbdcopy + cmp), while the live volume keeps taking writes (a reader
# fences nobody); the export is read-only with no block status (the
# block map downstairs is the live volume's) and its admin socket
# refuses snapshot and extend commands; a downstairs killed with kill -9
# during a snapshot copy gives the same bytes or a clean failure, never
# other bytes, and serves again when it returns; a byte flipped in one
# replica's snapshot copy of block 0 is read around (the log names the
# block, nothing is healed; an admin scrub of the snapshot finds it and
# heals nothing); a replica whose record of s1 is at another
# point, or that lacks the snapshot (away at the create, at start or
# returning later), is named in one line and never read; with one
# holder, or for snapshot=NOSUCH, the start fails in one line.
. "$(dirname "$0")/functions.sh"
requires nbdkit nbdcopy nbdinfo python3 timeout cmp
requires_build
[ -x "$ADMIN" ] || fail "crucible-admin not built"
ASOCK=$tmp/admin.sock
MiB=$((1024 * 1024))
GiB=$((1024 * MiB))

DS_EXTENT_SIZE=default DS_EXTENT_COUNT=default volume_create
volume_start
nbdkit_start admin="$ASOCK" || fail "live nbdkit did not start"
[ "$(nbdinfo --size "$URI")" = $GiB ] || fail "not the default 1 GiB volume"

# snap_refused NAME TAG GREP WHAT: nbdkit snapshot=NAME must exit 1
# with one line, matching GREP, on stderr.
snap_refused () {
  local rc
  set +e
  timeout 60 $(nbdkit_cmd) -f -U "$tmp/$2.sock" "$PLUGIN" \
    "downstairs=127.0.0.1:${DS_PORT[ds1]}" \
    "downstairs=127.0.0.1:${DS_PORT[ds2]}" \
    "downstairs=127.0.0.1:${DS_PORT[ds3]}" key=+"$KEYFILE" snapshot="$1" \
    > "$tmp/$2.out" 2>&1
  rc=$?
  set -e
  [ "$rc" = 1 ] || fail "$4: exit status $rc, want 1"
  [ "$(wc -l < "$tmp/$2.out")" = 1 ] ||
    fail "$4: not one line: $(cat "$tmp/$2.out")"
  grep -q "$3" "$tmp/$2.out" || fail "$4: $(cat "$tmp/$2.out")"
}

# block0_reads SOCK N: N connections to SOCK each read block 0 as s1.img
# has it (round robin: each reaches another replica).
block0_reads () {
  PATH=/usr/bin:$PATH python3 - "$1" "$tmp/s1.img" "$2" <<'PY'
import sys, nbd
want = open(sys.argv[2], "rb").read(4096)
for i in range(int(sys.argv[3])):
    h = nbd.NBD()
    h.connect_unix(sys.argv[1])
    assert h.pread(4096, 0) == want, "block 0 differs"
    h.shutdown()
PY
}

# put IMG OFFSET: write IMG at OFFSET bytes of the live volume, flush.
put () { volume_put "$1" "$2" "$SOCK" || fail "write $1 at $2"; }
overlay () { # overlay IMG OFFSET: IMG into the expected image s1.img
  dd if="$1" of="$tmp/s1.img" bs=1M seek="$(($2 / MiB))" conv=notrunc \
    status=none
}

random_image "$tmp/a.img" $((8 * MiB))
random_image "$tmp/b.img" $((4 * MiB))
random_image "$tmp/c.img" $((4 * MiB))
random_image "$tmp/d.img" $((4 * MiB))
truncate -s 1G "$tmp/s1.img"
put "$tmp/a.img" 0
put "$tmp/b.img" $((130 * MiB)) # extent 1
overlay "$tmp/a.img" 0
overlay "$tmp/b.img" $((130 * MiB))
adm snapshot create s1 > "$tmp/c1.txt" || fail "snapshot create s1"
grep -q '^snapshot s1 created .* on 3 of 3 downstairs' "$tmp/c1.txt" ||
  fail "create s1: $(cat "$tmp/c1.txt")"
# Live, after it: overwrite part of extent 0, trim data of extent 1 (the
# live block map now says "hole" where the snapshot holds data).
put "$tmp/c.img" $((2 * MiB))
nbdsh_run -u "$URI" -c "h.trim($MiB, $((131 * MiB)))" -c 'h.flush()' ||
  fail "live trim"
# And grow it: the snapshot keeps its own size.
adm extend 2G > /dev/null || fail "live extend"

# snap_start N [params]: a snapshot=$SNAP (default s1) nbdkit on $tmp/snapN.sock (log
# $tmp/snapN.log, pid SNAP_PID[N]); waits for its NBD handshake.
declare -A SNAP_PID=()
snap_start () {
  local n=$1 i
  shift
  rm -f "$tmp/snap$n.sock"
  $(nbdkit_cmd) -f -v -U "$tmp/snap$n.sock" "$PLUGIN" \
    "downstairs=127.0.0.1:${DS_PORT[ds1]}" \
    "downstairs=127.0.0.1:${DS_PORT[ds2]}" \
    "downstairs=127.0.0.1:${DS_PORT[ds3]}" key=+"$KEYFILE" \
    snapshot="${SNAP:-s1}" "$@" >> "$tmp/snap$n.log" 2>&1 &
  SNAP_PID[$n]=$!
  PIDS+=($!)
  for i in $(seq 300); do
    [ -S "$tmp/snap$n.sock" ] && break
    kill -0 "${SNAP_PID[$n]}" 2>/dev/null || break
    sleep 0.1
  done
  timeout 60 nbdinfo --size "nbd+unix:///?socket=$tmp/snap$n.sock" \
    > /dev/null 2>&1 || fail "snapshot nbdkit $n did not start"
}
snap_uri () { echo "nbd+unix:///?socket=$tmp/snap$1.sock"; }
snap_stop () { stop_pid "${SNAP_PID[$1]}" || fail "snapshot nbdkit $1: exit"; }

snap_start 1 admin="$tmp/snap1.adm"
snap_start 2
# Its admin socket: it says it serves s1; extend and snapshot commands
# belong to the live volume.
sadm () { timeout 20 "$ADMIN" -s "$tmp/snap1.adm" "$@"; }
sadm --json status |
  json_check 'd["status"]["snapshot"] == "s1" and d["status"]["size"] == 1 << 30 and d["status"]["health"] == "healthy"'
sadm status | grep -q '^serving snapshot s1 read-only$' || fail "status text"
sadm --json snapshot create s9 |
  json_check 'not d["ok"] and "read-only" in d["error"]'
sadm --json snapshot list | json_check 'not d["ok"] and "read-only" in d["error"]'
sadm --json extend 3G | json_check 'not d["ok"] and "read-only" in d["error"]'
adm --json status | json_check '"snapshot" not in d["status"]'
grep -q 'serving snapshot s1 (flush [0-9]* gen [0-9]*) read-only from 3 of 3' \
  "$tmp/snap1.log" || fail "snap1: no serving line"
[ "$(nbdinfo --size "$(snap_uri 1)")" = $GiB ] ||
  fail "snapshot size is not its own (1 GiB)"
[ "$(nbdinfo --size "$URI")" = $((2 * GiB)) ] || fail "live extend lost"
# Read-only, no block status: every byte is data (a false hole would be
# skipped by nbdcopy: silent data loss).
nbdinfo --json "$(snap_uri 1)" > "$tmp/info.json"
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))["exports"][0]
assert d["is_read_only"] and not d["can_trim"] and not d["can_zero"] \
  and not d["can_flush"] and not d["can_fua"], d' "$tmp/info.json" ||
  fail "snapshot export is not read-only: $(cat "$tmp/info.json")"
[ "$(nbdinfo --map "$(snap_uri 1)" | awk '{print $1, $2, $4}')" = \
  "0 $GiB data" ] || fail "block status of a snapshot: $(nbdinfo --map "$(snap_uri 1)")"
if nbdsh_run -u "$(snap_uri 1)" -c 'h.pwrite(b"x" * 4096, 0)' 2>/dev/null; then
  fail "a write to the snapshot succeeded"
fi

# Two readers at once, live writes meanwhile (nobody fenced).
timeout 120 nbdcopy "$(snap_uri 1)" "$tmp/got1.img" &
r1=$!
timeout 120 nbdcopy "$(snap_uri 2)" "$tmp/got2.img" &
r2=$!
put "$tmp/d.img" $((300 * MiB))
wait "$r1" || fail "nbdcopy from snapshot 1"
wait "$r2" || fail "nbdcopy from snapshot 2"
cmp "$tmp/s1.img" "$tmp/got1.img" || fail "snapshot 1 served other bytes"
cmp "$tmp/s1.img" "$tmp/got2.img" || fail "snapshot 2 served other bytes"
# The live volume: the new bytes, and it still takes writes.
put "$tmp/d.img" $((400 * MiB))
nbdcopy "$URI" "$tmp/live.img" --request-size=$MiB 2>/dev/null ||
  fail "live nbdcopy"
cmp -n $((4 * MiB)) -i $((2 * MiB)):0 "$tmp/live.img" "$tmp/c.img" ||
  fail "live volume lost the write after the snapshot"
cmp -n $((4 * MiB)) -i $((400 * MiB)):0 "$tmp/live.img" "$tmp/d.img" ||
  fail "live volume lost a write made while snapshots were read"
adm --json status | json_check 'd["status"]["health"] == "healthy"'
rm -f "$tmp/live.img" "$tmp/got2.img"
snap_stop 2

# kill -9 a downstairs during a snapshot copy: the same bytes or a
# failure, never other bytes.
rm -f "$tmp/got1.img"
timeout 120 nbdcopy "$(snap_uri 1)" "$tmp/got1.img" 2>/dev/null &
r1=$!
sleep 0.5
kill -0 "$r1" 2>/dev/null || fail "test bug: the copy ended before the kill"
ds_kill ds2 9
if wait "$r1"; then
  cmp "$tmp/s1.img" "$tmp/got1.img" || fail "other bytes after kill -9"
  echo "$test_name: copy with ds2 killed: same bytes"
else
  echo "$test_name: copy with ds2 killed: failed cleanly"
fi
rm -f "$tmp/got1.img"
# It comes back: it serves the snapshot again (no repair: nobody writes).
ds_start ds2 || fail "ds2 did not restart"
wait_log "downstairs 127.0.0.1:${DS_PORT[ds2]}: serves snapshot s1 again" 20 "$tmp/snap1.log" ||
  fail "ds2 not readmitted to the snapshot"
nbdsh_run -u "$(snap_uri 1)" -c "assert h.pread(4096, $((130 * MiB))) == \
open('$tmp/b.img', 'rb').read(4096)" || fail "read after ds2 returned"
snap_stop 1

# One replica's snapshot copy of block 0 corrupt: read around, named.
nbdkit_stop || fail "live nbdkit stop"
ds_kill ds3
f=$(ls -d "$tmp"/ds3/snapshots/*/e00000000)/00/000/000
[ -f "$f" ] || fail "test bug: no snapshot copy of extent 0 on ds3"
python3 - "$f" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1000)
    b = f.read(1)
    f.seek(1000)
    f.write(bytes([b[0] ^ 0x5a]))
PY
ds_start ds3 || fail "ds3 did not restart"
snap_start 3 admin="$tmp/snap3.adm"
# Round robin: three reads of block 0 reach every replica once.
block0_reads "$tmp/snap3.sock" 6 ||
  fail "corrupt block 0 on ds3 was served"
grep -q "downstairs 127.0.0.1:${DS_PORT[ds3]}: read lba 0: " "$tmp/snap3.log" ||
  fail "the bad block was not named: $(grep -i lba "$tmp/snap3.log" | head)"
grep -q "lba 0: not healed (snapshot=s1 is read-only)" "$tmp/snap3.log" ||
  fail "no 'not healed' line"
# A scrub of the snapshot finds the block, heals nothing.
s3adm () { timeout 20 "$ADMIN" -s "$tmp/snap3.adm" "$@"; }
s3adm scrub start --rate 100000 > /dev/null || fail "scrub start on s1"
for i in $(seq 600); do
  s3adm --json scrub status > "$tmp/sc.json" || fail "scrub status"
  python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["scrub"]["state"] == "running")' < "$tmp/sc.json" && break
  sleep 0.1
done
json_check 'd["scrub"]["state"] == "done" and d["scrub"]["blocks_bad"] == 1 and d["scrub"]["blocks_healed"] == 0 and d["scrub"]["findings"][0]["extent"] == 0 and d["scrub"]["findings"][0]["block"] == 0 and not d["scrub"]["findings"][0]["healed"] and d["scrub"]["findings"][0]["downstairs"].endswith(":'"${DS_PORT[ds3]}"'")' < "$tmp/sc.json"
snap_stop 3

# ds3's record of s1 forged to another point (flush + 1000): it holds
# "s1" but not the one the others hold, so it is named and never read.
ds_kill ds3
info=$(ls -d "$tmp"/ds3/snapshots/*/snapshot.info)
python3 - "$info" <<'PY'
import sys
p = sys.argv[1]
lines = open(p).read().split("\n")
lines = ["flush %d" % (int(l.split()[1]) + 1000) if l.startswith("flush ")
         else l for l in lines]
open(p, "w").write("\n".join(lines))
PY
ds_start ds3 || fail "ds3 did not restart"
snap_start 6
grep -q "downstairs 127.0.0.1:${DS_PORT[ds3]}: holds snapshot s1 at flush [0-9]* gen [0-9]* (8 extents), the others at flush [0-9]* gen [0-9]* (8 extents): not used" \
  "$tmp/snap6.log" || fail "ds3 with a foreign s1 not named"
grep -q 'serving snapshot s1 .* from 2 of 3 downstairs' "$tmp/snap6.log" ||
  fail "s1 not served from the two that agree"
block0_reads "$tmp/snap6.sock" 4 ||
  fail "s1 with ds3 not used"
! grep -q "read lba 0" "$tmp/snap6.log" || fail "ds3 (not used) was read"
snap_stop 6

# s2 taken with ds3 away: ds3 lacks it (named, not used), the two that
# hold it serve it; with only one of them up the start fails.
nbdkit_start admin="$ASOCK" || fail "live nbdkit restart"
ds_kill ds3 9
adm snapshot create s2 > "$tmp/c2.txt" || fail "snapshot create s2"
grep -q 'on 2 of 3 downstairs' "$tmp/c2.txt" || fail "s2: $(cat "$tmp/c2.txt")"
# Started with ds3 down: served from two; ds3 returns without s2 and is
# refused (one line), the others serve on.
SNAP=s2 snap_start 5
grep -q "downstairs 127.0.0.1:${DS_PORT[ds3]}: did not answer (.*): not used" \
  "$tmp/snap5.log" || fail "missing ds3 not named at start"
ds_start ds3 || fail "ds3 did not restart"
wait_log "127.0.0.1:${DS_PORT[ds3]}: has no snapshot s2: not admitted" 20 "$tmp/snap5.log" ||
  fail "ds3 without s2 admitted, or not named"
nbdsh_run -u "$(snap_uri 5)" -c "assert h.pread(4096, $((2 * MiB))) == \
open('$tmp/c.img', 'rb').read(4096)" || fail "read s2 with ds3 refused"
snap_stop 5
SNAP=s2 snap_start 4
grep -q "downstairs 127.0.0.1:${DS_PORT[ds3]}: has no snapshot s2: not used" \
  "$tmp/snap4.log" || fail "ds3 without s2 not named"
grep -q 'serving snapshot s2 .* from 2 of 3 downstairs' "$tmp/snap4.log" ||
  fail "s2 not served from two"
nbdcopy "$(snap_uri 4)" "$tmp/got4.img" || fail "nbdcopy s2"
cmp -n $((4 * MiB)) -i $((2 * MiB)):0 "$tmp/got4.img" "$tmp/c.img" ||
  fail "s2 lacks the write before it"
cmp -n $((4 * MiB)) -i $((400 * MiB)):0 "$tmp/got4.img" "$tmp/d.img" ||
  fail "s2 lacks the write before it (400 MiB)"
rm -f "$tmp/got4.img"
snap_stop 4
ds_kill ds2
snap_refused s2 one 'snapshot s2: only 1 of 3 downstairs hold it at one point' \
  "s2 on one replica"
ds_start ds2 || fail "ds2 did not restart"

# A snapshot no replica holds: one clear line.
snap_refused NOSUCH nosuch 'snapshot NOSUCH: only 0 of 3 downstairs hold it' \
  "snapshot=NOSUCH"
echo "$test_name: ok"
