# kms-reimport: the Makefile is the user's interface. Every target that needs
# the local stack installs what is missing first (into .local/, cached).
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
# Where `make tools` installs; KMS_REIMPORT_TOOLS=<dir> for another directory
# (install.sh and the local stack read it too).
TOOLS     := $(abspath $(or $(KMS_REIMPORT_TOOLS),.local/tools))
NODE      := $(TOOLS)/node22/bin/node
# The Python tools (moto_server, cfn-lint, aws) that `make tools` installed
# into a virtual environment, when it had to, come first.
export PATH := $(TOOLS)/venv/bin:$(PATH)
# Lambda builds: static, trimmed, no RPC shim (provided.al2023 needs none).
LAMBDA_GOFLAGS := -tags lambda.norpc -trimpath -ldflags "-s -w -buildid="
FUNCTIONS := FetchParametersFunction WrapMaterialFunction ImportMaterialFunction VerifyImportFunction RecordFailureFunction PlannerFunction
# functions/<kebab-case of the logical id without "Function">, as the local stack expects.
fn_dir = ./functions/$(shell echo '$(1)' | sed -E 's/Function$$//; s/([a-z0-9])([A-Z])/\1-\2/g' | tr 'A-Z' 'a-z')

# stackctl drives the local stack. It is built once into .local/bin and again
# only when a Go source it may depend on (anything outside tests/), go.mod or
# go.sum is newer; it is a binary, not `go run`, so its exit code survives:
# 1 = execution or function error, 2 = setup.
STACKCTL := .local/bin/stackctl
STACKCTL_SRCS := $(shell find . \( -path ./.git -o -path ./.local -o -path ./build -o -path ./tests -o -name node_modules \) -prune -o -name '*.go' ! -name '*_test.go' -print) go.mod go.sum

# The gates (make lint): staticcheck at the version infra/local/install.sh
# pins. The unit packages run with the race detector (make test-unit); every
# other package, the stack suites among them, in test-go.
STATICCHECK := $(TOOLS)/bin/staticcheck
UNIT_PKGS   := ./shared/... ./functions/... ./cmd/...
MODULE       = $(shell $(GO) list -m)

.PHONY: help tools run stack-up stack-down execute invoke pipeline test test-unit test-go test-node lint bench soak deploy build clean

help: ## list targets
	@grep -E '^[a-zA-Z%_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 24

tools: ## install what is missing (emulators, Node 22, pinned Python tools) into .local/tools (cached)
	@bash infra/local/install.sh

$(STACKCTL): $(STACKCTL_SRCS)
	@mkdir -p $(@D)
	@echo "• building $@" >&2
	@$(GO) build -o $@.$$$$.tmp ./infra/local/stackctl && mv -f $@.$$$$.tmp $@

run: tools $(STACKCTL) ## full local rotation on a fresh stack, shown step by step; stops what it started
	@$(STACKCTL) demo

stack-up: tools $(STACKCTL) ## start the local stack with the sample key and secret events/ name; endpoints in .local/stack/env (source it); KMS=kms-standin for HMAC, RSA and ECC keys; MEMBERS=444455556666 for member accounts
	@$(STACKCTL) up $(if $(KMS),--kms "$(KMS)") $(if $(MEMBERS),--members "$(MEMBERS)") $(if $(ROLELESS),--roleless "$(ROLELESS)")

stack-down: $(STACKCTL) ## stop the local stack
	@$(STACKCTL) down

execute: $(STACKCTL) ## run a state machine on the running stack: make execute INPUT=<file> [SM=FleetStateMachine]
	@test -n "$(INPUT)" || { echo "usage: make execute INPUT=<file> [SM=FleetStateMachine] [STACK_DIR=.local/stack]" >&2; exit 2; }
	@$(STACKCTL) execute --input "$(INPUT)" --state-machine "$(or $(SM),RotationStateMachine)" $(if $(STACK_DIR),--stack-dir "$(STACK_DIR)")

# sam local invoke without Docker (docs/deploy.md, "make invoke").
invoke: $(STACKCTL) ## sam local invoke without Docker: make invoke FN=<LogicalId> EVENT=<file> [ENV_VARS=events/env.json] [STACK_DIR=.local/stack]
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<LogicalId> EVENT=<file> [ENV_VARS=events/env.json] [STACK_DIR=.local/stack] [INVOKE_FLAGS=...]" >&2; exit 2; }
	@$(STACKCTL) invoke --fn "$(FN)" --event "$(EVENT)" $(if $(ENV_VARS),--env-vars "$(ENV_VARS)") $(if $(STACK_DIR),--stack-dir "$(STACK_DIR)") $(INVOKE_FLAGS)

pipeline: $(STACKCTL) ## the four stages in order, each response the next event: make pipeline EVENT=events/fetch-parameters.json
	@test -n "$(EVENT)" || { echo "usage: make pipeline EVENT=<file> [ENV_VARS=events/env.json] [STACK_DIR=.local/stack] [INVOKE_FLAGS=...]" >&2; exit 2; }
	@$(STACKCTL) pipeline --event "$(EVENT)" $(if $(ENV_VARS),--env-vars "$(ENV_VARS)") $(if $(STACK_DIR),--stack-dir "$(STACK_DIR)") $(INVOKE_FLAGS)

test: tools lint test-node test-unit test-go ## all tests: the gates, unit tests (race detector), integration (what .ci/run calls)

test-unit: ## unit tests of shared/, functions/, cmd/ with the race detector
	$(GO) test -race -count=1 -timeout 30m $(UNIT_PKGS)

test-go: ## every other Go package: the stack suites, the local stack's own tests
	$(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -v -E '^$(MODULE)/(shared|functions|cmd|tests/repo)(/|$$)')

test-node:
	cd infra/local/sfn && $(NODE) --test

lint: tools ## the gates: gofmt, go vet, staticcheck (pinned), the repository checks (tests/repo), cfn-lint
	@unformatted=$$(gofmt -l $$(find . \( -path ./.git -o -path ./.local -o -path ./build -o -name node_modules \) -prune -o -name '*.go' -print)); \
	if [ -n "$$unformatted" ]; then echo "gofmt: not formatted (run gofmt -w on them):" >&2; echo "$$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) test -count=1 ./tests/repo/
	cfn-lint template.yaml infra/member/template.yaml

bench: tools $(STACKCTL) ## benchmarks: wrap cost; fleet throughput, per-function p50/p99, init, peak memory, bootstrap size, calls per renewal, cost of 1,000 renewals; make execute's overhead; calls per key type; pacing under a KMS quota; scale (500-4,000 keys)
	$(GO) test -run '^$$' -bench . -benchmem ./shared/... ./cmd/...
	# The fleet benchmark runs on its own local stack; 2 runs of 50 keys,
	# with calls per renewal and the cost of 1,000 renewals. Then make
	# execute's overhead over the execution itself.
	$(GO) test -run '^$$' -bench 'FleetRun|MakeExecuteOverhead' -benchtime 2x -timeout 30m ./tests/bench/
	# KMS calls per key type and path (KMS stand-in); pacing: 200 keys
	# under a 4 requests/s KMS quota (PACING_RATE,
	# PACING_KEYS), on a second, paced stack; then the planner's pages at
	# 500, 1,000, 2,000 and 4,000 registered keys. Once each.
	$(GO) test -run '^$$' -bench 'CallsPerKeyType|Pacing|Scale' -benchtime 1x -timeout 30m ./tests/bench/

soak: tools ## soak: a fleet (SOAK_KEYS=200) renewed over SOAK_RUNS=3 fleet runs with random faults, then every invariant checked (long; not in make test)
	$(GO) test -run '^$$' -bench Soak -benchtime 1x -timeout 60m ./tests/faults/

deploy: ## sam build and sam deploy with samconfig.toml (needs the SAM CLI and AWS credentials); DEPLOY_FLAGS=... for more
	@command -v sam >/dev/null || { echo "make deploy: the SAM CLI (sam) is not on PATH; install it (https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html) and run make deploy again" >&2; exit 2; }
	sam build && sam deploy $(DEPLOY_FLAGS)

build: $(addprefix build-,$(FUNCTIONS)) ## every function's bootstrap for linux/arm64 under build/<LogicalId>/

# sam build calls `make build-<LogicalId>` with ARTIFACTS_DIR set (BuildMethod: makefile).
build-%:
	@mkdir -p $(or $(ARTIFACTS_DIR),build/$*)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build $(LAMBDA_GOFLAGS) -o $(or $(ARTIFACTS_DIR),build/$*)/bootstrap $(call fn_dir,$*)

clean: ## remove builds, stackctl and the local stack's state (keeps installed tools)
	rm -rf build .local/stack .local/demo .local/pipeline .local/bin
