#!/usr/bin/env bash
# Runs as root inside a lab VM (scripts/lab-weight.sh sends it over ssh) and prints what the guest has spent so far:
#   cg UNIT MICROSECONDS   CPU time of every unit's cgroup (the shoplab@ instances too), systemd itself (init.scope)
#                          and the logins (user.slice: provisioning and these probes)
#   run UNIT COUNT         how many times the unit's threads were put on the CPU (their wake-ups, from schedstat)
#   stat busy MICROSECONDS all the non-idle CPU time the guest's kernel counted (by the guest's own clock)
#   stat timer COUNT       local timer interrupts, and stat ctxt COUNT context switches
#   mem used KIB           memory in use (MemTotal less MemAvailable), and mem total KIB
#   db NAME TRANSACTIONS   transactions of each database of a local PostgreSQL, if one runs
set -euo pipefail
cd /sys/fs/cgroup
for d in init.scope user.slice system.slice/*.service system.slice/*.slice/*.service; do
  [[ -f $d/cpu.stat ]] || continue
  echo "cg ${d##*/} $(awk '$1 == "usage_usec" { print $2 }' "$d/cpu.stat")"
  runs=0
  while read -r pid; do
    for t in /proc/"$pid"/task/*/schedstat; do
      read -r _ _ n <"$t" 2>/dev/null && runs=$((runs + n))
    done
  done <"$d/cgroup.procs"
  echo "run ${d##*/} $runs"
done
awk '/^cpu / { printf "stat busy %d\n", ($2 + $3 + $4 + $7 + $8 + $9) * 10000 } /^ctxt / { print "stat ctxt", $2 }' /proc/stat
awk '$1 == "LOC:" { print "stat timer", $2 }' /proc/interrupts
awk '$1 == "MemTotal:" { t = $2 } $1 == "MemAvailable:" { a = $2 } END { print "mem used", t - a; print "mem total", t }' /proc/meminfo
if [[ -S /var/run/postgresql/.s.PGSQL.5432 ]]; then
  runuser -u postgres -- psql -h /var/run/postgresql -tA -F " " \
    -c "SELECT datname, xact_commit + xact_rollback FROM pg_stat_database WHERE datname IS NOT NULL" 2>/dev/null | sed "s/^/db /" || true
fi
