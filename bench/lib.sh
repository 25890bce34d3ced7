# shellcheck shell=bash
# bench/lib.sh: helpers shared by bench.sh and bench-link.sh (sourced).
#
# Every process we start is remembered by pid in ALL_PIDS and killed by pid
# on exit; every temporary file lives under $BT (mktemp -d), removed on
# exit.  Callers may set EXTRA_CLEANUP to a command run on exit after the
# processes are gone (e.g. deleting a network namespace).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALL_PIDS=()
EXTRA_CLEANUP=""
BT=""

# Print a message to stderr with the script's name.
say() { echo "bench: $*" >&2; }

# Kill the given pids (TERM, then KILL after ~5 s) and reap them: TERM
# to all first, so they stop together (scripts/proc.sh for each).
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/proc.sh"
stop_pids() {
  local p
  [ $# -eq 0 ] && return 0
  kill -TERM "$@" 2>/dev/null
  for p in "$@"; do proc_stop "$p" TERM 5 bench || true; done
  return 0
}

# Exit trap: extra cleanup, kill what we started, remove the temp dir.
bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pids "${ALL_PIDS[@]}"
  [ -n "$EXTRA_CLEANUP" ] && eval "$EXTRA_CLEANUP"
  [ -n "$BT" ] && [ -d "$BT" ] && rm -rf "$BT"
  exit $rc
}

# Create the temp dir (under $BENCH_TMPDIR if set) and install the trap.
bench_init() {
  BT=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/crucible-bench.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Start a command in the background; its pid goes to $SPAWNED and ALL_PIDS.
# Usage: spawn LOGFILE cmd args...
spawn() {
  local log=$1; shift
  "$@" >>"$log" 2>&1 </dev/null &
  SPAWNED=$!
  ALL_PIDS+=("$SPAWNED")
}

# Forget pids that were stopped (keeps the exit trap short).
forget_pids() {
  local p q keep=()
  for p in "${ALL_PIDS[@]}"; do
    for q in "$@"; do [ "$p" = "$q" ] && continue 2; done
    keep+=("$p")
  done
  ALL_PIDS=("${keep[@]}")
}

# A free TCP port on ADDR (default 127.0.0.1), picked by the kernel.
freeport() {
  python3 -c 'import socket,sys
s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' \
    "${1:-127.0.0.1}"
}

# Wait until unix socket PATH exists while PID lives (timeout SECS).
wait_socket() {
  local path=$1 pid=$2 secs=${3:-15} i
  for i in $(seq $((secs * 20))); do
    [ -S "$path" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Wait until TCP PORT is listening while PID lives (timeout SECS).
# NS: optional network namespace to look in.
wait_port() {
  local port=$1 pid=$2 secs=${3:-15} ns=${4:-} i pre=()
  [ -n "$ns" ] && pre=(ip netns exec "$ns")
  for i in $(seq $((secs * 20))); do
    "${pre[@]}" ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Peak RSS (VmHWM, KiB) of PID, or 0.
peak_rss_kib() {
  awk '/^VmHWM:/ {print $2; f=1} END {if (!f) print 0}' \
    "/proc/$1/status" 2>/dev/null || echo 0
}

# User+system CPU seconds used so far by PID, or 0.
cpu_seconds() {
  local tck
  tck=$(getconf CLK_TCK)
  awk -v t="$tck" '{sub(/.*\) /, ""); printf "%.2f\n", ($12 + $13) / t}' \
    "/proc/$1/stat" 2>/dev/null || echo 0
}

# A random 32-byte key, base64, in FILE (mode 600, no newline).
make_keyfile() {
  (umask 077; head -c 32 /dev/urandom | base64 -w0 >"$1")
}

# Create three crucible regions sharing one uuid.
# Usage: crucible_regions DIRPREFIX SIZE_MIB EXTENT_BLOCKS ENCRYPTED(0|1) LOG
crucible_regions() {
  local prefix=$1 mib=$2 eblocks=$3 enc=$4 log=$5 uuid count i flag=()
  uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  count=$(( mib * 1024 * 1024 / (eblocks * 4096) ))
  [ "$count" -lt 1 ] && count=1
  [ "$enc" = 1 ] && flag=(--encrypted)
  for i in 0 1 2; do
    "$ROOT/crucible-downstairs" create -d "$prefix$i" -u "$uuid" \
      --extent-size "$eblocks" --extent-count "$count" "${flag[@]}" \
      >>"$log" 2>&1 || return 1
  done
}
