# Process helpers shared by scripts/run-local.sh, bench/lib.sh and the
# end-to-end tests (tests/e2e/functions.sh).  Source it; bash.

# proc_stop PID [SIG] [SECS] [NAME]: send SIG (default TERM) to PID, wait
# up to SECS (default 20) seconds for it to exit, then SIGKILL it (saying
# so on stderr, prefixed NAME), and reap it.  Returns its exit status (0 if
# it was not running or not our child).
proc_stop () {
  local pid=$1 sig=${2:-TERM} secs=${3:-20} name=${4:-${0##*/}} i rc=0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || rc=$?; return $rc; }
  kill -"$sig" "$pid" 2>/dev/null || true
  for i in $(seq $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name: pid $pid did not exit on SIG$sig within $secs s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return $rc
}
