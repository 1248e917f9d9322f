# shellcheck shell=bash disable=SC2154 # work, prefix, root, in_ns, vm_ssh and log come from vm-test.sh
# What the VM lab weighs on its host: sourced by scripts/vm-test.sh, which sets work, prefix, ns and in_ns.
#   weight_sampler_start / weight_sampler_stop   every QEMU process's CPU seconds, every 5 s, while the lab comes up
#   weight_idle SECONDS                          the lab left alone: each QEMU process's CPU over SECONDS, and inside
#                                                every guest which units spent it (cgroup CPU accounting), which
#                                                requests each service and Consul agent answered, and each
#                                                database's transactions
#   weight_report                                the tables of docs/lab-weight.md, from what the two gathered
# Everything is read from /proc, /sys/fs/cgroup and the services' own /metrics: nothing is installed in a guest.

# weight_qemu_pids prints "PID VM" for every QEMU process of this lab (libvirt names it guest=PREFIXVM,...).
weight_qemu_pids() {
  local pid name
  for pid in $(pgrep -f "guest=$prefix" || true); do
    name=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n "s/^guest=$prefix\([^,]*\).*/\1/p" | head -1)
    [[ -z $name ]] || echo "$pid $name"
  done
}

# weight_qemu_cpu prints "VM CPU-SECONDS" for every QEMU process of this lab (user + system time, all threads).
weight_qemu_cpu() {
  local pid name tck
  tck=$(getconf CLK_TCK)
  while read -r pid name; do
    # Fields 14 and 15 of stat are utime and stime; the command (field 2) has no space for QEMU.
    awk -v n="$name" -v t="$tck" '{ printf "%s %.2f\n", n, ($14 + $15) / t }' "/proc/$pid/stat" 2>/dev/null || true
  done < <(weight_qemu_pids)
}

# weight_qemu_rss prints "VM KIB" for every QEMU process of this lab: its resident memory on the host.
weight_qemu_rss() {
  local pid name
  while read -r pid name; do
    awk -v n="$name" '$1 == "VmRSS:" { print n, $2 }' "/proc/$pid/status" 2>/dev/null || true
  done < <(weight_qemu_pids)
}

weight_sampler_pid=""

# weight_sampler_start samples every QEMU process's CPU every 5 s into $work/weight/qemu-up.tsv ("EPOCH VM
# SECONDS"), for at most 3 hours.
weight_sampler_start() {
  rm -rf "$work/weight" # an earlier run's
  mkdir -p "$work/weight"
  : >"$work/weight/qemu-up.tsv"
  date +%s >"$work/weight/up-start"
  (
    for _ in $(seq 1 2160); do
      t=$(date +%s)
      weight_qemu_cpu | sed "s/^/$t /" >>"$work/weight/qemu-up.tsv"
      sleep 5
    done
  ) &
  weight_sampler_pid=$!
}

weight_sampler_stop() {
  [[ -n $weight_sampler_pid ]] || return 0
  kill "$weight_sampler_pid" 2>/dev/null || true
  wait "$weight_sampler_pid" 2>/dev/null || true
  weight_sampler_pid=""
  local t
  t=$(date +%s)
  weight_qemu_cpu | sed "s/^/$t /" >>"$work/weight/qemu-up.tsv"
  echo "$t" >"$work/weight/up-end"
}

# weight_probe VM runs scripts/lab-probe.sh as root in VM (vm-test's vm_ssh).
weight_probe() { vm_ssh "$1" sudo bash -s <"$root/scripts/lab-probe.sh"; }


# weight_vms prints the lab's running VMs.
weight_vms() { virsh list --name 2>/dev/null | sed -n "s/^$prefix//p"; }

# weight_metrics prints "KIND NAME KEY COUNT" (tab-separated) for what each service instance (its /metrics: requests by route)
# and each VM's Consul agent (through its consul-metrics relay: HTTP API calls by path) have answered so far.
weight_metrics() {
  local name ip port
  while read -r name ip port; do
    # shellcheck disable=SC2016 # awk's own fields
    in_ns curl -s -m 10 "http://$ip:$port/metrics" |
      awk -v n="$name" '/^shoplab_http_requests_total\{/ { match($0, /route="[^"]*"/); r = substr($0, RSTART + 7, RLENGTH - 8); c[r] += $NF }
        END { for (r in c) printf "req\t%s\t%s\t%d\n", n, r, c[r] }' || true
  done < <(ruby -e 'require_relative "provisioning/lab"
    Shoplab.plan(Dir.pwd).select(&:service).each { |v| puts [v.name, v.ip, v.port + 1000].join(" ") }')
  while read -r name ip; do
    # shellcheck disable=SC2016 # awk's own fields
    in_ns curl -s -m 10 "http://$ip:9107/metrics" |
      awk -v n="$name" '/^consul_api_http_count\{/ { match($0, /method="[^"]*"/); m = substr($0, RSTART + 8, RLENGTH - 9)
          match($0, /path="[^"]*"/); p = substr($0, RSTART + 6, RLENGTH - 7); c[m " " p] += $NF }
        END { for (k in c) printf "consul\t%s\t%s\t%d\n", n, k, c[k] }' || true
  done < <(ruby -e 'require_relative "provisioning/lab"; Shoplab.plan(Dir.pwd).each { |v| puts [v.name, v.ip].join(" ") }')
}

# weight_snapshot NAME writes every guest's probe to $work/weight/NAME/VM and the metrics to $work/weight/NAME/metrics.
weight_snapshot() {
  local dir=$work/weight/$1 vm
  mkdir -p "$dir"
  for vm in $(weight_vms); do
    weight_probe "$vm" >"$dir/$vm" 2>/dev/null || log "weight: no probe of $vm"
  done
  weight_metrics >"$dir/metrics"
}

# weight_idle SECONDS leaves the lab alone for SECONDS and measures it. The guests are probed (over ssh) before the
# first and after the last QEMU reading, so the probes' own cost stays outside the QEMU figures.
weight_idle() {
  local secs=$1
  weight_snapshot probe-start
  weight_qemu_cpu >"$work/weight/qemu-idle-start"
  date +%s >"$work/weight/idle-start"
  sleep "$secs"
  weight_qemu_cpu >"$work/weight/qemu-idle-end"
  date +%s >"$work/weight/idle-end"
  weight_qemu_rss >"$work/weight/qemu-idle-rss"
  weight_snapshot probe-end
}

# weight_report prints the tables (markdown) to $work/weight/report.md and stderr.
weight_report() {
  ruby "$root/scripts/lab-weight.rb" "$work/weight" "$work" >"$work/weight/report.md" || {
    log "weight: no report"
    return 0
  }
  cat "$work/weight/report.md" >&2
}
