#!/usr/bin/env bash
# Downstairs never see plaintext: after writing recognisable plaintext and
# stopping everything, no file of any region (extent data, .db, -wal)
# contains the marker, although the data is there and reads back.  The
# key never appears in a log.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy grep cmp du

volume_create
volume_start
nbdkit_start

# 32-byte records, each starting with the 16-byte marker, so any 64-byte
# run of plaintext holds a whole marker.
marker=CRUCIBLEPLAINTXT
len=$((8 * 1024 * 1024))
yes "${marker}0123456789abcde" | head -c $len > "$tmp/plain.img"
grep -qa "$marker" "$tmp/plain.img" || fail "test bug: no marker in input"

volume_fill "$tmp/plain.img" "nbdcopy in"
volume_check "$tmp/plain.img" "data read back differs"
rm -f "$tmp/out.img"
# While running (WAL files still present) ...
hits=$(grep -rac "$marker" "$tmp/ds1" "$tmp/ds2" "$tmp/ds3" | grep -v ':0$' || true)
[ -z "$hits" ] || fail "plaintext marker found in a live region: $hits"
volume_stop || fail "stopping the volume failed"

# ... and after a clean stop.
for ds in $VOLUME; do
  # The data went somewhere: each replica holds at least the 8 MiB.
  kib=$(du -sk "$tmp/$ds" | cut -f1)
  [ "$kib" -ge 8192 ] || fail "$ds holds only ${kib} KiB after an 8 MiB write"
  hits=$(grep -rac "$marker" "$tmp/$ds" | grep -v ':0$' || true)
  [ -z "$hits" ] || fail "plaintext marker found in region $ds: $hits"
done
# Nor does the key show up in any log.
if grep -rqF "$(cat "$KEYFILE")" "$tmp"/*.log; then
  fail "the key appears in a log: $(grep -rlF "$(cat "$KEYFILE")" "$tmp"/*.log)"
fi
echo "no plaintext in $(find "$tmp/ds1" "$tmp/ds2" "$tmp/ds3" -type f | wc -l) region files"
