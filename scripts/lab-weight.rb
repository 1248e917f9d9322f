# frozen_string_literal: true

# Turns what scripts/lab-weight.sh gathered into the tables of docs/lab-weight.md (markdown on stdout).
# Usage: ruby scripts/lab-weight.rb WEIGHT_DIR WORK_DIR
#   WEIGHT_DIR: qemu-up.tsv ("EPOCH VM CPU-SECONDS" every 5 s during vagrant up), up-start, up-end, qemu-idle-start,
#               qemu-idle-end ("VM CPU-SECONDS"), idle-start, idle-end, and probe-start/ and probe-end/ (each VM's
#               lab-probe.sh output, and metrics: "req|consul NAME KEY COUNT", tab-separated)
#   WORK_DIR:   vm-test's work directory, with the stamped `vagrant up` logs (up-*.log) that say when each VM's
#               provisioning began and ended
require "time"

weight, work = ARGV
abort "usage: lab-weight.rb WEIGHT_DIR WORK_DIR" unless weight && work

def read_num(path) = File.exist?(path) ? File.read(path).to_f : nil

def pairs(path)
  return {} unless File.exist?(path)

  File.readlines(path).to_h { |l| a = l.split; [a[0], a[1].to_f] }
end

def fmt(x, digits = 1) = x.nil? ? "–" : format("%.#{digits}f", x)

def table(head, rows)
  out = ["| #{head.join(' | ')} |", "|#{head.map { |h| h.start_with?('VM', 'unit', 'instance', 'agent', 'route', 'database', 'what', 'where') ? '---' : '---:' }.join('|')}|"]
  rows.each { |r| out << "| #{r.join(' | ')} |" }
  out.join("\n")
end

# --- vagrant up: boot, then provisioning, per VM --------------------------------------------------------------
up_start = read_num(File.join(weight, "up-start"))
up_end = read_num(File.join(weight, "up-end"))
samples = Hash.new { |h, k| h[k] = [] } # vm => [[epoch, cpu]]
if File.exist?(File.join(weight, "qemu-up.tsv"))
  File.foreach(File.join(weight, "qemu-up.tsv")) do |l|
    t, vm, cpu = l.split
    samples[vm] << [t.to_f, cpu.to_f] if cpu
  end
end

# When each VM's provisioning began (Vagrant's first "Running provisioner" for it) and ended ("VM is provisioned"),
# from the stamped logs (time of day; a log that passes midnight moves on a day).
began = {}
ended = {}
if up_start
  day = Time.at(up_start).utc
  Dir[File.join(work, "up*.log")].each do |log|
    File.foreach(log) do |l|
      m = l.match(/\A(\d\d):(\d\d):(\d\d) (.*)/) or next
      t = Time.utc(day.year, day.month, day.day, m[1].to_i, m[2].to_i, m[3].to_i).to_f
      t += 86_400 while t < up_start - 3600
      next if t < up_start - 60 # a log an earlier run left

      rest = m[4]
      if (p = rest.match(/==> ([a-z0-9-]+): Running provisioner/))
        began[p[1]] ||= t
      elsif (p = rest.match(/shoplab: ([a-z0-9-]+) is provisioned/))
        ended[p[1]] = t
      end
    end
  end
end

# cpu_at gives a VM's QEMU CPU at time t: the last sample at or before it (0 before its first).
def cpu_at(list, t)
  best = 0.0
  list.each { |s, c| best = c if s <= t + 0.5 }
  best
end

out = []
if up_start && up_end && !samples.empty?
  out << "### `vagrant up` (#{(up_end - up_start).round} s), CPU seconds of each VM's QEMU process"
  out << ""
  rows = []
  sum = Hash.new(0.0)
  samples.keys.sort_by { |vm| samples[vm].first[0] }.each do |vm|
    list = samples[vm]
    total = list.last[1]
    boot = began[vm] ? cpu_at(list, began[vm]) : nil
    prov = ended[vm] && boot ? cpu_at(list, ended[vm]) - boot : nil
    first = list.first[0]
    rows << [vm, fmt(boot), fmt(prov), fmt(total),
             began[vm] ? (began[vm] - first).round.to_s : "–", ended[vm] && began[vm] ? (ended[vm] - began[vm]).round.to_s : "–"]
    sum[:boot] += boot.to_f
    sum[:prov] += prov.to_f
    sum[:total] += total
  end
  rows << ["**all**", fmt(sum[:boot]), fmt(sum[:prov]), fmt(sum[:total]), "", ""]
  out << table(["VM", "boot (CPU s)", "provisioning (CPU s)", "up in all (CPU s)", "boot (wall s)", "provisioning (wall s)"], rows)
  out << ""
end

# --- idle ------------------------------------------------------------------------------------------------------
i0 = read_num(File.join(weight, "idle-start"))
i1 = read_num(File.join(weight, "idle-end"))
q0 = pairs(File.join(weight, "qemu-idle-start"))
q1 = pairs(File.join(weight, "qemu-idle-end"))
rss = pairs(File.join(weight, "qemu-idle-rss")) # KiB; absent in runs before it was recorded

def probe(dir)
  h = { cg: {}, run: {}, stat: {}, db: {}, mem: {} }
  return h unless File.exist?(dir)

  File.foreach(dir) do |l|
    a = l.split
    case a[0]
    when "cg" then h[:cg][a[1]] = a[2].to_f / 1e6
    when "run" then h[:run][a[1]] = a[2].to_f
    when "stat" then h[:stat][a[1]] = a[1] == "busy" ? a[2].to_f / 1e6 : a[2].to_f
    when "db" then h[:db][a[1]] = a[2].to_f
    when "mem" then h[:mem][a[1]] = a[2].to_f / 1024
    end
  end
  h
end

# A unit's name as the tables show it. Without logind's sessions in the guests, every ssh session runs in
# ssh.service: Vagrant's provisioning, and these probes themselves.
def unit_name(u)
  n = u.sub(/\.service\z/, "")
  n == "ssh" ? "ssh (provisioning, probes)" : n
end

if i0 && i1 && !q0.empty?
  secs = i1 - i0
  out << "### Idle for #{secs.round} s: each VM's QEMU process, and what its guest spent it on"
  out << ""
  rows = []
  total = 0.0
  units = Hash.new(0.0)
  units_boot = Hash.new(0.0)
  wakes = Hash.new(0.0)
  busy_all = 0.0
  timers_all = 0.0
  mem_rows = []
  q0.keys.sort.each do |vm|
    next unless q1[vm]

    cpu = q1[vm] - q0[vm]
    total += cpu
    a = probe(File.join(weight, "probe-start", vm))
    b = probe(File.join(weight, "probe-end", vm))
    busy = a[:stat]["busy"] && b[:stat]["busy"] ? b[:stat]["busy"] - a[:stat]["busy"] : nil
    timers = a[:stat]["timer"] && b[:stat]["timer"] ? (b[:stat]["timer"] - a[:stat]["timer"]) / secs : nil
    timers_all += timers.to_f
    spent = {}
    b[:cg].each { |u, v| spent[u] = v - a[:cg].fetch(u, 0.0) }
    # The probes' own ssh sessions fall between the two readings of the guest but outside the QEMU window: leave
    # them out of what the idle guest spent.
    probes = spent.delete("ssh.service")
    busy -= probes if busy && probes
    b[:run].each { |u, v| wakes[unit_name(u)] += (v - a[:run].fetch(u, 0.0)) / secs if a[:run][u] && u != "ssh.service" }
    known = spent.values.sum
    spent["kernel and the rest"] = busy - known if busy && busy > known
    spent.each { |u, v| units[unit_name(u)] += v }
    a[:cg].each { |u, v| units_boot[unit_name(u)] += v }
    units_boot["kernel and the rest"] += a[:stat]["busy"] - a[:cg].values.sum if a[:stat]["busy"]
    busy_all += busy.to_f
    mem_rows << [vm, b[:mem]["used"], b[:mem]["total"], rss[vm] && rss[vm] / 1024]
    top = spent.sort_by { |_, v| -v }.first(4).select { |_, v| v > 0.05 }
    # The kernel's tick counts and the cgroups' clocks differ a little: the shares are of the larger of the two.
    whole = [busy.to_f, known].max
    rows << [vm, fmt(cpu), "#{fmt(100 * cpu / secs)} %", fmt(busy), fmt(timers, 0),
             top.map { |u, v| "#{unit_name(u)} #{whole.positive? ? (100 * v / whole).round : '?'} %" }.join(", ")]
  end
  rows << ["**all**", fmt(total), "**#{fmt(100 * total / secs)} %**", fmt(busy_all), fmt(timers_all, 0), ""]
  out << table(["VM", "QEMU CPU s", "of one host core", "guest busy s (its clock)", "timer interrupts per s", "where the guest spent it"], rows)
  out << ""
  out << "(The guest's figures leave out the ssh sessions of the probes that read them, which run outside the QEMU window.)"
  out << ""
  if mem_rows.any? { |r| r[1] || r[3] }
    out << "### Memory at the end of the idle minutes (MiB)"
    out << ""
    sums = [1, 2, 3].map { |i| mem_rows.sum { |r| r[i].to_f } }
    rows = mem_rows.map { |vm, used, tot, res| [vm, fmt(used, 0), fmt(tot, 0), fmt(res, 0)] }
    rows << ["**all**", fmt(sums[0], 0), fmt(sums[1], 0), fmt(sums[2], 0)]
    out << table(["VM", "guest in use", "guest has", "QEMU resident on the host"], rows)
    out << ""
  end
  out << "### The guests' units, summed over every VM (guest CPU seconds by each guest's own clock)"
  out << ""
  rows = units.keys.sort_by { |u| -units[u] }.select { |u| units[u] > 0.05 || units_boot[u] > 1 }.map do |u|
    [u, fmt(units[u]), "#{fmt(100 * units[u] / [busy_all, units.values.sum, 1e-9].max)} %", wakes.key?(u) ? fmt(wakes[u], 0) : "–", fmt(units_boot[u], 0)]
  end
  out << table(["unit", "idle #{secs.round} s", "of the guests' idle busy time", "wake-ups per s", "from boot to the idle start (up)"], rows)
  out << ""

  # Requests each service and agent answered, and each database's transactions, per second.
  m0 = Hash.new(0)
  m1 = Hash.new(0)
  [[m0, "probe-start"], [m1, "probe-end"]].each do |m, d|
    f = File.join(weight, d, "metrics")
    next unless File.exist?(f)

    File.foreach(f) { |l| k, n, key, c = l.chomp.split("\t"); m[[k, n, key]] = c.to_f if c }
  end
  rates = m1.keys.to_h { |k| [k, (m1[k] - m0.fetch(k, 0)) / secs] }.select { |_, r| r > 0.004 }
  reqs = rates.select { |k, _| k[0] == "req" }.sort_by { |k, r| [k[1], -r] }
  out << "### Requests the services answered while idle (per second, from each instance's /metrics)"
  out << ""
  out << table(["instance", "route", "per s"], reqs.map { |k, r| [k[1], "`#{k[2]}`", fmt(r, 2)] })
  out << ""
  agents = rates.select { |k, _| k[0] == "consul" }
  by_path = Hash.new(0.0)
  agents.each { |k, r| by_path[k[2]] += r }
  out << "### Calls to the Consul agents' HTTP API while idle (per second, all agents; from each agent's metrics)"
  out << ""
  out << table(["what", "per s"], by_path.sort_by { |_, r| -r }.first(15).map { |p, r| ["`#{p}`", fmt(r, 2)] })
  out << ""
  dbs = []
  q0.keys.sort.each do |vm|
    a = probe(File.join(weight, "probe-start", vm))[:db]
    b = probe(File.join(weight, "probe-end", vm))[:db]
    b.each { |d, n| dbs << [vm, d, (n - a.fetch(d, n)) / secs] if (n - a.fetch(d, n)).positive? }
  end
  unless dbs.empty?
    out << "### Database transactions while idle (per second, pg_stat_database)"
    out << ""
    out << table(["VM", "database", "per s"], dbs.map { |vm, d, r| [vm, d, fmt(r, 2)] })
    out << ""
  end
end
puts out.join("\n")
