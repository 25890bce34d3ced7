#!/usr/bin/env bash
# One replica given twice would count twice toward every quorum: the same
# downstairs= twice is refused at configuration time with one line, and
# one region reached through two addresses (127.0.0.1:P and localhost:P)
# is caught at connect by its instance id (HELLO_OK): nbdkit refuses to
# start with one line naming both.  A region created before the id existed
# gets one at its next start, kept across restarts.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdsh python3

volume_create
volume_start
p1=${DS_PORT[ds1]} p2=${DS_PORT[ds2]} p3=${DS_PORT[ds3]}

# 1. The same downstairs= twice.
expect 1 "downstairs= twice" "downstairs=127.0.0.1:$p1 given twice" \
  $(nbdkit_cmd) -f -U "$tmp/x.sock" "$PLUGIN" downstairs=127.0.0.1:$p1 \
  downstairs=127.0.0.1:$p2 downstairs=127.0.0.1:$p1 key=+"$KEYFILE"

# 2. One region under two addresses (the default timeout: refused at once,
# not after it).
grep -q '"instance":"' "$tmp/ds1/region.json" || fail "no instance in region.json"
t0=$(date +%s)
expect 1 "same region twice" "127.0.0.1:$p1 and localhost:$p1 are the same region|localhost:$p1 and 127.0.0.1:$p1 are the same region" \
  $(nbdkit_cmd) -f -U "$tmp/x.sock" "$PLUGIN" downstairs=127.0.0.1:$p1 \
  downstairs=localhost:$p1 downstairs=127.0.0.1:$p2 key=+"$KEYFILE"
[ $(($(date +%s) - t0)) -lt 10 ] || fail "took more than 10 s to refuse"

# 3. The three different ones still work, and the volume was not fenced
# or activated by the refused attempts.
nbdkit_start || fail "nbdkit start"
nbdsh_run -u "$URI" -c 'h.pwrite(b"\x11" * 4096, 0)' -c 'h.flush()' ||
  fail "write"
nbdkit_stop || fail "nbdkit stop"

# 4. An old region.json without "instance": the downstairs adds one at
# start (atomically, like every region.json change) and keeps it.
ds_kill ds3
python3 - "$tmp/ds3/region.json" <<'PY' || fail "edit region.json"
import json, sys
d = json.load(open(sys.argv[1])); del d["instance"]
open(sys.argv[1], "w").write(json.dumps(d))
PY
ds_start ds3
grep -q "instance id added" "$tmp/ds3.log" || fail "no 'instance id added'"
id1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["instance"])' "$tmp/ds3/region.json")
ds_kill ds3
ds_start ds3
id2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["instance"])' "$tmp/ds3/region.json")
[ "$id1" = "$id2" ] || fail "instance id changed across restarts"
nbdkit_start || fail "nbdkit start after the upgrade"
nbdsh_run -u "$URI" -c 'assert h.pread(4096, 0) == b"\x11" * 4096' || fail "data"
echo "ok"
