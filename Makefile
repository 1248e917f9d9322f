# shoplab — see README.md. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

BIN      := bin
GOBUILD  := go build -trimpath
COMMANDS := services/auth services/catalog services/cart services/orders services/payments services/front cmd/shoplab
FUZZTIME ?= 100000x
TEST_TIMEOUT ?= 25m

.PHONY: help build consul test fuzz lint run status smoke clean-data clean

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

test: consul ## run every test against real PostgreSQL and Consul, then each fuzz target briefly (FUZZTIME)
	go test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz

fuzz: ## run each go fuzz target for FUZZTIME executions (default 100000x)
	scripts/fuzz.sh $(FUZZTIME)

lint: ## gofmt, go vet and shellcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	shellcheck -x $$(git ls-files '*.sh') .ci/run

REPLICAS ?=

run: build consul ## start the whole shop on this machine (REPLICAS=catalog=2 for extra replicas); Ctrl-C stops it
	$(BIN)/shoplab lab --replicas "$(REPLICAS)"

status: ## show every service's instances and checks in the running lab
	@$(BIN)/shoplab status

smoke: ## walk the API journey through the running lab's front
	$(BIN)/shoplab smoke --front http://127.0.0.1:8080

clean-data: ## wipe the local lab's data (.lab/: PostgreSQL data, logs, secrets); the lab must be stopped
	@if [ -f .lab/lab.json ]; then echo "the lab is running (.lab/lab.json); stop it with Ctrl-C first" >&2; exit 1; fi
	rm -rf .lab

clean: ## remove built binaries (keeps bin/consul)
	find $(BIN) -type f ! -name consul -delete 2>/dev/null || true
