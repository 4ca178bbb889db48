# kms-reimport: the Makefile is the user's interface. Every target that needs
# the local stack installs what is missing first (into .local/, cached).
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
TOOLS     := .local/tools
NODE      := $(TOOLS)/node22/bin/node
STACKCTL  := $(GO) run ./infra/local/stackctl
# Lambda builds: static, trimmed, no RPC shim (provided.al2023 needs none).
LAMBDA_GOFLAGS := -tags lambda.norpc -trimpath -ldflags "-s -w -buildid="
FUNCTIONS := FetchParametersFunction WrapMaterialFunction ImportMaterialFunction VerifyImportFunction RecordFailureFunction PlannerFunction
# functions/<kebab-case of the logical id without "Function">, as the local stack expects.
fn_dir = ./functions/$(shell echo '$(1)' | sed -E 's/Function$$//; s/([a-z0-9])([A-Z])/\1-\2/g' | tr 'A-Z' 'a-z')

.PHONY: help tools run stack-up stack-down execute test test-go test-node lint bench build invoke clean

help: ## list targets
	@grep -E '^[a-zA-Z%_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 24

tools: ## install the local emulators and Node 22 into .local/tools (cached)
	@bash infra/local/install.sh

run: tools ## full local rotation on a fresh stack, shown step by step; stops what it started
	@$(STACKCTL) demo

stack-up: tools ## start the local stack; endpoints in .local/stack/env (source it)
	@$(STACKCTL) up

stack-down: ## stop the local stack
	@$(STACKCTL) down

execute: ## run a state machine on the running stack: make execute INPUT=<file> [SM=FleetStateMachine]
	@test -n "$(INPUT)" || { echo "usage: make execute INPUT=<file> [SM=FleetStateMachine]"; exit 2; }
	@$(STACKCTL) execute --input "$(INPUT)" --state-machine "$(or $(SM),RotationStateMachine)"

test: tools lint test-node test-go ## all tests, unit and integration (what .ci/run calls)

test-go:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

test-node:
	cd infra/local/sfn && ../../../$(NODE) --test

lint: ## cfn-lint on template.yaml (with the SAM transform)
	cfn-lint template.yaml

bench: tools ## benchmarks: wrap cost per algorithm and spec; fleet throughput, per-function p50/p99, init, peak memory, bootstrap size
	$(GO) test -run '^$$' -bench . -benchmem ./shared/... ./cmd/...
	# The fleet benchmark runs on its own local stack; 2 runs of 50 keys.
	$(GO) test -run '^$$' -bench . -benchtime 2x -timeout 30m ./tests/bench/

build: $(addprefix build-,$(FUNCTIONS)) ## every function's bootstrap for linux/arm64 under build/<LogicalId>/

# sam build calls `make build-<LogicalId>` with ARTIFACTS_DIR set (BuildMethod: makefile).
build-%:
	@mkdir -p $(or $(ARTIFACTS_DIR),build/$*)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build $(LAMBDA_GOFLAGS) -o $(or $(ARTIFACTS_DIR),build/$*)/bootstrap $(call fn_dir,$*)

# sam local invoke without Docker (docs/deploy.md, "make invoke"). stackctl is
# built, not `go run`, so its exit code survives: 1 = function error, 2 = setup.
STACKCTL_BIN := .local/bin/stackctl
invoke: ## sam local invoke without Docker: make invoke FN=<LogicalId> EVENT=<file> [ENV_VARS=events/env.json] [STACK_DIR=.local/stack]
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<LogicalId> EVENT=<file> [ENV_VARS=events/env.json] [STACK_DIR=.local/stack] [INVOKE_FLAGS=...]" >&2; exit 2; }
	@mkdir -p $(dir $(STACKCTL_BIN)) && $(GO) build -o $(STACKCTL_BIN) ./infra/local/stackctl
	@$(STACKCTL_BIN) invoke --fn "$(FN)" --event "$(EVENT)" $(if $(ENV_VARS),--env-vars "$(ENV_VARS)") $(if $(STACK_DIR),--stack-dir "$(STACK_DIR)") $(INVOKE_FLAGS)

clean: ## remove builds and the local stack's state (keeps installed tools)
	rm -rf build .local/stack .local/demo
