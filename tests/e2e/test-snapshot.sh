#!/usr/bin/env bash
# Snapshots through the admin socket on a volume of the default geometry
# (1 GiB, 128 MiB extents; unencrypted, so each replica's snapshot can be
# exported offline and compared): `snapshot create` is a barrier (the
# data nbdcopy wrote and flushed before it is in it, the writes after it
# are not), list shows it on every replica with its flush number, a taken
# name / an unknown delete / a bad name are refused without faulting
# anyone; a downstairs killed with kill -9 while the writes after a
# snapshot copy extents into it, then a snapshot taken degraded (on the
# two active replicas), then nbdkit killed with kill -9 in the middle of
# a copy; after restarting everything, delete works, every replica
# verifies clean (snapshot copies too) and every replica that holds a
# snapshot exports exactly its contents.
. "$(dirname "$0")/functions.sh"
requires nbdkit nbdcopy python3 timeout cmp
[ -x "$ADMIN" ] || fail "crucible-admin not built"
ASOCK=$tmp/admin.sock
MiB=$((1024 * 1024))

VOL_UUID=$(cat /proc/sys/kernel/random/uuid)
for d in ds1 ds2 ds3; do
  "$DOWNSTAIRS" create -d "$tmp/$d" -u "$VOL_UUID" >> "$tmp/create.log" 2>&1 ||
    fail "create $d"
done
volume_start
export NBDKIT_NOKEY=1
# snapshot= takes a snapshot name (test-snapshot-serve.sh serves one).
if timeout 20 nbdkit -U - "$PLUGIN" "downstairs=127.0.0.1:${DS_PORT[ds1]}" \
     "downstairs=127.0.0.1:${DS_PORT[ds2]}" \
     "downstairs=127.0.0.1:${DS_PORT[ds3]}" snapshot=a/b --run true \
     > "$tmp/snapparam.log" 2>&1; then
  fail "snapshot=a/b accepted"
fi
grep -q "snapshot=a/b: not a snapshot name" "$tmp/snapparam.log" ||
  fail "snapshot=a/b: $(cat "$tmp/snapparam.log")"
if timeout 20 nbdkit -U - "$PLUGIN" "downstairs=127.0.0.1:${DS_PORT[ds1]}" \
     "downstairs=127.0.0.1:${DS_PORT[ds2]}" \
     "downstairs=127.0.0.1:${DS_PORT[ds3]}" snapshot=s1 gen=7 --run true \
     > "$tmp/snapparam.log" 2>&1; then
  fail "snapshot= with gen= accepted"
fi
grep -q "snapshot=s1: cannot be combined with gen=" "$tmp/snapparam.log" ||
  fail "snapshot= gen=: $(cat "$tmp/snapparam.log")"
nbdkit_start admin="$ASOCK"

# put IMG OFFSET: write IMG at OFFSET bytes of the volume, then flush.
put () { volume_put "$1" "$2" "$SOCK" || fail "write $1 at $2"; }

# expect: the volume's image as a snapshot must hold it (a sparse file).
expect_new () { truncate -s 1G "$tmp/$1.img"; }
overlay () { # overlay NAME IMG OFFSET: IMG into the expected image NAME
  dd if="$2" of="$tmp/$1.img" bs=1M seek="$(($3 / MiB))" conv=notrunc \
    status=none
}

random_image "$tmp/a.img" $((8 * MiB))
random_image "$tmp/a2.img" $((4 * MiB))
random_image "$tmp/b.img" $((4 * MiB))
random_image "$tmp/c.img" $((4 * MiB))
random_image "$tmp/d.img" $((64 * MiB))
expect_new s1
put "$tmp/a.img" 0
put "$tmp/a2.img" $((130 * MiB)) # extent 1
overlay s1 "$tmp/a.img" 0
overlay s1 "$tmp/a2.img" $((130 * MiB))

# s1: everything flushed before it.
adm snapshot create s1 > "$tmp/c1.txt" || fail "snapshot create s1"
grep -q '^snapshot s1 created at flush [0-9]* gen [0-9]* on 3 of 3 downstairs' \
  "$tmp/c1.txt" || fail "create s1: $(cat "$tmp/c1.txt")"
# The next writes are not in it (extent 0 is copied before the first).
put "$tmp/b.img" 0
cp "$tmp/s1.img" "$tmp/s2.img"
overlay s2 "$tmp/b.img" 0
adm --json snapshot create s2 |
  json_check 'd["ok"] and d["name"] == "s2" and d["flush"] > 0 and [x["ok"] for x in d["downstairs"]] == [True, True, True]'
# Refusals: the command's error, nobody faulted.
set +e
out=$(adm snapshot create s1 2>&1); rc=$?
set -e
[ "$rc" = 1 ] && echo "$out" | grep -q "snapshot 's1' exists" ||
  fail "taken name: rc $rc: $out"
adm --json snapshot delete nope | json_check 'not d["ok"] and d["code"] == "failed" and "no snapshot" in d["error"]'
adm --json snapshot create 'a/b' | json_check 'not d["ok"] and d["code"] == "usage"'
adm --json snapshot frob | json_check 'not d["ok"] and d["code"] == "usage"'
adm --json status | json_check 'd["status"]["health"] == "healthy"'
adm --json snapshot list > "$tmp/l1.json"
json_check '[s["name"] for s in d["snapshots"]] == ["s1", "s2"] and all(s["downstairs"] == [0, 1, 2] and s["consistent"] and s["complete"] for s in d["snapshots"]) and d["snapshots"][0]["flush"] < d["snapshots"][1]["flush"] and d["snapshots"][0]["bytes"] > 0' < "$tmp/l1.json"
adm snapshot list | grep -q '^s1 .* 012$' || fail "list text"

# kill -9 a downstairs while writes after s2 copy extents into it.
timeout 100 nbdcopy --flush "$tmp/c.img" "$URI" --destination-is-zero \
  2>/dev/null &
writer=$!
ds_kill ds2 9
wait "$writer" || fail "writes with ds2 killed"
cp "$tmp/s2.img" "$tmp/s3.img"
overlay s3 "$tmp/c.img" 0
# s3 degraded: on the two active replicas.
adm snapshot create s3 > "$tmp/c3.txt" || fail "snapshot create s3 degraded"
grep -q 'on 2 of 3 downstairs' "$tmp/c3.txt" || fail "s3: $(cat "$tmp/c3.txt")"
# kill -9 nbdkit in the middle of writes that copy extents into s3.
timeout 100 nbdcopy "$tmp/d.img" "$URI" --destination-is-zero 2>/dev/null &
writer=$!
sleep 0.5
kill -9 "$NBDKIT_PID"
wait "$writer" || true
wait "$NBDKIT_PID" 2>/dev/null || true
NBDKIT_PID=

# Everything back: ds2 rejoins (live repair), nbdkit restarts (reconcile).
ds_start ds2
nbdkit_start admin="$ASOCK"
adm --json snapshot list > "$tmp/l2.json"
json_check '[s["name"] for s in d["snapshots"]] == ["s1", "s2", "s3"] and d["snapshots"][2]["downstairs"] == [0, 2] and d["snapshots"][2]["complete"]' < "$tmp/l2.json"
adm snapshot delete s2 | grep -q '^snapshot s2 deleted on 3 of 3' ||
  fail "delete s2"
adm --json snapshot list |
  json_check '[s["name"] for s in d["snapshots"]] == ["s1", "s3"]'
volume_stop

# same NAME: got.img (an export) equals NAME.img: the first 140 MiB (all
# that was ever written) byte for byte, and no data after it (export
# leaves zero chunks as holes; cmp of all 1 GiB would take seconds).
same () {
  cmp -n $((140 * MiB)) "$tmp/$1.img" "$tmp/got.img" &&
    python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    os.lseek(fd, 140 << 20, os.SEEK_DATA)
    sys.exit("data after 140 MiB")
except OSError:
    pass' "$tmp/got.img"
}
for d in ds1 ds2 ds3; do
  "$DOWNSTAIRS" verify -d "$tmp/$d" > "$tmp/verify-$d.log" 2>&1 ||
    fail "verify $d: $(tail -n 3 "$tmp/verify-$d.log")"
  "$DOWNSTAIRS" export -d "$tmp/$d" -s s1 -o "$tmp/got.img" ||
    fail "export s1 of $d"
  same s1 || fail "$d: s1 differs"
done
for d in ds1 ds3; do
  "$DOWNSTAIRS" export -d "$tmp/$d" -s s3 -o "$tmp/got.img" ||
    fail "export s3 of $d"
  same s3 || fail "$d: s3 differs"
done
if "$DOWNSTAIRS" export -d "$tmp/ds2" -s s3 -o "$tmp/got.img" 2>/dev/null; then
  fail "ds2 holds s3 though it was away"
fi
"$DOWNSTAIRS" dump -d "$tmp/ds1" | grep -q 'snapshot s3 ' || fail "dump s3"
echo "$test_name: ok"
