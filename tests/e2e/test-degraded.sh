#!/usr/bin/env bash
# One downstairs dies (kill -9) before, then during, a copy: the volume
# keeps serving from the other two and the data reads back identical.
# timeout: 400
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp

len=$((48 * 1024 * 1024))
random_image "$tmp/in.img" $len

# roundtrip_check: flush, read the volume back, compare with in.img.
roundtrip_check () {
  nbdsh_run -u "$URI" -c 'h.flush()' || fail "$1: flush failed"
  volume_check "$tmp/in.img" "$1: data differs"
}

# 1. Killed before the copy.
volume_create a
volume_start
nbdkit_start
ds_kill a2 KILL
timeout 200 nbdcopy "$tmp/in.img" "$URI" ||
  fail "nbdcopy with one downstairs dead (before) failed"
roundtrip_check "killed before"
volume_stop || fail "stopping volume a failed"
echo "killed before copy: OK"

# 2. A fresh volume; killed while a 48 MiB copy is running.
volume_create b
volume_start
nbdkit_start
base=$(du -sk "$tmp/b1" | cut -f1)
timeout 200 nbdcopy "$tmp/in.img" "$URI" &
copy=$!
PIDS+=($copy)
# Kill as soon as some data has reached the replicas (bounded wait).
for i in $(seq 200); do
  kill -0 $copy 2>/dev/null || break
  [ "$(du -sk "$tmp/b1" | cut -f1)" -ge $((base + 6144)) ] && break
  sleep 0.05
done
kill -0 $copy 2>/dev/null || echo "note: the copy finished before the kill"
ds_kill b3 KILL
wait $copy || fail "nbdcopy with one downstairs killed during the copy failed"
roundtrip_check "killed during"
echo "killed during copy: OK"
