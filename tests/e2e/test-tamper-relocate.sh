#!/usr/bin/env bash
# A downstairs that moves blocks around cannot make a read return another
# block's data.  With the volume stopped, ds1 swaps blocks 5 and 6: the
# data in its extent file AND their rows in block_context (so its own
# on-disk hashes still match, and each block's hash over nonce, tag and
# ciphertext is still right).  Only the GCM tag, whose associated data
# binds the LBA, catches it: reads of both LBAs still return the right
# data, and the nbdkit log shows "bad tag" for ds1 at those LBAs.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp python3 sqlite3

bs=4096
a=5
b=6
len=$((64 * bs))

volume_create
volume_start
nbdkit_start
random_image "$tmp/in.img" $len
volume_fill "$tmp/in.img" "write"
volume_stop || fail "stop failed"

ext=$tmp/ds1/00/000/000
python3 - "$ext" $a $b $bs <<'PY' || fail "swapping the data failed"
import sys
path, a, b, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(path, "r+b") as f:
    f.seek(a * bs); da = f.read(bs)
    f.seek(b * bs); db = f.read(bs)
    assert da != db and any(da) and any(db), "blocks not written?"
    f.seek(a * bs); f.write(db)
    f.seek(b * bs); f.write(da)
PY
rows () { sqlite3 "$ext.db" "SELECT block, version, hex(tag) FROM block_context WHERE block IN ($a, $b) ORDER BY block"; }
before=$(rows)
[ "$(echo "$before" | wc -l)" = 2 ] || fail "expected one context per block, got: $before"
sqlite3 "$ext.db" "UPDATE block_context SET block = CASE block WHEN $a THEN $b ELSE $a END WHERE block IN ($a, $b)" ||
  fail "swapping the contexts failed"
after=$(rows)
[ "$before" != "$after" ] || fail "contexts were not swapped"
echo "ds1 contexts before: $before / after: $after"

volume_start
nbdkit_start || fail "nbdkit did not start"
nbdsh_run -u "$URI" -c "
import sys
data = open('$tmp/in.img', 'rb').read()
for lba in ($a, $b):      # one LBA at a time: reads rotate over replicas
    for i in range(9):
        if h.pread($bs, lba * $bs) != data[lba * $bs:(lba + 1) * $bs]:
            print('read %d of lba %d returned WRONG data' % (i, lba))
            sys.exit(1)
" || fail "a relocated block was returned as the other one"
for lba in $a $b; do
  grep -E "downstairs 127\.0\.0\.1:${DS_PORT[ds1]}: read lba $lba: bad tag" \
    "$tmp/nbdkit.log" || fail "no 'bad tag' log line for ds1 at lba $lba"
done
volume_check "$tmp/in.img" "read back differs"
echo "relocated blocks rejected by the tag (LBA in the associated data)"
