#!/usr/bin/env bash
# `make run`: a local crucible-c volume to play with.
#
# Creates (only once) three 1 GiB encrypted regions ./var/ds{1,2,3}
# sharing one uuid and a key file ./var/key (mode 600), starts three
# downstairs on 127.0.0.1 and nbdkit with crucible.so, prints how to
# connect, and on Ctrl-C stops everything it started (nbdkit first, then
# the downstairs), by pid.  Running it again reuses the same regions, so
# the data is still there.  nbdkit rewrites ./var/stats.json every second
# (stats=); each downstairs' pid is in ./var/dsN.pid.  A downstairs that
# dies (or is killed to try a failure) is reported with the command that
# restarts it, and the volume goes on with the other two; only nbdkit
# exiting ends the run.
#
# Environment:
#   CRUCIBLE_VAR=./var              where regions, key, logs live
#   CRUCIBLE_DS_PORTS="3810 3820 3830"
#   CRUCIBLE_NBD_PORT=10809         NBD TCP port
#   CRUCIBLE_NBD_ADDR=127.0.0.1     NBD listen address (0.0.0.0: network)
#   CRUCIBLE_NBD_SOCK=PATH          serve on a Unix socket instead of TCP
#   CRUCIBLE_EXTENT_COUNT=8         extents of 128 MiB (8 = 1 GiB), at create
#   CRUCIBLE_NBDKIT_ARGS="..."      extra plugin parameters (write-quorum=3)
#
# Durability: a write is acknowledged once two downstairs have it, and is
# durable on disk once the client flushes (fsync, `sync`, qemu's flush,
# nbd-client disconnect after sync).  Flush or disconnect your clients
# before pressing Ctrl-C.

set -e
cd "$(dirname "$0")/.."

VAR=${CRUCIBLE_VAR:-./var}
read -r -a PORTS <<< "${CRUCIBLE_DS_PORTS:-3810 3820 3830}"
NBD_PORT=${CRUCIBLE_NBD_PORT:-10809}
NBD_ADDR=${CRUCIBLE_NBD_ADDR:-127.0.0.1}
NBD_SOCK=${CRUCIBLE_NBD_SOCK:-}
EXTENT_COUNT=${CRUCIBLE_EXTENT_COUNT:-8}
read -r -a EXTRA <<< "${CRUCIBLE_NBDKIT_ARGS:-}"
DS=./crucible-downstairs
PLUGIN=./crucible.so

die () { echo "run-local: $*" >&2; exit 1; }

[ ${#PORTS[@]} = 3 ] || die "CRUCIBLE_DS_PORTS needs three ports"
[ -x "$DS" ] && [ -f "$PLUGIN" ] || die "build first: make"
command -v nbdkit > /dev/null || die "nbdkit is not installed"
mkdir -p "$VAR"

# Create the regions and the key once; refuse a half-created volume
# rather than guess.
have=0
for i in 1 2 3; do
  [ -f "$VAR/ds$i/region.json" ] && have=$((have + 1))
done
case $have in
  0)
    [ -e "$VAR/key" ] && die "$VAR/key exists but no regions: remove it first"
    (umask 077 && head -c 32 /dev/urandom | base64 -w0 > "$VAR/key")
    uuid=$(cat /proc/sys/kernel/random/uuid)
    for i in 1 2 3; do
      echo "run-local: creating region $VAR/ds$i ($((EXTENT_COUNT * 128)) MiB)"
      "$DS" create -d "$VAR/ds$i" -u "$uuid" --encrypted \
        --extent-count "$EXTENT_COUNT"
    done
    ;;
  3)
    [ -f "$VAR/key" ] ||
      die "$VAR/key is missing: without it the regions cannot be read"
    echo "run-local: reusing the regions in $VAR"
    ;;
  *) die "only $have of $VAR/ds{1,2,3} exist: fix or remove $VAR" ;;
esac
chmod 600 "$VAR/key"

PIDS=()
NBDKIT_PID=

# Stop one pid: SIGTERM, wait up to 30 s, then SIGKILL (scripts/proc.sh).
. ./scripts/proc.sh
stop_pid () {
  proc_stop "$1" TERM 30 run-local || true
}

# Ctrl-C, TERM, or a child died: stop nbdkit first (clients are cut off,
# the plugin drains), then the downstairs.
stopping=
stop_all () {
  [ -n "$stopping" ] && return
  stopping=1
  echo
  echo "run-local: stopping"
  [ -n "$NBDKIT_PID" ] && stop_pid "$NBDKIT_PID"
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  # A downstairs restarted by hand (the command printed below records its
  # pid): stop it too, if that pid still runs that region.
  for i in 1 2 3; do
    pid=$(cat "$VAR/ds$i.pid" 2>/dev/null) || continue
    tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" |
      grep -q -- "run -d $VAR/ds$i " && stop_pid "$pid"
  done
  echo "run-local: stopped; data kept in $VAR"
}
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

# Children get their own session (setsid) so that Ctrl-C reaches only this
# script, which then stops them in order.
for i in 1 2 3; do
  port=${PORTS[i - 1]}
  setsid "$DS" run -d "$VAR/ds$i" -p "$port" -a 127.0.0.1 \
    >> "$VAR/ds$i.log" 2>&1 < /dev/null &
  PIDS+=($!)
  echo $! > "$VAR/ds$i.pid"
  for n in $(seq 100); do
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && break
    kill -0 "${PIDS[-1]}" 2>/dev/null ||
      die "downstairs ds$i failed: $(tail -n 3 "$VAR/ds$i.log")"
    sleep 0.1
  done
  echo "run-local: downstairs ds$i on 127.0.0.1:$port (log $VAR/ds$i.log)"
done

if [ -n "$NBD_SOCK" ]; then
  listen=(-U "$NBD_SOCK")
  uri="nbd+unix:///?socket=$NBD_SOCK"
  rm -f "$NBD_SOCK"
else
  listen=(-i "$NBD_ADDR" -p "$NBD_PORT")
  uri="nbd://localhost:$NBD_PORT"
fi
setsid nbdkit -f "${listen[@]}" "$PLUGIN" \
  "downstairs=127.0.0.1:${PORTS[0]}" "downstairs=127.0.0.1:${PORTS[1]}" \
  "downstairs=127.0.0.1:${PORTS[2]}" key=+"$VAR/key" stats="$VAR/stats.json" \
  admin="$(cd "$VAR" && pwd)/admin.sock" \
  "${EXTRA[@]}" \
  >> "$VAR/nbdkit.log" 2>&1 < /dev/null &
NBDKIT_PID=$!
for n in $(seq 600); do
  nbdinfo --size "$uri" > /dev/null 2>&1 && break
  kill -0 "$NBDKIT_PID" 2>/dev/null ||
    die "nbdkit failed: $(tail -n 5 "$VAR/nbdkit.log")"
  sleep 0.2
done

size=$(nbdinfo --size "$uri" 2>/dev/null) ||
  die "nbdkit does not answer on $uri (log $VAR/nbdkit.log)"
cat <<EOF

crucible-c volume ready: $((size / 1024 / 1024)) MiB, nbdkit log $VAR/nbdkit.log
Connect with one of:
  nbdsh -u $uri
  nbdcopy disk.img $uri
EOF
if [ -z "$NBD_SOCK" ]; then
  cat <<EOF
  qemu-system-x86_64 -drive file=nbd:localhost:$NBD_PORT,format=raw,if=virtio ...
  nbd-client localhost $NBD_PORT /dev/nbd0      (as root; modprobe nbd)
EOF
else
  cat <<EOF
  qemu-system-x86_64 -drive file=nbd:unix:$NBD_SOCK,format=raw,if=virtio ...
  nbd-client -unix $NBD_SOCK /dev/nbd0          (as root; modprobe nbd)
EOF
fi
cat <<EOF
Health: ./crucible-admin -s $VAR/admin.sock status
Statistics (JSON, rewritten every second): $VAR/stats.json
Flush or disconnect clients, then Ctrl-C here to stop everything.
EOF

# Wait until Ctrl-C or nbdkit exits; report each downstairs that dies.
reported=()
while :; do
  wait -n || true
  if ! kill -0 "$NBDKIT_PID" 2>/dev/null; then
    echo "run-local: nbdkit exited unexpectedly; see $VAR/nbdkit.log" >&2
    exit 1
  fi
  for i in 1 2 3; do
    pid=${PIDS[i - 1]}
    [ -n "${reported[i]:-}" ] && continue
    kill -0 "$pid" 2>/dev/null && continue
    reported[i]=1
    cat >&2 <<EOF
run-local: downstairs ds$i (pid $pid) exited; the volume goes on with the
  other two. To bring it back (it is live-repaired), run:
  $DS run -d $VAR/ds$i -p ${PORTS[i - 1]} -a 127.0.0.1 >> $VAR/ds$i.log 2>&1 & echo \$! > $VAR/ds$i.pid
EOF
  done
done
