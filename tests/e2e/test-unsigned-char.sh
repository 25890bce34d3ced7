#!/usr/bin/env bash
# make check-unsigned-char inside make check: every unit test built with
# -funsigned-char (char is unsigned on arm64, the Raspberry Pi's) in
# build/uchar/, so code that relies on a signed char fails on x86 too.
. "$(dirname "$0")/functions.sh"
requires make cc
timeout 280 make -s check-unsigned-char > "$tmp/out" 2>&1 ||
  { tail -n 30 "$tmp/out" >&2; fail "make check-unsigned-char failed"; }
cat "$tmp/out"
tail -n 1 "$tmp/out" | grep -Eq '^[1-9][0-9]* passed, 0 failed$' ||
  fail "no unit test ran"
