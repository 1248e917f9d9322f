#!/usr/bin/env bash
# Bakes a Debian 12 image into the shoplab box (Packer runs it as root): every package, the consul binary,
# the service binaries and the units, so `vagrant up` needs no internet. Nothing is enabled or started here;
# provision.sh configures each VM for its role.
set -euo pipefail
# shellcheck source=provisioning/lib.sh
source "$(dirname "$0")/lib.sh"

install_packages
install_consul
install_services
# Installing PostgreSQL made a cluster that starts on boot, and Prometheus is enabled by its package;
# provisioning enables each only where it belongs. The node exporter runs on every VM: it stays enabled, on
# loopback only until provisioning gives it the VM's private address.
systemctl disable postgresql.service prometheus.service >/dev/null 2>&1 || true
printf 'ARGS="--web.listen-address=127.0.0.1:9100"\n' >/etc/default/prometheus-node-exporter
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
