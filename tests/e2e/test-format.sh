#!/usr/bin/env bash
# One style, checked (docs/DESIGN.md "Layout"): every C file of the
# product, its tools and its unit tests is as clang-format formats it
# with the tree's .clang-format.  Pinned to clang-format 14 (Debian 12's,
# installed by scripts/deps.sh): other versions format differently, so
# they skip rather than fail.  Fix drift with `make format`.
. "$(dirname "$0")/functions.sh"
requires clang-format
ver=$(clang-format --version)
echo "$ver" | grep -Eq 'version 14\.' || skip "clang-format 14 pinned, have: $ver"
cd "$top" || fail "cd $top"
mapfile -t files < <(find common plugin downstairs admin bench tests/unit \
  tests/tools tests/fuzz -name '*.[ch]' | sort)
[ "${#files[@]}" -gt 50 ] || fail "only ${#files[@]} C files found"
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
[ "${#bad[@]}" -eq 0 ] ||
  fail "not clang-formatted (make format): ${bad[*]}"
echo "${#files[@]} C files formatted: ok"
