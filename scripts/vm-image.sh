#!/usr/bin/env bash
# Builds a Debian 12 base image from Debian's packages, for machines without cloud images or VirtualBox:
# debootstrap into a directory, the lab's packages installed in a chroot, a vagrant user with Vagrant's
# insecure key, DHCP by MAC through systemd-networkd, an empty machine-id; then a raw ext4 disk converted to
# qcow2, and the kernel and a small virtio initrd copied out (the image has no bootloader: boot it directly).
#
# Usage: scripts/vm-image.sh OUTDIR   → OUTDIR/base.qcow2, OUTDIR/vmlinuz, OUTDIR/initrd.img
# The Debian mirror is the one this machine's apt already uses. Runs as root; reuses OUTDIR's image if present.
set -euo pipefail

out=${1:?usage: scripts/vm-image.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# shellcheck source=provisioning/lib.sh
source "$(dirname "$0")/../provisioning/lib.sh"
# An image is reused only when it was made with the packages the lab needs now (recorded beside it).
if [[ -s $out/base.qcow2 && -s $out/vmlinuz && -s $out/initrd.img && $(cat "$out/packages" 2>/dev/null) == "${SHOPLAB_PACKAGES[*]}" ]]; then
  echo "vm-image: reusing $out/base.qcow2"
  exit 0
fi
rm -f "$out/base.qcow2" "$out/packages"
[[ $(id -u) -eq 0 ]] || { echo "vm-image: must run as root (debootstrap, chroot)" >&2; exit 1; }
for tool in debootstrap qemu-img mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "vm-image: $tool is missing; install it with: apt-get install -y debootstrap qemu-utils e2fsprogs" >&2; exit 1; }
done

# The mirror apt uses here: the first URIs: line of a deb822 source, else the first deb line.
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 || true)
if [[ -z $mirror ]]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null || true)
fi
[[ -n $mirror ]] || { echo "vm-image: no Debian mirror found in this machine's apt configuration" >&2; exit 1; }

keys=$(dirname "$(find /usr/share/rubygems-integration/all/gems -path '*/vagrant-*/keys/vagrant.pub' 2>/dev/null | head -1)")
[[ -f $keys/vagrant.pub ]] || { echo "vm-image: Vagrant's insecure public key not found; install vagrant" >&2; exit 1; }

tree=$(mktemp -d "$out/tree.XXXXXX")
chmod 0755 "$tree" # it becomes the image's /: every user must traverse it (mktemp made it 0700)
cleanup() {
  for m in dev/pts dev proc sys; do umountq "$tree/$m"; done
  rm -rf "$tree" "$out/base.raw"
}
umountq() {
  if mountpoint -q "$1"; then umount -l "$1"; fi
}
trap cleanup EXIT

start=$SECONDS
echo "vm-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase \
  --include=linux-image-cloud-amd64,systemd-sysv,udev,openssh-server,iproute2,dbus,initramfs-tools,ca-certificates,sudo,kmod \
  bookworm "$tree" "$mirror" >"$out/debootstrap.log" 2>&1 || { tail -20 "$out/debootstrap.log" >&2; exit 1; }
echo "vm-image: debootstrap took $((SECONDS - start))s"

# The lab's packages, installed now in the chroot (seconds here, minutes inside an emulated VM).
t=$SECONDS
mount --bind /dev "$tree/dev"
mount --bind /dev/pts "$tree/dev/pts"
mount -t proc proc "$tree/proc"
mount -t sysfs sys "$tree/sys"
printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
chmod +x "$tree/usr/sbin/policy-rc.d"
chroot "$tree" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${SHOPLAB_PACKAGES[@]}" >"$out/chroot-apt.log" 2>&1 ||
  { tail -20 "$out/chroot-apt.log" >&2; exit 1; }
rm -f "$tree/usr/sbin/policy-rc.d"
echo "vm-image: packages (${SHOPLAB_PACKAGES[*]}) took $((SECONDS - t))s"

# Boot and log in: root on /dev/vda, DHCP by MAC on eth0, the vagrant user with the insecure key.
echo "/dev/vda / ext4 defaults 0 1" >"$tree/etc/fstab"
echo "shoplab" >"$tree/etc/hostname"
mkdir -p "$tree/etc/systemd/network"
printf '[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n\n[DHCPv4]\nClientIdentifier=mac\n' >"$tree/etc/systemd/network/10-eth0.network"
chroot "$tree" systemctl enable systemd-networkd.service systemd-resolved.service ssh.service >/dev/null 2>&1
ln -sf /run/systemd/resolve/stub-resolv.conf "$tree/etc/resolv.conf"
chroot "$tree" useradd --create-home --shell /bin/bash --groups sudo vagrant
install -d -m 0700 -o 1000 -g 1000 "$tree/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$keys/vagrant.pub" "$tree/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >"$tree/etc/sudoers.d/vagrant"
chmod 0440 "$tree/etc/sudoers.d/vagrant"
printf 'UseDNS no\nPasswordAuthentication no\n' >"$tree/etc/ssh/sshd_config.d/shoplab.conf"
# A small initrd with the virtio drivers only boots faster.
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >>"$tree/etc/initramfs-tools/modules"
sed -i 's/^MODULES=.*/MODULES=list/' "$tree/etc/initramfs-tools/initramfs.conf"
chroot "$tree" update-initramfs -u >/dev/null 2>&1
# Each VM must make its own machine id (else every VM gets the same DHCP lease).
truncate -s 0 "$tree/etc/machine-id"
rm -f "$tree/var/lib/dbus/machine-id"
chroot "$tree" apt-get clean
for m in dev/pts dev proc sys; do umountq "$tree/$m"; done

cp "$(readlink -f "$tree/vmlinuz")" "$out/vmlinuz"
cp "$(readlink -f "$tree/initrd.img")" "$out/initrd.img"
t=$SECONDS
truncate -s 6G "$out/base.raw"
mkfs.ext4 -q -F -d "$tree" "$out/base.raw"
qemu-img convert -O qcow2 "$out/base.raw" "$out/base.qcow2"
echo "${SHOPLAB_PACKAGES[*]}" >"$out/packages"
echo "vm-image: disk image took $((SECONDS - t))s; $(du -h "$out/base.qcow2" | cut -f1) qcow2, initrd $(du -h "$out/initrd.img" | cut -f1)"
echo "vm-image: done in $((SECONDS - start))s"
