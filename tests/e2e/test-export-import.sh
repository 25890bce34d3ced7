#!/usr/bin/env bash
# crucible-downstairs import/export: a raw image imported into three new
# unencrypted regions is what nbdkit serves; what a client then writes is
# what export gives back from each replica; export -> import -> export is
# the identity; import into an existing region replaces everything (old
# blocks past the new image read as zeroes).
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy cmp
D=$DOWNSTAIRS

# The image: random, a zero MiB, random again, and a tail that is not a
# whole block (6 MiB + 1000 bytes: 7 extents of 1 MiB with --extent-size 256).
img=$tmp/in.img
head -c $((2 << 20)) /dev/urandom > "$img"
head -c $((1 << 20)) /dev/zero >> "$img"
head -c $(((3 << 20) + 1000)) /dev/urandom >> "$img"
size=$(stat -c %s "$img")

uuid=$(cat /proc/sys/kernel/random/uuid)
for r in u1 u2 u3; do
  "$D" import -d "$tmp/$r" -i "$img" -u "$uuid" --extent-size 256 \
    > "$tmp/import.out" 2> "$tmp/import.err" || fail "import into $r"
  grep -q "^imported $img into $tmp/$r ($size bytes)$" "$tmp/import.out" ||
    { cat "$tmp/import.out"; fail "import summary"; }
  # Not a terminal: no redrawn bar, one final summary line.
  grep -Eq "^import: 6(\.0)? MiB in .* s, .*/s$" "$tmp/import.err" ||
    { cat "$tmp/import.err"; fail "import progress summary"; }
  ! grep -q $'\r' "$tmp/import.err" || fail "progress bar drawn on a file"
done
"$D" dump -d "$tmp/u1" > "$tmp/dump"
grep -q 'highest_gen 1$' "$tmp/dump" || { cat "$tmp/dump"; fail "gen not 1"; }
# Every extent written is flushed (dirty 0) at generation 1; extent 2
# (the zero MiB) was never written in the new region.
awk '$1 ~ /^[0-9]+$/ { want = $1 == 2 ? 0 : 1
                       if ($3 != want || $4 != want || $5 != 0) bad = 1 }
     END { exit bad }' "$tmp/dump" ||
  { cat "$tmp/dump"; fail "extents not flushed at gen 1"; }
"$D" verify -d "$tmp/u2" > "$tmp/v" 2>&1 || { cat "$tmp/v"; fail "verify"; }

# Serve the three (no key: unencrypted) and read the volume back.
VOLUME="u1 u2 u3"
volume_start
ds=()
for r in $VOLUME; do ds+=("downstairs=127.0.0.1:${DS_PORT[$r]}"); done
$(nbdkit_cmd) -U - "$PLUGIN" "${ds[@]}" --run "nbdcopy \"\$uri\" $tmp/served.img" \
  >> "$tmp/nbdkit.log" 2>&1 || fail "nbdkit read"
cmp -n "$size" "$img" "$tmp/served.img" || fail "served image differs"
cmp -i "$size" "$tmp/served.img" /dev/zero 2>&1 | grep -q EOF ||
  fail "padding after the image is not zero"
echo "import -> nbdkit: ok"

# A client writes 1 MiB at 5 MiB; every replica then exports it.
head -c $((1 << 20)) /dev/urandom > "$tmp/patch"
cp "$tmp/served.img" "$tmp/expect.img"
dd if="$tmp/patch" of="$tmp/expect.img" bs=1M seek=5 conv=notrunc 2>/dev/null
$(nbdkit_cmd) -U - "$PLUGIN" "${ds[@]}" \
  --run "nbdcopy $tmp/expect.img \"\$uri\"" >> "$tmp/nbdkit.log" 2>&1 ||
  fail "nbdkit write"
for r in $VOLUME; do ds_kill "$r"; done
for r in $VOLUME; do
  "$D" export -d "$tmp/$r" -o "$tmp/$r.img" 2> "$tmp/export.err" ||
    { cat "$tmp/export.err"; fail "export $r"; }
  grep -q '^export: 7 MiB in ' "$tmp/export.err" || fail "export summary"
  cmp "$tmp/expect.img" "$tmp/$r.img" || fail "export of $r differs"
done
echo "nbdkit -> export of every replica: ok"

# export -> import (new region, another block size) -> export: identity.
"$D" import -d "$tmp/v1" -i "$tmp/u1.img" --block-size 512 \
  --extent-size 1024 > /dev/null 2>&1 || fail "re-import"
"$D" export -d "$tmp/v1" -o "$tmp/v1.img" 2> /dev/null || fail "re-export"
cmp "$tmp/u1.img" "$tmp/v1.img" || fail "export -> import -> export differs"
# Exported files are sparse where the region is unwritten (the zero MiB).
[ "$(stat -c %b "$tmp/v1.img")" -lt $((7 << 11)) ] ||
  fail "export is not sparse"
echo "export -> import -> export: ok"

# A block whose bytes no longer match its hash is not exported as good.
printf '\xff\x00\xff' | dd of="$tmp/v1/00/000/000" bs=1 seek=100 \
  conv=notrunc 2> /dev/null
rc=0
"$D" export -d "$tmp/v1" -o "$tmp/bad.img" 2> "$tmp/err" || rc=$?
[ $rc = 1 ] && [ "$(wc -l < "$tmp/err")" = 1 ] &&
  grep -q "^crucible-downstairs: export: $tmp/v1: block 0: data does not match its hash" "$tmp/err" ||
  { cat "$tmp/err"; fail "export of a corrupt block: exit $rc"; }
echo "corrupt block refused: ok"

# Import a smaller image into an existing region: old data is gone.
head -c $((1 << 20)) /dev/urandom > "$tmp/small.img"
gen=$("$D" dump -d "$tmp/u1" | sed -n 's/.*highest_gen \([0-9]*\)$/\1/p')
"$D" import -d "$tmp/u1" -i "$tmp/small.img" > /dev/null 2>&1 ||
  fail "import into an existing region"
"$D" export -d "$tmp/u1" -o "$tmp/u1b.img" 2> /dev/null || fail "export"
cmp -n $((1 << 20)) "$tmp/small.img" "$tmp/u1b.img" || fail "small image"
cmp -n $((6 << 20)) -i $((1 << 20)) "$tmp/u1b.img" /dev/zero ||
  fail "old data left after the imported image"
"$D" dump -d "$tmp/u1" | grep -q "highest_gen $((gen + 1))\$" ||
  fail "second import did not take a new generation"
"$D" verify -d "$tmp/u1" > /dev/null 2>&1 || fail "verify after re-import"

# Too big an image for an existing region: refused, region unchanged.
head -c $((8 << 20)) /dev/urandom > "$tmp/big.img"
rc=0
"$D" import -d "$tmp/u1" -i "$tmp/big.img" 2> "$tmp/err" || rc=$?
[ $rc = 1 ] && [ "$(wc -l < "$tmp/err")" = 1 ] &&
  grep -q 'image is larger than the region' "$tmp/err" ||
  { cat "$tmp/err"; fail "big image: exit $rc"; }
"$D" export -d "$tmp/u1" -o "$tmp/u1c.img" 2> /dev/null || fail "export"
cmp "$tmp/u1b.img" "$tmp/u1c.img" || fail "refused import changed the region"
echo "import into an existing region: ok"
