#!/usr/bin/env bash
# Turns a Debian 12 VM into one member of the lab. Vagrant runs it as root with this VM's settings and
# secrets in the environment (see Vagrantfile); running it again changes nothing that is already right.
#   SHOPLAB_ROLE=consul-server  a Consul server (the first one also creates the lab's ACL tokens)
#   SHOPLAB_ROLE=service        a Consul client agent and one service, with its own PostgreSQL if it has data
#                               (a Patroni member on every replica VM when the service has two or more)
#   SHOPLAB_ROLE=front          a Consul client agent and the front
#   SHOPLAB_ROLE=monitor        a Consul client agent and Prometheus, scraping the whole lab
# Every VM also runs a node exporter, with its Consul agent's own metrics.
set -euo pipefail
# shellcheck source=provisioning/lib.sh
source "$(dirname "$0")/lib.sh"

: "${SHOPLAB_ROLE:?}" "${SHOPLAB_NODE:?}" "${SHOPLAB_IP:?}" "${SHOPLAB_SERVERS:?}"
log "provisioning $SHOPLAB_NODE ($SHOPLAB_ROLE) at $SHOPLAB_IP"
began=$SECONDS

# step FUNCTION runs one step and says how long it took (where a slow `vagrant up` spends its minutes).
step() {
  local start=$SECONDS
  "$@"
  log "step $1 took $((SECONDS - start))s"
}

step set_hostname
step install_packages
step install_consul
step install_services
step install_units
step configure_consul
step consul_dns
step install_lab_tls
step setup_node_exporter

case $SHOPLAB_ROLE in
consul-server)
  if [[ -n ${SHOPLAB_ACL_SPEC:-} ]]; then
    step consul_acl_setup
  fi
  ;;
service | front)
  if [[ ${DB_PATRONI:-no} == yes ]]; then
    step setup_patroni # every replica VM: one member of the service's Patroni cluster
  elif [[ ${DB_PRIMARY:-no} == yes ]]; then
    step setup_postgres # one replica: the database on the first VM
  fi
  step start_service
  step install_operator_tools
  ;;
monitor)
  step setup_monitor
  ;;
*) die "unknown role $SHOPLAB_ROLE" ;;
esac
log "$SHOPLAB_NODE is provisioned in $((SECONDS - began))s"
