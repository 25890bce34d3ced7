#!/usr/bin/env bash
# timeout: 600
# A hostile client of a downstairs serving a live volume: 3000 malformed
# frames (random, truncated, bad lengths, unknown types, garbage bodies,
# frames illegal in the state; tests/tools/hostile.py), 200 idle
# connections and 4 slow-loris senders, all against ds1 while nbdcopy
# reads the volume back through nbdkit again and again.  Every read must
# return the right data; afterwards ds1 is alive and still the volume's
# working replica (ds2 is then killed and reads must still succeed, which
# needs ds1 and ds3), and the data is identical.
# ds1 runs with --max-conns 300 so that the 200 idle connections and the
# attack fit; then, with the default cap (64), it checks whether idle
# connections starve a new upstairs (reported, not asserted: there is no
# authentication yet, see README "Threat model"), that 64 idle
# connections no longer lock a new upstairs out once the handshake
# timeout closed them (asserted), and that a slow-loris sender is closed
# by the idle timeout.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp python3

# ds1 with extra options (ds_start takes none).
ds1_start () {
  DS_PORT[ds1]=${DS_PORT[ds1]:-$(free_port)}
  "$DOWNSTAIRS" run -d "$tmp/ds1" -p "${DS_PORT[ds1]}" -a 127.0.0.1 "$@" \
    >> "$tmp/ds1.log" 2>&1 &
  DS_PID[ds1]=$!
  PIDS+=($!)
  wait_port "${DS_PORT[ds1]}" "${DS_PID[ds1]}" || fail "ds1 did not start"
}

len=$((16 * 1024 * 1024))
volume_create
ds1_start --max-conns 300
ds_start ds2
ds_start ds3
nbdkit_start || fail "nbdkit did not start"
random_image "$tmp/in.img" $len
volume_fill "$tmp/in.img" "write"

python3 tests/tools/hostile.py attack -p "${DS_PORT[ds1]}" -n 3000 \
  --idle 200 --loris 4 --hold 20 > "$tmp/hostile.log" 2>&1 &
hpid=$!
PIDS+=($hpid)
reads=0
while kill -0 $hpid 2>/dev/null; do
  rm -f "$tmp/out.img"
  timeout 120 nbdcopy "$URI" "$tmp/out.img" ||
    fail "read during the attack failed (after $reads good reads)"
  cmp -n $len "$tmp/in.img" "$tmp/out.img" ||
    fail "read during the attack returned wrong data"
  reads=$((reads + 1))
done
hrc=0
wait $hpid || hrc=$?
cat "$tmp/hostile.log"
[ $hrc = 0 ] || fail "hostile.py failed (exit $hrc)"
[ $reads -ge 1 ] || fail "no read completed during the attack"
echo "$reads full reads during the attack, all correct"
kill -0 "${DS_PID[ds1]}" || fail "ds1 died"
grep -E "taken over by" "$tmp/ds1.log" &&
  fail "the attack took the volume over"

# ds1's upstairs connection still works: without ds2, reads need ds1.
ds_kill ds2
volume_check "$tmp/in.img" "data differs on ds1+ds3"
nbdkit_stop || fail "nbdkit stop failed"
ds_start ds2

# The default cap (64) with the volume's upstairs already connected:
# 100 idle connections fill it; the connected upstairs keeps working,
# but a new upstairs is refused (reported, not asserted: no auth yet).
ds_kill ds1
ds1_start
nbdkit_start || fail "nbdkit did not restart"
python3 tests/tools/hostile.py starve -p "${DS_PORT[ds1]}" --idle 100 \
  --hold 15 > "$tmp/starve.log" 2>&1 &
spid=$!
PIDS+=($spid)
sleep 3
volume_check "$tmp/in.img" "data differs with the cap full"
wait $spid || fail "starve check failed"
cat "$tmp/starve.log"
grep -q "starve: " "$tmp/starve.log" || fail "starve check did not run"
ds_kill ds2            # the connected upstairs still uses ds1
volume_check "$tmp/in.img" "final data differs"

# The default cap (64) with no upstairs connected: 64 idle connections
# (the whole cap; 63 plus a running upstairs before) that never activate
# are closed after the handshake timeout (2 s here, default 10 s), so a
# NEW nbdkit then starts with all three downstairs.
nbdkit_stop || fail "nbdkit stop failed"
ds_kill ds1
ds_start ds2
ds1_start --handshake-timeout 2
python3 - "${DS_PORT[ds1]}" > "$tmp/hold63.log" 2>&1 <<'PY' &
import socket, sys, time
conns = [socket.create_connection(("127.0.0.1", int(sys.argv[1])))
         for _ in range(64)]
print("holding %d idle connections" % len(conns), flush=True)
time.sleep(25)
PY
hpid=$!
PIDS+=($hpid)
sleep 4                # past the handshake timeout
n=$(grep -c "activated generation" "$tmp/ds1.log" || true)
nbdkit_start timeout=5 || fail "new nbdkit did not start with 64 idle conns"
[ "$(grep -c "activated generation" "$tmp/ds1.log")" -gt "$n" ] ||
  fail "64 idle connections locked a new upstairs out of ds1"
grep -c "handshake timeout" "$tmp/ds1.log" | sed 's/$/ connections closed by the handshake timeout/'
stop_pid "$hpid" || true
nbdkit_stop || fail "nbdkit stop failed"
ds_kill ds1

# A slow-loris sender does not keep a connection alive: partial frames
# are no activity, so the idle timeout (3 s here) closes it.
ds1_start --idle-timeout 3
python3 tests/tools/hostile.py loris -p "${DS_PORT[ds1]}" --hold 15 ||
  fail "slow-loris sender not closed by the idle timeout"
echo "hostile client: volume served correct data throughout"
