#!/usr/bin/env bash
# The operator surface: nbdkit --help / --dump-plugin, one-line errors with
# the documented exit codes (0 ok, 1 failure, 2 usage) for every
# crucible-downstairs error path and bad plugin parameter, --help of every
# subcommand, man pages that render without warnings, `make install` into
# a DESTDIR (without rebuilding: -o all), and the contrib units and
# scripts (systemd-analyze verify, sh -n, shellcheck where available).
. "$(dirname "$0")/functions.sh"
requires_build
requires nbdkit man groff

# --- nbdkit conventions --------------------------------------------------
$(nbdkit_cmd) "$PLUGIN" --help > "$tmp/help" 2>&1 || fail "nbdkit --help failed"
for p in downstairs key gen write-quorum verify timeout state \
         accept-rollback stats auth-key max-behind admin; do
  [ "$(grep -c "^$p=" "$tmp/help")" = 1 ] ||
    { cat "$tmp/help"; fail "--help: no single line for $p="; }
done
grep -q 'crucible.io' "$tmp/help" || fail "--help does not name debug flags"
$(nbdkit_cmd) "$PLUGIN" --dump-plugin > "$tmp/dump" 2>&1 ||
  fail "nbdkit --dump-plugin failed"
grep -Eq '^crucible_version=[0-9]+\.[0-9]+\.[0-9]+$' "$tmp/dump" ||
  fail "--dump-plugin: no crucible_version="
grep -Eq '^crucible_protocol=[0-9]+$' "$tmp/dump" ||
  fail "--dump-plugin: no crucible_protocol="
echo "nbdkit --help, --dump-plugin: ok"

# Bad plugin parameters: refused before anything starts, one line naming
# the parameter.  (nbdkit's own "nbdkit: error: " prefix included.)
ds=(downstairs=127.0.0.1:1 downstairs=127.0.0.1:2 downstairs=127.0.0.1:3)
nbd=($(nbdkit_cmd) -f -U "$tmp/x.sock" "$PLUGIN")
expect 1 "plugin: unknown parameter" "unknown parameter 'colour'" \
  "${nbd[@]}" "${ds[@]}" colour=blue
expect 1 "plugin: timeout=0" "timeout=0: expected" "${nbd[@]}" "${ds[@]}" timeout=0
expect 1 "plugin: timeout=abc" "timeout=abc: expected" \
  "${nbd[@]}" "${ds[@]}" timeout=abc
expect 1 "plugin: write-quorum=1" "write-quorum=1: expected" \
  "${nbd[@]}" "${ds[@]}" write-quorum=1
expect 1 "plugin: verify=most" "verify=most: expected fresh, one or all" \
  "${nbd[@]}" "${ds[@]}" verify=most
expect 1 "plugin: gen=0" "gen=0: expected" "${nbd[@]}" "${ds[@]}" gen=0
(umask 077; printf 'short\n' > "$tmp/short.key")
expect 1 "plugin: auth-key too short" "auth-key: auth key is shorter" \
  "${nbd[@]}" "${ds[@]}" auth-key=+"$tmp/short.key"
expect 1 "plugin: auth-key missing file" "auth-key" \
  "${nbd[@]}" "${ds[@]}" auth-key=+"$tmp/none.key"
expect 1 "plugin: stats= empty" "stats=: path empty" \
  "${nbd[@]}" "${ds[@]}" stats=
expect 1 "plugin: two downstairs" "exactly 3 downstairs" \
  "${nbd[@]}" "${ds[@]:0:2}"
expect 1 "plugin: bad downstairs" "downstairs=nohost: expected HOST:PORT" \
  "${nbd[@]}" downstairs=nohost
expect 1 "plugin: four downstairs" "need exactly 3 downstairs=, got 4" \
  "${nbd[@]}" "${ds[@]}" downstairs=127.0.0.1:4
expect 1 "plugin: accept-rollback=maybe" "accept-rollback=maybe: expected true or false" \
  "${nbd[@]}" "${ds[@]}" accept-rollback=maybe
expect 1 "plugin: parallel=sometimes" "parallel=sometimes: expected true or false" \
  "${nbd[@]}" "${ds[@]}" parallel=sometimes
expect 1 "plugin: host that does not resolve" \
  "downstairs=nosuch.invalid:1: cannot resolve host 'nosuch.invalid'" \
  "${nbd[@]}" downstairs=nosuch.invalid:1 "${ds[@]:1}"
# An inline base64 key that starts with '+' reads as key=+FILE: the error
# says so, and never shows the key.
while :; do
  k=$(head -c 32 /dev/urandom | base64 -w0)
  case $k in +*) break ;; esac
done
expect 1 "plugin: inline key starting with +" \
  "looks like an inline key: a key that starts with '\+' must be given in a file" \
  "${nbd[@]}" "${ds[@]}" "key=$k"
! grep -qF -- "${k#+}" "$tmp/err" || fail "the inline key was printed"
expect 1 "plugin: key file missing" "key=\+$tmp/none.key: No such file" \
  "${nbd[@]}" "${ds[@]}" key=+"$tmp/none.key"
# A key file others can read: warned about (ssh's rule), still used.
(umask 022; head -c 32 /dev/urandom | base64 -w0 > "$tmp/open.key")
timeout 30 "${nbd[@]}" "${ds[@]}" key=+"$tmp/open.key" timeout=1 \
  > /dev/null 2> "$tmp/err" && fail "started without downstairs"
grep -q "^nbdkit: crucible: warning: key=+$tmp/open.key: the file is readable by group or others (mode 644): chmod 600 it$" \
  "$tmp/err" || { cat "$tmp/err"; fail "no warning for a key file of mode 644"; }
grep -q "notice\|warning" <(grep "nbdkit: error:" "$tmp/err") &&
  { cat "$tmp/err"; fail "a notice or warning printed as an error"; }

# --- crucible-downstairs -------------------------------------------------
D=$DOWNSTAIRS
"$D" --help | grep -q '^Usage:' || fail "--help"
for c in create run dump verify export import clone status; do
  "$D" "$c" --help > "$tmp/h" || fail "$c --help: exit status $?"
  grep -q "^Usage: crucible-downstairs $c " "$tmp/h" || fail "$c --help"
  grep -q "  $c " <("$D" --help) || fail "--help does not list $c"
done
rc=0; "$D" > /dev/null 2>&1 || rc=$?
[ $rc = 2 ] || fail "no command: exit status $rc, want 2"
echo "--help of every subcommand: ok"

expect 2 "unknown command" "unknown command 'frobnicate'" "$D" frobnicate
expect 2 "unknown option" "unknown option '--colour'" "$D" create --colour
expect 2 "missing value" "option '-d' needs a value" "$D" create -d
expect 2 "extra argument" "unexpected argument 'x'" "$D" verify -d "$tmp" x
expect 2 "create without -d" "missing -d DIR" "$D" create
expect 2 "create bad block size" "invalid geometry" \
  "$D" create -d "$tmp/c" --block-size 1000
expect 2 "create extent-count 0" "invalid value for --extent-count" \
  "$D" create -d "$tmp/c" --extent-count 0
expect 2 "create bad uuid" "invalid uuid 'nope'" "$D" create -d "$tmp/c" -u nope
expect 2 "run without -p" "missing -p PORT" "$D" run -d "$tmp"
expect 2 "run port 70000" "invalid value for --port" \
  "$D" run -d "$tmp" -p 70000
expect 2 "run bad log level" "invalid log level 'loud'" \
  "$D" run -d "$tmp" -p 1 --log-level loud
expect 2 "export without -o" "missing -o FILE" "$D" export -d "$tmp"
expect 2 "import without -i" "missing -i FILE" "$D" import -d "$tmp"
expect 2 "export takes no --block-size" "unknown option '--block-size'" \
  "$D" export -d "$tmp" -o "$tmp/o" --block-size 512
expect 2 "too many dump dirs" "too many -d" \
  "$D" dump -d a -d a -d a -d a -d a -d a -d a -d a -d a

"$D" create -d "$tmp/enc" --encrypted --extent-size 64 --extent-count 2 \
  > "$tmp/out" || fail "create failed"
grep -Eq "^created $tmp/enc: uuid none, 512 KiB \(524288 bytes\), 2 extents of 64 x 4096-byte blocks, encrypted$" \
  "$tmp/out" || { cat "$tmp/out"; fail "create summary"; }
"$D" create -d "$tmp/named" -u "$VOL_UUID" --extent-size 64 --extent-count 1 \
  > "$tmp/out" || fail "create -u failed"
grep -q "^created $tmp/named: uuid $VOL_UUID, " "$tmp/out" ||
  { cat "$tmp/out"; fail "create -u summary"; }
expect 1 "create over a region" "region already exists" \
  "$D" create -d "$tmp/enc"
mkdir "$tmp/full"; touch "$tmp/full/f"
expect 1 "create in a non-empty dir" "directory is not empty" \
  "$D" create -d "$tmp/full"
expect 1 "run on a missing dir" "$tmp/none: No such file" \
  "$D" run -d "$tmp/none" -p 1
expect 1 "verify a non-region" "not a region" "$D" verify -d "$tmp/full"
expect 1 "dump a missing dir" "No such file" "$D" dump -d "$tmp/none"
expect 1 "export encrypted" "region is encrypted" \
  "$D" export -d "$tmp/enc" -o "$tmp/o.img"
head -c 4096 /dev/urandom > "$tmp/small.img"
expect 1 "import encrypted" "region is encrypted" \
  "$D" import -d "$tmp/enc" -i "$tmp/small.img"
expect 1 "import missing image" "$tmp/none.img: No such file" \
  "$D" import -d "$tmp/new" -i "$tmp/none.img"
expect 2 "clone without --source" "missing --source" "$D" clone -d "$tmp/cl"
expect 2 "clone bad source" "invalid --source 'nohost'" \
  "$D" clone --source nohost -d "$tmp/cl"
closed=$(free_port)
expect 1 "clone from a closed port" "127.0.0.1:$closed: Connection refused" \
  "$D" clone --source "127.0.0.1:$closed" -d "$tmp/cl"
[ ! -e "$tmp/cl" ] || fail "a failed clone created $tmp/cl"
expect 1 "run --auth-key missing" "--auth-key $tmp/none.key: No such file" \
  "$D" run -d "$tmp/enc" -p "$(free_port)" --auth-key "$tmp/none.key"
expect 1 "run --auth-key too short" "auth key is shorter than 16 bytes" \
  "$D" run -d "$tmp/enc" -p "$(free_port)" --auth-key "$tmp/short.key"
[ ! -e "$tmp/new" ] || fail "a failed import created a region"

# A running downstairs locks its region: every other subcommand refuses.
ds_start enc
# Its port is taken: one line, exit 2; -a takes a host name, and a name
# that does not resolve is refused the same way.
expect 2 "run on a busy port" "listen 127.0.0.1:${DS_PORT[enc]}: Address already in use" \
  "$D" run -d "$tmp/named" -p "${DS_PORT[enc]}" -a 127.0.0.1
expect 2 "run -a nosuch.invalid" "cannot resolve address 'nosuch.invalid'" \
  "$D" run -d "$tmp/named" -p "$(free_port)" -a nosuch.invalid
lp=$(free_port)
"$D" run -d "$tmp/named" -p "$lp" -a localhost > "$tmp/lh.log" 2>&1 &
lpid=$!
PIDS+=($lpid)
wait_port "$lp" "$lpid" || { cat "$tmp/lh.log"; fail "run -a localhost"; }
stop_pid "$lpid" TERM || fail "run -a localhost: exit status $?"
for c in "verify -d $tmp/enc" "dump -d $tmp/enc" \
         "export -d $tmp/enc -o $tmp/o.img" \
         "import -d $tmp/enc -i $tmp/small.img" \
         "run -d $tmp/enc -p $(free_port)"; do
  # shellcheck disable=SC2086
  expect 1 "${c%% *} while running" "region is in use" "$D" $c
done
ds_kill enc

# create --preallocate allocates the extent files (not sparse).
"$D" create -d "$tmp/pre" --extent-size 256 --extent-count 2 --preallocate \
  > /dev/null 2> "$tmp/err" || fail "create --preallocate"
grep -q '^preallocate: 2 MiB in ' "$tmp/err" ||
  { cat "$tmp/err"; fail "no preallocate summary"; }
alloc=$(stat -c %b "$tmp/pre/00/000/000")
[ "$alloc" -ge 2048 ] || fail "extent 0 not preallocated ($alloc sectors)"
"$D" verify -d "$tmp/pre" > "$tmp/out" 2> "$tmp/err" || fail "verify"
grep -q '^checked 0 blocks, 0 bad$' "$tmp/out" || fail "verify output"
grep -q '^verify: 2 MiB in ' "$tmp/err" || fail "verify progress summary"
echo "preallocate, verify: ok"

# --- man pages -----------------------------------------------------------
for m in man/nbdkit-crucible-plugin.1 man/crucible-downstairs.8 man/crucible-admin.8; do
  groff -ww -man -Tutf8 -z "$m" 2> "$tmp/w" || fail "groff $m"
  MANWIDTH=80 man --warnings -l "$m" > "$tmp/page" 2>> "$tmp/w" ||
    fail "man -l $m"
  [ ! -s "$tmp/w" ] || { cat "$tmp/w"; fail "$m: warnings"; }
  grep -q 'EXIT STATUS' "$tmp/page" || fail "$m: no EXIT STATUS"
done
# Every plugin parameter and every subcommand is documented.
for p in downstairs key gen write-quorum verify timeout state \
         accept-rollback stats auth-key max-behind admin; do
  MANWIDTH=80 man -l man/nbdkit-crucible-plugin.1 | grep -q "^ *$p=" ||
    fail "man page lacks $p="
done
for c in create run dump verify export import clone status; do
  MANWIDTH=80 man -l man/crucible-downstairs.8 | grep -q "^ *$c\b" ||
    fail "man page lacks $c"
done
# Every option each --help lists is in the man page: its long form, or
# the short form its --help line gives.
page=$(MANWIDTH=200 man -l man/crucible-downstairs.8 2>/dev/null)
for c in create run dump verify export import clone; do
  while read -r short long; do
    [ -n "$long" ] || fail "cannot read the options of $c --help"
    grep -qF -- "$long" <<< "$page" && continue
    [ "$short" != none ] &&
      grep -qE -- "(^|[[ ])$short( |\]|$)" <<< "$page" && continue
    fail "crucible-downstairs $c --help lists $long, the man page does not"
  done < <("$D" "$c" --help |
           sed -nE 's/^ +(-[a-z]), (--[a-z][a-z-]*).*/\1 \2/p;
                    s/^ +(--[a-z][a-z-]*).*/none \1/p')
done
ppage=$(MANWIDTH=200 man -l man/nbdkit-crucible-plugin.1 2>/dev/null)
while read -r p; do
  grep -qE "^ *$p" <<< "$ppage" || fail "nbdkit --help lists $p, the man page does not"
done < <(grep -oE '^[a-z-]+=' "$tmp/help")
echo "man pages: ok"

# --- make install --------------------------------------------------------
plugindir=$(pkg-config --variable=plugindir nbdkit)
make -s -o all install DESTDIR="$tmp/dest" PREFIX=/usr/local > "$tmp/install.log" \
  2>&1 || { cat "$tmp/install.log"; fail "make install"; }
(cd "$tmp/dest" && find . -type f | sort) > "$tmp/files"
cat > "$tmp/want" <<EOF
.$plugindir/nbdkit-crucible-plugin.so
./usr/local/bin/crucible-admin
./usr/local/bin/crucible-downstairs
./usr/local/share/man/man1/nbdkit-crucible-plugin.1
./usr/local/share/man/man8/crucible-admin.8
./usr/local/share/man/man8/crucible-downstairs.8
EOF
sort -o "$tmp/want" "$tmp/want"
diff "$tmp/want" "$tmp/files" || fail "installed files differ"
$(nbdkit_cmd) "$tmp/dest$plugindir/nbdkit-crucible-plugin.so" --dump-plugin |
  grep -q '^crucible_version=' || fail "installed plugin does not load"
"$tmp/dest/usr/local/bin/crucible-downstairs" --help > /dev/null ||
  fail "installed binary does not run"
"$tmp/dest/usr/local/bin/crucible-admin" --help | grep -q '^usage: crucible-admin' ||
  fail "installed crucible-admin does not run"
echo "make install: ok"

# --- contrib -------------------------------------------------------------
for f in contrib/pi/crucible-usb-gadget; do
  sh -n "$f" || fail "$f: syntax"
  if command -v shellcheck > /dev/null; then
    shellcheck "$f" || fail "$f: shellcheck"
  fi
done
rc=0; sh contrib/pi/crucible-usb-gadget frob 2> /dev/null || rc=$?
[ $rc = 2 ] || fail "crucible-usb-gadget: bad argument exit status $rc"
if command -v systemd-analyze > /dev/null; then
  # Point ExecStart at real files and man at our pages, so verify checks
  # everything: any output at all (unknown keys are only warnings) fails.
  mkdir -p "$tmp/units" "$tmp/man/man1" "$tmp/man/man8"
  cp man/*.1 "$tmp/man/man1/"; cp man/*.8 "$tmp/man/man8/"
  sed -e "s|/usr/local/bin/crucible-downstairs|$DOWNSTAIRS|" \
    contrib/crucible-downstairs@.service \
    > "$tmp/units/crucible-downstairs@vol1.service"
  cp contrib/nbdkit-crucible.service "$tmp/units/"
  sed -e "s|/usr/local/sbin/crucible-usb-gadget|$top/contrib/pi/crucible-usb-gadget|" \
    contrib/pi/crucible-usb-gadget.service \
    > "$tmp/units/crucible-usb-gadget.service"
  for u in "$tmp"/units/*.service; do
    MANPATH=$tmp/man systemd-analyze verify "$u" > "$tmp/v" 2>&1 ||
      { cat "$tmp/v"; fail "$(basename "$u"): systemd-analyze verify"; }
    [ ! -s "$tmp/v" ] || { cat "$tmp/v"; fail "$(basename "$u"): warnings"; }
  done
  echo "systemd units: ok"
else
  echo "systemd-analyze not available: units not verified"
fi
grep -q '^ProtectSystem=strict' contrib/crucible-downstairs@.service &&
  grep -q '^Restart=on-failure' contrib/crucible-downstairs@.service &&
  grep -q '^EnvironmentFile=/etc/crucible/%i.conf' \
    contrib/crucible-downstairs@.service || fail "downstairs unit settings"
echo "contrib: ok"

# The downstairs never holds a key, so it links no cipher (Makefile:
# common/crypt.c is the upstairs' alone; common/hash.c has what both use).
if command -v nm >/dev/null; then
  syms=$(nm "$DOWNSTAIRS" 2>&1) || fail "nm $DOWNSTAIRS: $syms"
  echo "$syms" | grep -q ' crypt_hash_plain$' || fail "nm sees no symbols"
  echo "$syms" | grep -Eq ' (crypt_block_encrypt|crypt_gcm_encrypt|crypt_kcv_make)$' &&
    fail "crucible-downstairs links the cipher"
  echo "downstairs links no cipher: ok"
fi
