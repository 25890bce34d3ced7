#!/usr/bin/env bash
# bench/snapshot.sh: what a snapshot costs (issue 17).
#
#   bash bench/snapshot.sh
#
# One encrypted 1 GiB volume of the default geometry (8 extents of
# 128 MiB), three downstairs and nbdkit + crucible.so on 127.0.0.1 under
# BENCH_TMPDIR (default /tmp), filled once with random data (nbdcopy,
# flushed).  Reported:
#   a. `crucible-admin snapshot create` wall time, on the clean volume and
#      after 64 MiB of unflushed writes (the create is a flush);
#   b. the latency of one 4 KiB write to each extent right after a
#      snapshot (the first change: the extent's 128 MiB are copied into
#      the snapshot first, or reflinked where the filesystem can) and of
#      a second write to the same extent (no copy), median and max;
#   c. the space the snapshot then uses (snapshot list: bytes).
# Numbers are of this machine, this filesystem and this build only.
set -e
export TMPDIR=${BENCH_TMPDIR:-/tmp}
. "$(dirname "$0")/../tests/e2e/functions.sh"
DS_EXTENT_SIZE=default
DS_EXTENT_COUNT=default
ASOCK=$tmp/admin.sock
make_key "$KEYFILE"
volume_create
volume_start
nbdkit_start admin="$ASOCK"
fstype=$(df -T "$tmp" | awk 'NR == 2 {print $2}')
head -c 1G /dev/urandom > "$tmp/fill.img"
timeout 300 nbdcopy --flush "$tmp/fill.img" "$URI"
rm -f "$tmp/fill.img"

ms () { date +%s%N; }
t0=$(ms); adm snapshot create clean > /dev/null; t1=$(ms)
create_clean=$(( (t1 - t0) / 1000000 ))
head -c 64M /dev/urandom > "$tmp/d.img"
PATH=/usr/bin:$PATH python3 - "$SOCK" "$tmp/d.img" <<'EOF'
import sys, nbd
h = nbd.NBD(); h.connect_unix(sys.argv[1])
d = open(sys.argv[2], "rb").read()
for i in range(0, len(d), 1 << 20):   # 64 MiB spread over extents 2..3
    h.pwrite(d[i:i + (1 << 20)], (256 << 20) + i)
h.shutdown()
EOF
t0=$(ms); adm snapshot create dirty > /dev/null; t1=$(ms)
create_dirty=$(( (t1 - t0) / 1000000 ))

PATH=/usr/bin:$PATH python3 - "$SOCK" > "$tmp/lat.txt" <<'EOF'
import os, sys, time, nbd
h = nbd.NBD(); h.connect_unix(sys.argv[1])
buf = os.urandom(4096)
first, second = [], []
for e in range(8):
    off = e * (128 << 20) + (1 << 20)
    t = time.monotonic(); h.pwrite(buf, off); first.append(time.monotonic() - t)
    t = time.monotonic(); h.pwrite(buf, off + 4096); second.append(time.monotonic() - t)
h.shutdown()
ms = lambda v: "%.1f" % (v * 1000)
first.sort(); second.sort()
print(ms(first[4]), ms(first[-1]), ms(second[4]), ms(second[-1]))
EOF
read -r f_med f_max s_med s_max < "$tmp/lat.txt"
bytes=$(adm --json snapshot list | python3 -c 'import json,sys; d=json.load(sys.stdin); print([s["bytes"] for s in d["snapshots"] if s["name"] == "dirty"][0])')
volume_stop
printf 'filesystem %s, 1 GiB volume (8 x 128 MiB extents), full\n' "$fstype"
printf 'snapshot create, clean volume:            %6d ms\n' "$create_clean"
printf 'snapshot create, 64 MiB unflushed:        %6d ms\n' "$create_dirty"
printf 'first 4 KiB write per extent after it:    %6s ms median, %s ms max\n' "$f_med" "$f_max"
printf 'second write to the same extent:          %6s ms median, %s ms max\n' "$s_med" "$s_max"
printf 'space used by the snapshot (8 extents):   %6d MiB\n' "$((bytes / 1048576))"
