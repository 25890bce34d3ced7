#!/usr/bin/env bash
# bench/copy-rss.sh: peak memory of crucible-c during a large copy.
#
#   bash bench/copy-rss.sh      nbdcopy 4 GiB of random data into a new
#                               4 GiB encrypted volume (3 downstairs)
#
# Prints the copy time and the peak RSS (VmHWM) of nbdkit and of each
# downstairs.  Budget (docs/PERFORMANCE.md): nbdkit < 256 MiB, each
# downstairs < 128 MiB.  Exits non-zero if the copy fails or a budget is
# exceeded.  Environment: COPY_GIB (4), BENCH_EXTENT_BLOCKS (4096: 16 MiB
# extents, so a 4 GiB volume has 256 extents and the open-extent LRU is
# exercised), BENCH_TMPDIR (where the regions live; needs 3 x COPY_GIB),
# COPY_NBDKIT_OPTS (nbdkit options, e.g. "--threads=2": README's Pi
# configuration) and COPY_PLUGIN_ARGS (more plugin parameters).

set -u -o pipefail
. "$(dirname "$0")/lib.sh"

GIB=${COPY_GIB:-4}
EB=${BENCH_EXTENT_BLOCKS:-4096}
[[ $GIB =~ ^[0-9]+$ && $EB =~ ^[0-9]+$ && $GIB -ge 1 && $EB -ge 1 ]] ||
  { say "COPY_GIB and BENCH_EXTENT_BLOCKS must be positive numbers"; exit 2; }
for tool in nbdcopy nbdkit python3 ss; do
  command -v $tool >/dev/null || { say "$tool not found (make deps)"; exit 2; }
done
[ -x "$ROOT/crucible-downstairs" ] && [ -f "$ROOT/crucible.so" ] ||
  { say "crucible.so or crucible-downstairs not built (make)"; exit 2; }

bench_init
LOG=$BT/log
crucible_regions "$BT/region" $((GIB * 1024)) "$EB" 1 "$LOG" ||
  { say "crucible-downstairs create failed"; tail -n 8 "$LOG" >&2; exit 1; }
args=() DSP=()
for i in 0 1 2; do
  port=$(freeport)
  spawn "$LOG" "$ROOT/crucible-downstairs" run -d "$BT/region$i" -p "$port" \
    -a 127.0.0.1
  DSP+=("$SPAWNED")
  wait_port "$port" "$SPAWNED" || { say "downstairs $i did not start"; exit 1; }
  args+=("downstairs=127.0.0.1:$port")
done
make_keyfile "$BT/key"
# shellcheck disable=SC2086 # word lists on purpose
spawn "$LOG" nbdkit -f --log=stderr ${COPY_NBDKIT_OPTS:-} -U "$BT/nbd.sock" \
  "$ROOT/crucible.so" "${args[@]}" "key=+$BT/key" ${COPY_PLUGIN_ARGS:-}
NBP=$SPAWNED
wait_socket "$BT/nbd.sock" "$NBP" 30 || { say "nbdkit did not start"; exit 1; }

t0=$(date +%s.%N)
if ! timeout -k 5 1800 nbdcopy --flush -- \
    [ nbdkit --exit-with-parent random "${GIB}G" ] \
    "nbd+unix:///?socket=$BT/nbd.sock" >>"$LOG" 2>&1; then
  say "nbdcopy failed"; tail -n 8 "$LOG" >&2; exit 1
fi
t1=$(date +%s.%N)
rc=0
python3 -c 'import sys; t = float(sys.argv[2]) - float(sys.argv[1])
print("copy %s GiB: %.1f s, %.0f MiB/s" % (sys.argv[3], t, int(sys.argv[3]) * 1024 / t))' \
  "$t0" "$t1" "$GIB"
kib=$(peak_rss_kib "$NBP")
echo "nbdkit peak RSS $((kib / 1024)) MiB (budget 256)"
[ "$kib" -lt $((256 * 1024)) ] || rc=1
for i in 0 1 2; do
  kib=$(peak_rss_kib "${DSP[$i]}")
  echo "downstairs$i peak RSS $((kib / 1024)) MiB (budget 128)"
  [ "$kib" -lt $((128 * 1024)) ] || rc=1
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
