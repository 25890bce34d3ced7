#!/usr/bin/env bash
# The downstairs protocol over the wire, driven by tests/tools/dsproto.py
# against a real crucible-downstairs on a small unencrypted region:
#   handshake refusals, activation and takeover rules, a pipelined random
#   job stream checked against a flat-array model (the job ordering rule),
#   back-pressure, EXTENT_MARK (across a restart), SNAPSHOT (then kill -9,
#   dump, verify and export -s offline), EXTENT_MAP_REQ
#   (block status), the retired
#   EXTENT_CLOSE/REPAIR/REOPEN, 5000 malformed frames, the connection cap
#   with 200 idle connections, the idle timeout, EADDRINUSE, and a clean
#   SIGTERM with jobs in flight.
. "$(dirname "$0")/functions.sh"

requires python3 ss timeout
[ -x "$DOWNSTAIRS" ] || skip "crucible-downstairs not built (run make)"
python3 -c 'import ctypes; ctypes.CDLL("libxxhash.so.0")' 2>/dev/null ||
  python3 -c 'import xxhash' 2>/dev/null || skip "no libxxhash.so.0 for python"

DSP=(timeout 300 python3 "$top/tests/tools/dsproto.py")
SEED=${SEED:-$RANDOM}
echo "$test_name: seed $SEED"

"$DOWNSTAIRS" create -d "$tmp/r" --extent-count 2 --extent-size 64 \
  --block-size 4096 -u "$VOL_UUID" >> "$tmp/create.log" 2>&1 || fail "create"

# start_ds PORT ARGS...: run the downstairs on $tmp/r, sets PID.
start_ds () {
  local port=$1
  shift
  "$DOWNSTAIRS" run -d "$tmp/r" -p "$port" -a 127.0.0.1 "$@" \
    >> "$tmp/ds.log" 2>&1 &
  PID=$!
  PIDS+=($PID)
  wait_port "$port" "$PID" || fail "downstairs did not start on $port"
}

alive () {
  kill -0 "$PID" 2>/dev/null || fail "downstairs died during $1"
}

# A region made without -u adopts the uuid of its first ACTIVATE.
"$DOWNSTAIRS" create -d "$tmp/ra" --extent-count 1 --extent-size 64 \
  >> "$tmp/create.log" 2>&1 || fail "create a region without -u"
APORT=$(free_port)
"$DOWNSTAIRS" run -d "$tmp/ra" -p "$APORT" -a 127.0.0.1 >> "$tmp/ds.log" 2>&1 &
PID=$!
PIDS+=($PID)
wait_port "$APORT" "$PID" || fail "downstairs did not start on $APORT"
"${DSP[@]}" adopt -p "$APORT" || fail "adopt"
alive adopt
# EXTEND grows it; the new count survives a restart.
"${DSP[@]}" extend -p "$APORT" --expect-open 1 || fail "extend"
alive extend
stop_pid "$PID" TERM || fail "exit status $? after SIGTERM (adopt)"
"$DOWNSTAIRS" run -d "$tmp/ra" -p "$APORT" -a 127.0.0.1 >> "$tmp/ds.log" 2>&1 &
PID=$!
PIDS+=($PID)
wait_port "$APORT" "$PID" || fail "downstairs did not restart on $APORT"
"${DSP[@]}" extend -p "$APORT" --expect-open 3 || fail "extend after a restart"
stop_pid "$PID" TERM || fail "exit status $? after SIGTERM (extend)"
grep -q "extended to 3 extents" "$tmp/ds.log" || fail "no 'extended' log line"

# SNAPSHOT (protocol 4) on a region of the default geometry (128 MiB
# extents): a barrier in the pipelined stream, list, delete, refusals;
# after kill -9 of the downstairs, offline: dump lists it, verify checks
# its copy, export -s gives its contents (the write before it, not the
# one after) and export the live ones.
"$DOWNSTAIRS" create -d "$tmp/rs" --extent-count 2 -u "$VOL_UUID" \
  >> "$tmp/create.log" 2>&1 || fail "create rs"
SPORT=$(free_port)
"$DOWNSTAIRS" run -d "$tmp/rs" -p "$SPORT" -a 127.0.0.1 >> "$tmp/ds.log" 2>&1 &
PID=$!
PIDS+=($PID)
wait_port "$SPORT" "$PID" || fail "downstairs did not start on $SPORT"
"${DSP[@]}" snapshot -p "$SPORT" || fail "snapshot"
alive snapshot
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
"$DOWNSTAIRS" dump -d "$tmp/rs" > "$tmp/dump.log" 2>&1 || fail "dump rs"
# Copied 2: extent 0 by the write after s1, extent 1 handed down by the
# delete of "gone" (into which the write after it had copied it).
grep -q 'snapshot s1 seq 1 time 1764700000 gen .* copied 2 ' "$tmp/dump.log" ||
  fail "dump: no s1: $(cat "$tmp/dump.log")"
! grep -q 'snapshot gone' "$tmp/dump.log" || fail "deleted snapshot listed"
"$DOWNSTAIRS" verify -d "$tmp/rs" > "$tmp/verify.log" 2>&1 ||
  fail "verify rs: $(cat "$tmp/verify.log")"
"$DOWNSTAIRS" export -d "$tmp/rs" -s s1 -o "$tmp/s1.img" ||
  fail "export -s s1"
"$DOWNSTAIRS" export -d "$tmp/rs" -o "$tmp/live.img" || fail "export live"
if "$DOWNSTAIRS" export -d "$tmp/rs" -s nope -o "$tmp/x.img" 2> "$tmp/x.log"
then fail "export of an unknown snapshot succeeded"; fi
grep -q "no snapshot 'nope'" "$tmp/x.log" ||
  fail "export -s nope: $(cat "$tmp/x.log")"
python3 - "$tmp/s1.img" "$tmp/live.img" <<'EOF' || fail "snapshot contents"
import sys
bs, es = 4096, 32768
def blk(path, lba):
    with open(path, "rb") as f:
        f.seek(lba * bs)
        return f.read(bs)
s1, live = sys.argv[1], sys.argv[2]
assert blk(s1, 3) == b"A" * bs, "s1 block 3"
assert blk(s1, es + 1) == b"B" * bs, "s1 block es+1"
assert blk(s1, 4) == bytes(bs), "s1 block 4"
assert blk(live, 3) == b"C" * bs, "live block 3"
assert blk(live, es + 1) == b"C" * bs, "live block es+1"
EOF

PORT=$(free_port)
start_ds "$PORT" --max-conns 64

for s in smoke handshake takeover; do
  "${DSP[@]}" "$s" -p "$PORT" || fail "$s"
  alive "$s"
done

# EXTENT_MARK: FLUSH skips the marked extent; the mark survives a
# restart of the downstairs until EXTENT_FLUSH levels the extent.
"${DSP[@]}" mark -p "$PORT" || fail "mark"
alive mark
stop_pid "$PID" TERM || fail "exit status $? after SIGTERM (mark)"
start_ds "$PORT" --max-conns 64
"${DSP[@]}" mark-level -p "$PORT" || fail "mark-level"
alive mark-level
# Block status (EXTENT_MAP_REQ, protocol 4).
"${DSP[@]}" map -p "$PORT" || fail "map"
alive map
# The retired file-copy repair frames are unknown types now.
"${DSP[@]}" retired -p "$PORT" || fail "retired"
alive retired
grep -q 'malformed ? frame (type 21' "$tmp/ds.log" ||
  fail "EXTENT_CLOSE (21) not refused as an unknown frame type"
"${DSP[@]}" model -p "$PORT" -n 3000 --seed "$SEED" || fail "model"
"${DSP[@]}" backpressure -p "$PORT" -n 3000 || fail "backpressure"
"${DSP[@]}" malformed -p "$PORT" -n 5000 --seed "$SEED" || fail "malformed"
alive malformed
grep -q 'closing: malformed' "$tmp/ds.log" || fail "no malformed frame logged"

# 200 idle connections: 64 (the cap) stay, the rest are closed at once;
# afterwards a normal client still works.
"${DSP[@]}" idle -p "$PORT" -n 200 --expect-open 64 || fail "idle"
grep -q 'refused: already 64 connections' "$tmp/ds.log" ||
  fail "connection cap not logged"
alive idle

# A second daemon (another region) on the same port fails clearly.
"$DOWNSTAIRS" create -d "$tmp/r2" --extent-count 1 --extent-size 64 \
  >> "$tmp/create.log" 2>&1 || fail "create r2"
set +e
timeout 20 "$DOWNSTAIRS" run -d "$tmp/r2" -p "$PORT" -a 127.0.0.1 \
  > "$tmp/busy.log" 2>&1
rc=$?
set -e
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "second daemon on a busy port: $rc"
grep -qi "listen 127.0.0.1:$PORT: address already in use" "$tmp/busy.log" ||
  fail "EADDRINUSE not reported: $(cat "$tmp/busy.log")"

# SIGTERM with jobs in flight: exit 0, promptly.
python3 - "$PORT" <<'EOF' &
import sys
sys.path.insert(0, "tests/tools")
import dsproto as d
c, gen = d.active_conn(type("A", (), {"host": "127.0.0.1",
                                      "port": int(sys.argv[1])}))
bs = c.block_size
for i in range(400):
    c.send(d.enc_write(10 + i, (i * 8) % 120, [bytes([i % 256]) * bs] * 8))
try:
    while c.recv():
        pass
except Exception:
    pass
EOF
writer=$!
sleep 0.3
stop_pid "$PID" TERM || fail "SIGTERM with jobs in flight: exit status $?"
wait "$writer" || true
grep -q 'SIGTERM: stopping' "$tmp/ds.log" || fail "no stopping line"

# Idle timeout: a silent connection is closed after --idle-timeout.
PORT=$(free_port)
start_ds "$PORT" --idle-timeout 2
"${DSP[@]}" idle -p "$PORT" -n 3 --wait 4.5 --expect-open 0 || fail "timeout"
grep -q 'idle for 2 s' "$tmp/ds.log" || fail "idle timeout not logged"
stop_pid "$PID" TERM || fail "exit status $? after SIGTERM"
echo "$test_name: ok"
