#!/usr/bin/env bash
# crucible-downstairs clone: replace a dead replica by a copy of a live
# one.  16 MiB of random data is written and flushed; a writer keeps
# writing (nbdverify) while downstairs 3 is killed -9, its region deleted
# and cloned from downstairs 1, which keeps serving.  The clone must
# exit 0 with its summary, pass `verify`, hold the same uuid and
# byte-identical data files for the extents nobody wrote meanwhile, and
# then serve the volume with downstairs 2 while downstairs 1 is dead: the
# data written reads back identical.  Error paths: a non-empty DIR, an
# existing region, missing --source, an unreachable source, a leftover
# temporary directory.
# timeout: 300
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdinfo sha256sum cmp
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"
D=$DOWNSTAIRS
MiB=$((1024 * 1024))

# 32 MiB volume of 1 MiB extents: the writer owns [0, 16 MiB), the
# static data lies in [16, 32 MiB) = extents 16..31.
DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=32 volume_create
volume_start
nbdkit_start timeout=3

head -c $((16 * MiB)) /dev/urandom > "$tmp/static.img"
want=$(sha256sum < "$tmp/static.img" | cut -d' ' -f1)
nbdsh_run -u "$URI" -c "
data = open('$tmp/static.img', 'rb').read()
for i in range(0, len(data), 4 << 20):
    h.pwrite(data[i:i + (4 << 20)], 16 * $MiB + i)
h.flush()" || fail "writing the static data failed"
# The writer: random 4 KiB writes over [0, 16 MiB) during the clone.
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 11 write --random \
  --blocks 4096 --duration 6 --flush-every 32 > "$tmp/w.log" 2>&1 &
wpid=$!
PIDS+=($wpid)
sleep 1

# ds3's host dies: kill -9, region gone.
ds_kill ds3 KILL
rm -rf "${tmp:?}/ds3"
timeout 120 "$D" clone --source "127.0.0.1:${DS_PORT[ds1]}" -d "$tmp/ds3" \
  > "$tmp/clone.out" 2> "$tmp/clone.err" ||
  { cat "$tmp/clone.err"; fail "clone failed"; }
cat "$tmp/clone.out"
grep -Eq "^cloned 127.0.0.1:${DS_PORT[ds1]} into $tmp/ds3: uuid $VOL_UUID, 32 extents, 32 MiB \(33554432 bytes\) in [0-9.]+ s, [0-9]+ extents re-fetched, encrypted$" \
  "$tmp/clone.out" || fail "no clone summary line"
grep -Eq "^clone: 32 extents: 32 MiB in [0-9.]+ s" "$tmp/clone.err" ||
  { cat "$tmp/clone.err"; fail "no final progress line"; }
[ -e "$tmp/ds3.clone-tmp" ] && fail "temporary directory left behind"
[ -e "$tmp/ds3/CLONE-INCOMPLETE" ] && fail "marker left in the clone"
wait "$wpid" || { cat "$tmp/w.log" >&2; fail "writes failed during the clone"; }

# The clone serving ds1's port range is not running yet: check it cold.
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"
volume_stop || fail "stop failed"
"$D" verify -d "$tmp/ds3" > "$tmp/verify.out" 2>&1 ||
  { cat "$tmp/verify.out"; fail "verify of the clone failed"; }
grep -q "uuid $VOL_UUID" <("$D" dump -d "$tmp/ds3") || fail "clone uuid"
# Extents 16..31 were not written during the clone: identical files.
for e in $(seq 16 31); do
  f=$(printf '%02X/%03X/%03X' $((e >> 24)) $(((e >> 12) & 0xfff)) \
      $((e & 0xfff)))
  [ -f "$tmp/ds1/$f" ] || fail "no extent file $f (path scheme changed?)"
  cmp -s "$tmp/ds1/$f" "$tmp/ds3/$f" || fail "clone extent $e differs"
done

# ds1 dies too: ds2 + the clone must serve every byte written.
DS_PID[ds1]=
ds_start ds2
ds_start ds3
nbdkit_start timeout=3 || fail "volume did not start on ds2 + clone"
timeout 120 nbdcopy "$URI" "$tmp/out.img" || fail "nbdcopy out failed"
got=$(tail -c +$((16 * MiB + 1)) "$tmp/out.img" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "static data read back differs"
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v.log" 2>&1 ||
  { cat "$tmp/v.log" >&2; fail "writer's data differs without ds1"; }
volume_stop || fail "stop failed"
echo "clone under writes: verified, served with ds1 dead"

# --- error paths ---------------------------------------------------------
ds_start ds1
src=127.0.0.1:${DS_PORT[ds1]}
mkdir "$tmp/full" && touch "$tmp/full/x"
expect 1 "non-empty DIR" "clone: $tmp/full: directory is not empty" \
  "$D" clone --source "$src" -d "$tmp/full"
[ "$(ls "$tmp/full")" = x ] || fail "non-empty DIR was changed"
expect 1 "existing region" "clone: $tmp/ds2: region already exists" \
  "$D" clone --source "$src" -d "$tmp/ds2"
expect 2 "missing --source" "missing --source" "$D" clone -d "$tmp/new"
expect 2 "bad --source" "invalid --source" "$D" clone --source nope -d "$tmp/new"
dead=$(free_port)
expect 1 "unreachable source" "clone: 127.0.0.1:$dead: Connection refused" \
  "$D" clone --source "127.0.0.1:$dead" -d "$tmp/new" --timeout 5
[ -e "$tmp/new" ] || [ -e "$tmp/new.clone-tmp" ] &&
  fail "a failed clone left a directory"
# A leftover of a crashed clone (marker present) is replaced; an unknown
# directory in its place is refused.
mkdir "$tmp/new.clone-tmp" && touch "$tmp/new.clone-tmp/CLONE-INCOMPLETE"
timeout 60 "$D" clone --source "$src" -d "$tmp/new" > /dev/null 2>&1 ||
  fail "clone over a leftover failed"
"$D" verify -d "$tmp/new" > /dev/null || fail "verify of the second clone"
mkdir "$tmp/new2.clone-tmp"
expect 1 "foreign temporary dir" "new2.clone-tmp exists and was not left by clone" \
  "$D" clone --source "$src" -d "$tmp/new2"
# SIGTERM stops a clone and removes its temporary directory.  The source
# is stopped (SIGSTOP) so the clone is surely still waiting on it.
kill -STOP "${DS_PID[ds1]}"
"$D" clone --source "$src" -d "$tmp/intr" > /dev/null 2> "$tmp/intr.err" &
cpid=$!
PIDS+=($cpid)
sleep 0.5
kill -TERM "$cpid"
sleep 0.2
kill -CONT "${DS_PID[ds1]}"
rc=0; timeout 60 tail --pid="$cpid" -f /dev/null || fail "clone did not stop"
wait "$cpid" || rc=$?
[ "$rc" = 1 ] || { cat "$tmp/intr.err"; fail "interrupted clone: exit $rc"; }
grep -q "interrupted by signal 15" "$tmp/intr.err" ||
  { cat "$tmp/intr.err"; fail "interrupted clone: no message"; }
[ -e "$tmp/intr" ] || [ -e "$tmp/intr.clone-tmp" ] &&
  fail "an interrupted clone left a directory"
# An empty DIR is fine.
mkdir "$tmp/empty"
timeout 60 "$D" clone --source "$src" -d "$tmp/empty/" > /dev/null 2>&1 ||
  fail "clone into an empty DIR failed"
[ -f "$tmp/empty/region.json" ] || fail "clone into an empty DIR: no region"
echo "clone error paths: ok"
