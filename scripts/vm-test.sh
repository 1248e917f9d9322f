#!/usr/bin/env bash
# make vm-test: proves the VM lab for real on a machine without VirtualBox or usable KVM.
#   1. image    a Debian 12 base image from Debian's packages (scripts/vm-image.sh)
#   2. packer   the project's Packer template, qemu source, on that image under TCG → the lab's libvirt box
#   3. box      the box added to a private VAGRANT_HOME
#   4. up       the project's Vagrantfile with vagrant-libvirt (driver qemu, kernel booted directly), with
#               catalog at two replicas; libvirtd, virtlogd and every vagrant command run inside a network
#               namespace made here, so every VM address exists only inside it
#   5. checks   from inside the namespace: every Consul member alive and every service passing, Consul DNS
#               in a VM, `shoplab smoke` through the front VM; then one catalog VM halted and smoke again;
#               then that VM up again (vagrant halt && vagrant up keeps working) and both catalogs passing;
#               Consul's TLS: the server's API is HTTPS with the lab's CA (plain HTTP refused off loopback),
#               and an agent without the CA (scripts/vm-intruder.sh on front-1) is refused by the servers' RPC
#   6. destroy  vagrant destroy -f; the daemons stopped by PID; the namespace deleted — on failure too
# Settings: SHOPLAB_VMTEST_DIR (work directory, default /var/tmp/shoplab-vmtest: several GB), and the
# Vagrantfile's SHOPLAB_* variables (this script sets the ones this machine needs). Runs as root.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=${SHOPLAB_VMTEST_DIR:-/var/tmp/shoplab-vmtest}
ns=shoplab-vmtest
pool=shoplab-vmtest
prefix=shoplab-vmtest-
keys=$(dirname "$(find /usr/share/rubygems-integration/all/gems -path '*/vagrant-*/keys/vagrant.pub' 2>/dev/null | head -1)")

log() { printf '\nvm-test: %s\n' "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

# Everything this machine needs; a missing piece is a clear failure, never a silent skip.
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, network namespaces, libvirtd)"
missing=()
for tool in debootstrap qemu-img qemu-system-x86_64 virsh libvirtd virtlogd vagrant ip ruby dnsmasq curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
((${#missing[@]} == 0)) || die "missing: ${missing[*]}; install them with: apt-get install -y --no-install-recommends debootstrap qemu-utils qemu-system-x86 libvirt-daemon-system libvirt-clients dnsmasq-base vagrant vagrant-libvirt"
vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt || die "the vagrant-libvirt plugin is missing: apt-get install -y vagrant-libvirt"
[[ -x bin/packer ]] || die "bin/packer is missing: make packer"
[[ -f $keys/vagrant ]] || die "Vagrant's insecure key pair was not found"
for b in consul auth catalog cart orders payments front; do
  [[ -x bin/linux-amd64/$b ]] || die "bin/linux-amd64/$b is missing: make vm-binaries"
done
[[ -x bin/shoplab ]] || die "bin/shoplab is missing: make build"

declare -A took
order=()
timed() { # timed PHASE COMMAND... runs and records how long the phase took
  local phase=$1 start=$SECONDS
  shift
  log "phase $phase"
  "$@"
  took[$phase]=$((SECONDS - start))
  order+=("$phase")
  log "phase $phase took ${took[$phase]}s"
}

mkdir -p "$work"
export VAGRANT_HOME=$work/vagrant-home VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_DEFAULT_PROVIDER=libvirt
export VAGRANT_DOTFILE_PATH=$work/dotvagrant SHOPLAB_LAB_DIR=$work/lab SHOPLAB_BOX=shoplab/debian12
export SHOPLAB_LIBVIRT_DRIVER=qemu SHOPLAB_LIBVIRT_KERNEL=$work/image/vmlinuz SHOPLAB_LIBVIRT_INITRD=$work/image/initrd.img
export SHOPLAB_LIBVIRT_CMDLINE="root=/dev/vda rw console=ttyS0 quiet net.ifnames=0"
export SHOPLAB_LIBVIRT_POOL=$pool SHOPLAB_LIBVIRT_PREFIX=$prefix SHOPLAB_BOOT_TIMEOUT=900 SHOPLAB_SSH_TIMEOUT=50 REPLICAS=catalog=2
export LIBVIRT_DEFAULT_URI=qemu:///system

in_ns() { ip netns exec "$ns" "$@"; }

# stamped prefixes each line of its input with the time of day, so a log shows where the minutes went; the
# box upload's progress bar (one line of carriage returns) is left out.
stamped() {
  local line
  while IFS= read -r line; do
    [[ $line == *Progress:* ]] && line=${line##*$'\e[K'}
    [[ -n $line ]] && printf '%(%T)T %s\n' -1 "$line"
  done
  return 0
}

# running reports whether pid is a live process (an exited one waiting to be reaped does not count).
running() { [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }
qemu_conf_backup=""
started_daemons=()

cleanup() {
  local status=$?
  set +e
  trap - EXIT
  log "cleaning up"
  if ip netns list | grep -qw "$ns"; then
    [[ -d $VAGRANT_DOTFILE_PATH ]] && timeout 600 ip netns exec "$ns" vagrant destroy -f >"$work/destroy.log" 2>&1
    for dom in $(virsh list --all --name 2>/dev/null | grep "^$prefix"); do
      virsh destroy "$dom" >/dev/null 2>&1
      virsh undefine "$dom" --remove-all-storage >/dev/null 2>&1
    done
    for net in shoplab vagrant-libvirt; do
      if virsh net-info "$net" >/dev/null 2>&1; then
        virsh net-destroy "$net" >/dev/null 2>&1
        virsh net-undefine "$net" >/dev/null 2>&1
      fi
    done
    if virsh pool-info "$pool" >/dev/null 2>&1; then
      virsh pool-destroy "$pool" >/dev/null 2>&1
      virsh pool-undefine "$pool" >/dev/null 2>&1
    fi
  fi
  for pidfile in "${started_daemons[@]}"; do
    if [[ -s $pidfile ]]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null
      for _ in $(seq 1 50); do running "$pid" || break; sleep 0.2; done
      running "$pid" && kill -9 "$pid" 2>/dev/null
      rm -f "$pidfile"
    fi
  done
  ip netns list | grep -qw "$ns" && ip netns delete "$ns"
  if [[ -n $qemu_conf_backup ]]; then
    cp "$qemu_conf_backup" /etc/libvirt/qemu.conf
    rm -f "$qemu_conf_backup"
  fi
  report
  exit "$status"
}

report() {
  ((${#order[@]} > 0)) || return 0
  printf '\nvm-test phases (seconds):\n' >&2
  local p total=0
  for p in "${order[@]}"; do
    printf '  %-10s %5d\n' "$p" "${took[$p]}" >&2
    total=$((total + took[$p]))
  done
  printf '  %-10s %5d\n' total "$total" >&2
}

phase_image() { scripts/vm-image.sh "$work/image"; }

phase_packer() {
  rm -rf "$work/packer"
  (cd packer && PACKER_PLUGIN_PATH=$root/bin/packer-plugins CHECKPOINT_DISABLE=1 timeout 1800 "$root/bin/packer" build -force -only=qemu.debian12 \
    -var "base_image=$work/image/base.qcow2" -var base_image_checksum=none -var cloud_init=false -var accelerator=tcg \
    -var "kernel=$work/image/vmlinuz" -var "initrd=$work/image/initrd.img" -var "binaries=$root/bin/linux-amd64" \
    -var "ssh_private_key_file=$keys/vagrant" -var "ssh_public_key_file=$keys/vagrant.pub" -var "output_dir=$work/packer" .) \
    >"$work/packer.log" 2>&1 || { tail -30 "$work/packer.log" >&2; die "packer build (log: $work/packer.log)"; }
  [[ -s $work/packer/shoplab-libvirt.box ]] || die "packer made no box"
}

phase_box() {
  rm -rf "$VAGRANT_HOME" "$VAGRANT_DOTFILE_PATH" "$SHOPLAB_LAB_DIR"
  vagrant box add --force --name shoplab/debian12 "$work/packer/shoplab-libvirt.box" >"$work/box.log" 2>&1 ||
    { tail -10 "$work/box.log" >&2; die "vagrant box add"; }
}

start_daemons() {
  ip netns add "$ns"
  in_ns ip link set lo up
  # Guests run as root here (no libvirt-qemu user needed for our files); the original is put back at the end.
  if ! grep -q '^user = "root"' /etc/libvirt/qemu.conf; then
    qemu_conf_backup=$(mktemp)
    cp /etc/libvirt/qemu.conf "$qemu_conf_backup"
    printf '\n# shoplab vm-test\nuser = "root"\ngroup = "root"\n' >>/etc/libvirt/qemu.conf
  fi
  mkdir -p /run/libvirt
  in_ns virtlogd -d -p "$work/virtlogd.pid"
  started_daemons+=("$work/virtlogd.pid")
  in_ns libvirtd -d -p "$work/libvirtd.pid"
  started_daemons+=("$work/libvirtd.pid")
  local i
  for i in $(seq 1 50); do virsh list >/dev/null 2>&1 && break; sleep 0.2; done
  ((i < 50)) || die "libvirtd did not answer"
  mkdir -p "$work/pool"
  virsh pool-define-as "$pool" dir --target "$work/pool" >/dev/null
  virsh pool-build "$pool" >/dev/null
  virsh pool-start "$pool" >/dev/null
}

# vagrant_up LOG [MACHINE...]: vagrant up, and once more for the machines it failed on: under software
# emulation an SSH session to a VM that is still booting can drop ("closed stream" while Vagrant swaps its key
# or uploads a file, or a banner later than the SSH timeout). The second run adds --provision, which provisions
# those VMs again (provisioning is idempotent); a real failure fails twice and is reported.
vagrant_up() {
  local log=$1 failed
  shift
  if ! timeout 2400 ip netns exec "$ns" vagrant up "$@" 2>&1 | stamped >"$log"; then
    grep -v 'Progress:' "$log" | tail -40 >&2
    # Vagrant names each machine it gave up on; without names, everything asked for goes again.
    mapfile -t failed < <(grep -oE "action on the '[a-z0-9-]+' machine" "$log" | cut -d"'" -f2 | sort -u)
    ((${#failed[@]} > 0)) || failed=("$@")
    log "vagrant up failed on ${failed[*]:-every machine} (log: $log); once more with --provision"
    timeout 1800 ip netns exec "$ns" vagrant up --provision "${failed[@]}" 2>&1 | stamped >"$log.again" ||
      { grep -v 'Progress:' "$log.again" | tail -40 >&2; die "vagrant up ${failed[*]:-}, twice (logs: $log, $log.again)"; }
    log "vagrant up ${failed[*]:-} succeeded the second time"
  fi
}

# phase_up: the Consul server first, alone (every other agent needs it to sign its certificate, and it boots
# faster without seven others beside it), then the rest of the lab together.
phase_up() {
  start_daemons
  vagrant_up "$work/up-consul.log" consul-1
  vagrant_up "$work/up.log"
}

ui_token() { ruby -rjson -e 'print JSON.parse(File.read(ARGV[0]))["ui_token"]["secret"]' "$SHOPLAB_LAB_DIR/vm/secrets.json"; }

# The lab's Consul API from the host: HTTPS through the forwarded port, verified with the lab's own CA.
consul_api=https://127.0.0.1:8500
export CONSUL_CACERT=$SHOPLAB_LAB_DIR/vm/tls/ca.pem

# wait_all_passing waits (bounded) until every member is alive and every service passing, seen from the host
# side of the namespace through the forwarded Consul port.
wait_all_passing() {
  local token start=$SECONDS
  token=$(ui_token)
  until in_ns env CONSUL_HTTP_TOKEN="$token" bin/shoplab status --consul "$consul_api" --members \
    --topology provisioning/topology.yml >"$work/status.txt" 2>&1; do
    ((SECONDS - start < 600)) || { cat "$work/status.txt" >&2; die "not every member alive and every service passing after 600s"; }
    sleep 5
  done
  cat "$work/status.txt" >&2
}

# check_mesh: from the test's namespace (not from a VM) the payments VM's API port refuses a plain call and a
# call without a mesh certificate; its health stays plain on the operations port.
check_mesh() {
  local pay=192.168.56.120 out code
  out=$(in_ns curl -s -m 10 -o /dev/null -w '%{http_code}' "http://$pay:8085/v1/payments?order_id=x") || true
  [[ $out == 400 ]] || die "plain HTTP to payments' API port: got '$out'; want the TLS server's 400"
  code=0
  in_ns curl -s -m 10 -k -o /dev/null "https://$pay:8085/v1/payments?order_id=x" 2>"$work/mesh-curl.err" || code=$?
  ((code != 0)) || die "a call to payments without a mesh certificate succeeded"
  out=$(in_ns curl -s -m 10 -o /dev/null -w '%{http_code}' "http://$pay:9085/health/ready") || true
  [[ $out == 200 ]] || die "payments' health on its operations port: got '$out'; want 200"
  log "mesh: payments refused a plain call (400 from its TLS port) and a call without a certificate (curl exit $code); health 200 on :9085"
}

# check_operator: the operator's command on the auth VM works.
check_operator() {
  in_ns vagrant ssh auth-1 -c 'sudo shoplab-admin list' >"$work/admin-list.txt" 2>&1 || { cat "$work/admin-list.txt" >&2; die "shoplab-admin list on auth-1"; }
  grep -q '^EMAIL' "$work/admin-list.txt" || die "shoplab-admin list: got $(cat "$work/admin-list.txt")"
  log "shoplab-admin list on auth-1 works"
}

# check_no_secret_in_argv: no process of a provisioned VM shows a lab secret in its command line.
check_no_secret_in_argv() {
  local vm secrets leaked
  secrets=$(ruby -rjson -e 's = JSON.parse(File.read(ARGV[0]))
    out = [s["gossip_key"], s["management_token"], s["auth_kek"], s["dns_token"]["secret"], s["ui_token"]["secret"]]
    out += s["agents"].values.map { |t| t["secret"] } + s["services"].values.map { |t| t["secret"] } + s["databases"].values
    puts out.compact' "$SHOPLAB_LAB_DIR/vm/secrets.json")
  for vm in consul-1 auth-1 orders-1; do
    # Every argument of every process, one per line.
    in_ns vagrant ssh "$vm" -c 'sudo cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\0" "\n"' >"$work/cmdline-$vm.txt" 2>/dev/null ||
      die "read the command lines of $vm"
    leaked=$(grep -cFf <(printf '%s\n' "$secrets") "$work/cmdline-$vm.txt" || true)
    [[ $leaked == 0 ]] || die "$vm: $leaked process command line(s) show a lab secret (see $work/cmdline-$vm.txt)"
  done
  log "no lab secret in any process's command line on consul-1, auth-1, orders-1"
}

# check_consul_tls: the Consul server's API is HTTPS on the lab network, verified with the lab's CA and refused
# without it; plain HTTP answers on the server's loopback only; an agent without the CA joins the gossip but
# the servers refuse its RPC (and say so in their log).
check_consul_tls() {
  local srv=192.168.56.10 out code
  out=$(in_ns curl -s -m 10 --cacert "$CONSUL_CACERT" "https://$srv:8501/v1/status/leader") || die "HTTPS to consul-1 with the lab CA failed"
  [[ $out == *"$srv:8300"* ]] || die "HTTPS to consul-1 with the lab CA: got '$out'; want the leader $srv:8300"
  code=0
  in_ns curl -s -m 10 -o /dev/null "https://$srv:8501/v1/status/leader" 2>/dev/null || code=$?
  ((code == 60)) || die "HTTPS to consul-1 without the lab CA: got curl exit $code; want 60 (certificate not trusted)"
  code=0
  in_ns curl -s -m 10 -o /dev/null "http://$srv:8500/v1/status/leader" 2>/dev/null || code=$?
  ((code == 7)) || die "plain HTTP to consul-1 from the lab network: got curl exit $code; want 7 (refused)"
  log "Consul TLS: consul-1's API answers HTTPS with the lab CA, is untrusted without it (curl exit 60), refuses plain HTTP off loopback"
  in_ns vagrant ssh front-1 -c "echo $(base64 -w0 scripts/vm-intruder.sh) | base64 -d | sudo bash" >"$work/intruder.log" 2>&1 ||
    { cat "$work/intruder.log" >&2; die "an agent without the lab CA on front-1"; }
  grep '^intruder:' "$work/intruder.log" >&2
  in_ns vagrant ssh consul-1 -c "sudo journalctl -u consul --no-pager" >"$work/consul-1-journal.txt" 2>/dev/null || true
  code=$(grep -c 'Non-TLS connection attempted with VerifyIncoming set' "$work/consul-1-journal.txt" || true)
  ((code > 0)) || die "consul-1's log does not show the intruder's RPC refused (see $work/consul-1-journal.txt)"
  log "Consul TLS: consul-1 refused $code non-TLS RPC connection(s) from the intruder"
}

phase_checks() {
  wait_all_passing
  check_mesh
  check_operator
  check_no_secret_in_argv
  local addrs
  addrs=$(in_ns vagrant ssh catalog-1 -c 'dig +short catalog.service.consul' 2>/dev/null | tr -d '\r' | sort | tr '\n' ' ')
  [[ $addrs == "192.168.56.110 192.168.56.111 " ]] || die "Consul DNS in catalog-1: got '$addrs'; want both catalog VMs"
  log "Consul DNS in catalog-1: catalog.service.consul = $addrs"
  in_ns bin/shoplab smoke --front http://127.0.0.1:8080 >&2 || die "smoke through the front VM"

  log "halting catalog-2"
  in_ns vagrant halt catalog-2 >"$work/halt.log" 2>&1 || { tail -10 "$work/halt.log" >&2; die "vagrant halt catalog-2"; }
  wait_catalogs 1
  in_ns bin/shoplab smoke --front http://127.0.0.1:8080 >&2 || die "smoke with catalog-2 halted"

  log "bringing catalog-2 up again"
  timeout 900 ip netns exec "$ns" vagrant up catalog-2 >"$work/up-again.log" 2>&1 || { tail -10 "$work/up-again.log" >&2; die "vagrant up catalog-2 after halt"; }
  wait_catalogs 2
  wait_all_passing
  # Last: the intruder stays in the member list as "left" for a while.
  check_consul_tls
}

# wait_catalogs N waits (bounded) until exactly N catalog instances are passing.
wait_catalogs() {
  local want=$1 token start=$SECONDS n
  token=$(ui_token)
  while :; do
    n=$(in_ns env CONSUL_HTTP_TOKEN="$token" bin/shoplab status --consul "$consul_api" 2>/dev/null | awk '$1 == "catalog" && $5 == "passing"' | wc -l) || true
    [[ $n == "$want" ]] && break
    ((SECONDS - start < 600)) || die "catalog did not settle to $want passing instance(s) within 600s"
    sleep 3
  done
  log "catalog: $want passing instance(s) after $((SECONDS - start))s"
}

phase_destroy() {
  timeout 600 ip netns exec "$ns" vagrant destroy -f >"$work/destroy.log" 2>&1 || { tail -10 "$work/destroy.log" >&2; die "vagrant destroy"; }
  rm -rf "$VAGRANT_DOTFILE_PATH"
}

trap cleanup EXIT
timed image phase_image
timed packer phase_packer
timed box phase_box
timed up phase_up
timed checks phase_checks
timed destroy phase_destroy
log "passed"
