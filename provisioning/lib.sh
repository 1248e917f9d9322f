# shellcheck shell=bash
# Functions shared by provision.sh (Vagrant), bake.sh (Packer) and the configuration checks in CI. Each one is
# idempotent: running it again changes nothing that is already right.

SHOPLAB_DIR=${SHOPLAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
SHOPLAB_STAGE=${SHOPLAB_STAGE:-/tmp/shoplab} # where the host uploads binaries (bin/)
SHOPLAB_LIB=/usr/local/lib/shoplab           # the service binaries
SHOPLAB_NETWORK=${SHOPLAB_NETWORK:-192.168.56.0/21}

# Debian packages every VM needs. A baked box has them; otherwise they are installed (needs the internet).
# Patroni (with its Consul client, python3-consul, an alternative dependency Debian does not pull in by itself)
# runs the PostgreSQL of a service with two or more replicas; the node exporter runs on every VM, Prometheus on
# the monitor VM.
SHOPLAB_PACKAGES=(postgresql systemd-resolved bind9-dnsutils ca-certificates curl patroni python3-consul
  prometheus prometheus-node-exporter)

log() { printf 'shoplab: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# wait_for DESCRIPTION SECONDS COMMAND... retries COMMAND every 2 s until it succeeds or SECONDS pass.
wait_for() {
  local what=$1 limit=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= limit)); then
      die "$what: not ready after ${limit}s"
    fi
    sleep 2
  done
}

install_packages() {
  local missing=() p status
  # One dpkg-query for them all: every process costs under emulation.
  declare -A installed=()
  while read -r p status; do
    [[ $status == "install ok installed" ]] && installed[$p]=1
  done < <(dpkg-query -W -f='${Package} ${Status}\n' "${SHOPLAB_PACKAGES[@]}" 2>/dev/null || true)
  for p in "${SHOPLAB_PACKAGES[@]}"; do
    [[ -n ${installed[$p]:-} ]] || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ ${SHOPLAB_OFFLINE:-0} == 1 ]]; then
    die "packages missing and SHOPLAB_OFFLINE=1: ${missing[*]} (bake them into the box: make box)"
  fi
  log "installing ${missing[*]} (the box was not baked with them; this needs the internet)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# set_hostname names the VM after its node (SHOPLAB_NODE), as Vagrant's own step did, without its round trips.
set_hostname() {
  : "${SHOPLAB_NODE:?}"
  [[ $(hostname) == "$SHOPLAB_NODE" && $(cat /etc/hostname 2>/dev/null) == "$SHOPLAB_NODE" ]] && return 0
  printf '%s\n' "$SHOPLAB_NODE" >/etc/hostname
  hostname "$SHOPLAB_NODE"
  if grep -q '^127\.0\.1\.1[[:space:]]' /etc/hosts; then
    sed -i "s/^127\.0\.1\.1[[:space:]].*/127.0.1.1 $SHOPLAB_NODE/" /etc/hosts
  else
    printf '127.0.1.1 %s\n' "$SHOPLAB_NODE" >>/etc/hosts
  fi
}

# put SOURCE DEST MODE [OWNER:GROUP] installs SOURCE as DEST unless DEST already has the same content, owner
# and mode; it succeeds when it changed DEST (a caller restarts what reads it only then) and fails when DEST was
# already right.
put() {
  local src=$1 dst=$2 mode=$3 owner=${4:-root:root}
  if cmp -s "$src" "$dst" 2>/dev/null && [[ $(stat -c '%a %U:%G' "$dst") == "${mode#0} $owner" ]]; then
    return 1
  fi
  install -D -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$src" "$dst"
}

# install_consul puts the consul binary (uploaded to the stage, or already in the box), its user and its
# directories in place.
install_consul() {
  if [[ -f $SHOPLAB_STAGE/bin/consul ]]; then
    put "$SHOPLAB_STAGE/bin/consul" /usr/local/bin/consul 0755 || true
  fi
  [[ -x /usr/local/bin/consul ]] || die "no consul binary: use the baked box (make box) or run make vm-binaries on the host"
  id consul >/dev/null 2>&1 || useradd --system --home-dir /etc/consul.d --shell /usr/sbin/nologin consul
  install -d -o consul -g consul -m 0750 /opt/consul
  install -d -o root -g consul -m 0750 /etc/consul.d
}

# install_services puts every service binary found in the stage and the shoplab command (the monitor VM runs its
# Prometheus discovery) in place: whatever the host uploaded (make vm-binaries builds one per service of
# provisioning/topology.yml), so no list of services is kept here. Consul is install_consul's.
install_services() {
  local f
  install -d -m 0755 "$SHOPLAB_LIB"
  install -d -m 0700 /etc/shoplab
  for f in "$SHOPLAB_STAGE"/bin/*; do
    [[ -f $f && ${f##*/} != consul ]] || continue
    put "$f" "$SHOPLAB_LIB/${f##*/}" 0755 || true
  done
}

# installed_services prints the name of every service installed in SHOPLAB_LIB, one per line (the box carries
# them all; an unbaked VM its own).
installed_services() {
  local f
  for f in "$SHOPLAB_LIB"/*; do
    [[ -f $f && ${f##*/} != shoplab ]] && printf '%s\n' "${f##*/}"
  done
  return 0
}

# SHOPLAB_UNIT_FILES are the lab's systemd units, the drop-ins for Debian's units and the resolver's Consul
# domain: "FILE-IN-provisioning/systemd DESTINATION" per line.
SHOPLAB_UNIT_FILES="consul.service /etc/systemd/system/consul.service
shoplab@.service /etc/systemd/system/shoplab@.service
shoplab-consul-metrics.service /etc/systemd/system/shoplab-consul-metrics.service
shoplab-patroni-tags.service /etc/systemd/system/shoplab-patroni-tags.service
shoplab-prometheus-sd.service /etc/systemd/system/shoplab-prometheus-sd.service
node-exporter-shoplab.conf /etc/systemd/system/prometheus-node-exporter.service.d/shoplab.conf
patroni-shoplab.conf /etc/systemd/system/patroni.service.d/shoplab.conf
prometheus-shoplab.conf /etc/systemd/system/prometheus.service.d/shoplab.conf
postgresql-shoplab.conf /etc/systemd/system/postgresql@.service.d/shoplab.conf
resolved-consul.conf /etc/systemd/resolved.conf.d/consul.conf"

# SHOPLAB_ENABLED are the units every VM has enabled; each starts at boot only where its role's provisioning wrote
# what it needs (a Condition on that file: consul.hcl, the service's environment, the monitor's token and
# configuration, Patroni's configuration; PostgreSQL's clusters by their start.conf), so one box serves every role.
SHOPLAB_ENABLED=(consul.service shoplab-consul-metrics.service prometheus-node-exporter.service systemd-resolved.service
  patroni.service shoplab-patroni-tags.service postgresql.service prometheus.service shoplab-prometheus-sd.service)

# resolved_changed says whether install_units changed the resolver's Consul domain (consul_dns then restarts it).
resolved_changed=0

# install_units puts the lab's units and drop-ins in place and enables every unit a role may run, changing only
# what is not already right: on the baked box (bake.sh ran it) it reloads and enables nothing. Each reload and
# enable costs seconds of systemd under emulation (docs/lab-weight.md), and a unit Debian also ships as a SysV
# script takes longer still to enable.
install_units() {
  local src dst changed=0 u missing=()
  while read -r src dst; do
    if put "$SHOPLAB_DIR/systemd/$src" "$dst" 0644; then
      changed=1
      [[ $src == resolved-consul.conf ]] && resolved_changed=1
    fi
  done <<<"$SHOPLAB_UNIT_FILES"
  ((changed)) && systemctl daemon-reload
  local wanted=("${SHOPLAB_ENABLED[@]}")
  while read -r u; do wanted+=("shoplab@$u.service"); done < <(installed_services)
  # One systemctl for every answer, one for every change.
  local -a states
  local i
  mapfile -t states < <(systemctl is-enabled "${wanted[@]}" 2>/dev/null || true)
  for i in "${!wanted[@]}"; do
    [[ ${states[$i]:-} == enabled ]] || missing+=("${wanted[$i]}")
  done
  ((${#missing[@]} == 0)) || systemctl enable "${missing[@]}" >/dev/null
}

CONSUL_TLS_DIR=${CONSUL_TLS_DIR:-/etc/consul.d/tls}

# put_base64 VAR PATH MODE [OWNER] puts the base64 PEM in the environment variable VAR (made on the host by
# lab.rb) into PATH, through a root-only temporary file (keys pass through it); it succeeds when PATH changed.
put_base64() {
  local tmp status=0
  [[ -n ${!1:-} ]] || die "$1 (base64 PEM) is missing"
  tmp=$(mktemp)
  printf '%s' "${!1}" | base64 -d >"$tmp" || { rm -f "$tmp"; die "$1 is not base64"; }
  put "$tmp" "$2" "$3" "${4:-root:root}" || status=$?
  rm -f "$tmp"
  return "$status"
}

# install_consul_tls puts the lab's Consul TLS material, made on the host (lab.rb) and passed base64-encoded
# in the environment, into CONSUL_TLS_DIR: every agent gets the lab's CA (LAB_TLS_CA), a server also its
# own certificate and key (CONSUL_TLS_CERT, CONSUL_TLS_KEY; the key readable by root and consul only). It
# succeeds when it changed a file.
install_consul_tls() {
  install -d -o root -g consul -m 0750 "$CONSUL_TLS_DIR"
  local changed=1
  put_base64 LAB_TLS_CA "$CONSUL_TLS_DIR/ca.pem" 0644 root:consul && changed=0
  if [[ $SHOPLAB_ROLE == consul-server ]]; then
    put_base64 CONSUL_TLS_CERT "$CONSUL_TLS_DIR/server.pem" 0644 root:consul && changed=0
    put_base64 CONSUL_TLS_KEY "$CONSUL_TLS_DIR/server-key.pem" 0640 root:consul && changed=0
  fi
  return "$changed"
}

LAB_TLS_DIR=${LAB_TLS_DIR:-/etc/ssl/shoplab}
LAB_TLS_CHANGED=0

# install_lab_tls puts the lab's CA (LAB_TLS_CA) in LAB_TLS_DIR for every client on this VM — the services'
# sslmode=verify-full, Patroni's calls to its peers, Prometheus' scrapes of Patroni — and, on a VM that keeps a
# database, its certificate and key (DB_TLS_CERT, DB_TLS_KEY, base64 PEM from lab.rb; the key readable by
# postgres alone), which PostgreSQL and Patroni's REST API serve. It sets LAB_TLS_CHANGED=1 when it changed a
# file (the database then reloads them).
install_lab_tls() {
  install -d -m 0755 "$LAB_TLS_DIR"
  put_base64 LAB_TLS_CA "$LAB_TLS_DIR/ca.pem" 0644 && LAB_TLS_CHANGED=1
  if [[ -n ${DB_TLS_CERT:-} ]]; then
    put_base64 DB_TLS_CERT "$LAB_TLS_DIR/db.pem" 0644 && LAB_TLS_CHANGED=1
    put_base64 DB_TLS_KEY "$LAB_TLS_DIR/db-key.pem" 0600 postgres:postgres && LAB_TLS_CHANGED=1
  fi
  return 0
}

# render_consul_config writes the agent's configuration to $1 from the environment:
#   SHOPLAB_ROLE (consul-server or other), SHOPLAB_NODE, SHOPLAB_IP, SHOPLAB_SERVERS (comma-separated IPs),
#   CONSUL_GOSSIP_KEY, CONSUL_AGENT_TOKEN, CONSUL_DNS_TOKEN, and for servers CONSUL_MANAGEMENT_TOKEN; the TLS
#   files are those install_consul_tls puts in CONSUL_TLS_DIR.
# Consul binds and advertises on the private address explicitly: a VM has several NICs.
# Consul's own traffic is TLS as its security model describes: gossip encrypted with the lab's key; RPC between
# agents and servers verified both ways against the lab's CA, servers proving server.shoplab.consul
# (verify_server_hostname), clients getting their certificates from the servers (auto_encrypt); a server's
# HTTP API is plain on loopback only (local tools) and HTTPS on 8501 for the lab network and the forwarded UI;
# a client's HTTP API stays on loopback.
render_consul_config() {
  : "${SHOPLAB_ROLE:?}" "${SHOPLAB_NODE:?}" "${SHOPLAB_IP:?}" "${SHOPLAB_SERVERS:?}" "${CONSUL_GOSSIP_KEY:?}"
  : "${CONSUL_AGENT_TOKEN:?}" "${CONSUL_DNS_TOKEN:?}"
  local out=$1 join="" ip tls=$CONSUL_TLS_DIR
  IFS=, read -r -a servers <<<"$SHOPLAB_SERVERS"
  for ip in "${servers[@]}"; do join+="\"$ip\", "; done
  join=${join%, }
  {
    cat <<HCL
# Written by shoplab provisioning; changes are overwritten.
datacenter     = "shoplab"
node_name      = "$SHOPLAB_NODE"
data_dir       = "/opt/consul"
bind_addr      = "$SHOPLAB_IP"
advertise_addr = "$SHOPLAB_IP"
retry_join     = [$join]
encrypt        = "$CONSUL_GOSSIP_KEY"
log_level      = "INFO"

# Checks over HTTPS (Patroni's REST API) verify the server with the agent's CA, the lab's.
enable_agent_tls_for_checks = true

ports {
  dns = 8600
HCL
    if [[ $SHOPLAB_ROLE == consul-server ]]; then printf "  https = 8501\n"; fi
    cat <<HCL
}

# Gossip that tolerates a starved VM: under software emulation on a busy host a guest stalls for a second or
# more, and with the defaults (probe every 1 s, 500 ms for an ack, suspicion 4 intervals) live agents were marked
# failed and rejoined by turns — clients even dropped their only server ("No known Consul servers") while the
# lab was idle (make vm-test, 2026-12-06 14:37-14:39). A VM that really died is now marked failed after about
# 20 s instead of 5 s: the front ejects an instance that stops answering on its own, and Patroni's failover
# (its session's TTL) does not wait for gossip. Queued gossip goes out every second instead of five times a
# second: a membership change spreads a little slower through a lab of a dozen VMs, and an idle agent wakes
# far less (docs/lab-weight.md).
gossip_lan {
  probe_interval  = "3s"
  probe_timeout   = "2s"
  suspicion_mult  = 6
  gossip_interval = "1s"
}

# The service mesh: Consul's CA issues every service its leaf certificate (the services are Connect-native).
connect {
  enabled = true
}

# The agent's own metrics in Prometheus' format at /v1/agent/metrics (shoplab consul-metrics relays them off loopback).
telemetry {
  prometheus_retention_time = "1m"
  disable_hostname          = true
}

acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
  tokens {
    agent = "$CONSUL_AGENT_TOKEN"
    dns   = "$CONSUL_DNS_TOKEN"
HCL
    if [[ $SHOPLAB_ROLE == consul-server ]]; then
      cat <<HCL
    initial_management = "$CONSUL_MANAGEMENT_TOKEN"
HCL
    fi
    cat <<HCL
  }
}
HCL
    if [[ $SHOPLAB_ROLE == consul-server ]]; then
      cat <<HCL

server           = true
bootstrap_expect = ${#servers[@]}
# The UI and API answer over HTTPS on every interface (reached from the host through a forwarded port) and in
# plain HTTP on loopback only; the ACL default policy is deny, so nothing is readable without a token.
client_addr = "0.0.0.0"
addresses {
  http = "127.0.0.1"
}

tls {
  defaults {
    ca_file         = "$tls/ca.pem"
    cert_file       = "$tls/server.pem"
    key_file        = "$tls/server-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
  # Browsers and the host's tools verify the server; they carry no client certificate.
  https {
    verify_incoming = false
  }
}

auto_encrypt {
  allow_tls = true
}

# A server that is gone for good leaves the Raft configuration by itself once a replacement has joined (or a
# quorum would still remain), so a lab of three keeps working after losing one for good.
autopilot {
  cleanup_dead_servers = true
}

ui_config {
  enabled = true
}
HCL
    else
      cat <<HCL

server      = false
client_addr = "127.0.0.1"

tls {
  defaults {
    ca_file         = "$tls/ca.pem"
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}

# The servers issue this agent its RPC certificate (signed by Consul's own CA, which the servers trust for RPC).
auto_encrypt {
  tls = true
}
HCL
    fi
  } >"$out"
}

# configure_consul installs the lab's TLS material and this agent's configuration and (re)starts the agent when
# either changed or it does not run. The agent refuses a configuration it cannot read, and says why in its journal
# (make test runs `consul validate` on every configuration provisioning renders).
configure_consul() {
  local tmp changed=0
  install_consul_tls && changed=1
  tmp=$(mktemp --suffix=.hcl)
  render_consul_config "$tmp"
  put "$tmp" /etc/consul.d/consul.hcl 0640 root:consul && changed=1
  rm -f "$tmp"
  if ((changed == 0)) && systemctl is-active --quiet consul.service; then
    return 0
  fi
  if [[ $SHOPLAB_ROLE == consul-server ]]; then
    systemctl restart consul.service
  else
    # A client is ready only once a server has signed its certificate (auto_encrypt), which needs the server
    # up and this agent's token created: wait for that, bounded, without holding systemctl.
    systemctl restart --no-block consul.service
    wait_for "the Consul agent (its certificate from the servers)" 900 consul_started
  fi
}

# consul_started succeeds once the agent runs, and stops the wait at once when it failed to start.
consul_started() {
  if systemctl is-failed --quiet consul.service; then
    journalctl -u consul.service -n 20 --no-pager >&2
    die "the Consul agent failed to start"
  fi
  systemctl is-active --quiet consul.service
}

# acl_rules prints the ACL rules of a token kind: a Patroni member its own cluster's keys and service, an agent
# may write its own node and read its own agent's settings and metrics, a service its own service
# (which is also what its mesh leaf certificate and the intention checks of calls to it need) and read the
# intentions that name it, and both read the catalogue; the DNS token and the monitor's (Prometheus' discovery)
# read nodes and services; the UI token (for people, and for make lab-verify) reads everything, intentions
# included, and changes nothing. Nobody but the operator's management token writes intentions.
acl_rules() {
  local kind=$1 name=$2
  case $kind in
  agent) printf 'node "%s" { policy = "write" }\nagent "%s" { policy = "read" }\nservice_prefix "" { policy = "read" }\n' "$name" "$name" ;;
  service)
    # A service (name: catalog): its registration, and reading its database cluster's Patroni keys (the read gate:
    # DATABASE_READ_CLUSTER; nothing is there for a service without a Patroni cluster).
    printf 'service "%s" {\n  policy     = "write"\n  intentions = "read"\n}\nservice_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\nkey_prefix "%s%s-db/" { policy = "read" }\n' \
      "$name" "${PATRONI_NAMESPACE#/}" "$name"
    ;;
  dns | monitor) printf 'node_prefix "" { policy = "read" }\nservice_prefix "" { policy = "read" }\n' ;;
  patroni)
    # A Patroni member (name: its node, e.g. catalog-1; its cluster catalog-db): its cluster's keys, its own
    # sessions and the cluster's service registration, and reading its agent's settings.
    local scope="${name%-*}-db"
    printf 'key_prefix "shoplab/%s/" { policy = "write" }\nsession "%s" { policy = "write" }\nservice "%s" { policy = "write" }\nagent "%s" { policy = "read" }\n' \
      "$scope" "$name" "$scope" "$name"
    ;;
  ui) printf 'node_prefix "" { policy = "read" }\nservice_prefix "" {\n  policy     = "read"\n  intentions = "read"\n}\nagent_prefix "" { policy = "read" }\nkey_prefix "" { policy = "read" }\noperator = "read"\n' ;;
  *) die "unknown token kind $kind" ;;
  esac
}

# consul_api METHOD PATH sends a request to the local agent's HTTP API (CONSUL_HTTP_ADDR, default
# 127.0.0.1:8500) with the management token and prints the answer; a PUT's JSON body is read from stdin. The
# token goes in a header file and the body on stdin: no secret is ever a process argument (ps shows those to
# everyone). It fails on an HTTP error.
consul_api() {
  local method=$1 path=$2 body=()
  [[ $method == GET ]] || body=(--data-binary @-)
  curl_secret_header "X-Consul-Token: $CONSUL_MANAGEMENT_TOKEN" -sf -X "$method" "${body[@]}" \
    "http://${CONSUL_HTTP_ADDR:-127.0.0.1:8500}$path"
}

# curl_secret_header HEADER ARGS... runs curl ARGS with HEADER (it holds a secret) read from a file only root
# can read, never from an argument (ps shows those to everyone); it returns curl's status.
curl_secret_header() {
  local headers status=0
  headers=$(mktemp)
  chmod 0600 "$headers"
  printf '%s\n' "$1" >"$headers"
  curl -H @"$headers" "${@:2}" || status=$?
  rm -f "$headers"
  return "$status"
}

# json_string prints $1 as a JSON string.
json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  printf '"%s"' "$s"
}

# consul_has_leader succeeds once the local agent's cluster has elected a leader.
consul_has_leader() {
  [[ $(curl -sf "http://${CONSUL_HTTP_ADDR:-127.0.0.1:8500}/v1/status/leader") == *:* ]]
}

# consul_acl_setup creates the lab's policies and tokens from SHOPLAB_ACL_SPEC ("kind name accessor secret"
# per line) with the management token, and writes the mesh's intentions from SHOPLAB_INTENTIONS (one
# service-intentions config entry per line, JSON). Tokens are created with the ids the host chose, and only if
# missing, so re-provisioning never bootstraps twice; the policies and intentions are written again (the topology
# wins). All through the HTTP API with curl: a consul CLI process costs seconds under emulation, and this makes
# some sixty calls.
consul_acl_setup() {
  wait_for "consul leader" 300 consul_has_leader
  local kind name accessor secret policy rules id entry
  while read -r kind name accessor secret; do
    [[ -n $kind ]] || continue
    policy="shoplab-$kind-$name"
    rules=$(json_string "$(acl_rules "$kind" "$name")")
    if id=$(consul_api GET "/v1/acl/policy/name/$policy" 2>/dev/null | sed -n 's/^{"ID":"\([^"]*\)".*/\1/p') && [[ -n $id ]]; then
      printf '{"Name":"%s","Rules":%s}' "$policy" "$rules" | consul_api PUT "/v1/acl/policy/$id" >/dev/null ||
        die "updating the ACL policy $policy failed"
    else
      printf '{"Name":"%s","Rules":%s}' "$policy" "$rules" | consul_api PUT /v1/acl/policy >/dev/null ||
        die "creating the ACL policy $policy failed"
    fi
    if ! consul_api GET "/v1/acl/token/$accessor" >/dev/null 2>&1; then
      printf '{"AccessorID":"%s","SecretID":"%s","Description":"shoplab %s %s","Policies":[{"Name":"%s"}]}' \
        "$accessor" "$secret" "$kind" "$name" "$policy" | consul_api PUT /v1/acl/token >/dev/null ||
        die "creating the ACL token of $kind $name failed"
      log "created the ACL token of $kind $name"
    fi
  done <<<"$SHOPLAB_ACL_SPEC"
  local n=0
  while read -r entry; do
    [[ -n $entry ]] || continue
    printf '%s' "$entry" | consul_api PUT /v1/config >/dev/null || die "writing intentions failed: $entry"
    n=$((n + 1))
  done <<<"${SHOPLAB_INTENTIONS:-}"
  ((n == 0)) || log "intentions written: $n service-intentions entries"
}

# consul_dns makes systemd-resolved send *.consul queries to the local agent (the resolver's drop-in comes with
# install_units; the baked box has it already).
consul_dns() {
  if ((resolved_changed)) || ! systemctl is-active --quiet systemd-resolved.service; then
    systemctl restart systemd-resolved.service
  fi
  if [[ $(readlink /etc/resolv.conf) != /run/systemd/resolve/stub-resolv.conf ]]; then
    ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
  fi
}

# setup_postgres makes the service's own database on this VM's PostgreSQL, reachable from the lab network
# by the service's role alone, over TLS only (the lab's certificate of this VM, install_lab_tls), by password:
# SHOPLAB_SERVICE, SHOPLAB_IP, DB_PASSWORD. The superuser stays local (Debian's peer and loopback lines).
setup_postgres() {
  : "${SHOPLAB_SERVICE:?}" "${SHOPLAB_IP:?}" "${DB_PASSWORD:?}"
  [[ -f $LAB_TLS_DIR/db.pem && -f $LAB_TLS_DIR/db-key.pem ]] || die "no database certificate in $LAB_TLS_DIR (DB_TLS_CERT, DB_TLS_KEY)"
  local svc=$SHOPLAB_SERVICE conf version tmp changed=$LAB_TLS_CHANGED
  conf=$(find /etc/postgresql -mindepth 2 -maxdepth 2 -type d -name main 2>/dev/null | head -1)
  if [[ -z $conf ]]; then
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -1)
    [[ -n $version ]] || die "PostgreSQL is not installed"
    log "creating the PostgreSQL $version cluster"
    pg_createcluster "$version" main >/dev/null
    conf=/etc/postgresql/$version/main
  fi
  version=$(basename "$(dirname "$conf")")
  tmp=$(mktemp)
  {
    printf "listen_addresses = 'localhost,%s'\n" "$SHOPLAB_IP"
    printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\nssl_min_protocol_version = 'TLSv1.3'\n" \
      "$LAB_TLS_DIR/db.pem" "$LAB_TLS_DIR/db-key.pem"
  } >"$tmp"
  put "$tmp" "$conf/conf.d/shoplab.conf" 0644 postgres:postgres && changed=1
  # The box keeps the cluster from starting on VMs without a database (start.conf manual, bake.sh): here it starts
  # at every boot.
  printf 'auto\n' >"$tmp"
  put "$tmp" "$conf/start.conf" 0644 postgres:postgres && changed=1
  rm -f "$tmp"
  # A lab made before the database's TLS has the same line as host (TLS or not): it goes.
  local line="hostssl $svc $svc $SHOPLAB_NETWORK scram-sha-256" plain="host $svc $svc $SHOPLAB_NETWORK scram-sha-256"
  if grep -qxF "$plain" "$conf/pg_hba.conf"; then
    grep -vxF "$plain" "$conf/pg_hba.conf" >"$conf/pg_hba.conf.new" || true
    chown postgres:postgres "$conf/pg_hba.conf.new" && chmod 0640 "$conf/pg_hba.conf.new"
    mv "$conf/pg_hba.conf.new" "$conf/pg_hba.conf" && changed=1
  fi
  grep -qxF "$line" "$conf/pg_hba.conf" || { printf '%s\n' "$line" >>"$conf/pg_hba.conf" && changed=1; }
  if ((changed)) || ! systemctl is-active --quiet "postgresql@$version-main.service"; then
    systemctl restart "postgresql@$version-main.service"
  fi
  wait_for "postgresql" 120 runuser -u postgres -- pg_isready -q
  # The password reaches psql on stdin (\set), never as an argument.
  service_database_sql | runuser -u postgres -- psql -q -v ON_ERROR_STOP=1
}

# A service with two or more replicas keeps its database in a Patroni cluster: one PostgreSQL per replica VM,
# Consul as the DCS (its keys under shoplab/<scope>/), synchronous replication, and the cluster registered in
# Consul as the service <scope> with the tag primary on the leader, which services reach as
# primary.<scope>.service.consul.
PATRONI_NAMESPACE=/shoplab/
# The clusters' timing (render_patroni_config says why these), which patroni_apply_timing gives a cluster made
# before; the environment may set others (make test's quicker loop).
PATRONI_TTL=${PATRONI_TTL:-20}
PATRONI_LOOP_WAIT=${PATRONI_LOOP_WAIT:-5}
PATRONI_RETRY_TIMEOUT=${PATRONI_RETRY_TIMEOUT:-7}

# render_patroni_config writes this node's Patroni configuration to $1 from the environment:
#   SHOPLAB_NODE, SHOPLAB_IP, SHOPLAB_SERVICE, PATRONI_SCOPE, CONSUL_PATRONI_TOKEN, PATRONI_SUPERUSER_PASSWORD,
#   PATRONI_REPLICATION_PASSWORD, PATRONI_REWIND_PASSWORD, PATRONI_REST_PASSWORD, PATRONI_MEMBERS (the
#   cluster's members' addresses, comma-separated; default this one's); and, with defaults for the VMs,
#   PATRONI_PG_PORT (5432), PATRONI_API_PORT (8008), PATRONI_DATA_DIR, PATRONI_SOCKET_DIR, PATRONI_CONSUL
#   (127.0.0.1:8500), PATRONI_TTL (20), PATRONI_LOOP_WAIT (5), PATRONI_RETRY_TIMEOUT (7), SHOPLAB_NETWORK (who
#   may connect) and LAB_TLS_DIR (the lab's CA, this member's certificate and key: install_lab_tls).
# Everything on the network is TLS, verified against the lab's CA: PostgreSQL takes hostssl connections only,
# replication and pg_rewind verify the member they copy from (verify-full), and the REST API is HTTPS; its
# unsafe endpoints (switchover, restart, reinitialize, configuration) take the password only from a member's or
# this host's own address. (Not a client certificate besides: the Consul agents' checks present theirs, which
# Consul's built-in CA signs, and a certificate the server asks for but cannot verify fails the handshake.)
# The superuser connects over this host's socket or loopback only; pg_rewind has its own role (Patroni gives it
# only the functions it uses).
# The file holds passwords: it is written 0600 and read by Patroni alone (postgres).
render_patroni_config() {
  : "${SHOPLAB_NODE:?}" "${SHOPLAB_IP:?}" "${SHOPLAB_SERVICE:?}" "${PATRONI_SCOPE:?}" "${CONSUL_PATRONI_TOKEN:?}"
  : "${PATRONI_SUPERUSER_PASSWORD:?}" "${PATRONI_REPLICATION_PASSWORD:?}" "${PATRONI_REWIND_PASSWORD:?}" "${PATRONI_REST_PASSWORD:?}"
  local out=$1 pg_port=${PATRONI_PG_PORT:-5432} api_port=${PATRONI_API_PORT:-8008} bin version
  local data=${PATRONI_DATA_DIR:-/var/lib/postgresql/patroni/$PATRONI_SCOPE} svc=$SHOPLAB_SERVICE hba
  local ca=$LAB_TLS_DIR/ca.pem cert=$LAB_TLS_DIR/db.pem key=$LAB_TLS_DIR/db-key.pem allow ip members
  # Who may connect: the superuser on this host only (Patroni over the socket), and over TLS by password from
  # the lab: replication, pg_rewind's role to the postgres database, and the service's own role to its own.
  allow="    - 127.0.0.1/32"
  IFS=, read -r -a members <<<"${PATRONI_MEMBERS:-$SHOPLAB_IP}"
  for ip in "${members[@]}"; do allow+=$'\n'"    - $ip/32"; done
  hba="    - local all postgres peer
    - hostssl all postgres 127.0.0.1/32 scram-sha-256
    - hostssl replication replicator $SHOPLAB_NETWORK scram-sha-256
    - hostssl postgres rewind_user $SHOPLAB_NETWORK scram-sha-256
    - hostssl $svc $svc $SHOPLAB_NETWORK scram-sha-256"
  version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -1)
  [[ -n $version ]] || die "PostgreSQL is not installed"
  bin=/usr/lib/postgresql/$version/bin
  (
    umask 077
    cat >"$out" <<YAML
# Written by shoplab provisioning; changes are overwritten.
scope: $PATRONI_SCOPE
namespace: $PATRONI_NAMESPACE
name: $SHOPLAB_NODE
log:
  level: INFO
restapi:
  listen: $SHOPLAB_IP:$api_port
  connect_address: $SHOPLAB_IP:$api_port
  certfile: $cert
  keyfile: $key
  cafile: $ca
  # Unsafe endpoints from loopback and the cluster's members alone, the members listed here: Patroni's own
  # allowlist_include_members takes them from its view of the cluster, which it drops when Consul does not
  # answer — exactly when the primary asks the others (POST /failsafe) whether it may stay primary (DCS
  # failsafe mode). make vm-test, 2026-12-07: the Consul leader powered off, catalog's primary got 403
  # \`Access is denied\` from its standby and demoted itself.
  allowlist:
$allow
  allowlist_include_members: true
  authentication:
    username: patroni
    password: "$PATRONI_REST_PASSWORD"
consul:
  host: ${PATRONI_CONSUL:-127.0.0.1:8500}
  token: "$CONSUL_PATRONI_TOKEN"
  register_service: true
  # Beside its role: Prometheus' discovery scrapes every member tagged so at its REST API (/metrics).
  service_tags:
    - patroni
  # A newly promoted primary is in Consul DNS only once its check has passed: a short interval shortens the
  # failover's gap without a primary (the services wait DB_RETRY_WAIT for one). Each check is a request to
  # Patroni's REST API (Python) on a guest under emulation: every 5 s, not 2 (docs/lab-weight.md).
  service_check_interval: 5s
bootstrap:
  dcs:
    # How long a primary that vanished keeps the leader key: its Consul session (ttl/2, which Consul lets live
    # twice as long) last renewed at its last loop, so the key goes ttl - loop_wait to ttl after the power-off,
    # and a new primary follows a few seconds later. 20, not Patroni's 30: catalog's writes came back ~10 s
    # sooner in make vm-test (docs/failover.md); loop_wait + 2 x retry_timeout stays within ttl, as Patroni
    # requires, and a leader whose loop is slowed by a starved guest still renews three times per ttl.
    ttl: $PATRONI_TTL
    loop_wait: $PATRONI_LOOP_WAIT
    retry_timeout: $PATRONI_RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    # Consul unreachable (a leader election, seen taking 19 s under emulation) must not take the database down:
    # the primary stays primary while it can still reach every member over Patroni's API (DCS failsafe mode),
    # instead of demoting itself after retry_timeout.
    failsafe_mode: true
    # A commit is acknowledged once the synchronous standby has applied it (remote_apply below): no acknowledged
    # write is lost when the primary goes, and a read the services send to that standby while the primary is
    # away is never older than a write they were told succeeded. With the standby gone the primary goes on alone
    # (synchronous_mode_strict off), and the services' reads wait for a primary (the sync key no longer names
    # the standby: PatroniGate).
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 5
        max_replication_slots: 5
        max_connections: 100
        synchronous_commit: remote_apply
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
$hba
postgresql:
  listen: $SHOPLAB_IP:$pg_port
  connect_address: $SHOPLAB_IP:$pg_port
  data_dir: $data
  bin_dir: $bin
  pgpass: $(dirname "$data")/pgpass-$PATRONI_SCOPE
  # Patroni's own connections as the superuser go through the socket (the hba above allows nothing else).
  use_unix_socket: true
  authentication:
    superuser:
      username: postgres
      password: "$PATRONI_SUPERUSER_PASSWORD"
    replication:
      username: replicator
      password: "$PATRONI_REPLICATION_PASSWORD"
      sslmode: verify-full
      sslrootcert: $ca
    rewind:
      username: rewind_user
      password: "$PATRONI_REWIND_PASSWORD"
      sslmode: verify-full
      sslrootcert: $ca
  # A new replica copies the primary with pg_basebackup, which first waits for a checkpoint: a spread one
  # (the default) took minutes under emulation; an immediate one takes a second.
  basebackup:
    - checkpoint: fast
  parameters:
    unix_socket_directories: ${PATRONI_SOCKET_DIR:-/var/run/postgresql}
    ssl: "on"
    ssl_cert_file: $cert
    ssl_key_file: $key
    ssl_min_protocol_version: TLSv1.3
  pg_hba:
$hba
YAML
  )
}

# service_database_sql prints the SQL that makes the service's role (password DB_PASSWORD) and database: run
# on the primary with psql, the password on stdin, never an argument.
service_database_sql() {
  : "${SHOPLAB_SERVICE:?}" "${DB_PASSWORD:?}"
  printf '\\set svc %s\n\\set pw %s\n' "$SHOPLAB_SERVICE" "$DB_PASSWORD"
  cat <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'svc') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'svc') \gexec
ALTER ROLE :"svc" LOGIN PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER %I', :'svc', :'svc') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'svc') \gexec
REVOKE ALL ON DATABASE :"svc" FROM PUBLIC;
SQL
}

# rewind_role_sql prints the SQL that makes pg_rewind's role (password PATRONI_REWIND_PASSWORD) with the
# functions it calls, as Patroni does when it bootstraps a cluster: for a cluster bootstrapped before the role
# was in its configuration. Run on the primary with psql, the password on stdin.
rewind_role_sql() {
  : "${PATRONI_REWIND_PASSWORD:?}"
  printf '\\set pw %s\n' "$PATRONI_REWIND_PASSWORD"
  cat <<'SQL'
SELECT 'CREATE ROLE rewind_user LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rewind_user') \gexec
ALTER ROLE rewind_user LOGIN PASSWORD :'pw';
GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO rewind_user;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO rewind_user;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO rewind_user;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO rewind_user;
SQL
}

# setup_patroni makes this VM a member of its service's Patroni cluster: Debian's cluster stays off (the box set
# it to start manually), Patroni runs PostgreSQL from its own data directory, and the member that leads makes the
# service's role and database (the others get them by replication). Idempotent: an existing member keeps its data.
setup_patroni() {
  : "${PATRONI_SCOPE:?}"
  [[ -f $LAB_TLS_DIR/db.pem && -f $LAB_TLS_DIR/db-key.pem ]] || die "no database certificate in $LAB_TLS_DIR (DB_TLS_CERT, DB_TLS_KEY)"
  local tmp changed=$LAB_TLS_CHANGED # new certificates: Patroni re-reads them (and has PostgreSQL do so) on reload
  install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/patroni
  install -d -o root -g postgres -m 0750 /etc/patroni
  tmp=$(mktemp)
  render_patroni_config "$tmp"
  # Provisioning runs again (vagrant up --provision, a retried machine): a running Patroni is never restarted,
  # since stopping the leader hands its lock to a replica mid-run. An unchanged configuration leaves it alone;
  # a changed one is installed and re-read (SIGHUP); a stopped Patroni is started. (Patroni refuses a
  # configuration it cannot read and says why in its journal; make test runs the rendered one as a real cluster.)
  put "$tmp" /etc/patroni/config.yml 0600 postgres:postgres && changed=1
  if ((changed)) && systemctl is-active --quiet patroni.service; then
    systemctl reload patroni.service
  elif ! systemctl is-active --quiet patroni.service; then
    systemctl start patroni.service
  else
    echo "shoplab: Patroni of $PATRONI_SCOPE already runs with this configuration"
  fi
  rm -f "$tmp"
  # The guard of Patroni's registration in Consul reads the same configuration (shoplab-patroni-tags.service).
  if ((changed)) || ! systemctl is-active --quiet shoplab-patroni-tags.service; then
    systemctl restart shoplab-patroni-tags.service
  fi
  # Until a member leads, nobody can take writes; bounded, generous under emulation.
  wait_for "a Patroni leader of $PATRONI_SCOPE" 600 patroni_has_leader
  if patroni_role_is primary; then
    wait_for "PostgreSQL on the leader" 120 runuser -u postgres -- pg_isready -q -h /var/run/postgresql -p "${PATRONI_PG_PORT:-5432}"
    { rewind_role_sql && service_database_sql; } | runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "${PATRONI_PG_PORT:-5432}"
    patroni_apply_timing
  fi
}

# patroni_apply_timing gives the cluster the ttl, loop_wait and retry_timeout render_patroni_config writes:
# bootstrap.dcs applies them to a new cluster only, and a lab made before keeps its old ones until told. It
# asks the local member's REST API (PATCH /config, the password in a header file, never an argument) and does
# nothing when the cluster has them already.
patroni_apply_timing() {
  : "${PATRONI_REST_PASSWORD:?}" "${SHOPLAB_IP:?}"
  local url="https://$SHOPLAB_IP:${PATRONI_API_PORT:-8008}/config" current want
  local ttl=$PATRONI_TTL loop=$PATRONI_LOOP_WAIT retry=$PATRONI_RETRY_TIMEOUT
  # One "key":value a line (the nested settings flattened among them; these three are top-level only).
  current=$(curl -sf --cacert "$LAB_TLS_DIR/ca.pem" "$url" | tr -d ' \n{}' | tr ',' '\n') ||
    die "reading Patroni's dynamic configuration ($url) failed"
  if grep -qx "\"ttl\":$ttl" <<<"$current" && grep -qx "\"loop_wait\":$loop" <<<"$current" &&
    grep -qx "\"retry_timeout\":$retry" <<<"$current"; then
    return 0
  fi
  want=$(printf '{"ttl":%s,"loop_wait":%s,"retry_timeout":%s}' "$ttl" "$loop" "$retry")
  printf '%s' "$want" | curl_secret_header "Authorization: Basic $(printf 'patroni:%s' "$PATRONI_REST_PASSWORD" | base64 -w0)" \
    -sf -o /dev/null -X PATCH -H 'Content-Type: application/json' --cacert "$LAB_TLS_DIR/ca.pem" --data-binary @- "$url" ||
    die "setting Patroni's ttl, loop_wait and retry_timeout ($url) failed"
  log "Patroni of ${PATRONI_SCOPE:-its cluster}: ttl $ttl, loop_wait $loop, retry_timeout $retry"
}

# patroni_has_leader succeeds once the local Patroni's cluster view names a leader.
patroni_has_leader() {
  curl -sf --cacert "$LAB_TLS_DIR/ca.pem" "https://$SHOPLAB_IP:${PATRONI_API_PORT:-8008}/cluster" | grep -q '"role": *"leader"'
}

# patroni_role_is ROLE succeeds when the local member is the primary (primary) or a replica (replica): Patroni's
# health endpoints answer 200 only then.
patroni_role_is() {
  curl -sf --cacert "$LAB_TLS_DIR/ca.pem" -o /dev/null "https://$SHOPLAB_IP:${PATRONI_API_PORT:-8008}/$1"
}

# render_service_env writes the environment of the service to $1: SHOPLAB_SERVICE, SHOPLAB_NODE, SHOPLAB_IP,
# SHOPLAB_PORT, CONSUL_SERVICE_TOKEN, for services with data DB_HOST and DB_PASSWORD (with DB_PATRONI=yes,
# reads from the member on this VM too), and for auth
# AUTH_KEY_ENCRYPTION_KEY (seals its signing keys), for orders and payments FINGERPRINT_KEY (of their
# Idempotency-Keys' fingerprints).
render_service_env() {
  : "${SHOPLAB_SERVICE:?}" "${SHOPLAB_NODE:?}" "${SHOPLAB_IP:?}" "${SHOPLAB_PORT:?}" "${CONSUL_SERVICE_TOKEN:?}"
  local out=$1 listen=$SHOPLAB_IP:$SHOPLAB_PORT
  # The front is reached through a forwarded port, which arrives on the NAT side: it listens everywhere.
  [[ $SHOPLAB_SERVICE == front ]] && listen=0.0.0.0:$SHOPLAB_PORT
  {
    printf 'LISTEN_ADDR=%s\nADVERTISE_ADDR=%s\nSERVICE_ID=%s\n' "$listen" "$SHOPLAB_IP" "$SHOPLAB_NODE"
    # A mesh service takes mutual TLS on its port, the front plain HTTP from anyone; every service's health and
    # metrics are plain on port + 1000, on the lab's network only (never on the front's public port).
    printf 'OPS_LISTEN_ADDR=%s:%d\n' "$SHOPLAB_IP" $((SHOPLAB_PORT + 1000))
    printf 'CONSUL_HTTP_ADDR=127.0.0.1:8500\nCONSUL_HTTP_TOKEN=%s\n' "$CONSUL_SERVICE_TOKEN"
    # VMs under software emulation are slow: generous, explicit margins; Consul checks readiness every 10 s, not 2
    # (each check is a connection, a request and a database query on a guest that pays for each: docs/lab-weight.md).
    printf 'CHECK_INTERVAL=10s\nCHECK_TIMEOUT=5s\nDB_WAIT=5m\nLOG_LEVEL=info\n'
    if [[ $SHOPLAB_SERVICE == auth ]]; then
      : "${AUTH_KEY_ENCRYPTION_KEY:?}"
      printf 'AUTH_KEY_ENCRYPTION_KEY=%s\n' "$AUTH_KEY_ENCRYPTION_KEY"
    fi
    if [[ $SHOPLAB_SERVICE == orders || $SHOPLAB_SERVICE == payments ]]; then
      : "${FINGERPRINT_KEY:?}"
      printf '%s_FINGERPRINT_KEY=%s\n' "${SHOPLAB_SERVICE^^}" "$FINGERPRINT_KEY"
    fi
    if [[ -n ${DB_HOST:-} ]]; then
      # read-write: a connection that reaches a standby (a name in Consul DNS not yet moved after a failover)
      # is refused at once and opened again, rather than failing the writes it would carry. TLS, the server
      # verified against the lab's CA for the name the service asked for (verify-full: lab.rb puts the
      # cluster's Consul names and each member's address in its certificate).
      local tls="sslmode=verify-full sslrootcert=$LAB_TLS_DIR/ca.pem"
      printf "DATABASE_URL=host=%s port=5432 dbname=%s user=%s password=%s %s target_session_attrs=read-write\n" \
        "$DB_HOST" "$SHOPLAB_SERVICE" "$SHOPLAB_SERVICE" "$DB_PASSWORD" "$tls"
      # A Patroni cluster: the member on this VM serves reads while there is no primary — while the cluster's
      # keys in Consul name it the leader or the synchronous standby (DATABASE_READ_CLUSTER, _MEMBER), which
      # with remote_apply have every commit a client was told of. Not any member by its Consul name: a
      # powered-off member stays in that name until Consul notices (up to half a minute), and a read or
      # readiness check that picks it waits out its connect timeout; this VM's own one is either up or takes
      # this instance out of rotation with it.
      if [[ ${DB_PATRONI:-no} == yes ]]; then
        : "${PATRONI_SCOPE:?}"
        printf "DATABASE_READ_URL=host=%s port=5432 dbname=%s user=%s password=%s %s target_session_attrs=any\n" \
          "$SHOPLAB_IP" "$SHOPLAB_SERVICE" "$SHOPLAB_SERVICE" "$DB_PASSWORD" "$tls"
        printf 'DATABASE_READ_CLUSTER=%s%s\nDATABASE_READ_MEMBER=%s\n' "${PATRONI_NAMESPACE#/}" "$PATRONI_SCOPE" "$SHOPLAB_NODE"
      fi
    fi
  } >"$out"
}

# write_file CONTENT PATH [MODE] puts CONTENT into PATH (mode 0644 unless MODE) through a temporary file, never
# an argument of another process; it succeeds when the file changed.
write_file() {
  local tmp status=0
  tmp=$(mktemp)
  printf '%s' "$1" >"$tmp"
  put "$tmp" "$2" "${3:-0644}" || status=$?
  rm -f "$tmp"
  return "$status"
}

# write_secret puts a secret ($1) into a root-only file ($2); it succeeds when the file changed.
write_secret() { write_file "$1" "$2" 0600; }

# restart_if CHANGED UNIT... restarts each unit when CHANGED is 1 or the unit does not run.
restart_if() {
  local changed=$1 unit
  shift
  for unit in "$@"; do
    if ((changed)) || ! systemctl is-active --quiet "$unit"; then
      systemctl restart "$unit"
    fi
  done
}

# The node exporter's collectors on a lab VM: the machine's CPU, load, memory, pressure, file systems and network.
# Fewer than Debian's defaults: every VM runs under emulation.
NODE_EXPORTER_ARGS=(--collector.disable-defaults --collector.cpu --collector.loadavg --collector.meminfo --collector.pressure
  --collector.filesystem --collector.netdev --collector.uname)

# setup_node_exporter makes every VM scrapeable by the monitor, on its private address (SHOPLAB_IP): Debian's
# node exporter on port 9100, and `shoplab consul-metrics` on 9107, which relays the local Consul agent's own
# metrics (its API answers on loopback only) with the agent's token (CONSUL_AGENT_TOKEN, agent:read on its own
# node) from a root-only file handed to the unit as a credential, never an argument.
setup_node_exporter() {
  : "${SHOPLAB_IP:?}" "${CONSUL_AGENT_TOKEN:?}"
  local exporter=0 relay=0
  write_file "$(printf 'ARGS="--web.listen-address=%s:9100 %s"\n' "$SHOPLAB_IP" "${NODE_EXPORTER_ARGS[*]}")" \
    /etc/default/prometheus-node-exporter && exporter=1
  write_secret "$CONSUL_AGENT_TOKEN" /etc/consul.d/metrics.token && relay=1
  write_file "$(printf 'CONSUL_METRICS_LISTEN=%s:9107\n' "$SHOPLAB_IP")" /etc/default/shoplab-consul-metrics && relay=1
  restart_if "$exporter" prometheus-node-exporter.service
  restart_if "$relay" shoplab-consul-metrics.service
}

# PROMETHEUS_DIR holds the monitor's Prometheus configuration and rules, rendered from provisioning/prometheus.
PROMETHEUS_DIR=/etc/prometheus/shoplab

# setup_monitor makes this VM the lab's monitor: shoplab-prometheus-sd serves the local agent's catalog to
# Prometheus (with CONSUL_MONITOR_TOKEN, which only reads services and nodes, given to it as a credential), and
# Debian's Prometheus runs the configuration both labs render from provisioning/prometheus, checked by promtool
# first, scraping every 30 s and asking the discovery every 30 s (a lab of emulated VMs has little CPU to spare:
# docs/lab-weight.md), on port 9090 of every interface (forwarded to the host), keeping 7 days.
setup_monitor() {
  : "${CONSUL_MONITOR_TOKEN:?}"
  [[ -x $SHOPLAB_LIB/shoplab ]] || die "no shoplab binary: use the baked box (make box) or run make vm-binaries on the host"
  local sd=0 prom=0 out
  write_secret "$CONSUL_MONITOR_TOKEN" /etc/shoplab/prometheus-sd.token && sd=1
  out=$(mktemp -d)
  "$SHOPLAB_LIB/shoplab" prometheus-config --source "$SHOPLAB_DIR/prometheus" --out "$out" \
    --sd-url http://127.0.0.1:9096 --interval 30s --timeout 10s --ca-file "$LAB_TLS_DIR/ca.pem" >/dev/null
  promtool check config "$out/prometheus.yml" >/dev/null || die "the rendered Prometheus configuration does not pass promtool ($out)"
  install -d -m 0755 "$PROMETHEUS_DIR"
  local f
  for f in "$out"/*; do
    put "$f" "$PROMETHEUS_DIR/$(basename "$f")" 0644 && prom=1
  done
  rm -rf "$out"
  write_file "$(printf 'ARGS="--config.file=%s/prometheus.yml --web.listen-address=0.0.0.0:9090 --storage.tsdb.retention.time=7d"\n' "$PROMETHEUS_DIR")" \
    /etc/default/prometheus && prom=1
  restart_if "$sd" shoplab-prometheus-sd.service
  restart_if "$prom" prometheus.service
  wait_for "Prometheus on monitor" 300 curl -sf http://127.0.0.1:9090/-/ready
}

# install_operator_tools puts the operator's commands in place: shoplab-admin on auth VMs.
install_operator_tools() {
  if [[ ${SHOPLAB_SERVICE:-} == auth ]]; then
    install -m 0755 "$SHOPLAB_DIR/shoplab-admin" /usr/local/sbin/shoplab-admin
  fi
}

# service_token_ready succeeds once the servers know this service's ACL token (the first server creates it).
service_token_ready() {
  curl_secret_header "X-Consul-Token: $CONSUL_SERVICE_TOKEN" -sf -o /dev/null http://127.0.0.1:8500/v1/acl/token/self
}

start_service() {
  local tmp changed=0
  [[ -x $SHOPLAB_LIB/$SHOPLAB_SERVICE ]] || die "no $SHOPLAB_SERVICE binary: use the baked box (make box) or run make vm-binaries on the host"
  tmp=$(mktemp)
  render_service_env "$tmp"
  put "$tmp" "/etc/shoplab/$SHOPLAB_SERVICE.env" 0600 && changed=1
  rm -f "$tmp"
  # The service registers with its own token; wait until the first server has created it (the token goes in a
  # header file, never an argument).
  wait_for "the ACL token of $SHOPLAB_SERVICE" 600 service_token_ready
  restart_if "$changed" "shoplab@$SHOPLAB_SERVICE.service"
}
