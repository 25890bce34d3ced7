#!/usr/bin/env bash
# Data written and flushed survives stopping nbdkit and all three
# downstairs and starting them again.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy cmp

volume_create
volume_start
nbdkit_start

len=$((16 * 1024 * 1024))
head -c $len /dev/urandom > "$tmp/in.img"
timeout 120 nbdcopy "$tmp/in.img" "$URI" || fail "nbdcopy in failed"
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"
volume_stop || fail "stopping the volume failed"

volume_start
nbdkit_start || fail "nbdkit did not start on the restarted volume"
timeout 120 nbdcopy "$URI" "$tmp/out.img" || fail "nbdcopy out failed"
cmp -n $len "$tmp/in.img" "$tmp/out.img" || fail "data differs after restart"

# And a second round: overwrite part, restart only nbdkit.
head -c 1048576 /dev/urandom > "$tmp/patch.img"
nbdsh_run -u "$URI" -c "
h.pwrite(open('$tmp/patch.img', 'rb').read(), 4096)
h.flush()" || fail "overwrite failed"
dd if="$tmp/patch.img" of="$tmp/in.img" bs=4096 seek=1 conv=notrunc status=none
nbdkit_stop || fail "nbdkit stop failed"
nbdkit_start || fail "nbdkit did not restart"
timeout 120 nbdcopy "$URI" "$tmp/out.img" || fail "nbdcopy out failed"
cmp -n $len "$tmp/in.img" "$tmp/out.img" || fail "data differs after nbdkit restart"
echo "restart OK"
