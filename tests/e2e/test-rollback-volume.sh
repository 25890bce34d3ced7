#!/usr/bin/env bash
# Whole-volume rollback with state=FILE: all three regions are copied
# (cp -a) while stopped, newer data is written and flushed, and all three
# old copies are put back.  Every replica is consistent and authentic, so
# only the upstairs' state file can tell: nbdkit refuses to start with a
# "rollback" error naming both sets of numbers; accept-rollback=true
# starts anyway, serves the old data and rewrites the state file, after
# which a plain start works again.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp

bs=4096
len=$((300 * bs))       # extent 0
random_image "$tmp/old.img" $len
random_image "$tmp/new.img" $len
state=$tmp/volume.state

volume_create
volume_start
nbdkit_start state="$state" || fail "first start failed"
[ -f "$state" ] || fail "state file not created on first use"
volume_fill "$tmp/old.img" "writing old data"
volume_stop || fail "stop failed"
for i in $VOLUME; do cp -a "$tmp/$i" "$tmp/$i.old"; done
old_state=$(cat "$state")

volume_start
nbdkit_start state="$state" || fail "second start failed"
volume_fill "$tmp/new.img" "writing new data"
volume_stop || fail "stop failed"
[ "$(cat "$state")" != "$old_state" ] ||
  fail "state file did not move on after a flush: $old_state"
echo "state before: $old_state; after: $(cat "$state")"

# Roll the whole volume back.
for i in $VOLUME; do
  rm -rf "${tmp:?}/$i"
  cp -a "$tmp/$i.old" "$tmp/$i"
done

volume_start
: > "$tmp/nbdkit.log"
if nbdkit_start state="$state" 2>/dev/null; then
  fail "nbdkit started on a rolled-back volume"
fi
grep "rollback" "$tmp/nbdkit.log" | head -n 1
grep -q "rollback.*gen [0-9]* flush [0-9]*.*gen [0-9]* flush [0-9]*" \
  "$tmp/nbdkit.log" || fail "no 'rollback' error with both sets of numbers"

# The operator accepts the rollback: the old data is served.
nbdkit_start state="$state" accept-rollback=true ||
  fail "accept-rollback=true did not start"
rm -f "$tmp/out.img"
timeout 120 nbdcopy "$URI" "$tmp/out.img" || fail "read back failed"
cmp -n $len "$tmp/old.img" "$tmp/out.img" ||
  fail "accept-rollback did not serve the old data"
nbdkit_stop || fail "nbdkit stop failed"
# The state file was rewritten: a plain start works now.
nbdkit_start state="$state" || fail "start after accepting failed"
nbdkit_stop || fail "nbdkit stop failed"
echo "whole-volume rollback refused; accepted with accept-rollback=true"
