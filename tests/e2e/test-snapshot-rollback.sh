#!/usr/bin/env bash
# Snapshot rollback (crucible-admin snapshot rollback NAME) on a volume of
# `create`'s default extent size (128 MiB; 2 extents, then extended to 3),
# encrypted (key=+FILE), with state= (the whole-volume rollback defence):
# data written, `snapshot create s1`, part of it overwritten, trimmed,
# new data written, the volume extended and written beyond s1's size;
# `snapshot rollback s1` makes the volume read exactly s1's image (zeroes
# beyond its size), leaves no marker, and a restart with the same state=
# starts (a rollback is new writes and a new flush: nothing went back).
# A guest read during a (slowed) pass sees none of it or all of it, and a
# guest write acknowledged during it is not undone.  Then again with every link slowed, kill -9 of a downstairs and of
# nbdkit in the middle of the pass: the restart finishes the rollback
# before it serves ("was interrupted"), the volume reads s1 again, and the
# downstairs that was killed rejoins.  Refusals: an unknown snapshot, a
# marker name (".s1") given by a user.
. "$(dirname "$0")/functions.sh"
requires nbdkit nbdcopy nbdinfo python3 timeout cmp
requires_build
[ -x "$ADMIN" ] || fail "crucible-admin not built"
ASOCK=$tmp/admin.sock
MiB=$((1024 * 1024))
STATE=$tmp/state
STATS=$tmp/stats.json

DS_EXTENT_SIZE=default DS_EXTENT_COUNT=2 volume_create
volume_start
for i in ds1 ds2 ds3; do
  faultproxy_start $i || fail "faultproxy for $i did not start"
done
start () {
  nbdkit_start admin="$ASOCK" state="$STATE" stats="$STATS" "$@"
}
start || fail "nbdkit did not start"
[ "$(nbdinfo --size "$URI")" = $((256 * MiB)) ] || fail "not 2 x 128 MiB"

# put IMG OFFSET: write IMG at OFFSET bytes of the live volume, flush.
put () { volume_put "$1" "$2" "$SOCK" || fail "write $1 at $2"; }
# trim OFFSET LEN: trim (and flush) a range of the live volume.
trim () {
  PATH=/usr/bin:$PATH timeout 60 python3 - "$SOCK" "$1" "$2" <<'PY' ||
import sys, nbd
h = nbd.NBD()
h.connect_unix(sys.argv[1])
h.trim(int(sys.argv[3]), int(sys.argv[2]))
h.flush()
h.shutdown()
PY
    fail "trim $2 at $1"
}
# model IMG OFFSET: IMG into the expected image s1.img.
model () {
  dd if="$1" of="$tmp/s1.img" bs=1M seek="$(($2 / MiB))" conv=notrunc \
    status=none
}
rollback () { timeout 120 "$ADMIN" -s "$ASOCK" snapshot rollback "$@"; }
# delays MS: every link MS ms each way (0: none).
delays () {
  local i
  for i in ds1 ds2 ds3; do fp_ctl $i delay "$1" > /dev/null || fail "delay $1"; done
}
# slow_rollback MS OUT: delays MS, then rollback s1 in the background
# (pid RB, reply in OUT); n is nbdkit.log's length before it.
slow_rollback () {
  delays "$1"
  n=$(wc -l < "$tmp/nbdkit.log")
  rollback s1 > "$2" 2>&1 &
  RB=$!
  PIDS+=($RB)
}

for x in a b c d e f g; do random_image "$tmp/$x.img" $((4 * MiB)); done
truncate -s 256M "$tmp/s1.img"
put "$tmp/a.img" 0
put "$tmp/b.img" $((130 * MiB)) # extent 1
model "$tmp/a.img" 0
model "$tmp/b.img" $((130 * MiB))
adm snapshot create s1 > /dev/null || fail "snapshot create s1"

# After s1: an overwrite, a trim of s1's data, new data, an extend and
# data beyond s1's size.
put "$tmp/c.img" $((2 * MiB))
trim $((131 * MiB)) $((2 * MiB))
put "$tmp/d.img" $((200 * MiB))
adm extend 384M > /dev/null || fail "extend"
put "$tmp/e.img" $((300 * MiB))
truncate -s 384M "$tmp/s1.img"

adm snapshot rollback NOSUCH > "$tmp/r0.txt" 2>&1 &&
  fail "rollback to NOSUCH succeeded"
grep -q "rollback to NOSUCH: cannot read snapshot NOSUCH" "$tmp/r0.txt" ||
  fail "rollback to NOSUCH: $(cat "$tmp/r0.txt")"
adm snapshot create .s1 > "$tmp/r0.txt" 2>&1 && fail "a user made a marker"
grep -q "bad snapshot name" "$tmp/r0.txt" || fail ".s1: $(cat "$tmp/r0.txt")"

rollback s1 > "$tmp/r1.txt" || fail "rollback s1: $(cat "$tmp/r1.txt")"
grep -q "^rolled back to s1: $((384 * MiB)) bytes checked" "$tmp/r1.txt" ||
  fail "rollback reply: $(cat "$tmp/r1.txt")"
# Compared by their bytes only the blocks whose versions differ (c, the
# trim, d, e: 3584); rewritten: a's half under c (512 blocks) and b's
# trimmed half (512); trimmed: c's half beyond a (512), d and e (1024
# each); nothing else.
grep -q "3584 blocks compared, 1024 blocks rewritten, 2560 trimmed" \
  "$tmp/r1.txt" ||
  fail "rollback moved other blocks: $(cat "$tmp/r1.txt")"
volume_check "$tmp/s1.img" "after rollback"
adm snapshot list > "$tmp/l1.txt" || fail "snapshot list"
grep -q '^\.' "$tmp/l1.txt" && fail "a marker is left: $(cat "$tmp/l1.txt")"
grep -q '^s1 ' "$tmp/l1.txt" || fail "s1 is gone: $(cat "$tmp/l1.txt")"
grep -q "rollback to s1 done" "$tmp/nbdkit.log" || fail "no log line"

# state= knows nothing went back: the restart starts.
nbdkit_stop || fail "nbdkit stop"
start || fail "the restart after a rollback was refused"
volume_check "$tmp/s1.img" "after the restart"

# Guest IO waits for the whole pass (it holds the range lock of the whole
# volume): with every link 8 ms a round trip, h (8 MiB over two 4 MiB
# chunks) is rolled back to zeroes while one guest read spans both chunks
# (it must see all of h or none, never half) and one guest write lands
# in h's second chunk (acknowledged during the pass, so it must survive
# it: written after the pass, not undone by it).
random_image "$tmp/h.img" $((8 * MiB))
random_image "$tmp/w.img" 4096
put "$tmp/h.img" $((96 * MiB))
slow_rollback 4 "$tmp/r3.txt"
for i in $(seq 300); do
  tail -n "+$((n + 1))" "$tmp/nbdkit.log" | grep -q "rollback to s1 started" &&
    break
  sleep 0.05
done
PATH=/usr/bin:$PATH timeout 100 python3 - "$SOCK" "$tmp/h.img" "$tmp/w.img" \
  "$((96 * MiB))" <<'PY' || fail "guest IO during the rollback"
import sys, nbd
sock, h_img, w_img, off = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
h = nbd.NBD()
h.connect_unix(sock)
span = h.pread(8 << 20, off)
if span != open(h_img, "rb").read() and span != bytes(8 << 20):
    sys.exit("a read during the rollback saw half of it")
h.pwrite(open(w_img, "rb").read(), off + (4 << 20))
h.flush()
h.shutdown()
PY
wait "$RB" || fail "rollback s1 (guest IO): $(cat "$tmp/r3.txt")"
tail -n "+$((n + 1))" "$tmp/nbdkit.log" | grep -q "rollback to s1 done" ||
  fail "no rollback done line"
delays 0
cp "$tmp/s1.img" "$tmp/s1w.img"
dd if="$tmp/w.img" of="$tmp/s1w.img" bs=4096 seek=25600 conv=notrunc status=none
volume_check "$tmp/s1w.img" "a guest write during the rollback was undone"
echo "paused for guest IO: $(grep -o 'paused [0-9]* ms' "$tmp/r3.txt")"

# Interrupted: every link 100 ms a round trip, so the pass takes about
# 20 s; kill -9 of ds3, then of nbdkit, after it passed 10 % (f at 17 %,
# g at 65 %: one of them still differs; so does w, at 26 %).
put "$tmp/f.img" $((64 * MiB))
put "$tmp/g.img" $((250 * MiB))
slow_rollback 50 "$tmp/r2.txt"
wait_log "rollback to s1: 10% compared" 30 ||
  fail "the rollback did not start: $(tail -n 5 "$tmp/nbdkit.log")"
sleep 1
ds_kill ds3 KILL
sleep 0.5
kill -9 "$NBDKIT_PID"
wait "$NBDKIT_PID" 2> /dev/null || true
NBDKIT_PID=
wait "$RB" && fail "the rollback answered ok though nbdkit was killed"
tail -n "+$((n + 1))" "$tmp/nbdkit.log" | grep -q "rollback to s1 done" &&
  fail "the rollback ended before the kill: not a test of the resume"
delays 0
ds_up ds3 || fail "ds3 did not restart"
start || fail "the restart did not finish the rollback"
tail -n "+$((n + 1))" "$tmp/nbdkit.log" |
  grep -q "rollback to s1 was interrupted: finishing it before serving" ||
  fail "no resume: $(tail -n 5 "$tmp/nbdkit.log")"
volume_check "$tmp/s1.img" "after the interrupted rollback"
adm snapshot list > "$tmp/l2.txt" || fail "snapshot list"
grep -q '^\.' "$tmp/l2.txt" && fail "a marker is left: $(cat "$tmp/l2.txt")"
stats_wait "all(x['state'] == 'active' for x in ds)" 60 ||
  fail "ds3 did not rejoin"
volume_check "$tmp/s1.img" "with ds3 back"
volume_stop
echo "$test_name: ok"
