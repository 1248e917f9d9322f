#!/usr/bin/env bash
# Runs as root inside a lab VM (make vm-test sends it): starts a second Consul agent that has everything a
# member of the lab has — the gossip key, this VM's agent token, the servers' addresses — except the lab's CA
# and TLS settings. It joins the gossip (the key is right) and yet every call it makes to the servers' RPC is
# refused (they verify incoming TLS), while the VM's own agent answers the same call. Prints one line for the
# log; exits non-zero when the intruder gets an answer or never joins. The intruder leaves and its files go.
set -euo pipefail

cfg=${CONSUL_CONFIG:-/etc/consul.d/consul.hcl} # the VM agent's configuration
value() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\\(.*\\)\"[[:space:]]*$/\\1/p" "$cfg" | head -1; }
key=$(value encrypt)
token=$(value agent)
ip=$(value bind_addr)
# The servers' gossip port spelled out: a join address without one means the agent's own port (18301 here).
join=$(sed -n 's/^retry_join[[:space:]]*=[[:space:]]*\(\[.*\]\)[[:space:]]*$/\1/p' "$cfg" | sed 's/"\([^":]*\)"/"\1:8301"/g')
[[ -n $key && -n $token && -n $ip && -n $join ]] || {
  echo "intruder: could not read the agent's settings from $cfg" >&2
  exit 1
}

dir=$(mktemp -d)
chmod 0700 "$dir"
pid=""
finish() {
  if [[ -n $pid ]]; then
    kill -TERM "$pid" 2>/dev/null || true # a client leaves the gossip on SIGTERM
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap finish EXIT

cat >"$dir/intruder.hcl" <<HCL
datacenter  = "shoplab"
node_name   = "intruder"
data_dir    = "$dir/data"
bind_addr   = "$ip"
client_addr = "127.0.0.1"
encrypt     = "$key"
retry_join  = $join
leave_on_terminate = true
ports {
  serf_lan = 18301
  serf_wan = -1
  server   = 18300
  http     = 18500
  dns      = -1
  grpc     = -1
  grpc_tls = -1
}
acl {
  enabled        = true
  default_policy = "deny"
  tokens {
    agent = "$token"
  }
}
HCL
chmod 0600 "$dir/intruder.hcl"
printf 'X-Consul-Token: %s\n' "$token" >"$dir/headers" # the token in a file, never an argument

consul agent -config-file "$dir/intruder.hcl" >"$dir/log" 2>&1 &
pid=$!

# Joined the gossip: its own log says so (its HTTP API cannot tell: every ACL check there needs the servers).
joined=no
for _ in $(seq 1 60); do
  if grep -q '(LAN) joined' "$dir/log"; then
    joined=yes
    break
  fi
  kill -0 "$pid" 2>/dev/null || break # it exited
  sleep 1
done
[[ $joined == yes ]] || {
  echo "intruder: never joined the gossip; its log:" >&2
  tail -20 "$dir/log" >&2
  exit 1
}

# The same read through the intruder and through this VM's agent, a few times (bounded).
for try in 1 2 3 4 5; do
  code=$(curl -s -m 10 -o "$dir/out" -w '%{http_code}' -H @"$dir/headers" http://127.0.0.1:18500/v1/catalog/services) || true
  if [[ $code == 200 ]]; then
    echo "intruder: try $try: an agent without the lab's CA read the catalogue: $(head -c 200 "$dir/out")" >&2
    exit 1
  fi
  sleep 1
done
own=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H @"$dir/headers" http://127.0.0.1:8500/v1/catalog/services) || true
[[ $own == 200 ]] || {
  echo "intruder: this VM's own agent could not read the catalogue either (got $own): the check proves nothing" >&2
  exit 1
}
echo "intruder: joined the gossip, then 5 catalogue reads through it got $code ($(head -c 120 "$dir/out" | tr -d '\n')); the VM's own agent got $own"
