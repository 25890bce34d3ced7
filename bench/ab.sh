#!/usr/bin/env bash
# bench/ab.sh: interleaved A/B runs of two crucible builds (the method of
# the "Decisions" in docs/PERFORMANCE.md).
#
#   bash bench/ab.sh DIR_A DIR_B [JOBS] [RUNS]
#
# DIR_A and DIR_B each hold a crucible.so and a crucible-downstairs (copy
# them out of two builds), and optionally nbdkit.args: extra nbdkit
# parameters, one per line (the same build with verify=one vs fresh),
# and `plain`, an empty file: that build runs an unencrypted volume
# (no key), the cost-of-crypto baseline.  For each of RUNS (3) rounds, A then B: three
# downstairs + nbdkit on a fresh 256 MiB encrypted volume (16 MiB
# extents), one sequential fill, then each job of JOBS (default: seqwrite
# seqread randwrite32 randread32 randwrite1 fsync1; also randrw, and fsync8:
# a flush every 8 writes, which touch several extents) for BENCH_RUNTIME (3)
# seconds with no ramp.  One line per job and build: MB/s, IOPS, p99 and
# the CPU time per unit of nbdkit and of a downstairs (mean of three): µs
# per MB for seq jobs, µs per IO otherwise, read from /proc/PID/stat
# around the job; and the context switches per IO of each (all threads).  Then the medians per job and build.
# BENCH_PERF=nbdkit|ds0 also records `perf record -g` of that process per
# job into perf-JOB-BUILD-RUN.data in the current directory.

set -u -o pipefail
. "$(dirname "$0")/lib.sh"

[ $# -ge 2 ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
A=$(cd "$1" && pwd) B=$(cd "$2" && pwd)
JOBS=${3:-"seqwrite seqread randwrite32 randread32 randwrite1 fsync1"}
RUNS=${4:-3}
RT=${BENCH_RUNTIME:-3}
PERF=${BENCH_PERF:-}
for d in "$A" "$B"; do
  [ -x "$d/crucible-downstairs" ] && [ -f "$d/crucible.so" ] ||
    { say "$d: needs crucible.so and crucible-downstairs"; exit 2; }
done
bench_init
OUTS=$BT/lines

# fio options of a job (as in bench.sh).
job_opts() {
  case $1 in
    fill|seqwrite) echo "--rw=write --bs=1M --iodepth=8 --end_fsync=1" ;;
    seqread)     echo "--rw=read --bs=1M --iodepth=8" ;;
    randwrite32) echo "--rw=randwrite --bs=4k --iodepth=32 --end_fsync=1" ;;
    randread32)  echo "--rw=randread --bs=4k --iodepth=32" ;;
    randwrite1)  echo "--rw=randwrite --bs=4k --iodepth=1 --end_fsync=1" ;;
    fsync1)      echo "--rw=randwrite --bs=4k --iodepth=1 --fsync=1" ;;
    randrw)      echo "--rw=randrw --rwmixread=70 --bs=16k --iodepth=16 --end_fsync=1" ;;
    fsync8)      echo "--rw=randwrite --bs=4k --iodepth=1 --fsync=8" ;;
    *) return 1 ;;
  esac
}

# CPU seconds of each pid, space separated.
cpus() { local p; for p in "$@"; do printf '%s ' "$(cpu_seconds "$p")"; done; }
# Context switches (voluntary + not) of each pid's live threads.
ctxs() {
  local p
  for p in "$@"; do
    cat /proc/"$p"/task/*/status 2>/dev/null |
      awk '/ctxt_switches/ {n += $2} END {printf "%d ", n}'
  done
}

# One round for build NAME in DIR: start, fill, every job, stop.
one() {
  local name=$1 dir=$2 run=$3 td=$BT/$1.$3 i port pids=() args=() job c0 c1 pp
  local log=$td/log
  mkdir -p "$td"
  ROOT_SAVE=$ROOT; ROOT=$dir
  local enc=1 key=()
  [ -f "$dir/plain" ] && enc=0 # an unencrypted volume, no key
  crucible_regions "$td/r" 256 4096 "$enc" "$log" || { ROOT=$ROOT_SAVE; say "create failed"; return 1; }
  ROOT=$ROOT_SAVE
  for i in 0 1 2; do
    port=$(freeport)
    spawn "$log" "$dir/crucible-downstairs" run -d "$td/r$i" -p "$port" -a 127.0.0.1
    pids+=("$SPAWNED")
    wait_port "$port" "$SPAWNED" || { say "downstairs did not start"; return 1; }
    args+=("downstairs=127.0.0.1:$port")
  done
  make_keyfile "$td/key"
  [ "$enc" = 1 ] && key=("key=+$td/key")
  # Extra nbdkit parameters of this build (one per line), e.g. verify=one.
  [ -f "$dir/nbdkit.args" ] && while read -r a; do [ -n "$a" ] && args+=("$a"); done < "$dir/nbdkit.args"
  spawn "$log" nbdkit -f --log=stderr -U "$td/s" "$dir/crucible.so" "${args[@]}" ${key[@]+"${key[@]}"}
  pids+=("$SPAWNED")
  wait_socket "$td/s" "$SPAWNED" 30 || { say "nbdkit did not start"; return 1; }
  local uri="nbd+unix:///?socket=$td/s"
  # shellcheck disable=SC2046
  timeout 200 fio --name=fill --ioengine=nbd --uri="$uri" --direct=1 --size=256M \
    $(job_opts fill) --output-format=json --output="$td/fill.json" >>"$log" 2>&1 ||
    { say "fill failed"; return 1; }
  for job in $JOBS; do
    c0=$(cpus "${pids[@]}"); x0=$(ctxs "${pids[@]}"); pp=""
    case $PERF in
      nbdkit) perf record -g -o "perf-$job-$name-$run.data" -p "${pids[3]}" -- sleep "$RT" >/dev/null 2>&1 & pp=$! ;;
      ds0) perf record -g -o "perf-$job-$name-$run.data" -p "${pids[0]}" -- sleep "$RT" >/dev/null 2>&1 & pp=$! ;;
    esac
    # shellcheck disable=SC2046
    timeout $((RT + 60)) fio --name="$job" --ioengine=nbd --uri="$uri" --direct=1 \
      --randseed=1 --randrepeat=1 --size=256M $(job_opts "$job") --time_based \
      --runtime="$RT" --output-format=json --output="$td/$job.json" >>"$log" 2>&1 ||
      say "$name $job: fio failed"
    [ -n "$pp" ] && wait "$pp"
    c1=$(cpus "${pids[@]}"); x1=$(ctxs "${pids[@]}")
    python3 - "$td/$job.json" "$job" "$name" "$c0" "$c1" "$x0" "$x1" >>"$OUTS" <<'PY'
import json, sys
f, job, name, c0, c1, x0, x1 = sys.argv[1:]
try:
    d = json.load(open(f))["jobs"][0]
except (OSError, ValueError, KeyError, IndexError):
    sys.exit(0)
r, w = d["read"], d["write"]
mb = (r["io_bytes"] + w["io_bytes"]) / 1e6
ios = r["total_ios"] + w["total_ios"]
p99 = max(x["clat_ns"].get("percentile", {}).get("99.000000", 0) for x in (r, w)) / 1e3
unit = mb if job.startswith("seq") else ios
dc = [b - a for a, b in zip(map(float, c0.split()), map(float, c1.split()))]
dx = [b - a for a, b in zip(map(float, x0.split()), map(float, x1.split()))]
print(json.dumps({"job": job, "build": name,
                  "mbs": (r["bw_bytes"] + w["bw_bytes"]) / 1e6,
                  "iops": r["iops"] + w["iops"], "p99_us": p99,
                  "cpu_ds": sum(dc[:3]) / 3 / unit * 1e6 if unit else 0,
                  "cpu_nbdkit": dc[3] / unit * 1e6 if unit else 0,
                  "cs_ds": sum(dx[:3]) / 3 / ios if ios else 0,
                  "cs_nbdkit": dx[3] / ios if ios else 0}))
PY
  done
  stop_pids "${pids[@]}"
  forget_pids "${pids[@]}"
  rm -rf "$td"
}

for run in $(seq "$RUNS"); do
  one A "$A" "$run" || exit 1
  one B "$B" "$run" || exit 1
done
python3 - "$OUTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("%-12s %-5s %9s %9s %9s %12s %12s %8s %8s" % ("job", "build", "MB/s",
      "IOPS", "p99 us", "cpu nbdkit", "cpu ds", "cs/IO nk", "cs/IO ds"))
for r in rows:
    print("%-12s %-5s %9.1f %9.0f %9.0f %12.1f %12.1f %8.2f %8.2f" % (r["job"],
          r["build"], r["mbs"], r["iops"], r["p99_us"], r["cpu_nbdkit"],
          r["cpu_ds"], r["cs_nbdkit"], r["cs_ds"]))
print("medians (cpu: us per MB for seq jobs, us per IO otherwise):")
for job in dict.fromkeys(r["job"] for r in rows):
    for b in ("A", "B"):
        sel = [r for r in rows if r["job"] == job and r["build"] == b]
        if sel:
            m = lambda k: statistics.median(x[k] for x in sel)
            print("%-12s %-5s %9.1f %9.0f %9.0f %12.1f %12.1f %8.2f %8.2f" % (
                  job, b, m("mbs"), m("iops"), m("p99_us"), m("cpu_nbdkit"),
                  m("cpu_ds"), m("cs_nbdkit"), m("cs_ds")))
PY
