#!/usr/bin/env bash
# Authenticated downstairs (--auth-key, plugin auth-key=+FILE):
#   - the protocol: no proof, a wrong key, a replayed handshake, a
#     reflected server proof and an unauthenticated repair peer are all
#     refused; the right key works and the server proves it too
#     (tests/tools/dsproto.py auth);
#   - nbdkit with the right auth key serves the volume; with a wrong one,
#     with none, or with one while the downstairs has none, it refuses to
#     start with a one-line reason;
#   - live repair between downstairs authenticates as well (a restarted
#     downstairs is repaired from a peer that demands the key);
#   - a downstairs without --auth-key warns that anyone can fence it;
#   - the auth key never appears in a log.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit nbdcopy nbdsh cmp python3
DSPROTO=$top/tests/tools/dsproto.py

(umask 077; head -c 32 /dev/urandom | base64 > "$tmp/auth.key")
head -c 32 /dev/urandom | base64 > "$tmp/wrong.key"
secret=$(cat "$tmp/auth.key")

DS_EXTENT_SIZE=256 DS_EXTENT_COUNT=8 volume_create  # 8 MiB, 1 MiB extents
DS_ARGS=(--auth-key "$tmp/auth.key")
volume_start
grep -q "peers must authenticate" "$tmp/ds1.log" ||
  fail "downstairs does not say it requires authentication"

# The protocol, against a real downstairs.
timeout 60 python3 "$DSPROTO" auth -p "${DS_PORT[ds1]}" \
  --auth-key "$tmp/auth.key" || fail "dsproto auth scenario failed"
grep -q "authentication failed" "$tmp/ds1.log" ||
  fail "refused proofs are not logged by the downstairs"

# refused WHAT REASON [params]: nbdkit must not start, and its log says
# REASON.
refused () {
  local what=$1 reason=$2
  shift 2
  : > "$tmp/nbdkit.log"
  nbdkit_start "$@" 2>/dev/null && fail "nbdkit started: $what"
  grep -q "$reason" "$tmp/nbdkit.log" ||
    { cat "$tmp/nbdkit.log" >&2; fail "$what: no clear reason"; }
}

# nbdkit: wrong key, no key, then the right key.
refused "wrong auth key" "authentication failed" auth-key=+"$tmp/wrong.key"
refused "missing auth key" "requires authentication"

len=$((6 * 1024 * 1024))
random_image "$tmp/in.img" $len
NBDKIT_VERBOSE=1 nbdkit_start timeout=3 auth-key=+"$tmp/auth.key" ||
  fail "nbdkit did not start with the right auth key"
volume_fill "$tmp/in.img" "nbdcopy in"

# Live repair: ds3 misses writes, comes back, copies extents from a peer
# that demands the key.
ds_kill ds3 KILL
head -c $((2 * 1024 * 1024)) /dev/urandom > "$tmp/more.img"
dd if="$tmp/more.img" of="$tmp/in.img" conv=notrunc status=none
nbdsh_run -u "$URI" -c "
h.pwrite(open('$tmp/more.img', 'rb').read(), 0)
h.flush()" || fail "writes with ds3 down failed"
: > "$tmp/ds3.log" # earlier refused proofs are not this run's
ds_start ds3 || fail "ds3 did not restart"
wait_log "live repair of 127.0.0.1:${DS_PORT[ds3]} complete" 60 ||
  { cat "$tmp/nbdkit.log" >&2; fail "live repair with auth did not complete"; }
grep -q "authentication failed" "$tmp/ds3.log" &&
  fail "a repair connection failed to authenticate"
nbdkit_stop || fail "nbdkit stop failed"

# ds3 now holds the data: read it back with ds1 gone.
ds_kill ds1 KILL
nbdkit_start timeout=3 auth-key=+"$tmp/auth.key" ||
  fail "nbdkit did not start on ds2 + ds3"
volume_check "$tmp/in.img" "data differs after repair"
nbdkit_stop || true

# clone authenticates like a repair peer: refused without the key, a
# whole region with it.
src="127.0.0.1:${DS_PORT[ds2]}"
timeout 60 "$DOWNSTAIRS" clone --source "$src" -d "$tmp/c1" --timeout 5 \
  2> "$tmp/clone1.err" && fail "clone without the auth key succeeded"
grep -q "requires authentication" "$tmp/clone1.err" ||
  { cat "$tmp/clone1.err" >&2; fail "clone without key: no clear reason"; }
[ -e "$tmp/c1" ] && fail "a refused clone left $tmp/c1 behind"
timeout 60 "$DOWNSTAIRS" clone --source "$src" -d "$tmp/c2" --timeout 5 \
  --auth-key "$tmp/wrong.key" 2> "$tmp/clone2.err" &&
  fail "clone with a wrong auth key succeeded"
grep -q "authentication failed" "$tmp/clone2.err" ||
  { cat "$tmp/clone2.err" >&2; fail "clone with wrong key: no clear reason"; }
timeout 120 "$DOWNSTAIRS" clone --source "$src" -d "$tmp/c3" \
  --auth-key "$tmp/auth.key" > "$tmp/clone3.out" 2>&1 ||
  { cat "$tmp/clone3.out" >&2; fail "clone with the auth key failed"; }
grep -q "^cloned " "$tmp/clone3.out" || fail "clone printed no summary"
volume_stop

# An auth key offered to a downstairs that asks for none is refused (no
# silent downgrade), and that downstairs warns at start.
DS_ARGS=()
volume_start
grep -q "no --auth-key: anyone who can reach" "$tmp/ds1.log" ||
  fail "no warning without --auth-key"
refused "downgrade to downstairs that do not authenticate" \
  "does not require authentication" auth-key=+"$tmp/auth.key"

grep -rqF -- "$secret" "$tmp"/*.log && fail "the auth key appears in a log"
echo "auth: wrong, missing, replayed and reflected proofs refused; repair authenticated"
