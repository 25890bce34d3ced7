#!/usr/bin/env bash
# A volume written with key A cannot be opened with key B: nbdkit refuses
# to start with "key does not match", and never returns plaintext.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp

volume_create
volume_start
nbdkit_start

len=$((4 * 1024 * 1024))
random_image "$tmp/in.img" $len
volume_fill "$tmp/in.img" "nbdcopy in"
nbdkit_stop || fail "nbdkit stop failed"

make_key "$tmp/keyB"
cmp -s "$KEYFILE" "$tmp/keyB" && fail "test bug: keys are equal"
: > "$tmp/nbdkit.log"
if nbdkit_start key=+"$tmp/keyB" 2>/dev/null; then
  # Refusing to start is expected; serving is tolerated only if every read
  # fails.  Never may the plaintext come back.
  if timeout 60 nbdcopy "$URI" "$tmp/out.img" 2>/dev/null; then
    cmp -s -n $len "$tmp/in.img" "$tmp/out.img" &&
      fail "plaintext returned with the wrong key"
    fail "reads succeed with the wrong key"
  fi
  nbdkit_stop || true
fi
grep -q "key does not match" "$tmp/nbdkit.log" ||
  { cat "$tmp/nbdkit.log"; fail "nbdkit log lacks 'key does not match'"; }

# The right key still works afterwards.
nbdkit_start || fail "nbdkit did not start with the right key"
volume_check "$tmp/in.img" "data differs with the right key"
echo "wrong key refused"
