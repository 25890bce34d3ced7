#!/bin/sh
# Install what `make cross ARCH=arm64` and `make check-arm64` need on a
# Debian 12 x86-64 host: the cross compiler, qemu-user, and the target's
# libraries from Debian multiarch (dpkg --add-architecture).  As root:
# apt-get installs what is missing.  Otherwise: print the lines.
#
# Multiarch -dev packages must have the very version of their native
# twins: apt may upgrade a native -dev package (and its library) to the
# version the mirror has for the target.  Nothing is removed.
set -e
ARCH=${ARCH:-arm64}
case "$ARCH" in
  arm64) triple=aarch64-linux-gnu qemu=qemu-aarch64 ;;
  *) echo "cross-deps: ARCH=$ARCH unknown (arm64)" >&2; exit 2 ;;
esac
PKGS="gcc-$triple libc6-dev-$ARCH-cross qemu-user-static pkg-config
libuv1-dev:$ARCH libssl-dev:$ARCH libsqlite3-dev:$ARCH libxxhash-dev:$ARCH
nbdkit-plugin-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing="$missing $p"
done
# qemu-user (dynamic, with binfmt) will do instead of qemu-user-static.
case "$missing" in
  *qemu-user-static*)
    if command -v "$qemu" >/dev/null 2>&1; then
      missing=$(echo "$missing" | sed 's/ qemu-user-static//')
    fi ;;
esac
[ -z "$missing" ] && exit 0
foreign=$(dpkg --print-foreign-architectures)
if [ "$(id -u)" = 0 ]; then
  echo "cross-deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  echo "$foreign" | grep -qx "$ARCH" || dpkg --add-architecture "$ARCH"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "cross-deps: missing Debian packages. Run as root:" >&2
  echo "$foreign" | grep -qx "$ARCH" ||
    echo "  dpkg --add-architecture $ARCH" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi
