#!/usr/bin/env bash
# Self-test of the failure-test tools, against nbdkit's memory plugin, so
# that they are proven before they are used on crucible:
#  - nbdverify (build/tools/nbdverify): write + flush + verify passes;
#    corrupt, relocated, zeroed, older and newer blocks are each named;
#    --unflushed-ok accepts a reverted unflushed block; SIGTERM stops a
#    write cleanly with its state saved.
#  - faultproxy (tests/tools/faultproxy.py) in front of a TCP nbdkit: data
#    passes unchanged, delay/throttle slow it, stall blocks a read without
#    burning CPU until resume, cut disconnects, refuse refuses, 50
#    connections at once work, nbdverify --tolerate-errors rides through
#    cuts, SIGTERM exits 0 and removes the control socket.
# Self-contained (does not source functions.sh).  Exit 0 pass, 1 fail, 77
# skip.
# timeout: 300

set -u
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NBDVERIFY=${NBDVERIFY:-$top/build/tools/nbdverify}
FAULTPROXY=$top/tests/tools/faultproxy.py
PY=/usr/bin/python3            # has the libnbd "nbd" module
PIDS=()

fail () { echo "test-tools: FAIL: $*" >&2; exit 1; }
skip () { echo "test-tools: SKIP: $*" >&2; exit 77; }
step () { echo "== $*"; }

for c in nbdkit timeout python3; do
  command -v "$c" >/dev/null || skip "requires $c"
done
[ -x "$NBDVERIFY" ] || skip "$NBDVERIFY not built (make build/tools/nbdverify)"
[ -f "$FAULTPROXY" ] || skip "$FAULTPROXY missing"
$PY -c 'import nbd' 2>/dev/null || skip "requires $PY with the nbd module"

# Stop one pid we started: SIGTERM, up to 10 s, then SIGKILL.  Returns its
# exit status.
stop_pid () {
  local pid=$1 i rc=0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null && echo "pid $pid needed SIGKILL" >&2
  wait "$pid" 2>/dev/null || rc=$?
  return $rc
}

cleanup () {
  local p
  for p in "${PIDS[@]}"; do [ -n "$p" ] && { stop_pid "$p" || true; }; done
  rm -rf "$tmp"
}
tmp=$(mktemp -d /tmp/test-tools.XXXXXX) || fail mktemp
trap cleanup EXIT

# wait_for COND...: retry the command for up to 10 s.
wait_for () {
  local i
  for i in $(seq 100); do "$@" && return 0; sleep 0.1; done
  return 1
}

# Start nbdkit memory 64M on unix socket $tmp/$1.sock; URI in $URI.
start_unix () {
  nbdkit -f -U "$tmp/$1.sock" --pidfile "$tmp/$1.pid" memory 64M &
  PIDS+=("$!")
  wait_for test -s "$tmp/$1.pid" || fail "nbdkit $1 did not start"
  URI="nbd+unix:///?socket=$tmp/$1.sock"
}

nv () { timeout 120 "$NBDVERIFY" "$@"; }
ctl () { timeout 20 python3 "$FAULTPROXY" --ctl "$tmp/ctl.sock" "$@"; }
# expect_verify RC PATTERN ARGS...: run verify, check status and output.
expect_verify () {
  local want=$1 pat=$2 rc=0
  shift 2
  nv "$@" verify > "$tmp/out" 2>&1 || rc=$?
  cat "$tmp/out"
  [ "$rc" = "$want" ] || fail "verify $*: exit $rc, wanted $want"
  grep -q -- "$pat" "$tmp/out" || fail "verify $*: no '$pat' in output"
}
# Run python code against the NBD URI $1 (the handle is h).
nbdpy () {
  local uri=$1
  shift
  timeout 60 $PY -c "import nbd, sys, time, os, hashlib
h = nbd.NBD()
h.connect_uri('$uri')
$*"
}

step "nbdverify: sequential write with flushes, then verify"
start_unix a
st=$tmp/a.state
nv --uri "$URI" --state "$st" --seed 42 write --flush-every 64 ||
  fail "write"
expect_verify 0 "verified 16384 blocks: 16384 ok, 0 bad" --uri "$URI" \
  --state "$st"
nv --uri "$URI" --state "$st" write --random --count 5000 --flush-every 50 ||
  fail "random write"
expect_verify 0 "16384 ok, 0 bad" --uri "$URI" --state "$st"

step "nbdverify: corrupt 1234, relocate 10 -> 11, zero 12"
nbdpy "$URI" "h.pwrite(b'\xff' * 16, 1234 * 4096 + 100)
h.pwrite(h.pread(4096, 10 * 4096), 11 * 4096)
h.pwrite(bytes(4096), 12 * 4096)"
expect_verify 1 "16381 ok, 3 bad" --uri "$URI" --state "$st"
grep -q "^bad block lba 1234: .*garbage" "$tmp/out" || fail "1234 not named"
grep -q "^bad block lba 11: .*relocated block: found lba 10 " "$tmp/out" ||
  fail "11 not named"
grep -q "^bad block lba 12: .*zeros" "$tmp/out" || fail "12 not named"

step "nbdverify: older/newer gens and --unflushed-ok"
start_unix b
st=$tmp/b.state
nv --uri "$URI" --state "$st" --seed 5 write --blocks 16 --flush-every 1 ||
  fail "write pass 1"
cp "$st" "$tmp/b.gen1"
nbdpy "$URI" "open('$tmp/old3', 'wb').write(h.pread(4096, 3 * 4096))"
nv --uri "$URI" --state "$st" write --count 4 || fail "write pass 2"
expect_verify 0 "16 ok, 0 bad" --uri "$URI" --state "$st"
expect_verify 1 "12 ok, 4 bad" --uri "$URI" --state "$tmp/b.gen1"
grep -q "^bad block lba 3: expected gen 1, newer gen: found lba 3 gen 2" \
  "$tmp/out" || fail "newer gen not named"
nbdpy "$URI" "h.pwrite(open('$tmp/old3', 'rb').read(), 3 * 4096)"
expect_verify 1 "lba 3: expected gen 2, older gen: found lba 3 gen 1" \
  --uri "$URI" --state "$st"
expect_verify 0 "16 ok, 0 bad" --uri "$URI" --state "$st" --unflushed-ok

step "nbdverify: SIGTERM stops a write cleanly"
start_unix c
"$NBDVERIFY" --uri "$URI" --state "$tmp/c.state" --seed 9 write --random \
  --duration 60 --flush-every 100 > "$tmp/term.out" 2>&1 &
pid=$!
PIDS+=("$pid")
sleep 1
t0=$SECONDS
stop_pid "$pid" || fail "write exited $? on SIGTERM"
[ $((SECONDS - t0)) -le 3 ] || fail "SIGTERM took too long"
cat "$tmp/term.out"
grep -q "(stopped)" "$tmp/term.out" || fail "no (stopped) in output"
expect_verify 0 ", 0 bad" --uri "$URI" --state "$tmp/c.state"

step "faultproxy: start nbdkit on TCP and the proxy in front"
port=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nbdkit -f -p "$port" -i 127.0.0.1 --pidfile "$tmp/tcp.pid" memory 64M &
PIDS+=("$!")
wait_for test -s "$tmp/tcp.pid" || fail "nbdkit tcp did not start"
python3 "$FAULTPROXY" --listen 127.0.0.1:0 --target "127.0.0.1:$port" \
  --control "$tmp/ctl.sock" 2> "$tmp/proxy.log" &
proxy_pid=$!
PIDS+=("$pid")
PIDS+=("$proxy_pid")
wait_for test -S "$tmp/ctl.sock" || fail "faultproxy did not start"
pport=$(ctl status | sed -n 's/.* listen=[^:]*:\([0-9]*\) .*/\1/p')
[ -n "$pport" ] || fail "no listen port in status"
DIRECT=nbd://127.0.0.1:$port
PROXY=nbd://127.0.0.1:$pport
ctl bogus && fail "bogus command accepted"
ctl delay x && fail "bad delay accepted"

step "faultproxy: data passes unchanged both ways"
st=$tmp/p.state
nv --uri "$PROXY" --state "$st" --seed 77 write --random --count 3000 \
  --flush-every 100 || fail "write through proxy"
expect_verify 0 "16384 ok, 0 bad" --uri "$DIRECT" --state "$st"
expect_verify 0 "16384 ok, 0 bad" --uri "$PROXY" --state "$st"
ctl status | grep -q "up=[1-9]" || fail "no bytes counted"

step "faultproxy: delay 100 makes 20 reads take >= 2 s"
ctl delay 100 || fail "delay"
t0=$(date +%s%N)
nbdpy "$PROXY" "for i in range(20): h.pread(512, i * 4096)" || fail "reads"
ms=$((($(date +%s%N) - t0) / 1000000))
echo "20 reads with delay 100: $ms ms"
[ "$ms" -ge 2000 ] || fail "delay had no effect ($ms ms)"
ctl delay 0 || fail "delay 0"

step "faultproxy: throttle 262144 makes a 512 KiB read take >= 1.5 s"
ctl throttle 262144 || fail "throttle"
t0=$(date +%s%N)
nbdpy "$PROXY" "h.pread(512 * 1024, 0)" || fail "read"
ms=$((($(date +%s%N) - t0) / 1000000))
echo "512 KiB at 256 KiB/s: $ms ms"
{ [ "$ms" -ge 1500 ] && [ "$ms" -le 10000 ]; } || fail "throttle: $ms ms"
ctl throttle 0 || fail "throttle 0"

# A client that connects, says ready, waits for "go", then reads block 5
# and writes its sha256 (or "disconnected") to $tmp/$1.out.
start_reader () {
  rm -f "$tmp/ready" "$tmp/go" "$tmp/$1.out"
  nbdpy "$PROXY" "open('$tmp/ready', 'w').close()
while not os.path.exists('$tmp/go'): time.sleep(0.05)
try:
    r = hashlib.sha256(h.pread(4096, 5 * 4096)).hexdigest()
except nbd.Error as e:
    r = 'disconnected: %s' % e
open('$tmp/$1.out', 'w').write(r)" &
  reader_pid=$!
PIDS+=("$pid")
  PIDS+=("$reader_pid")
  wait_for test -e "$tmp/ready" || fail "reader did not connect"
}
# CPU seconds (user + system) used so far by pid $1, in clock ticks.
cpu_ticks () { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

step "faultproxy: stall blocks a read until resume, without spinning"
want=$(nbdpy "$DIRECT" \
  "print(hashlib.sha256(h.pread(4096, 5 * 4096)).hexdigest())")
start_reader stall
ctl stall || fail "stall"
touch "$tmp/go"
c0=$(cpu_ticks "$proxy_pid")
sleep 2
c1=$(cpu_ticks "$proxy_pid")
[ ! -e "$tmp/stall.out" ] || fail "read completed while stalled"
kill -0 "$reader_pid" || fail "reader died while stalled"
echo "proxy CPU while stalled: $((c1 - c0)) ticks in 2 s"
[ $((c1 - c0)) -le 20 ] || fail "proxy spins while stalled"
ctl status | grep -q "stalled=1" || fail "status does not say stalled"
ctl resume || fail "resume"
wait "$reader_pid" || fail "reader failed after resume"
[ "$(cat "$tmp/stall.out")" = "$want" ] || fail "wrong data after resume"

step "faultproxy: cut makes the client see a disconnect"
start_reader cut
ctl cut || fail "cut"
touch "$tmp/go"
wait "$reader_pid" || fail "reader crashed"
cat "$tmp/cut.out"; echo
grep -q "^disconnected" "$tmp/cut.out" || fail "no disconnect seen"
ctl status | grep -q " conns=0 " || fail "connections left after cut"

step "faultproxy: refuse on/off"
ctl refuse on || fail "refuse on"
nbdpy "$PROXY" "pass" 2>/dev/null && fail "connected while refusing"
ctl refuse off || fail "refuse off"
nbdpy "$PROXY" "pass" || fail "cannot connect after refuse off"

step "faultproxy: 50 connections at once"
nbdpy "$PROXY" "import subprocess
hs = [nbd.NBD() for i in range(50)]
for x in hs: x.connect_uri('$PROXY')
st = subprocess.run(['python3', '$FAULTPROXY', '--ctl', '$tmp/ctl.sock',
                     'status'], capture_output=True, text=True).stdout
print(st.strip())
assert ' conns=51 ' in st
for i, x in enumerate(hs): assert x.pread(4096, 0) == h.pread(4096, 0)" ||
  fail "many connections"

step "nbdverify --tolerate-errors rides through cuts"
st=$tmp/t.state
nbdpy "$DIRECT" "h.zero(h.get_size(), 0)" || fail "zero the export"
"$NBDVERIFY" --uri "$PROXY" --state "$st" --seed 11 write --random \
  --duration 5 --flush-every 20 --tolerate-errors > "$tmp/tol.out" 2>&1 &
pid=$!
PIDS+=("$pid")
for i in 1 2 3; do sleep 1; ctl cut || fail "cut $i"; done
wait "$pid" || { cat "$tmp/tol.out"; fail "tolerant write failed"; }
cat "$tmp/tol.out"
grep -Eq " [1-9][0-9]* reconnects" "$tmp/tol.out" || fail "no reconnect"
expect_verify 0 "16384 ok, 0 bad" --uri "$DIRECT" --state "$st"
expect_verify 0 "16384 ok, 0 bad" --uri "$DIRECT" --state "$st" \
  --unflushed-ok

step "faultproxy: SIGTERM exits 0 and removes the control socket"
stop_pid "$proxy_pid" || fail "proxy exited $? on SIGTERM"
PIDS=("${PIDS[@]/$proxy_pid}")
[ ! -e "$tmp/ctl.sock" ] || fail "control socket left behind"
tail -n 3 "$tmp/proxy.log"
echo "test-tools: PASS"
