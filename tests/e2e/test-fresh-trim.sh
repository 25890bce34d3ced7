#!/usr/bin/env bash
# Freshness of trimmed blocks (issue 12): a replica rolled back to a copy
# taken before a trim or zero, with its extent metadata forged to match
# the others (as in test-fresh-rollback.sh), must not make a read return
# the data the trim removed, nor spread it to the honest replicas.
#
# Why it is its own test: a flush forgets a trim's version (DESIGN.md,
# "Region on disk": the unwritten row of a trimmed block is deleted at
# the flush, the block then has no row and reads as "never written",
# version 0).  So after trim + flush the honest replicas answer "zeroes,
# version 0" and the rolled-back one "written, version V", authentic: by
# versions alone the older write looks newer.  The rule "a newer written
# claim must be proven by its data, and then wins" serves it; so does
# verify=all ("newest authentic").  Both cases are checked and reported.
#
# Setup: pattern A written to 12 blocks over 4 extents and flushed; stop;
# ds1's region copied; 6 of the blocks trimmed, 6 zeroed (NBD TRIM and
# WRITE_ZEROES; the plugin turns both into a TRIM), flushed; stop.  Each
# case: ds1's extent files back from the copy, its region.json kept, its
# extent metadata set to ds2's values (dump shows no difference), the
# other two untouched.  Each block read 10 times in a row.
#   1. default parameters: every read returns zeroes; afterwards ds2 and
#      ds3 hold zeroes for every one of them (nothing was "healed" into
#      them); ds1's state is printed.
#   2. verify=all: the same.
# Every case runs and reports; the test fails at the end if any check
# failed.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh sqlite3 cmp python3

bs=4096
ebl=$DS_EXTENT_SIZE
tlbas="0 2 1023 4100 4101 9000"        # trimmed
zlbas="1 3 4102 9001 15000 16383"      # zeroed
nreads=10 # per block, in a row: >= 3 x 3 replicas, not a multiple of 3

problems=()
bad () {
  echo "$test_name: FAILED CHECK: $1: $2" >&2
  problems+=("$1: $2")
}

cat > "$tmp/blocks.py" <<EOF
bs = $bs
tl = [int(x) for x in "$tlbas".split()]
zl = [int(x) for x in "$zlbas".split()]
def pat(lba):
    s = b"A lba %d " % lba
    return (s * (bs // len(s) + 1))[:bs]
EOF

# geom_path LBA: the extent file of LBA, relative to a region directory.
geom_path () {
  local e=$(($1 / ebl))
  printf '%02X/%03X/%03X' $(((e >> 24) & 0xff)) $(((e >> 12) & 0xfff)) \
    $((e & 0xfff))
}

# zero_block LBA REGION: REGION's extent file holds zeroes for LBA.
zero_block () {
  local p
  p=$(geom_path "$1")
  [ -f "$tmp/$2/$p" ] || fail "test bug: no extent file $p in $2"
  cmp -s <(dd if="$tmp/$2/$p" bs=$bs skip=$(($1 % ebl)) count=1 \
    2>/dev/null) <(head -c $bs /dev/zero)
}

volume_create
volume_start
nbdkit_start || fail "nbdkit did not start"
nbdsh_run -u "$URI" -c "$(cat "$tmp/blocks.py")
for lba in tl + zl:
    h.pwrite(pat(lba), lba * bs)
h.flush()
" || fail "writing A failed"
volume_stop || fail "stop after A failed"
cp -a "$tmp/ds1" "$tmp/ds1.A"

volume_start
nbdkit_start || fail "nbdkit did not restart"
nbdsh_run -u "$URI" -c "$(cat "$tmp/blocks.py")
for lba in tl:
    h.trim(bs, lba * bs)
for lba in zl:
    h.zero(bs, lba * bs)
h.flush()
" || fail "trimming and zeroing failed"
volume_stop || fail "stop after the trims failed"
for i in $VOLUME; do cp -a "$tmp/$i" "$tmp/$i.B"; done
rows=0
for lba in $tlbas $zlbas; do
  zero_block "$lba" ds2 || fail "test bug: ds2 holds data for lba $lba"
  zero_block "$lba" ds1.A && fail "test bug: the copy of ds1 has zeroes at $lba"
  n=$(sqlite3 -batch "$tmp/ds2/$(geom_path "$lba").db" \
    "SELECT count(*) FROM block_context WHERE block = $((lba % ebl))")
  rows=$((rows + n))
done
echo "context rows left on ds2 for the 12 trimmed/zeroed blocks after the flush: $rows (the trims' versions are forgotten)"

# reset: all three back to the state after the trims, then ds1's extent
# files from the copy (region.json, seed.db stay current) and its extent
# metadata forged to ds2's values.
reset () {
  rollback_forge
  true
}

# run_case LABEL PARAMS...: reset, start, read, stop, check.
run_case () {
  local label=$1 lba n
  shift
  reset
  volume_start || fail "$label: the downstairs did not start"
  [ -f "$tmp/nbdkit.log" ] && mv "$tmp/nbdkit.log" "$tmp/nbdkit-prev.log"
  nbdkit_start "$@" || fail "$label: nbdkit did not start"
  grep -q "needs repair" "$tmp/nbdkit.log" &&
    fail "test bug ($label): the forged replica was left out at start"
  nbdsh_run -u "$URI" -c "$(cat "$tmp/blocks.py")
nz = na = no = 0
for lba in tl + zl:
    for r in range($nreads):
        d = h.pread(bs, lba * bs)
        if d == bytes(bs):
            nz += 1
        elif d == pat(lba):
            na += 1
            print('  lba %d read %d: the trimmed data A' % (lba, r))
        else:
            no += 1
            print('  lba %d read %d: neither: %r' % (lba, r, d[:16]))
print('reads %d: zeroes %d A %d other %d' % (nz + na + no, nz, na, no))
open('$tmp/counts', 'w').write('%d %d %d\n' % (nz, na, no))
" > "$tmp/read-$label.out" 2>&1 ||
    { cat "$tmp/read-$label.out" >&2; fail "$label: reads failed"; }
  head -n 5 "$tmp/read-$label.out" | sed "s/^/$label: /"
  tail -n 1 "$tmp/read-$label.out" | sed "s/^/$label: /"
  read -r nz na no < "$tmp/counts"
  [ "$na" = 0 ] && [ "$no" = 0 ] ||
    bad "$label" "$na reads returned the trimmed data A, $no neither (of $((nz + na + no)))"
  volume_stop || bad "$label" "the volume did not stop cleanly"
  mv "$tmp/nbdkit.log" "$tmp/nbdkit-$label.log"
  for i in ds2 ds3; do
    n=0
    for lba in $tlbas $zlbas; do zero_block "$lba" "$i" || n=$((n + 1)); done
    [ "$n" = 0 ] ||
      bad "$label" "$i, which was never rolled back, now holds data in $n of the trimmed blocks (the old data spread)"
  done
  n=0
  for lba in $tlbas $zlbas; do zero_block "$lba" ds1 || n=$((n + 1)); done
  echo "$label: ds1 still holds data in $n of the 12 trimmed blocks"
}

run_case default
run_case verify-all verify=all

if [ ${#problems[@]} -gt 0 ]; then
  fail "${#problems[@]} check(s) failed: $(printf '[%s] ' "${problems[@]}")"
fi
echo "a rollback to before a trim: reads returned zeroes, nothing spread"
