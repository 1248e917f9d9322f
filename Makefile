# shoplab — see README.md. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

BIN      := bin
GOBUILD  := go build -trimpath
# Every service has its directory under services/ (provisioning/topology.yml names them; a test keeps the two equal).
COMMANDS := $(patsubst %/,%,$(sort $(dir $(wildcard services/*/main.go)))) cmd/shoplab
FUZZTIME ?= 100000x
TEST_TIMEOUT ?= 25m

VM_ARCH     ?= amd64
VMBIN       := $(BIN)/linux-$(VM_ARCH)
BOX_SOURCE  ?= qemu.debian12
VAGRANT_KEYS ?= $(firstword $(wildcard /usr/share/rubygems-integration/all/gems/vagrant-*/keys))
PACKER_VARS ?=

.PHONY: help build consul packer test fuzz lint run status smoke clean-data clean vm-binaries box lab-verify ui-token vm-test vm-admin admin bench

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build every service into bin/
	@mkdir -p $(BIN)
	$(GOBUILD) -o $(BIN)/ $(addprefix ./,$(COMMANDS))

$(BIN)/consul: tools/consul/go.mod tools/consul/go.sum
	@mkdir -p $(BIN)
	@echo "building the pinned Consul (tools/consul; about 5 minutes the first time)"
	cd tools/consul && $(GOBUILD) -ldflags "-s -w" -o ../../$(BIN)/consul github.com/hashicorp/consul
	@touch $@

consul: ## build the pinned Consul into bin/consul once (skipped when consul is on PATH)
	@if command -v consul >/dev/null 2>&1; then echo "using $$(command -v consul) ($$(consul version | head -1))"; else $(MAKE) --no-print-directory $(BIN)/consul; fi

$(BIN)/packer: tools/packer/go.mod tools/packer/go.sum tools/packer/build.sh
	tools/packer/build.sh
	@touch $@

packer: $(BIN)/packer ## build the pinned Packer 1.11.2 and its qemu, vagrant and virtualbox plugins into bin/

test: consul packer ## run every test against real PostgreSQL and Consul, then each fuzz target briefly (FUZZTIME)
	go test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz

fuzz: ## run each go fuzz target for FUZZTIME executions (default 100000x)
	scripts/fuzz.sh $(FUZZTIME)

lint: ## gofmt, go vet and shellcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	shellcheck -x $$(git ls-files '*.sh') .ci/run provisioning/shoplab-admin

REPLICAS ?=

run: build consul ## start the whole shop on this machine (REPLICAS=catalog=2 for extra replicas); Ctrl-C stops it
	$(BIN)/shoplab lab --replicas "$(REPLICAS)"

status: ## show every service's instances and checks in the running lab
	@$(BIN)/shoplab status --topology provisioning/topology.yml --replicas "$(REPLICAS)"

smoke: ## walk the API journey through the running lab's front
	$(BIN)/shoplab smoke

clean-data: ## wipe the local lab's data (.lab/: PostgreSQL data, logs, secrets); the lab must be stopped
	@if [ -f .lab/lab.json ]; then echo "the lab is running (.lab/lab.json); stop it with Ctrl-C first" >&2; exit 1; fi
	rm -rf .lab

vm-binaries: consul ## build the linux binaries the VMs run (the services, shoplab, consul) into bin/linux-$(VM_ARCH) (VM_ARCH=arm64 for ARM hosts)
	@mkdir -p $(VMBIN)
	GOOS=linux GOARCH=$(VM_ARCH) CGO_ENABLED=0 $(GOBUILD) -o $(VMBIN)/ ./services/... ./cmd/shoplab
	@c=$$(command -v consul || echo $(CURDIR)/$(BIN)/consul); \
	if [ "$(VM_ARCH)" = "$$(go env GOARCH)" ] && [ "$$(go env GOOS)" = linux ]; then cp "$$c" $(VMBIN)/consul; \
	else cd tools/consul && GOOS=linux GOARCH=$(VM_ARCH) $(GOBUILD) -ldflags "-s -w" -o ../../$(VMBIN)/consul github.com/hashicorp/consul; fi

box: packer vm-binaries ## bake the shoplab box with Packer and add it to Vagrant (BOX_SOURCE=virtualbox-iso.debian12 for VirtualBox)
	@[ -n "$(VAGRANT_KEYS)" ] || { echo "Vagrant's insecure key pair was not found; install vagrant or set VAGRANT_KEYS" >&2; exit 1; }
	cd packer && PACKER_PLUGIN_PATH=$(CURDIR)/$(BIN)/packer-plugins $(CURDIR)/$(BIN)/packer build -force -only=$(BOX_SOURCE) \
		-var binaries=$(CURDIR)/$(VMBIN) -var ssh_private_key_file=$(VAGRANT_KEYS)/vagrant -var ssh_public_key_file=$(VAGRANT_KEYS)/vagrant.pub $(PACKER_VARS) .
	vagrant box add --force --name shoplab/debian12 packer/output/shoplab-$(if $(findstring virtualbox,$(BOX_SOURCE)),virtualbox,libvirt).box

ADMIN ?=
vm-admin: ## the operator's command in the VM lab: make vm-admin ADMIN="grant --email you@example.com" (also revoke, list, token)
	@[ -n "$(ADMIN)" ] || { echo 'usage: make vm-admin ADMIN="grant --email you@example.com" (grant, revoke, list, token)' >&2; exit 2; }
	vagrant ssh auth-1 -c "sudo shoplab-admin $(ADMIN)"

admin: build ## the operator's command for make run: make admin ADMIN="grant --email you@example.com"
	@[ -n "$(ADMIN)" ] || { echo 'usage: make admin ADMIN="grant --email you@example.com" (grant, revoke, list, token)' >&2; exit 2; }
	$(BIN)/shoplab admin $(ADMIN)

# The VM lab's own CA for Consul's TLS (provisioning/lab.rb makes it on vagrant up).
LAB_CA = .lab/vm/tls/ca.pem
ui-token: ## print the read-only token that logs into the VM lab's Consul UI
	@ruby -rjson -e 'puts JSON.parse(File.read(".lab/vm/secrets.json"))["ui_token"]["secret"]' 2>/dev/null || { echo "no VM lab secrets yet (.lab/vm/secrets.json): run vagrant up first" >&2; exit 1; }

lab-verify: build ## check the VM lab from the host: every member alive, every expected instance passing, each database cluster replicating, smoke through the front VM
	CONSUL_HTTP_TOKEN=$$($(MAKE) --no-print-directory ui-token) CONSUL_CACERT=$(LAB_CA) $(BIN)/shoplab status --consul https://127.0.0.1:$${SHOPLAB_CONSUL_UI_PORT:-8500} --members \
		--topology provisioning/topology.yml --replicas "$(REPLICAS)" --patroni
	$(BIN)/shoplab smoke --front http://127.0.0.1:$${SHOPLAB_FRONT_PORT:-$$($(BIN)/shoplab topology port front)}

BENCH ?=
bench: build consul ## the front against nginx (wrk), then checkouts/s through a lab; BENCH="--part gateway --rounds 5" (needs nginx, wrk)
	$(BIN)/shoplab bench $(BENCH)

vm-test: build packer vm-binaries ## prove the VM lab: bake the box, vagrant up under QEMU in a network namespace, shop through it (root)
	scripts/vm-test.sh

clean: ## remove built binaries (keeps bin/consul)
	find $(BIN) -type f ! -name consul -delete 2>/dev/null || true
