#!/usr/bin/env bash
# A clean stop flushes: writes to 6 extents with no flush from the client,
# then SIGTERM (and, second round, SIGINT) to nbdkit.  Afterwards
# `crucible-downstairs dump` shows every extent clean and identical on the
# three regions, the next start logs no "dirty at open" on any downstairs
# and reconciles nothing, and the data reads back.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh python3

volume_create
volume_start

# one_round SIG BYTE: write BYTE to 6 extents (4 MiB each) unflushed, stop
# nbdkit with SIG, check the regions.
one_round () {
  local sig=$1 byte=$2 rc=0 d
  nbdkit_start || fail "nbdkit start"
  nbdsh_run -u "$URI" -c "
for e in range(6):
    h.pwrite(bytes([$byte]) * 65536, e * (4 << 20) + 12288)" ||
    fail "write"
  stop_pid "$NBDKIT_PID" "$sig" || rc=$?
  NBDKIT_PID=
  [ "$rc" = 0 ] || fail "nbdkit exit status $rc after SIG$sig"
  for d in ds1 ds2 ds3; do ds_kill "$d"; done
  "$DOWNSTAIRS" dump -d "$tmp/ds1" -d "$tmp/ds2" -d "$tmp/ds3" \
    > "$tmp/dump" 2>&1 || { cat "$tmp/dump" >&2; fail "dump"; }
  # Rows are "EID | gen flush dirty | ..."; '*' marks a difference.
  awk -F'|' '$1 ~ /^ *[0-9]+ *$/ {
      for (i = 2; i <= NF; i++) { split($i, f, " "); if (f[3] != 0) bad = 1 }
      if ($NF ~ /\*/) bad = 1 }
    END { exit bad }' "$tmp/dump" ||
    { cat "$tmp/dump" >&2; fail "SIG$sig: extents dirty or different after the stop"; }
  echo "SIG$sig: every extent clean and identical:"
  sed -n '3,9p' "$tmp/dump"
  : > "$tmp/ds1.log"; : > "$tmp/ds2.log"; : > "$tmp/ds3.log"
  volume_start
}

one_round TERM 0x61
one_round INT 0x62
n=$(wc -l < "$tmp/nbdkit.log")
NBDKIT_VERBOSE=1 nbdkit_start || fail "nbdkit restart"
if grep -h "dirty at open" "$tmp"/ds?.log; then
  fail "a downstairs opened a dirty extent"
fi
rec=$(tail -n "+$((n + 1))" "$tmp/nbdkit.log" | grep -i "reconcil" || true)
echo "reconciliation lines: ${rec:-none}"
echo "$rec" | grep -E "reconciliation: [1-9][0-9]* of [0-9]+ extents to compare" &&
  fail "the start reconciled extents"
echo "$rec" | grep -q "reconciliation: 0 of [0-9]* extents to compare" ||
  fail "no reconciliation plan was logged (run with -v?)"
echo "$rec" | grep -Eq "reconcile extent [0-9]+" && fail "an extent was reconciled"
nbdsh_run -u "$URI" -c "
for e in range(6):
    assert h.pread(65536, e * (4 << 20) + 12288) == b'\x62' * 65536" ||
  fail "data"
echo "ok"
