#!/usr/bin/env bash
# timeout: 900
# Build the libFuzzer harnesses of tests/fuzz/ (make fuzz-build: clang,
# ASan, UBSan) and run each for FUZZ_SECONDS (default 15: make check
# must fit CI's 20 minutes; FUZZ_SECONDS=600 for a deeper run) from its seed
# corpus in tests/fuzz/corpus/; any crash, sanitizer report, leak or
# timeout fails the test.  New inputs go to a temporary corpus (the
# committed seeds stay as they are); a crashing input is kept in
# build/fuzz/crashes/ for reproduction:
#   build/fuzz/fuzz_proto build/fuzz/crashes/fuzz_proto-crash-...
# Skipped (77) when clang or its libFuzzer runtime is missing.
. "$(dirname "$0")/functions.sh"
requires clang make

secs=${FUZZ_SECONDS:-15}
probe=$tmp/probe.c
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)
{ (void) d; (void) n; return 0; }' > "$probe"
clang -fsanitize=fuzzer,address,undefined -o "$tmp/probe" "$probe" \
  > "$tmp/probe.out" 2>&1 || skip "clang has no libFuzzer runtime"

make -s fuzz-build > "$tmp/build.out" 2>&1 ||
  { tail -n 20 "$tmp/build.out" >&2; fail "make fuzz-build failed"; }

crashes=$top/build/fuzz/crashes
mkdir -p "$crashes"
bad=
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  bin=build/fuzz/$name
  seeds=tests/fuzz/corpus/$name
  [ -d "$seeds" ] || fail "no seed corpus $seeds"
  mkdir -p "$tmp/corpus-$name" "$tmp/run-$name"
  extra=()
  case $name in
    fuzz_proto) extra=(-max_len=9000) ;;        # a 4096-byte WRITE fits
    fuzz_ds_request) extra=(-max_len=8192) ;;
  esac
  # TMPDIR: fuzz_ds_request makes its region there; removed with $tmp.
  if TMPDIR=$tmp/run-$name "$bin" -max_total_time="$secs" -timeout=30 \
       -rss_limit_mb=3072 -print_final_stats=1 \
       -artifact_prefix="$crashes/$name-" "${extra[@]}" \
       "$tmp/corpus-$name" "$seeds" > "$tmp/fuzz-$name.out" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
             "$tmp/fuzz-$name.out")
    cov=$(grep -o 'cov: [0-9]*' "$tmp/fuzz-$name.out" | tail -n 1)
    echo "$name: ${runs:-?} inputs in ${secs}s, $cov, no crash"
  else
    echo "$name: FAILED (crash input in $crashes):" >&2
    grep -E -A25 'ERROR:|runtime error|deadly signal|fuzz_ds_request:' \
      "$tmp/fuzz-$name.out" | head -n 40 >&2
    bad="$bad $name"
  fi
done
[ -z "$bad" ] || fail "crash in:$bad"
echo "all fuzz harnesses ran ${secs}s each without a crash"
