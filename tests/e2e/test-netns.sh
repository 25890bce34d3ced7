#!/usr/bin/env bash
# A network partition: ds3 runs in its own network namespace behind a
# veth pair; `ip link set down` cuts it off under a write load (it is
# faulted after timeout=3, writes go on), `ip link set up` lets it back
# (reconnect with backoff, live repair: it fetches extents from ds1
# across the veth).  Data verifies and ds3's extent data files end up
# identical to ds1's.  Skipped without root or `ip netns`.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit ip
requires_root
NBDVERIFY=$top/build/tools/nbdverify
[ -x "$NBDVERIFY" ] || skip "build/tools/nbdverify not built"

ns=crucible$$
vh=crvh$$
vn=crvn$$
net=10.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1))
ip netns add "$ns" 2>/dev/null || skip "ip netns unavailable here"
netns_cleanup () {
  ip link del "$vh" 2>/dev/null
  ip netns del "$ns" 2>/dev/null
}
trap 'rc=$?; set +e; netns_cleanup; (exit $rc); cleanup' EXIT
ip link add "$vh" type veth peer name "$vn" || skip "cannot create a veth pair"
ip link set "$vn" netns "$ns"
ip addr add "$net.1/24" dev "$vh"
ip link set "$vh" up
ip netns exec "$ns" ip addr add "$net.2/24" dev "$vn"
ip netns exec "$ns" ip link set "$vn" up
ip netns exec "$ns" ip link set lo up

DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=8 volume_create
# run_ds NAME ADDR [netns]: downstairs on ADDR:free port.
run_ds () {
  local name=$1 addr=$2 port
  port=$(free_port)
  ${3:+ip netns exec "$3"} "$DOWNSTAIRS" run -d "$tmp/$name" -p "$port" \
    -a "$addr" >> "$tmp/$name.log" 2>&1 &
  DS_PID[$name]=$!
  DS_PORT[$name]=$port
  PIDS+=($!)
}
run_ds ds1 "$net.1"
run_ds ds2 "$net.1"
run_ds ds3 "$net.2" "$ns"
sleep 1
for n in ds1 ds2 ds3; do
  kill -0 "${DS_PID[$n]}" || fail "$n did not start"
done
nbdkit_up () {
  rm -f "$tmp/nbd.sock"
  $(nbdkit_cmd) -f -v -U "$tmp/nbd.sock" "$PLUGIN" \
    downstairs="$net.1:${DS_PORT[ds1]}" downstairs="$net.1:${DS_PORT[ds2]}" \
    downstairs="$net.2:${DS_PORT[ds3]}" key=+"$KEYFILE" timeout=3 \
    >> "$tmp/nbdkit.log" 2>&1 &
  NBDKIT_PID=$!
  PIDS+=($!)
  SOCK=$tmp/nbd.sock
  URI="nbd+unix:///?socket=$SOCK"
  for i in $(seq 300); do [ -S "$SOCK" ] && break; sleep 0.1; done
  timeout 60 nbdinfo --size "$URI" > /dev/null || fail "nbdkit did not start"
}
nbdkit_up

"$NBDVERIFY" --uri "$URI" --state "$tmp/st" --seed 6 write --random \
  --duration 10 --flush-every 32 > "$tmp/w.log" 2>&1 &
wpid=$!
PIDS+=($wpid)
sleep 1
ip link set "$vh" down
wait_log "downstairs $net.2:${DS_PORT[ds3]}: faulted" 10 ||
  fail "partitioned downstairs not faulted"
sleep 3
ip link set "$vh" up
wait_log "live repair of $net.2:${DS_PORT[ds3]} complete" 90 ||
  fail "no live repair after the partition healed"
wait "$wpid" || { cat "$tmp/w.log" >&2; fail "writes failed"; }
"$NBDVERIFY" --uri "$URI" --state "$tmp/st" verify > "$tmp/v.log" 2>&1 ||
  { cat "$tmp/v.log" >&2; fail "verify failed"; }
nbdsh_run -u "$URI" -c 'h.flush()' || fail "flush failed"
nbdkit_stop || fail "nbdkit stop failed"
for n in ds1 ds2 ds3; do ds_kill "$n"; done
for f in $(cd "$tmp/ds1" && find . -type f ! -name '*.db*' ! -name '*.json'); do
  cmp "$tmp/ds1/$f" "$tmp/ds3/$f" || fail "ds3 $f differs from ds1"
done
echo "partition in a network namespace: faulted, healed, repaired"
