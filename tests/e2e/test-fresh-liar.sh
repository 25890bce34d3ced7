#!/usr/bin/env bash
# Freshness in the default read mode (issue 12): a replica that claims a
# newer version of a block than it can back must not change what a read
# returns, and is faulted as a liar.
#
# The lie: 24 blocks over three extents are written (pattern P) and
# flushed, so each holds exactly one context row on every replica.  With
# everything stopped, ds1's row of each of those blocks gets version + 1
# (sqlite3 on its extent database); nonce, tag, hash, on_disk_hash and
# the data stay.  ds1 now claims a version newer than ds2's and ds3's
# (same generation, one write later) for bytes that authenticate only
# under the old one: GCM binds the version (AAD = uuid, LBA, version), so
# it cannot produce authentic data for what it claims.  The downstairs
# itself cannot notice (it holds no key: the version is in neither hash,
# and on_disk_hash still matches the bytes), which the test checks with
# `crucible-downstairs verify`; the extent metadata is untouched, so
# nothing differs at start-up either (`dump`).
#
# Then nbdkit with default parameters; each block is read 7 times in a
# row (reads rotate over the replicas: most blocks are first served by an
# honest replica, whose read then meets ds1's newer claim).  Asserted:
#   - every read returns P;
#   - ds1 is faulted at least once (its "faults" counter in the stats
#     file, or a "downstairs H:P: faulted" line naming it);
#   - ds2 and ds3, which told the truth, are never faulted.
# (Today's verify=one code reads one replica, fails the tag when that is
# ds1, reads another and heals ds1: the data is right but nobody is
# faulted, so the second check fails.)
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh sqlite3 python3

bs=4096
ebl=$DS_EXTENT_SIZE
lbas=$(for e in 0 5 10; do
  for k in 0 1 2 3 100 101 700 1023; do echo $((e * ebl + k)); done
done | tr '\n' ' ')
nreads=7 # per block, in a row; not a multiple of 3, so first reads rotate

cat > "$tmp/blocks.py" <<EOF
bs = $bs
lbas = [int(x) for x in "$lbas".split()]
def pat(lba):
    s = b"P lba %d " % lba
    return (s * (bs // len(s) + 1))[:bs]
EOF

volume_create
volume_start
nbdkit_start || fail "nbdkit did not start"
nbdsh_run -u "$URI" -c "$(cat "$tmp/blocks.py")
for lba in lbas:
    h.pwrite(pat(lba), lba * bs)
h.flush()
" || fail "writing the blocks failed"
volume_stop || fail "stop failed"

# The lie, extent by extent: version + 1 on ds1's row of each block.
for e in 0 5 10; do
  f=$(printf '%02X/%03X/%03X.db' $(((e >> 24) & 0xff)) \
    $(((e >> 12) & 0xfff)) $((e & 0xfff)))
  blocks=$(for l in $lbas; do
    [ $((l / ebl)) = $e ] && echo $((l % ebl))
  done | paste -sd, -)
  n=$(sqlite3 -batch "$tmp/ds1/$f" \
    "SELECT count(*) FROM block_context WHERE block IN ($blocks)")
  [ "$n" = 8 ] ||
    fail "test bug: extent $e of ds1 has $n rows for its 8 blocks, want 8"
  sqlite3 -batch "$tmp/ds1/$f" "UPDATE block_context SET version = version + 1
    WHERE block IN ($blocks)" || fail "editing ds1's extent $e failed"
  for i in ds1 ds2; do
    sqlite3 -batch "$tmp/$i/$f" "SELECT block, version FROM block_context
      WHERE block IN ($blocks) ORDER BY block" > "$tmp/ver-$i-$e"
  done
  paste -d' ' "$tmp/ver-ds1-$e" "$tmp/ver-ds2-$e" |
    awk -F'[| ]' '$2 != $4 + 1 { exit 1 }' ||
    fail "test bug: ds1's versions in extent $e are not ds2's + 1"
done
echo "ds1 claims version + 1 for $(echo "$lbas" | wc -w) blocks, e.g. lba 0: $(head -n 1 "$tmp/ver-ds1-0" | cut -d'|' -f2) vs $(head -n 1 "$tmp/ver-ds2-0" | cut -d'|' -f2)"
"$DOWNSTAIRS" verify -d "$tmp/ds1" > "$tmp/verify.out" 2>&1 ||
  { cat "$tmp/verify.out" >&2; fail "test bug: the downstairs sees the lie"; }
"$DOWNSTAIRS" dump -d "$tmp/ds1" -d "$tmp/ds2" -d "$tmp/ds3" \
  > "$tmp/dump.txt" 2>&1 || fail "dump failed"
grep -q '\*' "$tmp/dump.txt" &&
  { cat "$tmp/dump.txt" >&2; fail "test bug: ds1's extents differ at start"; }

volume_start
: > "$tmp/nbdkit.log"
nbdkit_start stats="$tmp/stats.json" || fail "nbdkit did not start"
nbdsh_run -u "$URI" -c "$(cat "$tmp/blocks.py")
import sys
wrong = 0
for lba in lbas:
    for r in range($nreads):
        d = h.pread(bs, lba * bs)
        if d != pat(lba):
            wrong += 1
            print('lba %d read %d: wrong data %r' % (lba, r, d[:16]))
print('reads %d: %d wrong' % (len(lbas) * $nreads, wrong))
sys.exit(1 if wrong else 0)
" || fail "a read returned wrong data or failed"

# faults ADDR: the stats file's fault count of the downstairs at ADDR.
faults () {
  stats_q "[x['faults'] for x in ds if x['address'] == '$1'][0]"
}
addr1=127.0.0.1:${DS_PORT[ds1]}
# The stats file is rewritten at each change and every second: give the
# last change a moment to land (bounded), then look.
stats_wait "[x['faults'] for x in ds if x['address'] == '$addr1'][0] >= 1" 5 ||
  true
n1=$(faults "$addr1")
grep "downstairs $addr1: faulted" "$tmp/nbdkit.log" | head -n 3
echo "ds1 faults: $n1; $(grep -c "healed downstairs $addr1" "$tmp/nbdkit.log") heal lines name it"
[ "$n1" -ge 1 ] || grep -q "downstairs $addr1: faulted" "$tmp/nbdkit.log" ||
  fail "the replica claiming newer versions it cannot back was never faulted"
for i in ds2 ds3; do
  a=127.0.0.1:${DS_PORT[$i]}
  if [ "$(faults "$a")" != 0 ] ||
     grep -q "downstairs $a: faulted" "$tmp/nbdkit.log"; then
    fail "$i told the truth but was faulted"
  fi
done
nbdkit_stop || fail "nbdkit stop failed"
echo "a replica claiming newer versions: every read returned the right data, the liar was faulted"
