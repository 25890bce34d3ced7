#!/usr/bin/env bash
# User errors get one clear message and a non-zero exit, and change
# nothing: bad plugin parameters, a region uuid mismatch, bad region
# directories, a port in use, create over an existing region.
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit sha256sum

# expect_error WHAT REGEX CMD...: CMD must exit non-zero within 60 s and
# print something matching REGEX (case-insensitive).
expect_error () {
  local what=$1 re=$2 rc=0 lines
  shift 2
  rm -f "$tmp/err.sock"
  timeout 60 "$@" > "$tmp/err.out" 2>&1 < /dev/null || rc=$?
  [ $rc = 124 ] && fail "$what: did not exit within 60 s"
  [ $rc != 0 ] || { cat "$tmp/err.out"; fail "$what: exit status 0"; }
  grep -Eiq "$re" "$tmp/err.out" ||
    { cat "$tmp/err.out"; fail "$what: message does not match /$re/"; }
  lines=$(grep -c . "$tmp/err.out")
  [ "$lines" -le 4 ] ||
    { cat "$tmp/err.out"; fail "$what: $lines lines of output, want one clear line"; }
  echo "$what: ok (exit $rc, $lines lines): $(grep -Ei "$re" "$tmp/err.out" | head -n 1)"
}

volume_create
volume_start
ds1=downstairs=127.0.0.1:${DS_PORT[ds1]}
ds2=downstairs=127.0.0.1:${DS_PORT[ds2]}
ds3=downstairs=127.0.0.1:${DS_PORT[ds3]}
key=key=+$KEYFILE
nbd=($(nbdkit_cmd) -f -U "$tmp/err.sock" "$PLUGIN")

expect_error "two downstairs" "downstairs" \
  "${nbd[@]}" "$ds1" "$ds2" "$key"
expect_error "no key" "key" \
  "${nbd[@]}" "$ds1" "$ds2" "$ds3"
expect_error "unknown parameter" "frobnicate" \
  "${nbd[@]}" "$ds1" "$ds2" "$ds3" "$key" frobnicate=1
printf %s "$(head -c 16 /dev/urandom | base64 -w0)" > "$tmp/shortkey"
expect_error "16-byte key" "key.*(32|length|bytes|size)|(32|length|bytes|size).*key" \
  "${nbd[@]}" "$ds1" "$ds2" "$ds3" key=+"$tmp/shortkey"
expect_error "key not base64" "key|base64" \
  "${nbd[@]}" "$ds1" "$ds2" "$ds3" 'key=@@@@not*base64@@@@'
expect_error "write-quorum=4" "quorum" \
  "${nbd[@]}" "$ds1" "$ds2" "$ds3" "$key" write-quorum=4
expect_error "bad downstairs address" "downstairs|address|port|host" \
  "${nbd[@]}" "$ds1" "$ds2" downstairs=127.0.0.1:notaport "$key"

# Key trouble is one line naming the fix, however many downstairs refuse.
rm -f "$tmp/err.sock"
expect 1 "no key, strictly" \
  "region is encrypted but the upstairs has no key: add key=\\+FILE" \
  "${nbd[@]}" "$ds1" "$ds2" "$ds3"
pds=()
for n in p1 p2 p3; do
  "$DOWNSTAIRS" create -d "$tmp/$n" --extent-size 64 --extent-count 1 \
    > /dev/null 2>&1 || fail "create $n"
  ds_start "$n" || fail "start $n"
  pds+=("downstairs=127.0.0.1:${DS_PORT[$n]}")
done
rm -f "$tmp/err.sock"
expect 1 "a key for unencrypted regions" \
  "region is not encrypted but the upstairs has a key: remove key=" \
  "${nbd[@]}" "${pds[@]}" "$key"
for n in p1 p2 p3; do ds_kill "$n"; done

# A region with another uuid among the three.
ds_create odd -u "$(cat /proc/sys/kernel/random/uuid)"
ds_start odd
expect_error "uuid mismatch" "uuid" \
  "${nbd[@]}" "$ds1" "$ds2" "downstairs=127.0.0.1:${DS_PORT[odd]}" "$key" \
  timeout=20
ds_kill odd

# Downstairs: missing dir, a directory that is not a region, port in use.
expect_error "run on a missing dir" "$tmp/nonexistent|no such|not found|missing" \
  "$DOWNSTAIRS" run -d "$tmp/nonexistent" -p "$(free_port)" -a 127.0.0.1
mkdir "$tmp/notregion"
echo hello > "$tmp/notregion/file"
expect_error "run on a non-region dir" "region" \
  "$DOWNSTAIRS" run -d "$tmp/notregion" -p "$(free_port)" -a 127.0.0.1
ds_create ds4
expect_error "port in use" "in use|address|bind" \
  "$DOWNSTAIRS" run -d "$tmp/ds4" -p "${DS_PORT[ds1]}" -a 127.0.0.1

# create over an existing region refuses and changes nothing.
(cd "$tmp/ds4" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
  > "$tmp/before"
expect_error "create over a region" "exist" \
  "$DOWNSTAIRS" create -d "$tmp/ds4" --encrypted -u "$VOL_UUID" \
  --extent-size 4096 --extent-count 4
(cd "$tmp/ds4" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
  > "$tmp/after"
cmp -s "$tmp/before" "$tmp/after" || fail "create changed an existing region"

# The good volume still starts after all that.
nbdkit_start || fail "nbdkit did not start on the good volume"
echo "all user errors reported"
