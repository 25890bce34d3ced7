#!/bin/sh
# Install the Debian packages crucible-c builds and tests with.
# As root: apt-get installs what is missing.  Otherwise: print the line.
set -e
PKGS="nbdkit nbdkit-plugin-dev libssl-dev libuv1-dev libsqlite3-dev
libxxhash-dev libnbd-dev libnbd-bin python3-libnbd qemu-utils fio fuse3
e2fsprogs pkg-config gcc make iproute2 python3 procps clang
libclang-rt-14-dev clang-format sqlite3 valgrind socat"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing >/dev/null
else
  echo "deps: missing Debian packages. Run as root:" >&2
  echo "  apt-get update && apt-get install -y$missing" >&2
  exit 1
fi
