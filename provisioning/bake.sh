#!/usr/bin/env bash
# Bakes a Debian 12 image into the shoplab box (Packer runs it as root): every package, the consul binary,
# the service binaries and the units, so `vagrant up` needs no internet. Every unit a role may run is enabled
# here, gated by a Condition on the file its provisioning writes, so provision.sh configures each VM for its role
# without reloading or enabling anything; nothing is started here.
set -euo pipefail
# shellcheck source=provisioning/lib.sh
source "$(dirname "$0")/lib.sh"

install_packages
install_consul
install_services
install_units
# Installing PostgreSQL made a cluster that starts on boot: it starts only where provisioning makes the VM's
# database (setup_postgres sets it back to auto). The node exporter runs on every VM, on loopback only until
# provisioning gives it the VM's private address.
for f in /etc/postgresql/*/main/start.conf; do
  [[ -f $f ]] && printf 'manual\n' >"$f"
done
printf 'ARGS="--web.listen-address=127.0.0.1:9100"\n' >/etc/default/prometheus-node-exporter
# What a lab VM never uses costs boot time under emulation (seconds each: docs/lab-weight.md): no screen, so no
# getty on tty1 (the serial console keeps its own); no binfmt, hugepages, debug or tracing file systems; no
# periodic apt, scrubbing or trimming (the box has no internet, and a lab lives hours).
systemctl mask getty@tty1.service e2scrub_reap.service systemd-binfmt.service sys-kernel-debug.mount \
  sys-kernel-tracing.mount dev-hugepages.mount >/dev/null 2>&1 || true
systemctl disable apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
# Log in with keys only: the vagrant user keeps Vagrant's key (given to it for the bake; Vagrant swaps in a
# fresh key on first boot) and its passwordless sudo, but no password login any more.
if [[ -s $SHOPLAB_STAGE/vagrant.pub ]]; then
  install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
  grep -qxF "$(cat "$SHOPLAB_STAGE/vagrant.pub")" /home/vagrant/.ssh/authorized_keys 2>/dev/null ||
    cat "$SHOPLAB_STAGE/vagrant.pub" >>/home/vagrant/.ssh/authorized_keys
  chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys
  chmod 0600 /home/vagrant/.ssh/authorized_keys
fi
passwd -l vagrant >/dev/null
passwd -l root >/dev/null
install -d -m 0755 /etc/ssh/sshd_config.d
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n' >/etc/ssh/sshd_config.d/10-shoplab-keys-only.conf
# Every VM made from this image must get its own machine id (and so its own DHCP lease).
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* "$SHOPLAB_STAGE"
log "baked: $(/usr/local/bin/consul version | head -1); services: $(find "$SHOPLAB_LIB" -type f -printf '%f ')"
