#!/usr/bin/env bash
# Freshness in the default read mode (issue 12): a replica rolled back to
# an older copy of its extent files, with its extent metadata forged to
# match the others, must never make a default read return the older data.
#
# Setup: pattern A is written to 13 blocks spread over 5 extents and
# flushed; everything stops cleanly and ds1's region is copied aside;
# pattern B is written to the same blocks and flushed; everything stops
# cleanly and the three regions are copied aside (the "B" state).  Each
# case starts from that state with ds1's extent files (data, .db, and any
# -wal/-shm: a database never meets a journal of another copy) replaced
# by the A copy, its current region.json kept, and its extent metadata
# (gen_number, flush_number, dirty) set with sqlite3 to ds2's values: at
# start-up every extent of ds1 reports what the others do (checked with
# `dump`), so reconciliation leaves it alone and it serves reads.  Every
# block of A still authenticates (GCM binds LBA and version, and these
# are A's own versions): only the version tells that it is old.
#
# Each block is read 10 times in a row from one nbdsh (reads rotate over
# the replicas, least in flight first, so each replica serves each block
# about three times):
#   1. default parameters, three downstairs: every read returns B; the
#      nbdkit log names ds1 (its port) on a line saying older/stale/
#      rollback; afterwards ds1 holds B's stored block for every one of
#      them (its extent bytes equal ds2's: healed as stored).
#   2. verify=one (the old mode, no freshness check, for benchmarks): may
#      return A; the number of such reads is printed, not asserted (only
#      that every read returned A or B).
#   3. verify=all keeps its meaning: every read returns B.
#   4. default, only ds1 and ds2 running (ds3 stopped before the start):
#      every read returns B (the check uses the one other replica), and
#      ds1 is healed.
#   5. default, ds2 stopped, ds1 rolled back, ds3 good: the rolled-back
#      replica is the only other one for reads served by ds3 (and ds3 the
#      only other one for reads it serves): every read returns B, ds1 is
#      healed.
# Every case runs and reports; the test fails at the end if any check
# failed (each failure is one line naming its case).  (Before issue 12 the
# default read mode is verify=one's: about a third of the reads of cases
# 1 and 5 and two thirds of case 4 return A, nothing is healed or logged.)
# Trimmed blocks are test-fresh-trim.sh's.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh sqlite3 cmp python3

bs=4096
ebl=$DS_EXTENT_SIZE
# Extents 0, 3, 7, 12 and 15 (of 16), first, last and middle blocks.
lbas="0 1 517 1023 3072 3073 4000 7168 7680 12289 15360 16000 16383"
nreads=10 # per block, in a row: >= 3 x 3 replicas, not a multiple of 3

problems=()
# bad CASE MSG: record a failed check and go on with the next one.
bad () {
  echo "$test_name: FAILED CHECK: $1: $2" >&2
  problems+=("$1: $2")
}

# The Python shared by the writer and the reader: the blocks and the
# content of pattern TAG at LBA (says what it is, fills the block).
cat > "$tmp/blocks.py" <<EOF
import sys
bs = $bs
lbas = [int(x) for x in "$lbas".split()]
def pat(tag, lba):
    s = b"%s lba %d " % (tag, lba)
    return (s * (bs // len(s) + 1))[:bs]
EOF

# write_pattern TAG: write TAG's content to every block, flush.
write_pattern () {
  nbdsh_run -u "$URI" -c "$(cat "$tmp/blocks.py")
for lba in lbas:
    h.pwrite(pat(b'$1', lba), lba * bs)
h.flush()
" || fail "writing pattern $1 failed"
}

# read_all LABEL: read every block $nreads times in a row; prints
# "reads N: B n A n other n" (and up to 5 lbas that returned A or
# neither) and leaves the counts in $tmp/counts-LABEL.
read_all () {
  nbdsh_run -u "$URI" -c "$(cat "$tmp/blocks.py")
na = nb = no = 0
odd = []
for lba in lbas:
    for r in range($nreads):
        d = h.pread(bs, lba * bs)
        if d == pat(b'B', lba):
            nb += 1
            continue
        if d == pat(b'A', lba):
            na += 1
            odd.append('lba %d read %d: A' % (lba, r))
        else:
            no += 1
            odd.append('lba %d read %d: neither A nor B: %r' % (lba, r, d[:16]))
for line in odd[:5]:
    print('  ' + line)
print('reads %d: B %d A %d other %d' % (na + nb + no, nb, na, no))
open('$tmp/counts-$1', 'w').write('%d %d %d\n' % (nb, na, no))
" > "$tmp/read-$1.out" 2>&1 ||
    { cat "$tmp/read-$1.out" >&2; return 1; }
  sed "s/^/$1: /" "$tmp/read-$1.out"
}

# geom_path LBA: the extent file of LBA, relative to a region directory.
geom_path () {
  local e=$(($1 / ebl))
  printf '%02X/%03X/%03X' $(((e >> 24) & 0xff)) $(((e >> 12) & 0xfff)) \
    $((e & 0xfff))
}

# same_block LBA X Y: regions X and Y hold the same bytes for LBA.
same_block () {
  local p blk
  p=$(geom_path "$1")
  blk=$(($1 % ebl))
  [ -f "$tmp/$2/$p" ] && [ -f "$tmp/$3/$p" ] ||
    fail "test bug: no extent file $p in $2 or $3"
  cmp -s <(dd if="$tmp/$2/$p" bs=$bs skip=$blk count=1 2>/dev/null) \
    <(dd if="$tmp/$3/$p" bs=$bs skip=$blk count=1 2>/dev/null)
}

# --- setup: A, the copy of ds1, B, the copy of all three -----------------
volume_create
volume_start
nbdkit_start || fail "nbdkit did not start"
write_pattern A
volume_stop || fail "stop after A failed"
cp -a "$tmp/ds1" "$tmp/ds1.A"

volume_start
nbdkit_start || fail "nbdkit did not restart"
write_pattern B
volume_stop || fail "stop after B failed"
for i in $VOLUME; do cp -a "$tmp/$i" "$tmp/$i.B"; done
# A clean stop closes every database: SQLite checkpoints and deletes the
# journal at the last close.  Whatever is there travels with its .db.
echo "journals left after the clean stops: $(find "$tmp"/ds?.[AB] \
  -name '*.db-wal' | wc -l) WAL files"
for lba in $lbas; do
  same_block "$lba" ds1.A ds1.B &&
    fail "test bug: lba $lba holds the same bytes in A and B"
done

# reset: the three regions back to the B state, then ds1's extent files
# replaced by the A copy (region.json and seed.db stay B's) and its
# extent metadata forged to ds2's values.
reset () {
  rollback_forge
  for lba in $lbas; do
    same_block "$lba" ds1 ds1.A ||
      fail "test bug: ds1 does not hold A for lba $lba"
  done
}

# start_case LABEL DOWNSTAIRS... -- PARAMS...: reset, start those
# downstairs and nbdkit with PARAMS; the log of this case only is
# $tmp/nbdkit-LABEL.log afterwards.
start_case () {
  local label=$1 i
  shift
  reset
  while [ "$1" != -- ]; do ds_start "$1" || fail "$label: $1 did not start"; shift; done
  shift
  [ -f "$tmp/nbdkit.log" ] && mv "$tmp/nbdkit.log" "$tmp/nbdkit-prev.log"
  nbdkit_start "$@" || fail "$label: nbdkit did not start"
  grep -q "needs repair" "$tmp/nbdkit.log" &&
    fail "test bug ($label): the forged replica was left out at start"
  true
}

# stop_case LABEL: stop nbdkit and every downstairs, keep the case's log.
stop_case () {
  volume_stop || bad "$1" "the volume did not stop cleanly"
  mv "$tmp/nbdkit.log" "$tmp/nbdkit-$1.log"
}

# counts LABEL: set nb, na, no from the reader's counts.
counts () {
  read -r nb na no < "$tmp/counts-$1"
}

# all_b LABEL: every read of the case returned B.
all_b () {
  counts "$1"
  [ "$na" = 0 ] && [ "$no" = 0 ] ||
    bad "$1" "$na reads returned the rolled-back data A, $no neither A nor B (of $((na + nb + no)))"
}

# healed LABEL GOOD: after the case, ds1 holds GOOD's bytes for every block.
healed () {
  local lba n=0
  for lba in $lbas; do
    same_block "$lba" ds1 "$2" || n=$((n + 1))
  done
  [ "$n" = 0 ] ||
    bad "$1" "ds1 still differs from $2 in $n of the written blocks (not healed)"
}

p1=${DS_PORT[ds1]}

# 1. Default parameters, three downstairs.
start_case default ds1 ds2 ds3 --
read_all default || fail "default: reads failed"
all_b default
stop_case default
grep "127\.0\.0\.1:$p1\b" "$tmp/nbdkit-default.log" |
  grep -Eiq 'older|stale|rollback' ||
  bad default "the nbdkit log names ds1 (port $p1) on no line saying older/stale/rollback"
healed default ds2

# 2. verify=one: no freshness check; reported, not asserted.
start_case verify-one ds1 ds2 ds3 -- verify=one
read_all verify-one || fail "verify=one: reads failed"
counts verify-one
[ "$no" = 0 ] || bad verify-one "$no reads returned neither A nor B"
echo "verify=one: $na of $((na + nb + no)) reads returned the rolled-back data A (allowed: no freshness check)"
stop_case verify-one

# 3. verify=all: the newest authentic version of all replicas.
start_case verify-all ds1 ds2 ds3 -- verify=all
read_all verify-all || fail "verify=all: reads failed"
all_b verify-all
stop_case verify-all

# 4. Two downstairs: ds3 stopped, ds1 rolled back, ds2 good.
start_case two ds1 ds2 -- stats="$tmp/stats.json"
[ "$(stats_q 'ds[2]["state"]')" != active ] ||
  fail "test bug (two): ds3 is active"
read_all two || fail "two: reads failed"
all_b two
stop_case two
healed two ds2

# 5. The rolled-back replica is the only other one: ds2 stopped.
start_case only-other ds1 ds3 -- stats="$tmp/stats.json"
[ "$(stats_q 'ds[1]["state"]')" != active ] ||
  fail "test bug (only-other): ds2 is active"
read_all only-other || fail "only-other: reads failed"
all_b only-other
stop_case only-other
healed only-other ds3

if [ ${#problems[@]} -gt 0 ]; then
  fail "${#problems[@]} check(s) failed: $(printf '[%s] ' "${problems[@]}")"
fi
echo "a forged rollback of one replica: default reads returned only the newest data and healed it"
