#!/usr/bin/env bash
# A downstairs (or its disk) that flips bits in stored blocks cannot make
# a read return wrong bytes.  With the volume stopped, one byte of one
# written block is flipped in ds1's extent data file; after a restart,
# every read of that LBA returns the right data (reads rotate, so some go
# to ds1 and fall back to another replica) and the nbdkit log names ds1
# and the LBA.  Then the same block is flipped on all three replicas: a
# read of it fails with EIO (never bad bytes) while its neighbours and the
# rest of the data still read fine.  Heal on read: the first read that
# fell back rewrote the good block to ds1 (logged "healed downstairs"),
# so `crucible-downstairs verify` finds ds1 clean once stopped.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp python3

bs=4096
lba=5                   # in extent 0 (1024 blocks per extent)
len=$((64 * bs))

# read_lba LBA TIMES: read block LBA TIMES times, compare with the data.
read_lba () {
  nbdsh_run -u "$URI" -c "
import sys
want = open('$tmp/in.img', 'rb').read()[$1 * $bs:($1 + 1) * $bs]
for i in range($2):
    got = h.pread($bs, $1 * $bs)
    if got != want:
        print('read %d of lba $1 returned WRONG data' % i)
        sys.exit(1)
"
}

volume_create
volume_start
nbdkit_start
random_image "$tmp/in.img" $len
volume_fill "$tmp/in.img" "write"
volume_stop || fail "stop failed"

# 1. One replica corrupted: right data, logged with downstairs and LBA.
flip ds1 $lba
"$DOWNSTAIRS" verify -d "$tmp/ds1" > "$tmp/verify0.out" 2>&1 &&
  fail "test bug: verify does not see the flipped block"
volume_start
nbdkit_start || fail "nbdkit did not start"
read_lba $lba 9 || fail "a read of the corrupted block returned wrong data"
grep -E "downstairs 127\.0\.0\.1:${DS_PORT[ds1]}: read lba $lba: (bad (hash|tag)|stored bytes match none of its contexts)" \
  "$tmp/nbdkit.log" ||
  fail "nbdkit log does not name ds1 (port ${DS_PORT[ds1]}) and lba $lba"
volume_check "$tmp/in.img" "read back differs"
grep "healed downstairs" "$tmp/nbdkit.log" || true
grep -qE "healed downstairs 127\.0\.0\.1:${DS_PORT[ds1]} lba $lba\b" \
  "$tmp/nbdkit.log" || fail "no 'healed downstairs' line for ds1 lba $lba"
[ "$(grep -c "healed downstairs" "$tmp/nbdkit.log")" = 1 ] ||
  fail "healed more than once (or other blocks)"
volume_stop || fail "stop failed"
"$DOWNSTAIRS" verify -d "$tmp/ds1" > "$tmp/verify.out" 2>&1 ||
  { cat "$tmp/verify.out"; fail "ds1 still has a bad block: not healed"; }
grep -q "checked [0-9]* blocks, 0 bad" "$tmp/verify.out" ||
  fail "verify did not report 0 bad blocks: $(tail -n 1 "$tmp/verify.out")"

# 2. All three corrupted (ds1 again: it was healed): EIO for that block.
flip ds1 $lba
flip ds2 $lba
flip ds3 $lba
volume_start
nbdkit_start || fail "nbdkit did not start"
nbdsh_run -u "$URI" -c "
import errno, sys
try:
    h.pread($bs, $lba * $bs)
except nbd.Error as e:
    print('read of lba $lba failed as it must:', e)
    sys.exit(0 if e.errnum == errno.EIO else 2)
print('read of a block corrupted on every replica SUCCEEDED')
sys.exit(1)
" || fail "a block bad on every replica did not fail with EIO"
read_lba $((lba - 1)) 3 || fail "neighbour lba $((lba - 1)) misread"
read_lba $((lba + 1)) 3 || fail "neighbour lba $((lba + 1)) misread"
read_lba 63 3 || fail "lba 63 misread"
grep -q "read lba $lba n 1: no downstairs returned good data" \
  "$tmp/nbdkit.log" || fail "no log line for the unreadable block"
echo "corrupt block: fell back on one bad replica, EIO when all are bad"
