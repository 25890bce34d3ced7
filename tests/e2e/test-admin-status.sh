#!/usr/bin/env bash
# crucible-admin status over the plugin's admin socket (admin=PATH), in
# every health state: healthy; degraded (one downstairs killed -9: named,
# faulted); healthy again after it restarts and live repair ends; failed
# with two gone (IO fails, status still answers).  Bad requests (unknown
# command, bad version, garbage, an over-long line, a silent client) get
# one-line errors and nbdkit keeps serving.  The socket is mode 0600; a
# path that exists and is not a socket is refused in one line.
. "$(dirname "$0")/functions.sh"
requires nbdkit nbdcopy nbdinfo python3 timeout
[ -x "$ADMIN" ] || fail "crucible-admin not built"
ASOCK=$tmp/admin.sock
# Raw request bytes to the socket; prints the reply.
raw () {
  python3 - "$ASOCK" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(eval(sys.argv[2]))
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode())
PY
}

# A path that exists and is not a socket: refused, one line, not removed.
touch "$tmp/notsock"
volume_create
volume_start
if timeout 30 $(nbdkit_cmd) -f -U "$tmp/x.sock" "$PLUGIN" \
    downstairs=127.0.0.1:${DS_PORT[ds1]} downstairs=127.0.0.1:${DS_PORT[ds2]} \
    downstairs=127.0.0.1:${DS_PORT[ds3]} key=+$KEYFILE \
    admin="$tmp/notsock" > "$tmp/refuse.log" 2>&1; then
  fail "nbdkit started with admin= on a regular file"
fi
grep -q "admin=.*notsock: exists and is not a socket" "$tmp/refuse.log" ||
  { cat "$tmp/refuse.log" >&2; fail "no one-line refusal for admin= on a file"; }
[ -f "$tmp/notsock" ] || fail "the regular file was removed"

# A stale socket (nobody listening) is replaced.
python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$ASOCK"
[ -S "$ASOCK" ] || fail "test bug: no stale socket"

nbdkit_start admin="$ASOCK"
[ "$(stat -c %a "$ASOCK")" = 600 ] || fail "admin socket mode $(stat -c %a "$ASOCK"), want 600"

# Healthy.
adm status > "$tmp/st.txt" || fail "status failed"
grep -q '^volume: healthy (3 of 3 downstairs active)' "$tmp/st.txt" ||
  { cat "$tmp/st.txt" >&2; fail "status text: not healthy"; }
[ "$(grep -c '^downstairs 127.0.0.1:[0-9]*: active' "$tmp/st.txt")" = 3 ] ||
  { cat "$tmp/st.txt" >&2; fail "status text: not 3 active downstairs"; }
grep -q '^generation [1-9][0-9]*, flush [0-9]*' "$tmp/st.txt" ||
  fail "status text: no generation/flush line"
adm --json status > "$tmp/st.json" || fail "status --json failed"
json_check 'd["ok"] and d["status"]["health"] == "healthy" and [x["state"] for x in d["status"]["downstairs"]] == ["active"] * 3 and d["status"]["gen"] >= 1 and "flush" in d["status"] and d["status"]["scrub"]["state"] == "never"' < "$tmp/st.json"

# Data written while healthy, to be repaired later.
head -c 16M /dev/urandom > "$tmp/a.img"
head -c 16M /dev/urandom > "$tmp/want.img"
timeout 60 nbdcopy "$tmp/a.img" "$URI" || fail "nbdcopy failed"

# Degraded: ds2 killed -9; status names it.
ds_kill ds2 9
for i in $(seq 100); do
  adm --json status > "$tmp/st.json" 2>/dev/null &&
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["status"]["health"] != "degraded")' < "$tmp/st.json" && break
  sleep 0.2
done
json_check 'd["status"]["health"] == "degraded" and d["status"]["downstairs"][1]["state"] == "faulted" and d["status"]["downstairs"][1]["address"].endswith(":'"${DS_PORT[ds2]}"'") and d["status"]["downstairs"][1]["last_error"] and not d["status"]["downstairs"][1]["connected"] and any("faulted" in e for e in d["errors"])' < "$tmp/st.json"
adm status > "$tmp/st.txt" || fail "status (degraded) failed"
grep -q "^volume: degraded (2 of 3 downstairs active)" "$tmp/st.txt" ||
  { cat "$tmp/st.txt" >&2; fail "status text: not degraded"; }
grep -q "^downstairs 127.0.0.1:${DS_PORT[ds2]}: faulted" "$tmp/st.txt" ||
  { cat "$tmp/st.txt" >&2; fail "status text does not name the faulted one"; }
grep -q "^error: .*downstairs 127.0.0.1:${DS_PORT[ds2]}: faulted" "$tmp/st.txt" ||
  { cat "$tmp/st.txt" >&2; fail "status text: the fault is not among the last errors"; }
# Writes go on while degraded (ds2 will need repair).
timeout 60 nbdcopy "$tmp/want.img" "$URI" || fail "nbdcopy (degraded) failed"

# Back to healthy after ds2 restarts and live repair finishes.
ds_start ds2
seen_repair=
for i in $(seq 300); do
  adm --json status > "$tmp/st.json" 2>/dev/null || true
  s=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"]["health"], d["status"]["downstairs"][1]["state"], d["status"]["downstairs"][1]["repair"]["extents_total"])' < "$tmp/st.json" 2>/dev/null || echo "? ? ?")
  case "$s" in *live-repair*) seen_repair=1 ;; esac
  case "$s" in "healthy active "*) break ;; esac
  sleep 0.2
done
case "$s" in "healthy active "*) ;; *) fail "not healthy again after repair: $s" ;; esac
# Repair seen in progress, or finished with its totals reported.
[ -n "$seen_repair" ] || [ "${s##* }" -gt 0 ] ||
  fail "no live repair seen or reported: $s"
adm status | grep -q '^volume: healthy' || fail "status text not healthy again"

# Bad requests: one-line errors, the server keeps serving.
out=$(adm frobnicate 2>&1) && fail "unknown command succeeded"
[ $? = 1 ] || true
echo "$out" | grep -q "^crucible-admin: unknown command 'frobnicate'" ||
  fail "unknown command: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "unknown command: not one line: $out"
set +e; adm frobnicate > /dev/null 2>&1; rc=$?; set -e
[ "$rc" = 1 ] || fail "unknown command: exit $rc, want 1"
set +e; timeout 20 "$ADMIN" status > /dev/null 2>&1; rc=$?; set -e
[ "$rc" = 2 ] || fail "no -s: exit $rc, want 2"
set +e; timeout 20 "$ADMIN" -s "$tmp/nothere.sock" status 2> "$tmp/e"; rc=$?; set -e
[ "$rc" = 2 ] && [ "$(wc -l < "$tmp/e")" = 1 ] || fail "no socket: exit $rc, $(cat "$tmp/e")"
raw 'b"crucible-admin 2 json status\n"' | json_check 'not d["ok"] and d["code"] == "version" and "version" in d["error"]'
raw 'b"\x00\xff\x13garbage\n"' | json_check 'not d["ok"] and d["error"]'
raw 'b"GET / HTTP/1.0\r\n\r\n"' | json_check 'not d["ok"] and "not a crucible-admin request" in d["error"]'
raw 'b"crucible-admin 1 json " + b"x" * 5000 + b"\n"' | json_check 'not d["ok"] and "longer than" in d["error"]'
raw 'b"crucible-admin 1 xml status\n"' | json_check 'not d["ok"] and "format" in d["error"]'
# Half a line and silence: answered (in json: its format was not read).
raw 'b"crucible-admin 1 text status"' | json_check 'not d["ok"] and "not complete within 2 s" in d["error"]' 
r=$(raw 'b"crucible-admin 1 text nope\n"')
[ "$(echo "$r" | wc -l)" = 1 ] && echo "$r" | grep -q '^error: unknown command' || fail "text error: $r"
# A silent client holds only the admin thread (2 s), never IO.
python3 - "$ASOCK" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(6)
PY
silent=$!
PIDS+=($silent)
sleep 0.3
timeout 5 nbdcopy "$URI" /dev/null || fail "IO blocked behind a silent admin client"
adm --json status | json_check 'd["ok"] and d["status"]["health"] == "healthy"' ||
  fail "status after a silent client"
wait "$silent" 2>/dev/null || true
# Data intact: the random write of the degraded phase reads back.
timeout 60 nbdcopy "$URI" "$tmp/back.img" || fail "read back failed"
cmp -n 16777216 "$tmp/back.img" "$tmp/want.img" || fail "data differs"

# Failed: two gone.  IO fails; status still answers "failed".
ds_kill ds1 9
ds_kill ds3 9
for i in $(seq 100); do
  adm --json status > "$tmp/st.json" 2>/dev/null &&
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["status"]["health"] != "failed")' < "$tmp/st.json" && break
  sleep 0.2
done
json_check 'd["ok"] and d["status"]["health"] == "failed" and [x["state"] for x in d["status"]["downstairs"]].count("faulted") == 2' < "$tmp/st.json"
adm status | grep -q '^volume: failed (1 of 3 downstairs active)' ||
  fail "status text not failed"
set +e; timeout 60 nbdcopy "$URI" /dev/null 2>/dev/null; rc=$?; set -e
[ "$rc" != 0 ] || fail "reads served with one downstairs"

nbdkit_stop || fail "nbdkit did not stop cleanly"
[ ! -e "$ASOCK" ] || fail "admin socket not removed at unload"
echo "$test_name: PASS"
