# Shared helpers for the crucible-c end-to-end tests (bash).
#
# Source it first thing in a test:   . "$(dirname "$0")/functions.sh"
# It cds to the top of the tree, makes a temp dir ($tmp), a volume uuid
# ($VOL_UUID) and a key file ($KEYFILE), and installs an EXIT trap that
# unmounts what the test mounted, kills every process it started (by pid,
# never by name), fails the test if any log holds a sanitizer report, and
# removes $tmp.  Exit status 77 means "skipped" (see tests/run-tests.sh).
#
# Typical test:
#   requires nbdcopy
#   volume_create          # regions ds1 ds2 ds3, one uuid
#   volume_start           # three downstairs on free ports
#   nbdkit_start           # nbdkit on $SOCK, URI in $URI
#   random_image "$tmp/in.img" $((16 << 20))
#   volume_fill "$tmp/in.img"    # nbdcopy --flush in
#   volume_check "$tmp/in.img"   # nbdcopy out + cmp
#
# Environment: SANITIZE=1 preloads libasan into nbdkit (the plugin is
# built with ASan, nbdkit is not); NBDKIT_VERBOSE=1 adds -v to nbdkit;
# KEEP_TMP=1 keeps $tmp for post-mortem.

set -e

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
. "$top/scripts/proc.sh"
DOWNSTAIRS=$top/crucible-downstairs
PLUGIN=$top/crucible.so
test_name=$(basename "$0" .sh)

# Default geometry for test volumes: 16 extents of 1024 4-KiB blocks =
# 64 MiB, small extents so that ordinary copies cross extent boundaries.
# A test that runs what users run sets DS_EXTENT_SIZE=default before
# volume_create: no --extent-size, so `create`'s own default (128 MiB
# extents) applies.
DS_EXTENT_SIZE=${DS_EXTENT_SIZE:-1024}
DS_EXTENT_COUNT=${DS_EXTENT_COUNT:-16}

declare -A DS_PORT=() DS_PID=()
PIDS=()           # every background pid we started, in order
MOUNTS=()         # mount points (and loop:/dev/loopN) we set up, in order
VOLUME="ds1 ds2 ds3"
NBDKIT_PID=
SOCK=
URI=

# Print a message to stderr and exit 1 (the EXIT trap cleans up).
fail () {
  echo "$test_name: FAIL: $*" >&2
  exit 1
}

# Print a message and exit 77: the test is skipped, not failed.
skip () {
  echo "$test_name: SKIP: $*" >&2
  exit 77
}

# requires CMD...: skip the test unless every command is available.
requires () {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || skip "requires $c"
  done
}

# requires_root: skip unless running as root.
requires_root () {
  [ "$(id -u)" = 0 ] || skip "requires root"
}

# expect RC WHAT REGEX CMD...: CMD exits with RC and prints exactly one
# line on stderr matching REGEX (the CLI's error contract).
expect () {
  local want=$1 what=$2 re=$3 rc=0 lines
  shift 3
  timeout 60 "$@" > "$tmp/out" 2> "$tmp/err" < /dev/null || rc=$?
  [ "$rc" = "$want" ] ||
    { cat "$tmp/err"; fail "$what: exit status $rc, want $want"; }
  lines=$(wc -l < "$tmp/err")
  [ "$lines" = 1 ] ||
    { cat "$tmp/err"; fail "$what: $lines lines on stderr, want one"; }
  grep -Eq -- "$re" "$tmp/err" ||
    { cat "$tmp/err"; fail "$what: message does not match /$re/"; }
  echo "$what: ok ($rc): $(cat "$tmp/err")"
}

# Both product binaries must be built.
requires_build () {
  [ -x "$DOWNSTAIRS" ] || skip "crucible-downstairs not built (run make)"
  [ -f "$PLUGIN" ] || skip "crucible.so not built (run make)"
}

# A free TCP port on 127.0.0.1 (bound then released; racy but fine here).
free_port () {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Kill one pid: SIGTERM (or $2), wait up to 20 s, then SIGKILL.  Returns
# the process's exit status (137 if it had to be killed), or 0 if it was
# already gone.
stop_pid () {
  proc_stop "$1" "${2:-TERM}" 20 "$test_name"
}

# Look for sanitizer reports in every log the test produced.
check_sanitizer_logs () {
  local f bad=0
  for f in "$tmp"/*.log "$tmp"/*/*.log; do
    [ -f "$f" ] || continue
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f"; then
      echo "$test_name: sanitizer report in $(basename "$f"):" >&2
      grep -E -A30 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f" |
        head -60 >&2
      bad=1
    fi
  done
  return $bad
}

# is_mounted DIR: something is mounted on DIR (works on a dead FUSE mount).
is_mounted () {
  awk -v d="$1" '$2 == d { f = 1 } END { exit !f }' /proc/mounts
}

# EXIT trap: unmount, kill everything we started, check logs, remove $tmp.
cleanup () {
  local rc=$? i pid
  set +e
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    case "${MOUNTS[i]}" in
      loop:*) losetup -d "${MOUNTS[i]#loop:}" 2>/dev/null; continue ;;
    esac
    is_mounted "${MOUNTS[i]}" || continue
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}"
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -0 "$pid" 2>/dev/null && stop_pid "$pid" >/dev/null 2>&1
  done
  if [ -d "$tmp" ]; then
    check_sanitizer_logs || rc=1
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
      for f in "$tmp"/*.log "$tmp"/*/*.log; do
        [ -s "$f" ] || continue
        echo "--- tail of $(basename "$f")" >&2
        tail -n 15 "$f" >&2
      done
    fi
    if [ -n "$KEEP_TMP" ]; then
      echo "$test_name: kept $tmp" >&2
    else
      rm -rf "$tmp"
    fi
  fi
  exit "$rc"
}

# Set up $tmp, the trap, a volume uuid and a key file.
tmpdir () {
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/crucible-$test_name.XXXXXX")
  trap cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  VOL_UUID=$(cat /proc/sys/kernel/random/uuid)
  KEYFILE=$tmp/key
  make_key "$KEYFILE"
}

# make_key FILE: 32 random bytes, base64, no newline, mode 600.
make_key () {
  (umask 077 && head -c 32 /dev/urandom | base64 -w0 > "$1")
}

# ds_create NAME [args]: create region $tmp/NAME, encrypted, sharing
# $VOL_UUID and the default test geometry unless args say otherwise.
ds_create () {
  local name=$1 a uuid=1 es=1 ec=1
  shift
  for a in "$@"; do
    case "$a" in
      -u) uuid= ;;
      --extent-size) es= ;;
      --extent-count) ec= ;;
    esac
  done
  [ "$DS_EXTENT_SIZE" = default ] && es=
  [ "$DS_EXTENT_COUNT" = default ] && ec=
  "$DOWNSTAIRS" create -d "$tmp/$name" --encrypted \
    ${uuid:+-u "$VOL_UUID"} \
    ${es:+--extent-size "$DS_EXTENT_SIZE"} \
    ${ec:+--extent-count "$DS_EXTENT_COUNT"} "$@" \
    >> "$tmp/create.log" 2>&1 ||
    { tail -n 5 "$tmp/create.log" >&2; return 1; }
}

# Wait (bounded) until something listens on 127.0.0.1:PORT; 1 if pid dies.
wait_port () {
  local port=$1 pid=$2 i
  for i in $(seq 300); do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ds_start NAME [PORT]: run the downstairs for $tmp/NAME in the
# background on PORT (default: its previous port, else a free one), wait
# until it accepts connections.  Extra `run` options: the DS_ARGS array.
DS_ARGS=()
ds_start () {
  local name=$1 port=${2:-${DS_PORT[$1]:-}}
  [ -n "$port" ] || port=$(free_port)
  "$DOWNSTAIRS" run -d "$tmp/$name" -p "$port" -a 127.0.0.1 \
    ${DS_ARGS[@]+"${DS_ARGS[@]}"} >> "$tmp/$name.log" 2>&1 &
  DS_PID[$name]=$!
  DS_PORT[$name]=$port
  PIDS+=($!)
  if ! wait_port "$port" "${DS_PID[$name]}"; then
    echo "$test_name: downstairs $name did not start on port $port" >&2
    tail -n 10 "$tmp/$name.log" >&2
    return 1
  fi
}

# ds_kill NAME [SIG]: stop that downstairs (SIGTERM by default, e.g. 9).
# Returns 0 whatever its exit status (kill -9 is expected to "fail").
ds_kill () {
  local name=$1 sig=${2:-TERM} pid=${DS_PID[$1]:-}
  [ -n "$pid" ] || return 0
  stop_pid "$pid" "$sig" || true
  DS_PID[$name]=
}

# volume_create [PREFIX] [args]: regions PREFIX1..3 (default ds) with a
# fresh shared uuid; sets VOLUME.
volume_create () {
  local p=${1:-ds} i
  [ $# -gt 0 ] && shift
  VOL_UUID=$(cat /proc/sys/kernel/random/uuid)
  VOLUME="${p}1 ${p}2 ${p}3"
  for i in $VOLUME; do ds_create "$i" "$@" || return 1; done
}

# volume_start: start every downstairs of $VOLUME.
volume_start () {
  local i
  for i in $VOLUME; do ds_start "$i" || return 1; done
}

# volume_stop: stop nbdkit, then every downstairs of $VOLUME.
volume_stop () {
  local i
  nbdkit_stop || return 1
  for i in $VOLUME; do ds_kill "$i"; done
}

# The nbdkit command prefix: under SANITIZE=1 preload libasan (the plugin
# is built with ASan, nbdkit is not) and ignore nbdkit's own leaks.
nbdkit_cmd () {
  if [ "${SANITIZE:-}" = 1 ]; then
    echo env LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
      ASAN_OPTIONS=detect_leaks=0 nbdkit
  else
    echo nbdkit
  fi
}

# nbdkit_start [params]: start nbdkit in the background on a Unix socket
# ($SOCK, $URI) with the downstairs of $VOLUME and key=+$KEYFILE (unless a
# key=... is among the params, or NBDKIT_NOKEY is set).  Waits until the volume
# answers an NBD handshake; returns 1 (log tail printed) if it dies first.
nbdkit_start () {
  local ds=() i n key=key=+$KEYFILE
  for i in "$@"; do
    case "$i" in key=*) key= ;; esac
  done
  [ -n "${NBDKIT_NOKEY:-}" ] && key= # an unencrypted volume
  for i in $VOLUME; do
    ds+=("downstairs=127.0.0.1:${DS_PORT[$i]}")
  done
  SOCK=$tmp/nbd.sock
  URI="nbd+unix:///?socket=$SOCK"
  rm -f "$SOCK" "$tmp/nbdkit.pid"
  n=0
  [ -f "$tmp/nbdkit.log" ] && n=$(wc -l < "$tmp/nbdkit.log")
  $(nbdkit_cmd) -f ${NBDKIT_VERBOSE:+-v} -U "$SOCK" \
    --pidfile "$tmp/nbdkit.pid" "$PLUGIN" "${ds[@]}" ${key:+"$key"} "$@" \
    >> "$tmp/nbdkit.log" 2>&1 &
  NBDKIT_PID=$!
  PIDS+=($!)
  for i in $(seq 600); do
    [ -S "$SOCK" ] && break
    kill -0 "$NBDKIT_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -S "$SOCK" ] &&
     timeout 120 nbdinfo --size "$URI" > /dev/null 2>> "$tmp/nbdinfo.log"; then
    return 0
  fi
  echo "$test_name: nbdkit did not start" >&2
  tail -n "+$((n + 1))" "$tmp/nbdkit.log" | tail -n 10 >&2
  stop_pid "$NBDKIT_PID" >/dev/null 2>&1 || true
  NBDKIT_PID=
  return 1
}

# nbdkit_stop: SIGTERM nbdkit and wait (bounded); 1 if it had to be killed
# or exited with an error.
nbdkit_stop () {
  local rc=0
  [ -n "$NBDKIT_PID" ] || return 0
  stop_pid "$NBDKIT_PID" || rc=$?
  NBDKIT_PID=
  if [ "$rc" != 0 ]; then
    if [ "$rc" -gt 128 ]; then
      echo "$test_name: nbdkit exited with status $rc (signal $((rc - 128)))" >&2
    else
      echo "$test_name: nbdkit exited with status $rc" >&2
    fi
    return 1
  fi
}

# wait_log PATTERN SECS [FILE]: wait (bounded) until FILE (nbdkit.log)
# matches PATTERN; 1 after SECS seconds.
wait_log () {
  local i
  for i in $(seq $(($2 * 10))); do
    grep -q "$1" "${3:-$tmp/nbdkit.log}" && return 0
    sleep 0.1
  done
  return 1
}

# flip NAME LBA [BS]: xor one byte in the middle of block LBA (of extent
# 0, blocks of BS bytes, default 4096) of region $tmp/NAME, which must be
# stopped: a corrupt sector.
flip () {
  python3 - "$tmp/$1/00/000/000" $(($2 * ${3:-4096} + 1000)) <<'PY'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0x5a]))
PY
}

# stats_q EXPR: evaluate a python expression on the stats file $STATS
# (default $tmp/stats.json; d = the document, ds = its downstairs list)
# and print the result.
stats_q () {
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
ds = d["downstairs"]
print(eval("(" + sys.argv[2] + ")"))' "${STATS:-$tmp/stats.json}" "$1"
}

# stats_wait EXPR SECS: wait (bounded, polled every 0.1 s) until EXPR is
# True on the stats file; 1 after SECS seconds.
stats_wait () {
  local i
  for i in $(seq $(($2 * 10))); do
    [ "$(stats_q "$1" 2>/dev/null)" = True ] && return 0
    sleep 0.1
  done
  return 1
}

# faultproxy_start NAME: put tests/tools/faultproxy.py in front of
# downstairs NAME: DS_PORT[NAME] becomes the proxy's port (nbdkit_start
# then connects through it), REAL_PORT[NAME] keeps the daemon's, and
# `fp_ctl NAME CMD...` drives it (control socket $tmp/fp-NAME.sock).
declare -A REAL_PORT=()
faultproxy_start () {
  local name=$1 pport i
  pport=$(free_port)
  python3 "$top/tests/tools/faultproxy.py" --listen "127.0.0.1:$pport" \
    --target "127.0.0.1:${DS_PORT[$name]}" --control "$tmp/fp-$name.sock" \
    >> "$tmp/faultproxy-$name.log" 2>&1 &
  PIDS+=($!)
  for i in $(seq 100); do [ -S "$tmp/fp-$name.sock" ] && break; sleep 0.1; done
  [ -S "$tmp/fp-$name.sock" ] || { echo "faultproxy did not start" >&2; return 1; }
  REAL_PORT[$name]=${DS_PORT[$name]}
  DS_PORT[$name]=$pport
}
fp_ctl () {
  local name=$1
  shift
  python3 "$top/tests/tools/faultproxy.py" --ctl "$tmp/fp-$name.sock" "$@"
}

# The live-repair tests' volume (test-repair-interrupt, -rejoin): 4
# extents of 8 MiB, each downstairs behind a faultproxy, nbdkit with
# timeout=5 and $STATS, random $tmp/a.img and $tmp/b.img of 32 MiB, a.img
# written and flushed.  ds_up NAME restarts NAME behind its proxy;
# throttle BPS sets every proxy's rate (0 = off); fp_stale NAME IMG: NAME
# is killed, IMG written and flushed without it, every link throttled to
# $rate and NAME started again (it then waits in live repair).
proxied_volume () {
  local i len=$((32 << 20))
  DS_EXTENT_SIZE=2048 DS_EXTENT_COUNT=4 volume_create   # 4 x 8 MiB
  volume_start
  for i in ds1 ds2 ds3; do
    faultproxy_start $i || fail "faultproxy for $i did not start"
  done
  STATS=$tmp/stats.json
  NBDKIT_VERBOSE=1 nbdkit_start timeout=5 stats="$STATS" ||
    fail "nbdkit did not start"
  head -c $len /dev/urandom > "$tmp/a.img"
  head -c $len /dev/urandom > "$tmp/b.img"
  timeout 60 nbdcopy --flush "$tmp/a.img" "$URI" || fail "fill failed"
}
ds_up () {
  local name=$1 pport=${DS_PORT[$1]}
  ds_start "$name" "${REAL_PORT[$name]}" || return 1
  DS_PORT[$name]=$pport
}
throttle () {
  local i
  for i in ds1 ds2 ds3; do
    fp_ctl $i throttle "$1" > /dev/null || return 1
  done
}
fp_stale () {
  local n=$1 idx=$((${1#ds} - 1))
  ds_kill "$n" KILL
  stats_wait "ds[$idx]['state'] != 'active'" 20 || fail "$n still active"
  timeout 60 nbdcopy --flush "$2" "$URI" || fail "writing $2 failed"
  throttle "$rate" || fail "faultproxy did not answer"
  ds_up "$n" || fail "$n did not restart"
}

# rollback_forge: every region of $VOLUME back to its copy $tmp/NAME.B,
# then ds1's extent trees to its older copy $tmp/ds1.A with its extent
# metadata (gen_number, flush_number, dirty) forged to ds2's: a replica
# rolled back so that nothing at start-up can tell (dump sees no
# difference, checked).
rollback_forge () {
  local i d f
  for i in $VOLUME; do
    rm -rf "${tmp:?}/$i"
    cp -a "$tmp/$i.B" "$tmp/$i"
  done
  for d in "$tmp"/ds1.A/[0-9A-F][0-9A-F]; do # the extent tree(s)
    rm -rf "$tmp/ds1/${d##*/}"
    cp -a "$d" "$tmp/ds1/${d##*/}"
  done
  (cd "$tmp/ds1" && find . -name '*.db' ! -name seed.db) > "$tmp/dbs"
  while read -r f; do
    sqlite3 -batch "$tmp/ds2/$f" "SELECT 'UPDATE metadata SET value = ' ||
      value || ' WHERE name = ''' || name || ''';' FROM metadata WHERE name
      IN ('gen_number', 'flush_number', 'dirty')" > "$tmp/forge.sql" ||
      fail "reading ds2's metadata of $f failed"
    [ "$(wc -l < "$tmp/forge.sql")" = 3 ] ||
      fail "test bug: $f: ds2 has no gen_number/flush_number/dirty"
    sqlite3 -batch "$tmp/ds1/$f" < "$tmp/forge.sql" ||
      fail "forging ds1's metadata of $f failed"
  done < "$tmp/dbs"
  "$DOWNSTAIRS" dump -d "$tmp/ds1" -d "$tmp/ds2" -d "$tmp/ds3" \
    > "$tmp/dump.txt" 2>&1 || fail "dump failed"
  grep -q '\*' "$tmp/dump.txt" &&
    { cat "$tmp/dump.txt" >&2; fail "test bug: the forged ds1 still differs"; }
  return 0
}

# nbdsh_run ARGS...: nbdsh with the system python (python3 on PATH here
# may lack the nbd module).
nbdsh_run () {
  PATH=/usr/bin:$PATH nbdsh "$@"
}

# random_image FILE BYTES: FILE of BYTES random bytes.
random_image () {
  head -c "$2" /dev/urandom > "$1"
}

# volume_put IMG OFFSET SOCK: write IMG at OFFSET bytes of the volume
# served on the unix socket SOCK (1 MiB at a time), then flush.
volume_put () {
  PATH=/usr/bin:$PATH timeout 100 python3 - "$1" "$2" "$3" <<'EOF'
import sys, nbd
h = nbd.NBD()
h.connect_unix(sys.argv[3])
data = open(sys.argv[1], "rb").read()
off = int(sys.argv[2])
for i in range(0, len(data), 1 << 20):
    h.pwrite(data[i:i + (1 << 20)], off + i)
h.flush()
h.shutdown()
EOF
}

# volume_fill IMG [WHAT]: copy IMG onto the volume from offset 0 (nbdcopy
# with a flush at the end); fails the test saying WHAT on error.
volume_fill () {
  timeout 200 nbdcopy --flush "$1" "$URI" || fail "${2:-fill}: nbdcopy in failed"
}

# volume_check IMG [WHAT]: the volume's first size-of-IMG bytes read back
# equal to IMG (nbdcopy out, cmp); fails the test saying WHAT.
volume_check () {
  local len
  len=$(stat -c %s "$1")
  rm -f "$tmp/check.img"
  timeout 200 nbdcopy "$URI" "$tmp/check.img" ||
    fail "${2:-check}: nbdcopy out failed"
  cmp -n "$len" "$1" "$tmp/check.img" || fail "${2:-check}: data differs"
  rm -f "$tmp/check.img"
}

# The admin socket (admin=$ASOCK) and its client: adm ARGS runs
# crucible-admin on it (bounded); json_check EXPR reads a reply on stdin,
# checks it is version 1 JSON and that EXPR (d = the document) holds.
ADMIN=$top/crucible-admin
ASOCK=${tmp:-/tmp}/admin.sock
adm () { timeout 20 "$ADMIN" -s "$ASOCK" "$@"; }
json_check () {
  python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
assert d["version"] == 1, d
if not eval(sys.argv[1]):
    sys.exit("json check failed: " + sys.argv[1] + ": " + json.dumps(d)[:3000])' "$1"
}

# size_of URI: volume size in bytes.
size_of () {
  nbdinfo --size "$1"
}

# fuse_mount DIR: nbdfuse $URI on DIR (file DIR/nbd), waits until mounted.
fuse_mount () {
  local dir=$1 i
  mkdir -p "$dir"
  nbdfuse "$dir" --unix "$SOCK" >> "$tmp/nbdfuse.log" 2>&1 &
  PIDS+=($!)
  FUSE_PID=$!
  MOUNTS+=("$dir")
  for i in $(seq 200); do
    is_mounted "$dir" && [ -e "$dir/nbd" ] && return 0
    kill -0 "$FUSE_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "$test_name: nbdfuse did not mount $dir" >&2
  tail -n 5 "$tmp/nbdfuse.log" >&2
  return 1
}

# fuse_umount DIR: unmount and wait for nbdfuse to exit.
fuse_umount () {
  fusermount3 -u "$1" || return 1
  stop_pid "$FUSE_PID" >/dev/null 2>&1 || true
}

tmpdir
