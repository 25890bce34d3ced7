#!/usr/bin/env bash
# bench/bench-link.sh: crucible-c over a shaped link (make bench-link).
#
# The three downstairs run in a network namespace behind a veth pair whose
# two ends are each shaped with tbf (default 80 Mbit/s, both directions);
# nbdkit + crucible.so runs in the root namespace.  Every write crosses the
# link three times (one copy per downstairs) and a read once, so the best
# possible figures are link/3 for writes and link for reads: the script
# prints seq write and seq read MB/s as fractions of those.  For
# calibration, one `nbdkit file` in the namespace is measured the same way
# (its ceiling is the link for both).
#
# Needs root and `ip netns`; otherwise it says so and exits 0.  The
# namespace and veth use link-local addresses (169.254.N.1-2/30) that
# exist only inside this run and are deleted on exit.
# Environment: BENCH_LINK_RATE_MBIT (80), BENCH_LINK_SIZE_MIB (64),
# BENCH_LINK_RUNTIME (10 s for the read job), BENCH_RESULTS.

set -u -o pipefail
. "$(dirname "$0")/lib.sh"

RATE=${BENCH_LINK_RATE_MBIT:-80}
SIZE_MIB=${BENCH_LINK_SIZE_MIB:-64}
RUNTIME=${BENCH_LINK_RUNTIME:-10}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
for v in RATE SIZE_MIB RUNTIME; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { say "$v must be a positive number"; exit 2; }
done

skip() { echo "bench-link: skipped: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespace + tc)"
for tool in ip tc fio nbdkit python3 ss; do
  command -v $tool >/dev/null || skip "$tool not found"
done
[ -x "$ROOT/crucible-downstairs" ] && [ -f "$ROOT/crucible.so" ] ||
  { say "crucible.so / crucible-downstairs not built: run make"; exit 2; }

NS=crucbench$$
VH=cbh$$            # root-namespace end of the veth pair
VN=cbn$$            # namespace end
NET=169.254.$(( $$ % 250 + 1 ))
HOST_IP=$NET.1
NS_IP=$NET.2

bench_init
# shellcheck disable=SC2034  # used by bench_cleanup in lib.sh
EXTRA_CLEANUP="ip link del $VH 2>/dev/null; ip netns del $NS 2>/dev/null"
ip netns add "$NS" 2>/dev/null || skip "ip netns add failed (no namespace support?)"
LOG=$BT/log
{
  ip link add "$VH" type veth peer name "$VN" netns "$NS" &&
  ip addr add "$HOST_IP/30" dev "$VH" && ip link set "$VH" up &&
  ip -n "$NS" addr add "$NS_IP/30" dev "$VN" &&
  ip -n "$NS" link set "$VN" up && ip -n "$NS" link set lo up &&
  tc qdisc add dev "$VH" root tbf rate "${RATE}mbit" burst 32kbit \
    latency 50ms &&
  ip netns exec "$NS" tc qdisc add dev "$VN" root tbf rate "${RATE}mbit" \
    burst 32kbit latency 50ms
} >>"$LOG" 2>&1 || { cat "$LOG" >&2; skip "could not set up veth + tbf"; }

LINK_MB=$(python3 -c "print($RATE * 1e6 / 8 / 1e6)")
say "link: $VH <-> $NS/$VN, tbf ${RATE} Mbit/s each way (${LINK_MB} MB/s)"

# fio: seq 1M qd8.  write: the whole volume once; read: time based.
link_fio() {
  local uri=$1 rw=$2 out=$3 tb=(--runtime=600) lim=660
  [ "$rw" = read ] && { tb=(--time_based --runtime="$RUNTIME"); lim=$((RUNTIME + 60)); }
  timeout -k 5 "$lim" fio --name="seq$rw" --ioengine=nbd --uri="$uri" \
    --direct=1 --randseed=1 --randrepeat=1 --size="${SIZE_MIB}M" \
    --rw="$rw" --bs=1M --iodepth=8 "${tb[@]}" --output-format=json \
    --output="$out" >>"$LOG" 2>&1
}

# MB/s of a fio json file.
mbps() {
  python3 -c 'import json,sys
t=open(sys.argv[1]).read(); d=json.loads(t[t.find("{"):])["jobs"][0]
print("%.2f" % ((d["read"]["bw_bytes"] + d["write"]["bw_bytes"]) / 1e6))' "$1"
}

# Measure seq write then seq read on URI; sets W and R (MB/s) or fails.
measure() {
  local uri=$1 name=$2
  W=0; R=0
  link_fio "$uri" write "$BT/$name-w.json" || return 1
  W=$(mbps "$BT/$name-w.json") || return 1
  link_fio "$uri" read "$BT/$name-r.json" || return 1
  R=$(mbps "$BT/$name-r.json") || return 1
}

# 1. calibration: one nbdkit file in the namespace, one copy over the link.
port=$(ip netns exec "$NS" python3 -c 'import socket,sys
s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$NS_IP")
truncate -s "${SIZE_MIB}M" "$BT/file.img"
spawn "$LOG" ip netns exec "$NS" nbdkit -f --log=stderr -i "$NS_IP" \
  -p "$port" file "$BT/file.img"
fpid=$SPAWNED
if wait_port "$port" "$fpid" 15 "$NS" && measure "nbd://$NS_IP:$port/" file
then
  FW=$W; FR=$R
else
  FW=0; FR=0; say "calibration target (nbdkit file) failed"
fi
stop_pids "$fpid"; forget_pids "$fpid"; rm -f "$BT/file.img"

# 2. crucible-enc: three downstairs in the namespace, nbdkit here.
CW=0; CR=0; CERR=""
pids=(); args=()
if crucible_regions "$BT/region" "$SIZE_MIB" 4096 1 "$LOG"; then
  for i in 0 1 2; do
    port=$(ip netns exec "$NS" python3 -c 'import socket,sys
s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$NS_IP")
    spawn "$LOG" ip netns exec "$NS" "$ROOT/crucible-downstairs" run \
      -d "$BT/region$i" -p "$port" -a "$NS_IP"
    pids+=("$SPAWNED")
    wait_port "$port" "$SPAWNED" 15 "$NS" || CERR="downstairs $i did not start"
    args+=("downstairs=$NS_IP:$port")
  done
  make_keyfile "$BT/key"
  spawn "$LOG" nbdkit -f --log=stderr -U "$BT/nbd.sock" "$ROOT/crucible.so" \
    "${args[@]}" "key=+$BT/key"
  pids+=("$SPAWNED")
  if [ -z "$CERR" ]; then
    if ! wait_socket "$BT/nbd.sock" "$SPAWNED" 30; then
      CERR="nbdkit crucible.so did not start"
    elif measure "nbd+unix:///?socket=$BT/nbd.sock" crucible; then
      CW=$W; CR=$R
    else
      CERR="fio failed"
    fi
  fi
else
  CERR="crucible-downstairs create failed"
fi
[ -n "$CERR" ] && { say "crucible-enc: FAILED: $CERR"; tail -n 8 "$LOG" >&2; }
stop_pids "${pids[@]}"; forget_pids "${pids[@]}"

TS=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS"
python3 - "$RESULTS/link-$TS.json" "$RATE" "$SIZE_MIB" "$FW" "$FR" \
  "$CW" "$CR" "$CERR" <<'EOF'
import json, sys
path, rate, size, fw, fr, cw, cr, cerr = sys.argv[1:]
link = int(rate) * 1e6 / 8 / 1e6
fw, fr, cw, cr = map(float, (fw, fr, cw, cr))
res = {"rate_mbit": int(rate), "link_mb_s": link, "size_mib": int(size),
       "file": {"write_mb_s": fw, "read_mb_s": fr,
                "write_frac_link": fw / link, "read_frac_link": fr / link},
       "crucible-enc": {"write_mb_s": cw, "read_mb_s": cr,
                        "write_frac_link3": cw / (link / 3),
                        "read_frac_link": cr / link, "error": cerr}}
json.dump(res, open(path, "w"), indent=1)
print("link %d Mbit/s = %.2f MB/s each way; link/3 = %.2f MB/s" %
      (int(rate), link, link / 3))
print("%-26s %10s %12s %10s %12s" % ("target", "write MB/s", "fraction",
                                     "read MB/s", "fraction"))
print("%-26s %10.2f %12s %10.2f %12s" % (
    "nbdkit file (1 copy)", fw, "%.2f link" % (fw / link), fr,
    "%.2f link" % (fr / link)))
if cerr:
    print("%-26s FAILED: %s" % ("crucible-enc (3 copies)", cerr))
else:
    print("%-26s %10.2f %12s %10.2f %12s" % (
        "crucible-enc (3 copies)", cw, "%.2f link/3" % (cw / (link / 3)),
        cr, "%.2f link" % (cr / link)))
print("results: " + path)
EOF
rc=$?
cp "$RESULTS/link-$TS.json" "$RESULTS/link-latest.json" 2>/dev/null
[ -n "$CERR" ] && exit 1
exit $rc
