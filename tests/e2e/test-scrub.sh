#!/usr/bin/env bash
# crucible-downstairs verify -d DIR scrubs a stopped region without the
# key: exit 0 and "0 bad" on a clean one; after one byte of a written
# block is flipped in an extent data file, exit non-zero and the output
# names that extent and block.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh python3

bs=4096
eid=1                   # 1024 blocks per extent: LBA 1024 + blk
blk=17
len=$((2048 * bs))      # extents 0 and 1

volume_create
volume_start
nbdkit_start
random_image "$tmp/in.img" $len
volume_fill "$tmp/in.img" "write"
volume_stop || fail "stop failed"

"$DOWNSTAIRS" verify -d "$tmp/ds2" > "$tmp/verify-clean.out" 2>&1 ||
  { cat "$tmp/verify-clean.out"; fail "verify of a clean region failed"; }
cat "$tmp/verify-clean.out"
grep -q "checked 2048 blocks, 0 bad" "$tmp/verify-clean.out" ||
  fail "clean verify did not check the 2048 written blocks"

python3 - "$tmp/ds2/00/000/001" $((blk * bs + 123)) <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 1]))
PY
rc=0
"$DOWNSTAIRS" verify -d "$tmp/ds2" > "$tmp/verify-bad.out" 2>&1 || rc=$?
cat "$tmp/verify-bad.out"
[ "$rc" != 0 ] || fail "verify exited 0 on a corrupted region"
grep -q "^extent $eid block $blk\$" "$tmp/verify-bad.out" ||
  fail "verify output does not name extent $eid block $blk"
grep -q "1 bad" "$tmp/verify-bad.out" || fail "verify did not count 1 bad block"
# The other replicas are untouched.
"$DOWNSTAIRS" verify -d "$tmp/ds1" > /dev/null 2>&1 ||
  fail "verify of untouched ds1 failed"
echo "verify: clean region passes, a flipped byte is named by extent and block"
