#!/usr/bin/env bash
# bench/bench.sh: fio against crucible-c and its peers, in one run.
#
#   bash bench/bench.sh            full run (6 targets x 7 jobs, ~7 min)
#   bash bench/bench.sh --smoke    CI check: crucible-enc + file, 2 jobs
#
# Every target is served over NBD and driven by fio's nbd engine with the
# same jobs and seeds.  Targets (see docs/PERFORMANCE.md):
#   memory          nbdkit memory            ceiling: NBD + RAM, no disk
#   file            nbdkit file              one plain copy on local disk
#   luks            qemu-nbd LUKS image      one encrypted copy
#   quorum          qemu-nbd LUKS over quorum of 3 x nbdkit file (TCP)
#                                            stand-in of our design
#   crucible-enc    crucible.so + 3 downstairs, AES-256-GCM
#   crucible-plain  the same, unencrypted region
#
# Environment: BENCH_TARGETS="memory file ..." BENCH_JOBS="seqwrite ..."
# BENCH_SIZE_MIB BENCH_RUNTIME (s/job) BENCH_RAMP (s) BENCH_EXTENT_BLOCKS
# BENCH_TMPDIR (where volumes live; default /tmp) BENCH_RESULTS (dir).
# Results: table on stdout, bench/results/<timestamp>.json (+ latest.json)
# and <timestamp>.png.  A target that fails is reported and skipped.
# CPU per unit: utime+stime (/proc/PID/stat, all threads) and context
# switches (/proc/PID/task/*/status) of every server process, sampled
# inside each job's measured part (after fio's ramp; the fill is outside)
# and divided by fio's rate x the window (run_job).  A full run also runs
# build/bench/prims once: the model ceiling the report compares with.

set -u -o pipefail
. "$(dirname "$0")/lib.sh"

SMOKE=0
for a in "$@"; do
  case $a in
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown argument: $a"; exit 2 ;;
  esac
done

ALL_JOBS="seqwrite seqread randwrite32 randread32 randwrite1 fsync1 randrw"
if [ $SMOKE = 1 ]; then
  TARGETS=${BENCH_TARGETS:-"file crucible-enc"}
  JOBS=${BENCH_JOBS:-"randwrite32 randread32"}
  SIZE_MIB=${BENCH_SIZE_MIB:-64}
  RUNTIME=${BENCH_RUNTIME:-2}
  RAMP=${BENCH_RAMP:-0}
else
  TARGETS=${BENCH_TARGETS:-"memory file luks quorum crucible-enc crucible-plain"}
  JOBS=${BENCH_JOBS:-$ALL_JOBS}
  SIZE_MIB=${BENCH_SIZE_MIB:-256}
  RUNTIME=${BENCH_RUNTIME:-7}
  RAMP=${BENCH_RAMP:-1}
fi
# 16 MiB extents: a 256 MiB volume then has 16 extents, so random IO is
# spread over extents as it is on a large volume (default 128 MiB extents
# would put the whole benchmark in 2 extents).
EXTENT_BLOCKS=${BENCH_EXTENT_BLOCKS:-4096}
SECRET=bench-luks-passphrase
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}

for v in SIZE_MIB RUNTIME RAMP EXTENT_BLOCKS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { say "$v must be a number"; exit 2; }
done
[ "$SIZE_MIB" -ge 1 ] && [ "$RUNTIME" -ge 1 ] && [ "$EXTENT_BLOCKS" -ge 1 ] ||
  { say "size, runtime and extent blocks must be positive"; exit 2; }

for tool in fio nbdkit python3 ss; do
  command -v $tool >/dev/null || { say "$tool not found (make deps)"; exit 2; }
done
fio --enghelp=nbd >/dev/null 2>&1 || { say "fio lacks the nbd engine"; exit 2; }

bench_init
RUN=$BT/run
mkdir -p "$RUN"
TS=$(date -u +%Y%m%dT%H%M%SZ)

# run.json: what report.py needs to know about this run.
python3 - "$RUN/run.json" "$SMOKE" "$SIZE_MIB" "$RUNTIME" "$RAMP" \
  "$TS" "$TARGETS" "$JOBS" "$EXTENT_BLOCKS" "$(getconf CLK_TCK)" <<'EOF'
import json, os, platform, sys
p, smoke, size, rt, ramp, ts, targets, jobs, eb, tck = sys.argv[1:]
json.dump({"mode": "smoke" if smoke == "1" else "full",
           "size_mib": int(size), "runtime_s": int(rt), "ramp_s": int(ramp),
           "timestamp": ts, "targets": targets.split(), "jobs": jobs.split(),
           "base": "file", "extent_blocks": int(eb), "clk_tck": int(tck),
           "host": {"nproc": os.cpu_count(), "kernel": platform.release(),
                    "loadavg_start": os.getloadavg()}},
          open(p, "w"), indent=1)
EOF

# fio options of each job (all: nbd engine, direct, fixed seeds).
job_opts() {
  case $1 in
    fill)        echo "--rw=write --bs=1M --iodepth=8 --end_fsync=1" ;;
    seqwrite)    echo "--rw=write --bs=1M --iodepth=8 --end_fsync=1" ;;
    seqread)     echo "--rw=read --bs=1M --iodepth=8" ;;
    randwrite32) echo "--rw=randwrite --bs=4k --iodepth=32 --end_fsync=1" ;;
    randread32)  echo "--rw=randread --bs=4k --iodepth=32" ;;
    randwrite1)  echo "--rw=randwrite --bs=4k --iodepth=1 --end_fsync=1" ;;
    fsync1)      echo "--rw=randwrite --bs=4k --iodepth=1 --fsync=1" ;;
    randrw)      echo "--rw=randrw --rwmixread=70 --bs=16k --iodepth=16 --end_fsync=1" ;;
    *) return 1 ;;
  esac
}

# The fio command of one job against URI, output json+ to OUT, in FIO_CMD.
# fill is not time based (it writes the whole volume once); every job has
# a hard timeout.
fio_cmd() {
  local uri=$1 job=$2 out=$3 tb=() lim
  if [ "$job" = fill ]; then
    tb=(--runtime=180); lim=200
  else
    tb=(--time_based --runtime="$RUNTIME" --ramp_time="$RAMP")
    lim=$((RUNTIME + RAMP + 60))
  fi
  # shellcheck disable=SC2207
  FIO_CMD=(timeout -k 5 "$lim" fio --name="$job" --ioengine=nbd --uri="$uri"
    --direct=1 --randseed=1 --randrepeat=1 --size="${SIZE_MIB}M"
    $(job_opts "$job") "${tb[@]}" --output-format=json+ --output="$out")
}

# Run one fio job in the foreground (the fill).
run_fio() {
  fio_cmd "$@"
  "${FIO_CMD[@]}" >>"$TLOG" 2>&1
}

# CPU and context switches of every server process of the target, one
# line: "EPOCH name:ticks:switches ...".  ticks: utime+stime of all
# threads, dead ones included (/proc/PID/stat); switches: voluntary +
# nonvoluntary of the live threads (/proc/PID/task/*/status), so it is
# only meaningful between two samples with the same threads alive.
# Reads everything in one grep (no error for a thread that just exited).
usage_sample() {
  local pc pid stats=() tasks=()
  for pc in "${PROCS[@]}"; do
    pid=${pc##*:}
    stats+=("/proc/$pid/stat"); tasks+=(/proc/"$pid"/task/*/status)
  done
  { grep -sH '' "${stats[@]}"; grep -sH ctxt_switches "${tasks[@]}"; } |
    awk -v procs="${PROCS[*]}" -v t="${EPOCHREALTIME/,/.}" '
      { split($0, a, "/"); pid = a[3] }
      /^\/proc\/[0-9]+\/stat:/ { sub(/^.*\) /, ""); tk[pid] = $12 + $13 }
      /ctxt_switches/ { cs[pid] += $NF }
      END {
        n = split(procs, p, " "); printf "%s", t
        for (i = 1; i <= n; i++) {
          split(p[i], q, ":"); printf " %s:%d:%d", q[1], tk[q[2]], cs[q[2]]
        }
        print ""
      }'
}

# Sleep until the sum of the seconds S... after the EPOCHREALTIME value T0.
# Usage: sleep_until T0 S...
sleep_until() {
  local t0=$1; shift
  sleep "$(awk -v t0="$t0" -v n="${EPOCHREALTIME/,/.}" -v s="$*" \
    'BEGIN { k = split(s, a, " "); for (i = 1; i <= k; i++) t0 += a[i]
             d = t0 - n; printf "%.3f", (d > 0 ? d : 0) }')"
}

# Where the CPU window sits in a job (s): it opens WIN_START after the
# ramp (fio's own start-up, connecting included, takes well under that)
# and closes WIN_END before the end, so both samples fall inside fio's
# measured part with the connection's threads alive.  report.py divides
# by units = fio's rate (IOPS or MB/s of the measured part) x window.
WIN_START=0.5
WIN_END=0.25

# Run one measured job (fio in the background) and sample usage_sample
# into OUT's .usage file four times: before fio, at the window's opening
# and closing, after fio; then "alive 0|1" (fio still ran at the close).
run_job() {
  local out=$3 usage=${3%.json}.usage pid t0 rc alive=1
  fio_cmd "$@"
  usage_sample >"$usage"
  "${FIO_CMD[@]}" >>"$TLOG" 2>&1 &
  pid=$!
  ALL_PIDS+=("$pid")
  t0=${EPOCHREALTIME/,/.}
  sleep_until "$t0" "$RAMP" "$WIN_START"
  usage_sample >>"$usage"
  sleep_until "$t0" "$RAMP" "$RUNTIME" "-$WIN_END"
  kill -0 "$pid" 2>/dev/null || alive=0
  usage_sample >>"$usage"
  wait "$pid"; rc=$?
  forget_pids "$pid"
  usage_sample >>"$usage"
  echo "alive $alive" >>"$usage"
  return $rc
}

# Targets.  Each start_* sets URI, appends "name:pid" to PROCS and returns
# non-zero (with ERR set) on failure.  Work files go under $TD.

start_memory() {
  local sock=$TD/nbd.sock
  spawn "$TLOG" nbdkit -f --log=stderr -U "$sock" memory "${SIZE_MIB}M"
  PROCS+=("nbdkit:$SPAWNED")
  wait_socket "$sock" "$SPAWNED" || { ERR="nbdkit memory did not start"; return 1; }
  URI="nbd+unix:///?socket=$sock"
}

start_file() {
  local sock=$TD/nbd.sock
  truncate -s "${SIZE_MIB}M" "$TD/disk.img"
  spawn "$TLOG" nbdkit -f --log=stderr -U "$sock" file "$TD/disk.img"
  PROCS+=("nbdkit:$SPAWNED")
  wait_socket "$sock" "$SPAWNED" || { ERR="nbdkit file did not start"; return 1; }
  URI="nbd+unix:///?socket=$sock"
}

# A LUKS image (qemu's default aes-256-xts); iter-time kept short since
# only unlock time depends on it.  qemu-img sometimes fails its PBKDF
# benchmark on a loaded machine ("Unable to get accurate CPU usage"): retry.
make_luks() {
  local i
  for i in 1 2 3; do
    qemu-img create -q -f luks --object "secret,id=sec0,data=$SECRET" \
      -o key-secret=sec0,iter-time=250 "$1" "${SIZE_MIB}M" >>"$TLOG" 2>&1 &&
      return 0
  done
  return 1
}

# qemu-nbd on a unix socket with OPTS (--image-opts).  --cache=writeback:
# page cache + fdatasync on NBD flush, the same durability contract as
# nbdkit file (default cache) and the downstairs (fsync at flush);
# --cache=none would add O_DIRECT, which neither of those uses.
start_qemu_nbd() {
  local sock=$TD/nbd.sock
  spawn "$TLOG" qemu-nbd --persistent --shared=8 --cache=writeback \
    --aio=threads -k "$sock" --object "secret,id=sec0,data=$SECRET" \
    --image-opts "$1"
  PROCS+=("qemu-nbd:$SPAWNED")
  wait_socket "$sock" "$SPAWNED" || { ERR="qemu-nbd did not start"; return 1; }
  URI="nbd+unix:///?socket=$sock"
}

start_luks() {
  command -v qemu-nbd >/dev/null || { ERR="qemu-nbd not installed"; return 1; }
  make_luks "$TD/luks.img" || { ERR="qemu-img create -f luks failed"; return 1; }
  start_qemu_nbd "driver=luks,key-secret=sec0,file.filename=$TD/luks.img"
}

# LUKS over quorum: the LUKS header must be identical on every child
# (quorum compares raw child bytes), so create it once and copy it.
start_quorum() {
  local i port pid opts
  command -v qemu-nbd >/dev/null || { ERR="qemu-nbd not installed"; return 1; }
  make_luks "$TD/c0.img" || { ERR="qemu-img create -f luks failed"; return 1; }
  cp --sparse=always "$TD/c0.img" "$TD/c1.img"
  cp --sparse=always "$TD/c0.img" "$TD/c2.img"
  opts="driver=luks,key-secret=sec0,file.driver=quorum,file.vote-threshold=2"
  opts+=",file.read-pattern=fifo"
  for i in 0 1 2; do
    port=$(freeport)
    spawn "$TLOG" nbdkit -f --log=stderr -i 127.0.0.1 -p "$port" \
      file "$TD/c$i.img"
    pid=$SPAWNED
    PROCS+=("nbdkit-file$i:$pid")
    wait_port "$port" "$pid" || { ERR="nbdkit file $i did not start"; return 1; }
    opts+=",file.children.$i.driver=nbd,file.children.$i.server.type=inet"
    opts+=",file.children.$i.server.host=127.0.0.1"
    opts+=",file.children.$i.server.port=$port"
  done
  start_qemu_nbd "$opts"
}

# Three downstairs on 127.0.0.1 + nbdkit crucible.so on a unix socket.
start_crucible() {
  local enc=$1 i port pid sock=$TD/nbd.sock args=()
  [ -x "$ROOT/crucible-downstairs" ] && [ -f "$ROOT/crucible.so" ] ||
    { ERR="crucible.so or crucible-downstairs not built (make)"; return 1; }
  crucible_regions "$TD/region" "$SIZE_MIB" "$EXTENT_BLOCKS" "$enc" "$TLOG" ||
    { ERR="crucible-downstairs create failed"; return 1; }
  for i in 0 1 2; do
    port=$(freeport)
    spawn "$TLOG" "$ROOT/crucible-downstairs" run -d "$TD/region$i" \
      -p "$port" -a 127.0.0.1
    pid=$SPAWNED
    PROCS+=("downstairs$i:$pid")
    wait_port "$port" "$pid" || { ERR="downstairs $i did not start"; return 1; }
    args+=("downstairs=127.0.0.1:$port")
  done
  if [ "$enc" = 1 ]; then
    make_keyfile "$TD/key"
    args+=("key=+$TD/key")
  fi
  spawn "$TLOG" nbdkit -f --log=stderr -U "$sock" "$ROOT/crucible.so" \
    "${args[@]}"
  PROCS+=("nbdkit:$SPAWNED")
  wait_socket "$sock" "$SPAWNED" 30 || { ERR="nbdkit crucible.so did not start"; return 1; }
  URI="nbd+unix:///?socket=$sock"
}
start_crucible-enc() { start_crucible 1; }
start_crucible-plain() { start_crucible 0; }

# Write meta.json for the current target.
write_meta() {
  local status=$1
  python3 - "$OUT/meta.json" "$status" "$ERR" "${PROCS[@]}" <<EOF
import json, sys
p, status, err = sys.argv[1:4]
rss = json.loads('''$RSS_JSON''')
cpu = json.loads('''$CPU_JSON''')
json.dump({"status": status, "error": err, "rss_kib": rss, "cpu_s": cpu},
          open(p, "w"), indent=1)
EOF
}

# Peak RSS and CPU time of every process of the target, as JSON objects.
collect_usage() {
  local pc name pid r="{" c="{" sep=""
  for pc in "${PROCS[@]}"; do
    name=${pc%%:*}; pid=${pc##*:}
    r+="$sep\"$name\": $(peak_rss_kib "$pid")"
    c+="$sep\"$name\": $(cpu_seconds "$pid")"
    sep=", "
  done
  RSS_JSON="$r}"; CPU_JSON="$c}"
}

# Start target T, fill it, run every job, record usage, stop it.
run_target() {
  local t=$1 job pids=() pc t0 failed=""
  TD=$BT/$t; OUT=$RUN/$t; TLOG=$OUT/log
  mkdir -p "$TD" "$OUT"
  PROCS=(); ERR=""; URI=""; RSS_JSON="{}"; CPU_JSON="{}"
  t0=$SECONDS
  # The previous target's dirty pages would otherwise be written back
  # during this one's jobs (the target run second lost write+flush and
  # rand write in both orders tried, 2026-12-02).
  sync
  say "$t: starting"
  if ! "start_$t"; then
    failed=$ERR
  elif ! run_fio "$URI" fill "$OUT/fill.json"; then
    failed="precondition (seq write fill) failed"
  else
    for job in $JOBS; do
      if ! run_job "$URI" "$job" "$OUT/$job.json"; then
        failed="fio $job failed"
        rm -f "$OUT/$job.json"
        break
      fi
    done
  fi
  collect_usage
  for pc in "${PROCS[@]}"; do
    kill -0 "${pc##*:}" 2>/dev/null ||
      { [ -z "$failed" ] && failed="${pc%%:*} exited during the run"; }
    pids+=("${pc##*:}")
  done
  stop_pids "${pids[@]}"
  forget_pids "${pids[@]}"
  rm -rf "$TD"
  if [ -n "$failed" ]; then
    ERR=$failed
    say "$t: FAILED: $failed (last log lines follow)"
    tail -n 8 "$TLOG" | sed 's/^/    /' >&2
    write_meta failed
  else
    say "$t: done in $((SECONDS - t0)) s"
    write_meta ok
  fi
}

say "targets: $TARGETS; jobs: $JOBS; ${SIZE_MIB} MiB, ${RUNTIME}s/job"
for t in $TARGETS; do
  declare -F "start_$t" >/dev/null || { say "unknown target $t"; exit 2; }
done
# The cost of each primitive (bench/prims.c), once per full run, for the
# model ceiling in the report; not in smoke runs (it takes ~10 s).
PRIMS=$ROOT/build/bench/prims
if [ $SMOKE = 0 ]; then
  if [ -x "$PRIMS" ]; then
    say "primitives: $PRIMS"
    "$PRIMS" --json "$RUN/prims.json" --dir "$BT" >"$RUN/prims.txt" 2>&1 ||
      { say "prims failed:"; cat "$RUN/prims.txt" >&2; rm -f "$RUN/prims.json"; }
  else
    say "$PRIMS not built (make bench builds it): no model ceiling"
  fi
fi
for t in $TARGETS; do run_target "$t"; done

rc=0
if [ $SMOKE = 1 ]; then
  python3 "$ROOT/bench/report.py" "$RUN" --json "$RUN/results.json" --smoke ||
    rc=1
else
  mkdir -p "$RESULTS"
  if ! command -v gnuplot >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing gnuplot-nox for the chart"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox \
      >/dev/null 2>&1 || say "apt-get install gnuplot-nox failed"
  fi
  png=()
  if command -v gnuplot >/dev/null; then
    png=(--png "$RESULTS/$TS.png")
  else
    say "gnuplot not available (not root?): chart skipped"
  fi
  python3 "$ROOT/bench/report.py" "$RUN" --json "$RESULTS/$TS.json" \
    "${png[@]}" || rc=1
  cp "$RESULTS/$TS.json" "$RESULTS/latest.json"
  [ -f "$RESULTS/$TS.png" ] && cp "$RESULTS/$TS.png" "$RESULTS/latest.png"
  say "results: $RESULTS/$TS.json ${png[1]:-}"
fi
exit $rc
