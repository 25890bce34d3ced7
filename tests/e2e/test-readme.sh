#!/usr/bin/env bash
# README's quick start works as written: its shell block (nbdinfo, nbdcopy
# in and out, cmp) and its nbdsh block run against a volume of the
# default geometry, with the URI of the test's volume in place of
# nbd://localhost:10809.  Also: the README's first two lines are
# `make run` and `make check`.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdinfo nbdsh python3 cmp

DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=default

sed -n 3p README.md | grep -q '^    make run ' || fail "README line 3 is not make run"
sed -n 4p README.md | grep -q '^    make check ' || fail "README line 4 is not make check"

# block N LANG: the Nth ``` LANG block of the quick start section.
block () {
  awk -v want="$1" -v lang="$2" '
    /^## / { in_qs = ($0 == "## Quick start") }
    in_qs && $0 == "```" lang { n++; if (n == want) { on = 1; next } }
    on && /^```$/ { exit }
    on { print }' README.md
}

volume_create
volume_start
nbdkit_start || fail "nbdkit start"
block 1 sh > "$tmp/qs.sh"
block 1 python > "$tmp/qs.py"
[ -s "$tmp/qs.sh" ] && [ -s "$tmp/qs.py" ] || fail "quick start blocks not found"
sed -i "s|nbd://localhost:10809|$URI|g; s|test.img|$tmp/test.img|g" "$tmp/qs.sh"
(cd "$tmp" && PATH=/usr/bin:$PATH bash -e "$tmp/qs.sh") > "$tmp/qs.out" 2>&1 ||
  { cat "$tmp/qs.out"; fail "the quick start's shell block failed"; }
tail -n 1 "$tmp/qs.out" | grep -qx same || { cat "$tmp/qs.out"; fail "no 'same'"; }
# The nbdsh block, each line as nbdsh would run it; the commented value of
# the pread line is checked.
args=()
while IFS= read -r line; do
  code=${line%%#*}
  code=${code%"${code##*[![:space:]]}"}
  want=$(sed -n 's/.*# *//p' <<< "$line")
  if [ -n "$want" ]; then
    args+=(-c "assert ($code) == $want, ($code)")
  else
    args+=(-c "$code")
  fi
done < "$tmp/qs.py"
nbdsh_run -u "$URI" "${args[@]}" || fail "the quick start's nbdsh block failed"
echo "README quick start: ok"
