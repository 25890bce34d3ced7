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
random_image "$tmp/in.img" $len
volume_fill "$tmp/in.img" "nbdcopy in"
volume_stop || fail "stopping the volume failed"

volume_start
nbdkit_start || fail "nbdkit did not start on the restarted volume"
volume_check "$tmp/in.img" "data differs after restart"

# And a second round: overwrite part, restart only nbdkit.
random_image "$tmp/patch.img" 1048576
nbdsh_run -u "$URI" -c "
h.pwrite(open('$tmp/patch.img', 'rb').read(), 4096)
h.flush()" || fail "overwrite failed"
dd if="$tmp/patch.img" of="$tmp/in.img" bs=4096 seek=1 conv=notrunc status=none
nbdkit_stop || fail "nbdkit stop failed"
nbdkit_start || fail "nbdkit did not restart"
volume_check "$tmp/in.img" "data differs after nbdkit restart"
echo "restart OK"
