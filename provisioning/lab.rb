# frozen_string_literal: true

# Plans the VM lab from provisioning/topology.yml: one VM per Consul server, one per service instance and the
# monitor (Prometheus; SHOPLAB_MONITOR=0 leaves it out), each
# with a fixed private address inside 192.168.56.0/21 (VirtualBox's allowed host-only range), checked here so
# a bad plan fails when the Vagrantfile loads, not half-way through `vagrant up`. It also keeps the lab's
# secrets — the Consul gossip key, the ACL tokens and the database passwords — generated once per lab on the
# host, in the git-ignored .lab/vm/secrets.json (SHOPLAB_LAB_DIR moves .lab elsewhere), and the lab's own
# certificate authority with a certificate per Consul server and per database VM, in .lab/vm/tls/.
#
# `ruby provisioning/lab.rb` prints the plan as JSON (the tests read it).
require "ipaddr"
require "json"
require "openssl"
require "securerandom"
require "fileutils"
require "rubygems/package"
require "yaml"
require "stringio"
require "zlib"

module Shoplab
  NETWORK = IPAddr.new("192.168.56.0/21")
  HOST_ADDRESS = IPAddr.new("192.168.56.1") # the host's side of the private network
  CONSUL_BASE = IPAddr.new("192.168.56.10")
  MONITOR_ADDRESS = IPAddr.new("192.168.56.20")
  SERVICE_BASE = IPAddr.new("192.168.56.100")
  MAX_CONSUL_SERVERS = 5
  BOX = "shoplab/debian12"
  PUBLIC_BOX = "debian/bookworm64"

  class PlanError < StandardError; end

  # patroni: the service's database is a Patroni cluster of its replicas (a database and two or more
  # replicas); db_host is then the cluster's primary in Consul DNS, else the first replica's address.
  VM = Struct.new(:name, :role, :ip, :service, :index, :port, :public, :database, :db_host, :patroni, :memory, :cpus,
                  :forwards, keyword_init: true)

  # patroni_scope is the Patroni cluster (and Consul service) of a service's database.
  def self.patroni_scope(service) = "#{service}-db"

  module_function

  def env_int(env, name, default, min, max)
    raw = env.fetch(name, "").strip
    return default if raw.empty?
    value = Integer(raw, 10)
    raise PlanError, "#{name}=#{raw}: want a number from #{min} to #{max}" unless value.between?(min, max)
    value
  rescue ArgumentError
    raise PlanError, "#{name}=#{raw}: want a number from #{min} to #{max}"
  end

  def load_services(root, env)
    doc = YAML.safe_load(File.read(File.join(root, "provisioning", "topology.yml")))
    services = doc.fetch("services")
    overrides = env.fetch("REPLICAS", "").split(",").map(&:strip).reject(&:empty?)
    overrides.each do |spec|
      name, count = spec.split("=", 2)
      svc = services.find { |s| s["name"] == name }
      raise PlanError, "REPLICAS=#{spec}: no service named #{name} in the topology" unless svc
      raise PlanError, "REPLICAS=#{spec}: want service=count, count 1 to 9" unless count =~ /\A[1-9]\z/
      svc["replicas"] = Integer(count, 10)
    end
    services
  end

  # plan returns the VMs in the order they should come up: Consul servers first.
  def plan(root, env = ENV)
    servers = env_int(env, "CONSUL_SERVERS", 1, 1, MAX_CONSUL_SERVERS)
    raise PlanError, "CONSUL_SERVERS=#{servers}: use 1, 3 or 5 (an odd number keeps a quorum)" if servers.even?
    memory = env_int(env, "SHOPLAB_VM_MEMORY", 0, 256, 16_384)
    cpus = env_int(env, "SHOPLAB_VM_CPUS", 1, 1, 16)
    vms = []
    servers.times do |i|
      vms << VM.new(name: "consul-#{i + 1}", role: "consul-server", ip: (CONSUL_BASE.to_i + i),
                    memory: memory.positive? ? memory : 384, cpus: cpus,
                    forwards: i.zero? ? [{ "guest" => 8501, "host" => env_int(env, "SHOPLAB_CONSUL_UI_PORT", 8500, 1, 65_535) }] : [])
    end
    load_services(root, env).each_with_index do |svc, idx|
      replicas = svc.fetch("replicas")
      replicas.times do |r|
        front = svc["name"] == "front"
        ip = SERVICE_BASE.to_i + 10 * idx + r
        patroni = svc["database"] == true && replicas >= 2
        db_host = if patroni then "primary.#{patroni_scope(svc['name'])}.service.consul"
                  elsif svc["database"] then IPAddr.new(SERVICE_BASE.to_i + 10 * idx, Socket::AF_INET).to_s
                  end
        vms << VM.new(name: "#{svc['name']}-#{r + 1}", role: front ? "front" : "service", ip: ip, service: svc["name"],
                      index: r + 1, port: svc.fetch("port"), public: svc["public"] == true, database: svc["database"] == true,
                      db_host: db_host, patroni: patroni,
                      memory: memory.positive? ? memory : (svc["database"] ? 512 : 384), cpus: cpus,
                      forwards: front && r.zero? ? [{ "guest" => svc.fetch("port"), "host" => env_int(env, "SHOPLAB_FRONT_PORT", svc.fetch("port"), 1, 65_535) }] : [])
      end
    end
    if env.fetch("SHOPLAB_MONITOR", "1") != "0"
      # Prometheus, scraping every instance, Patroni member and VM through Consul; its UI forwarded to the host.
      vms << VM.new(name: "monitor-1", role: "monitor", ip: MONITOR_ADDRESS.to_i, index: 1,
                    memory: memory.positive? ? memory : 512, cpus: cpus,
                    forwards: [{ "guest" => 9090, "host" => env_int(env, "SHOPLAB_PROMETHEUS_PORT", 9090, 1, 65_535) }])
    end
    vms.each { |vm| vm.ip = IPAddr.new(vm.ip, Socket::AF_INET).to_s }
    check(vms)
    vms
  end

  # check refuses addresses outside the range, the host's own address, network or broadcast addresses, and
  # duplicates.
  def check(vms)
    seen = {}
    vms.each do |vm|
      ip = IPAddr.new(vm.ip)
      raise PlanError, "#{vm.name}: #{vm.ip} is outside #{NETWORK}/21" unless NETWORK.include?(ip)
      raise PlanError, "#{vm.name}: #{vm.ip} is the host's address" if ip == HOST_ADDRESS
      raise PlanError, "#{vm.name}: #{vm.ip} is the network or broadcast address" if [NETWORK.to_range.first, NETWORK.to_range.last].include?(ip)
      raise PlanError, "#{vm.name} and #{seen[vm.ip]} would share #{vm.ip}" if seen[vm.ip]
      seen[vm.ip] = vm.name
    end
  end

  def uuid
    SecureRandom.uuid
  end

  def lab_dir(root, env)
    File.join(env.fetch("SHOPLAB_LAB_DIR", "").empty? ? File.join(root, ".lab") : env["SHOPLAB_LAB_DIR"], "vm")
  end

  # secrets returns the lab's secrets, creating what is missing (a new VM or service gets its own) and
  # keeping what exists, so re-provisioning reuses the same gossip key and tokens.
  def secrets(root, vms, env = ENV)
    dir = lab_dir(root, env)
    path = File.join(dir, "secrets.json")
    FileUtils.mkdir_p(dir, mode: 0o700)
    s = File.exist?(path) ? JSON.parse(File.read(path)) : {}
    s["gossip_key"] ||= [SecureRandom.random_bytes(32)].pack("m0")
    s["management_token"] ||= uuid
    s["dns_token"] ||= { "accessor" => uuid, "secret" => uuid }
    s["ui_token"] ||= { "accessor" => uuid, "secret" => uuid }
    s["agents"] ||= {}
    s["services"] ||= {}
    s["databases"] ||= {}
    s["auth_kek"] ||= [SecureRandom.random_bytes(32)].pack("m0") # seals auth's signing keys
    s["fingerprint_keys"] ||= {} # per service: the key of its Idempotency-Key fingerprints (orders, payments)
    %w[orders payments].each { |svc| s["fingerprint_keys"][svc] ||= [SecureRandom.random_bytes(32)].pack("m0") }
    s["patroni"] ||= {}        # per service: the cluster's superuser, replication, rewind and REST API passwords
    s["patroni_tokens"] ||= {} # per VM: its Patroni's Consul token
    s["monitor_token"] ||= { "accessor" => uuid, "secret" => uuid } # Prometheus' discovery: reads services and nodes
    vms.each do |vm|
      s["agents"][vm.name] ||= { "accessor" => uuid, "secret" => uuid }
      next unless vm.service

      s["services"][vm.service] ||= { "accessor" => uuid, "secret" => uuid }
      s["databases"][vm.service] ||= SecureRandom.urlsafe_base64(24) if vm.database
      next unless vm.patroni

      pw = (s["patroni"][vm.service] ||= {})
      %w[superuser replication rewind rest].each { |k| pw[k] ||= SecureRandom.urlsafe_base64(24) }
      s["patroni_tokens"][vm.name] ||= { "accessor" => uuid, "secret" => uuid }
    end
    File.write(path, JSON.pretty_generate(s) + "\n", perm: 0o600)
    File.chmod(0o600, path)
    s
  end

  DATACENTER = "shoplab"
  CERT_DAYS = 825
  RENEW_DAYS = 30

  # lab_tls returns the lab's TLS material as PEM, making what is missing in .lab/vm/tls/ (as `consul tls ca
  # create` and `consul tls cert create -server` would): the lab's own CA (ca.pem; its key ca-key.pem never
  # leaves the host); per Consul server, a certificate for server.shoplab.consul (what verify_server_hostname
  # checks), localhost, 127.0.0.1 (the UI's forwarded port) and the server's address; per VM that keeps a
  # database (PostgreSQL, and Patroni's REST API on a cluster's members), a certificate for its address, its name
  # and, on a Patroni member, the cluster's names in Consul DNS the services connect to (sslmode=verify-full).
  # A certificate is made again when it is missing, names other names, or expires within 30 days. Client
  # agents get theirs from the servers (auto_encrypt).
  # {"ca" => pem, "servers" => {name => {"cert", "key"}}, "databases" => {name => {"cert", "key"}}}
  def lab_tls(root, vms, env = ENV)
    dir = File.join(lab_dir(root, env), "tls")
    FileUtils.mkdir_p(dir, mode: 0o700)
    ca_path = File.join(dir, "ca.pem")
    ca_key_path = File.join(dir, "ca-key.pem")
    if File.exist?(ca_path) && File.exist?(ca_key_path)
      ca = OpenSSL::X509::Certificate.new(File.read(ca_path))
      ca_key = OpenSSL::PKey.read(File.read(ca_key_path))
    else
      ca_key = OpenSSL::PKey::EC.generate("prime256v1")
      ca = new_cert(ca_key, ca_key, nil, "CN=shoplab lab CA #{SecureRandom.hex(4)}", 5 * 365) do |ef, c|
        c.add_extension(ef.create_extension("basicConstraints", "CA:TRUE", true))
        c.add_extension(ef.create_extension("keyUsage", "keyCertSign,cRLSign,digitalSignature", true))
      end
      File.write(ca_key_path, ca_key.to_pem, perm: 0o600)
      File.write(ca_path, ca.to_pem, perm: 0o644)
    end
    leaf = lambda do |name, cn, sans|
      cert_path = File.join(dir, "#{name}.pem")
      key_path = File.join(dir, "#{name}-key.pem")
      unless current?(cert_path, key_path, ca, sans)
        key = OpenSSL::PKey::EC.generate("prime256v1")
        cert = new_cert(key, ca_key, ca, "CN=#{cn}", CERT_DAYS) do |ef, c|
          c.add_extension(ef.create_extension("basicConstraints", "CA:FALSE", true))
          c.add_extension(ef.create_extension("keyUsage", "digitalSignature,keyEncipherment", true))
          # Consul servers dial each other, Patroni members call each other's REST API with their own
          # certificate: each serves both ends.
          c.add_extension(ef.create_extension("extendedKeyUsage", "serverAuth,clientAuth", false))
          c.add_extension(ef.create_extension("subjectAltName", sans, false))
        end
        File.write(key_path, key.to_pem, perm: 0o600)
        File.write(cert_path, cert.to_pem, perm: 0o644)
      end
      { "cert" => File.read(cert_path), "key" => File.read(key_path) }
    end
    out = { "ca" => ca.to_pem, "servers" => {}, "databases" => {} }
    vms.select { |vm| vm.role == "consul-server" }.each do |vm|
      out["servers"][vm.name] = leaf.call(vm.name, "server.#{DATACENTER}.consul",
                                          "DNS:server.#{DATACENTER}.consul,DNS:localhost,IP:127.0.0.1,IP:#{vm.ip}")
    end
    vms.select { |vm| vm.database && (vm.patroni || vm.index == 1) }.each do |vm|
      sans = "DNS:#{vm.name},IP:#{vm.ip}"
      if vm.patroni
        scope = patroni_scope(vm.service)
        sans += ",DNS:primary.#{scope}.service.consul,DNS:#{scope}.service.consul"
      end
      out["databases"][vm.name] = leaf.call("#{vm.name}-db", vm.name, sans)
    end
    out
  end

  # new_cert makes a certificate for key, signed by signer_key (self-signed when issuer is nil); the block adds
  # the extensions.
  def new_cert(key, signer_key, issuer, subject, days)
    cert = OpenSSL::X509::Certificate.new
    cert.version = 2
    cert.serial = OpenSSL::BN.new(SecureRandom.hex(16), 16)
    cert.subject = OpenSSL::X509::Name.parse(subject)
    cert.issuer = issuer ? issuer.subject : cert.subject
    cert.public_key = key
    cert.not_before = Time.now - 60
    cert.not_after = Time.now + days * 86_400
    ef = OpenSSL::X509::ExtensionFactory.new
    ef.subject_certificate = cert
    ef.issuer_certificate = issuer || cert
    yield ef, cert
    cert.add_extension(ef.create_extension("subjectKeyIdentifier", "hash", false))
    cert.add_extension(ef.create_extension("authorityKeyIdentifier", "keyid:always", false)) if issuer
    cert.sign(signer_key, OpenSSL::Digest.new("SHA256"))
    cert
  end

  # current? reports whether the certificate at path exists with its key, was signed by ca, names exactly
  # sans and stays valid for RENEW_DAYS more.
  def current?(path, key_path, ca, sans)
    return false unless File.exist?(path) && File.exist?(key_path)

    cert = OpenSSL::X509::Certificate.new(File.read(path))
    ext = cert.extensions.find { |e| e.oid == "subjectAltName" }
    have = ext ? ext.value.split(", ").map { |v| v.sub("IP Address:", "IP:") }.sort : []
    cert.verify(ca.public_key) && cert.not_after > Time.now + RENEW_DAYS * 86_400 && have == sans.split(",").sort
  rescue OpenSSL::OpenSSLError
    false
  end

  # acl_spec is what the first Consul server creates: one line per token, "kind name accessor secret".
  def acl_spec(vms, s)
    lines = ["dns dns #{s['dns_token']['accessor']} #{s['dns_token']['secret']}",
             "ui ui #{s['ui_token']['accessor']} #{s['ui_token']['secret']}"]
    vms.each { |vm| lines << "agent #{vm.name} #{s['agents'][vm.name]['accessor']} #{s['agents'][vm.name]['secret']}" }
    vms.map(&:service).compact.uniq.each do |svc|
      lines << "service #{svc} #{s['services'][svc]['accessor']} #{s['services'][svc]['secret']}"
    end
    vms.select(&:patroni).each do |vm|
      lines << "patroni #{vm.name} #{s['patroni_tokens'][vm.name]['accessor']} #{s['patroni_tokens'][vm.name]['secret']}"
    end
    vms.select { |vm| vm.role == "monitor" }.each do |vm|
      lines << "monitor #{vm.name} #{s['monitor_token']['accessor']} #{s['monitor_token']['secret']}"
    end
    lines.join("\n")
  end

  # intentions is the service mesh's intentions as the first server writes them: one service-intentions
  # config entry per line (JSON) — every call denied, and each service's callers (its "calls" in the topology)
  # allowed. The same entries as the local lab writes (consulx.DesiredIntentions).
  def intentions(root, env = ENV)
    callers = Hash.new { |h, k| h[k] = [] }
    load_services(root, env).each do |svc|
      (svc["calls"] || []).each { |dst| callers[dst] << svc["name"] }
    end
    entries = [{ "Kind" => "service-intentions", "Name" => "*",
                 "Sources" => [{ "Name" => "*", "Action" => "deny", "Description" => "shoplab topology: deny by default" }] }]
    callers.keys.sort.each do |dst|
      entries << { "Kind" => "service-intentions", "Name" => dst,
                   "Sources" => callers[dst].sort.map do |src|
                     { "Name" => src, "Action" => "allow", "Description" => "shoplab topology: #{src} calls #{dst}" }
                   end }
    end
    entries.map { |e| JSON.generate(e) }.join("\n")
  end

  # provisioning_archive packs the provisioning scripts, units and Prometheus files a VM needs (every file of
  # provisioning/ but the Go tests) and returns the gzipped tar (the Vagrantfile hands it to each VM's
  # provisioning).
  def provisioning_archive(root)
    src = File.join(root, "provisioning")
    out = StringIO.new("".b)
    gz = Zlib::GzipWriter.new(out)
    Gem::Package::TarWriter.new(gz) do |tar|
      Dir.glob("**/*", base: src).sort.each do |rel|
        full = File.join(src, rel)
        next if rel.end_with?("_test.go")

        if File.directory?(full)
          tar.mkdir("provisioning/#{rel}", 0o755)
        else
          tar.add_file_simple("provisioning/#{rel}", File.stat(full).mode & 0o777, File.size(full)) { |io| io.write(File.binread(full)) }
        end
      end
    end
    gz.close
    out.string
  end

  # box is the box to use: SHOPLAB_BOX, else the Packer-built box once it has been added, else a public
  # Debian 12 box (its provisioning installs everything from the internet; slower).
  def box(env = ENV)
    return env["SHOPLAB_BOX"] unless env.fetch("SHOPLAB_BOX", "").empty?

    home = env.fetch("VAGRANT_HOME", File.join(Dir.home, ".vagrant.d"))
    File.directory?(File.join(home, "boxes", BOX.gsub("/", "-VAGRANTSLASH-"))) ? BOX : PUBLIC_BOX
  end
end

if $PROGRAM_NAME == __FILE__
  root = File.expand_path("..", __dir__)
  begin
    vms = Shoplab.plan(root)
    if ARGV.first == "tls" # make the lab's TLS material (tests, and hosts that want it before vagrant up)
      tls = Shoplab.lab_tls(root, vms)
      puts JSON.pretty_generate("dir" => File.join(Shoplab.lab_dir(root, ENV), "tls"), "servers" => tls["servers"].keys,
                                "databases" => tls["databases"].keys)
      exit 0
    end
    intentions = Shoplab.intentions(root).split("\n").map { |l| JSON.parse(l) }
    puts JSON.pretty_generate("network" => "#{Shoplab::NETWORK}/21", "vms" => vms.map(&:to_h), "intentions" => intentions)
  rescue Shoplab::PlanError => e
    warn "shoplab: #{e.message}"
    exit 1
  end
end
