#!/bin/bash
# make check-vm: a real Linux guest on a crucible volume.
#
# Boots the host's Debian kernel under qemu-system-x86_64 (TCG; VM_KVM=1
# for KVM) with the volume as its virtio disk
# (-drive file=nbd:unix:SOCK,if=virtio,format=raw), from an initramfs this
# script builds: busybox-static plus virtio_pci/virtio_blk and their
# dependencies (read from modules.dep) from /lib/modules.  The guest
#   1. reads 1 MiB at offset 8 MiB, which the host wrote through nbdcopy
#      before boot, and prints its md5sum on the console;
#   2. writes a 4 MiB pattern (carried in the initramfs) at offset 1 MiB
#      with dd, syncs, and powers off.
# The host then checks the md5sum line and reads the volume back with
# nbdcopy: the pattern must be at 1 MiB, the host's data at 8 MiB, and
# zeroes elsewhere in the first 16 MiB.
#
# Not part of `make check` (it needs qemu, a kernel and ~30 s).  Needs:
# qemu-system-x86_64, busybox (static), /boot/vmlinuz-$(uname -r) or any
# /boot/vmlinuz-* with its /lib/modules, cpio, nbdcopy.
#   apt-get install qemu-system-x86 linux-image-amd64 busybox-static cpio
. "$(dirname "$0")/../e2e/functions.sh"

requires qemu-system-x86_64 busybox cpio nbdcopy md5sum
requires_build

# The kernel: the running one if /boot has it, else the newest in /boot.
KVER=$(uname -r)
if ! [ -f "/boot/vmlinuz-$KVER" ] || ! [ -d "/lib/modules/$KVER" ]; then
  k=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
  [ -n "$k" ] || skip "no kernel in /boot (apt-get install linux-image-amd64)"
  KVER=${k#/boot/vmlinuz-}
fi
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER
[ -r "$KERNEL" ] || skip "$KERNEL not readable"
[ -f "$MODDIR/modules.dep" ] || skip "no $MODDIR/modules.dep"
file -L "$(command -v busybox)" 2>/dev/null | grep -q 'statically linked' ||
  skip "busybox is not static (apt-get install busybox-static)"

# mod_closure NAME...: module paths (relative to MODDIR), dependencies
# first, each once.  Built-in modules (not in modules.dep) are skipped.
mod_closure () {
  local m line path deps d
  for m in "$@"; do
    line=$(grep -E "/$m\.ko(\.xz|\.zst|\.gz)?:" "$MODDIR/modules.dep" || true)
    [ -n "$line" ] || continue
    path=${line%%:*}
    deps=${line#*:}
    for d in $deps; do
      d=$(basename "$d"); d=${d%%.ko*}
      mod_closure "$d"
    done
    case " $MODS " in *" $path "*) ;; *) MODS="$MODS $path" ;; esac
  done
}

# Build the initramfs in $tmp/initrd.img.
build_initramfs () {
  local root=$tmp/root m f
  mkdir -p "$root"/{bin,dev,proc,sys,mod}
  cp "$(command -v busybox)" "$root/bin/busybox"
  MODS=
  mod_closure virtio_pci virtio_blk
  [ -n "$MODS" ] || echo "$test_name: virtio drivers are built in" >&2
  for m in $MODS; do
    f=$(basename "$m"); f=${f%.xz}; f=${f%.zst}; f=${f%.gz}
    case "$m" in
      *.xz) xz -dc "$MODDIR/$m" > "$root/mod/$f" ;;
      *.zst) zstd -qdc "$MODDIR/$m" > "$root/mod/$f" ;;
      *.gz) gzip -dc "$MODDIR/$m" > "$root/mod/$f" ;;
      *) cp "$MODDIR/$m" "$root/mod/$f" ;;
    esac
    echo "$f" >> "$root/mod/order"
  done
  cp "$tmp/pattern" "$root/pattern"
  cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mod/order 2>/dev/null); do
  insmod /mod/$m || echo "GUEST: insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ -b /dev/vda ]; then
  echo "GUEST: vda $(cat /sys/block/vda/size) sectors"
  echo "GUEST: md5 $(dd if=/dev/vda bs=1M skip=8 count=1 2>/dev/null | md5sum)"
  dd if=/pattern of=/dev/vda bs=1M seek=1 conv=fsync 2>/dev/null &&
    echo "GUEST: wrote pattern"
  sync
  echo "GUEST: done"
else
  echo "GUEST: no /dev/vda"
fi
poweroff -f
EOF
  chmod 755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet) > "$tmp/initrd.img"
}

start=$(date +%s)
head -c $((4 << 20)) /dev/urandom > "$tmp/pattern"
head -c $((1 << 20)) /dev/urandom > "$tmp/host"
build_initramfs

volume_create
volume_start
nbdkit_start
# The host's data at 8 MiB: a sparse 9 MiB image copied to offset 0.
truncate -s $((9 << 20)) "$tmp/host9"
dd if="$tmp/host" of="$tmp/host9" bs=1M seek=8 conv=notrunc 2>/dev/null
nbdcopy "$tmp/host9" "$URI"

# TCG by default: it boots this guest in ~5 s, while KVM nested in a VM
# that lacks CPU features was seen taking minutes.  VM_KVM=1 tries KVM.
accel=tcg
if [ -n "${VM_KVM:-}" ] && [ -w /dev/kvm ]; then accel=kvm:tcg; fi
echo "booting $KERNEL (accel $accel, modules:$MODS)"
timeout ${VM_TIMEOUT:-180} qemu-system-x86_64 -machine q35,accel=$accel -m 256 -smp 1 \
  -nographic -no-reboot -kernel "$KERNEL" -initrd "$tmp/initrd.img" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3" \
  -drive "file=nbd:unix:$SOCK,if=virtio,format=raw,cache=none" \
  > "$tmp/console.log" 2>&1 < /dev/null ||
  { tail -n 30 "$tmp/console.log" >&2; fail "qemu failed or timed out"; }
grep GUEST "$tmp/console.log" | tr -d '\r' | sed 's/.*GUEST/GUEST/'

want=$(md5sum < "$tmp/host" | cut -d' ' -f1)
grep -q "GUEST: md5 $want" "$tmp/console.log" ||
  fail "guest did not read the host's data at 8 MiB (want md5 $want)"
grep -q "GUEST: wrote pattern" "$tmp/console.log" ||
  fail "guest did not write the pattern"
grep -q "GUEST: done" "$tmp/console.log" || fail "guest did not finish"

# Read back through a fresh nbdkit (the guest's writes were flushed).
nbdkit_stop
nbdkit_start
nbdcopy "$URI" "$tmp/out.img"
cmp -n $((4 << 20)) -i 0:$((1 << 20)) "$tmp/pattern" "$tmp/out.img" ||
  fail "pattern at 1 MiB differs"
cmp -n $((1 << 20)) -i 0:$((8 << 20)) "$tmp/host" "$tmp/out.img" ||
  fail "host data at 8 MiB differs"
cmp -n $((1 << 20)) "$tmp/out.img" /dev/zero || fail "first MiB not zero"
cmp -n $((3 << 20)) -i $((5 << 20)):0 "$tmp/out.img" /dev/zero ||
  fail "5..8 MiB not zero"
volume_stop
echo "check-vm: ok in $(($(date +%s) - start)) s"
