#!/usr/bin/env bash
# No leaks and no memory errors in the end-to-end path, under valgrind:
# nbdkit with crucible.so and one downstairs run under memcheck while a
# client writes (aligned and unaligned), flushes, trims and reads back;
# another downstairs is killed and live-repaired from the one under
# valgrind, so the repair source path runs there too; a snapshot is
# taken and the volume rolled back to it.  Both must exit
# with no memcheck error and no definitely or indirectly lost block.
# (SANITIZE=1 builds are skipped: ASan and valgrind do not mix.)
# timeout: 420
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh valgrind python3
[ "${SANITIZE:-}" = 1 ] && skip "ASan build: valgrind does not apply"

VG=(valgrind --tool=memcheck --leak-check=full
    --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --error-exitcode=99
    --num-callers=30 --suppressions="$top/tests/valgrind.supp")

DS_EXTENT_SIZE=64 DS_EXTENT_COUNT=8 volume_create
ds_start ds2 || fail "ds2 did not start"
ds_start ds3 || fail "ds3 did not start"
p1=$(free_port)
"${VG[@]}" --log-file="$tmp/vg-ds1.txt" "$DOWNSTAIRS" run -d "$tmp/ds1" \
  -p "$p1" -a 127.0.0.1 >> "$tmp/ds1.log" 2>&1 &
vgds=$!
PIDS+=($vgds)
DS_PORT[ds1]=$p1
for i in $(seq 600); do
  ss -Hltn "sport = :$p1" | grep -q . && break
  kill -0 "$vgds" 2>/dev/null || fail "downstairs under valgrind died"
  sleep 0.1
done

# The client: everything runs inside nbdkit --run, so nbdkit exits (and
# valgrind reports) when it is done.
cat > "$tmp/client.sh" <<EOF
set -e
uri=\$1
export PATH=/usr/bin:\$PATH
nbdsh -u "\$uri" -c '
import os
a = os.urandom(256 * 1024)
h.pwrite(a, 0)
h.pwrite(b"u" * 1024, 4608)
h.flush()
h.trim(65536, 131072)
want = bytearray(a)
want[4608:5632] = b"u" * 1024
want[131072:196608] = bytes(65536)
assert h.pread(len(want), 0) == bytes(want), "read back differs"
'
# ds3 misses a write, comes back and is live-repaired from its peers.
kill -KILL ${DS_PID[ds3]}
nbdsh -u "\$uri" -c 'h.pwrite(b"z" * 65536, 262144); h.flush()'
"$DOWNSTAIRS" run -d "$tmp/ds3" -p ${DS_PORT[ds3]} -a 127.0.0.1 \
  >> "$tmp/ds3b.log" 2>&1 &
echo \$! > "$tmp/ds3b.pid"
for i in \$(seq 600); do
  grep -q "live repair of 127.0.0.1:${DS_PORT[ds3]} complete" "$tmp/vg-nbdkit.log" && break
  sleep 0.1
done
grep -q "live repair of 127.0.0.1:${DS_PORT[ds3]} complete" "$tmp/vg-nbdkit.log"
nbdsh -u "\$uri" -c 'assert h.pread(65536, 262144) == b"z" * 65536'
# The admin socket: a status in both formats and one bad request.
"$top/crucible-admin" -s "$tmp/admin.sock" status | grep -q "^volume: healthy"
"$top/crucible-admin" -s "$tmp/admin.sock" --json status | grep -q '"ok":true'
! "$top/crucible-admin" -s "$tmp/admin.sock" frob 2> /dev/null
# A snapshot and a rollback to it (a second upstairs reads the snapshot).
"$top/crucible-admin" -s "$tmp/admin.sock" snapshot create v1 > /dev/null
nbdsh -u "\$uri" -c 'open("$tmp/v1.bin", "wb").write(h.pread(65536, 0))
h.pwrite(b"y" * 65536, 0)
h.flush()'
"$top/crucible-admin" -s "$tmp/admin.sock" snapshot rollback v1 |
  grep -q "^rolled back to v1"
nbdsh -u "\$uri" -c 'assert h.pread(65536, 0) == open("$tmp/v1.bin", "rb").read()'
EOF

# nbdkit --run forks (the server runs in the child): one log per process.
rc=0
NBDKIT_VALGRIND=1 timeout 300 "${VG[@]}" --log-file="$tmp/vg-nbdkit.%p.txt" \
  nbdkit -f -v -U - "$PLUGIN" \
  downstairs=127.0.0.1:$p1 downstairs=127.0.0.1:${DS_PORT[ds2]} \
  downstairs=127.0.0.1:${DS_PORT[ds3]} key=+"$KEYFILE" timeout=20 \
  admin="$tmp/admin.sock" --run "bash $tmp/client.sh \"\$uri\"" > "$tmp/vg-nbdkit.log" 2>&1 || rc=$?
[ -f "$tmp/ds3b.pid" ] && PIDS+=($(cat "$tmp/ds3b.pid"))
DS_PID[ds3]=
[ $rc = 0 ] || {
  tail -n 20 "$tmp/vg-nbdkit.log" >&2
  grep -A25 "definitely lost\|Invalid\|uninitialised" \
    "$tmp"/vg-nbdkit.*.txt | head -60 >&2
  fail "nbdkit under valgrind: exit status $rc (99: memcheck errors)"
}
rc=0
stop_pid "$vgds" || rc=$?
[ $rc = 0 ] || {
  grep -A25 "definitely lost\|Invalid\|uninitialised" "$tmp/vg-ds1.txt" |
    head -60 >&2
  fail "downstairs under valgrind: exit status $rc (99: memcheck errors)"
}
n=0
for f in "$tmp"/vg-nbdkit.*.txt "$tmp/vg-ds1.txt"; do
  b=$(basename "$f" .txt)
  # A child that exec'd (the --run shell) leaves a log without summary.
  if ! grep -q "ERROR SUMMARY" "$f" && ! grep -q "Process terminating" "$f"
  then
    continue
  fi
  grep -q "ERROR SUMMARY: 0 errors" "$f" ||
    { tail -n 40 "$f" >&2; fail "$b: memcheck errors or leaks"; }
  grep -E "definitely lost|indirectly lost|All heap blocks" "$f" |
    sed "s/^==[0-9]*== */  $b: /"
  n=$((n + 1))
done
[ $n -ge 3 ] || fail "expected valgrind logs of nbdkit (2 processes) and ds1, got $n"
echo "valgrind: nbdkit+crucible.so and a downstairs: no errors, no leaks"
