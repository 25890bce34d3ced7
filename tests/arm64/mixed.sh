#!/usr/bin/env bash
# timeout: 900
# A mixed-architecture volume: this host's nbdkit and crucible.so against
# downstairs built for aarch64 (build/arm64/crucible-downstairs, `make
# cross`) running under qemu-user, next to native ones.  Regions are made
# by both binaries; the region format must not depend on the host.
#
#   ARM_RUN="ds1 ds3"   which downstairs run the arm64 binary (default:
#                       all three; the others run the native one)
#   ARM_MAKE="ds1 ds2"  which regions the arm64 binary creates (default;
#                       the others are created by the native one)
#
# The default create geometry (8 extents of 128 MiB).  Checks: random data
# (nbdcopy, and writes across an extent boundary and unaligned) reads back
# equal; a kill -9 of an arm64 downstairs during a copy loses nothing, and
# it is live-repaired when it returns; after a flush and a restart of the
# whole volume everything reads back; then `verify` of every region by
# both binaries (arm64-made regions by the native one and vice versa) and
# `dump` printing the same for both.  Skipped (77) without the cross build
# or qemu-user.
. "$(dirname "$0")/../e2e/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp
XB=${XB:-build/arm64}
ARM_BIN=$top/$XB/crucible-downstairs
ARM_RUN=${ARM_RUN:-ds1 ds2 ds3}
ARM_MAKE=${ARM_MAKE:-ds1 ds2}
[ -x "$ARM_BIN" ] || skip "$XB/crucible-downstairs not built (make cross)"
QEMU=${QEMU:-}
if [ -z "$QEMU" ]; then
  for q in qemu-aarch64-static qemu-aarch64; do
    command -v $q > /dev/null 2>&1 && { QEMU=$(command -v $q); break; }
  done
fi
[ -n "$QEMU" ] || skip "requires qemu-aarch64(-static) (make cross-deps)"
# ELF e_machine (offset 18, little-endian) 183 = EM_AARCH64.
[ "$(od -An -tu2 -j18 -N2 "$ARM_BIN" | tr -d ' ')" = 183 ] ||
  fail "$ARM_BIN is not an aarch64 binary"
NATIVE=$DOWNSTAIRS

# The arm64 downstairs as one executable: exec keeps the pid, so
# ds_kill and kill -9 reach the emulated process itself.
ARM=$tmp/crucible-downstairs-arm64
printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$QEMU" "$ARM_BIN" > "$ARM"
chmod +x "$ARM"
timeout 60 "$ARM" --help > /dev/null 2>&1 ||
  fail "the arm64 downstairs does not run under $QEMU"

in_list () { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }
bin_for () { if in_list "$1" "$2"; then echo "$ARM"; else echo "$NATIVE"; fi; }

DS_EXTENT_SIZE=default DS_EXTENT_COUNT=default
VOL_UUID=$(cat /proc/sys/kernel/random/uuid)
for i in $VOLUME; do
  DOWNSTAIRS=$(bin_for $i "$ARM_MAKE") ds_create $i ||
    fail "create $i failed"
done
start_all () {
  local i
  for i in $VOLUME; do
    DOWNSTAIRS=$(bin_for $i "$ARM_RUN") ds_start $i ||
      fail "downstairs $i did not start"
  done
}
start_all
echo "arm64 makes: $ARM_MAKE; arm64 runs: $ARM_RUN"
S=$tmp/stats.json
nbdkit_start stats="$S" || fail "nbdkit did not start"
[ "$(size_of "$URI")" = $((1024 * 1024 * 1024)) ] ||
  fail "volume size is not create's default 1 GiB"

# What the volume must hold, kept in $tmp/want (1 GiB sparse: zeroes
# where never written) and written through the volume.
truncate -s 1G "$tmp/want"
M=$((1024 * 1024))
EXT=$((128 * M)) # create's default extent
put () { # put FILE OFFSET: write FILE at OFFSET (nbdsh) and into want
  nbdsh_run -u "$URI" -c "
data = open('$1', 'rb').read()
for o in range(0, len(data), 4 << 20):
    h.pwrite(data[o:o + (4 << 20)], $2 + o)" || return 1
  dd if="$1" of="$tmp/want" bs=512 seek=$(($2 / 512)) conv=notrunc \
    status=none
}
# check WHAT OFFSET LEN...: the volume reads back as want on every range.
check () {
  local what=$1 args=
  shift
  while [ $# -ge 2 ]; do args="$args($1, $2),"; shift 2; done
  timeout 300 env PATH=/usr/bin:$PATH nbdsh -u "$URI" -c "
import sys
want = open('$tmp/want', 'rb')
for off, n in [$args]:
    for o in range(off, off + n, 4 << 20):
        k = min(4 << 20, off + n - o)
        want.seek(o)
        if h.pread(k, o) != want.read(k):
            sys.exit('$what: bytes differ in [%d, %d)' % (o, o + k))
" || fail "$what: the volume does not read back"
  echo "$what: read back OK"
}
RANGES="0 $((24 * M)) $((EXT - 2 * M)) $((4 * M)) $((7 * EXT)) $M"

# 1. Random data: nbdcopy of 16 MiB at 0 (the real client), then across
# the extent 0/1 boundary, and one not 4 KiB-aligned in the last extent.
head -c $((16 * M)) /dev/urandom > "$tmp/a.img"
t0=$(date +%s.%N)
timeout 300 nbdcopy "$tmp/a.img" "$URI" || fail "nbdcopy in failed"
t1=$(date +%s.%N)
dd if="$tmp/a.img" of="$tmp/want" conv=notrunc status=none
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "nbdcopy 16 MiB in: %.1f s\n", b - a }'
head -c $((3 * M)) /dev/urandom > "$tmp/b.img"
put "$tmp/b.img" $((EXT - M - 4096)) || fail "write across extents failed"
head -c 5120 /dev/urandom > "$tmp/c.img"
put "$tmp/c.img" $((7 * EXT + 1536)) || fail "unaligned write failed"
check "written" $RANGES
timeout 300 nbdcopy "$URI" - | head -c $((16 * M)) | cmp - "$tmp/a.img" ||
  fail "nbdcopy out differs"
echo "nbdcopy out: same"

# 2. kill -9 an arm64 downstairs while a copy runs: the copy goes on with
# two; the dead one, restarted, is live-repaired to active.
victim=
for i in $VOLUME; do in_list $i "$ARM_RUN" && { victim=$i; break; }; done
[ -n "$victim" ] || fail "test bug: no arm64 downstairs to kill"
idx=$(( ${victim#ds} - 1 ))
head -c $((64 * M)) /dev/urandom > "$tmp/d.img"
put "$tmp/d.img" $((2 * EXT)) > "$tmp/put.out" 2>&1 &
putpid=$!
PIDS+=($putpid)
sleep 0.5
kill -0 $putpid 2> /dev/null ||
  fail "test bug: the 64 MiB copy ended before the kill (took < 0.5 s)"
kill -9 "${DS_PID[$victim]}" || fail "kill -9 $victim failed"
wait "${DS_PID[$victim]}" 2> /dev/null || true
DS_PID[$victim]=
timeout 300 tail --pid=$putpid -f /dev/null
wait $putpid || { cat "$tmp/put.out" >&2; fail "the copy failed when $victim died"; }
echo "kill -9 $victim (arm64) during a copy: copy completed"
stats_wait "ds[$idx]['state'] != 'active'" 60 ||
  fail "$victim not seen faulted"
check "degraded" $RANGES $((2 * EXT)) $((64 * M))
DOWNSTAIRS=$ARM ds_start $victim || fail "$victim did not restart"
stats_wait "ds[$idx]['state'] == 'active' and d['health'] == 'healthy'" 180 ||
  { cat "$S" >&2; fail "$victim was not live-repaired to active"; }
echo "$victim live-repaired: active"
grep -q "downstairs 127.0.0.1:${DS_PORT[$victim]}: live-repair" "$tmp/nbdkit.log" ||
  fail "$victim became active without a live repair"
RANGES="$RANGES $((2 * EXT)) $((64 * M))"
check "repaired" $RANGES

# 3. Flush, stop everything, start again: all of it reads back.
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"
volume_stop || fail "stopping the volume failed"
start_all
nbdkit_start stats="$S" || fail "nbdkit did not restart"
check "after restart" $RANGES
volume_stop || fail "stopping the volume failed"

# 4. The region format does not depend on the host: both binaries verify
# every region clean (arm64-made ones by the native binary and native-made
# ones by the arm64 binary included) and dump the same.
for i in $VOLUME; do
  for b in "$NATIVE" "$ARM"; do
    out=$(timeout 300 "$b" verify -d "$tmp/$i" 2>&1) ||
      fail "verify $i by $(basename "$b") failed: $out"
    echo "$out" | grep -q ', 0 bad' ||
      fail "verify $i by $(basename "$b"): $out"
    echo "verify $i by $(basename "$b"): $out"
  done
done
d=(-d "$tmp/ds1" -d "$tmp/ds2" -d "$tmp/ds3")
timeout 120 "$NATIVE" dump "${d[@]}" > "$tmp/dump.native" 2>&1 ||
  fail "native dump failed"
timeout 120 "$ARM" dump "${d[@]}" > "$tmp/dump.arm64" 2>&1 ||
  fail "arm64 dump failed"
cmp "$tmp/dump.native" "$tmp/dump.arm64" ||
  { diff "$tmp/dump.native" "$tmp/dump.arm64" >&2; fail "dumps differ"; }
grep -q '\*' "$tmp/dump.native" &&
  { cat "$tmp/dump.native" >&2; fail "replicas differ after the clean stop"; }
echo "mixed volume OK"
