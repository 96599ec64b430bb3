# Switchboard — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     ?= bin/switchboard
NPM     ?= npm
# nats-server for the SDK suite's cluster scenario, built from the module version go.mod pins.
NATS_BIN ?= bin/nats-server
# staticcheck, fetched through the Go module proxy at a pinned version (checked against Go 1.26).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: run build nats-server postgres protoc proto test test-go test-sdk test-browser fuzz bench vet examples example-chat example-live-dashboard examples-deps

run: ## start the server on :8080 with ./data
	$(GO) run ./cmd/switchboard serve

build:
	$(GO) build -o $(BIN) ./cmd/switchboard

nats-server: ## the NATS server the SDK suite's cluster scenario runs (module version pinned by go.mod)
	$(GO) build -o $(NATS_BIN) github.com/nats-io/nats-server/v2

postgres: ## PostgreSQL 15 for the outbox connector's tests (Debian's package; the tests start it themselves)
	test -x /usr/lib/postgresql/15/bin/initdb || { apt-get update && apt-get install -y --no-install-recommends postgresql-15; }

protoc: ## protoc with the well-known types (Debian's packages) for the protobuf subprotocols' generated code and its check
	command -v protoc >/dev/null && test -f /usr/include/google/protobuf/any.proto || { apt-get update && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev; }

proto: protoc ## regenerate internal/dialect/webpubsub/clientpb from its .proto (protoc-gen-go of the version go.mod pins)
	$(GO) build -o bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	cd internal/dialect/webpubsub/clientpb && protoc --plugin=protoc-gen-go=$(CURDIR)/bin/protoc-gen-go --go_out=. --go_opt=paths=source_relative webpubsub.client.proto

test: vet test-go test-sdk test-browser ## everything CI runs

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test-go: postgres protoc ## Go unit, integration and fuzz-seed tests, with the race detector (PostgreSQL and protoc required, not skipped)
	SWITCHBOARD_REQUIRE_POSTGRES=1 SWITCHBOARD_REQUIRE_PROTOC=1 $(GO) test -race -count=1 ./...

test-sdk: build nats-server postgres examples-deps ## the official npm SDKs against the built server (and a 3-node cluster on NATS, and a PostgreSQL outbox)
	cd test/sdk && $(NPM) ci --no-audit --no-fund --loglevel=error
	cd test/sdk && SWITCHBOARD_REQUIRE_POSTGRES=1 SWITCHBOARD_BIN=$(CURDIR)/$(BIN) NATS_SERVER_BIN=$(CURDIR)/$(NATS_BIN) $(NPM) test

test-browser: build examples-deps ## @microsoft/signalr, the dashboard and the examples in headless Chromium (Debian's package) against the built server
	command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium; }
	cd test/browser && $(NPM) ci --no-audit --no-fund --loglevel=error
	cd test/browser && SWITCHBOARD_BIN=$(CURDIR)/$(BIN) $(NPM) test

fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} $$pkg || exit 1; \
	  done; \
	done

bench: ## Go micro-benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

examples-deps: ## the examples' npm packages (pinned by their package-lock.json)
	cd examples/chat && $(NPM) ci --no-audit --no-fund --loglevel=error
	cd examples/live-dashboard && $(NPM) ci --no-audit --no-fund --loglevel=error

examples: examples-deps ## rebuild examples/chat/public/app.js (esbuild, pinned) from examples/chat/src: commit the result
	cd examples/chat && node build.mjs

example-chat: build examples-deps ## run the chat example: Switchboard + its backend; prints the URL to open (EXAMPLE_PORT, EXAMPLE_SERVER_PORT, EXAMPLE_SIGNALR_PORT)
	node examples/run.mjs chat

example-live-dashboard: build examples-deps ## run the live-dashboard example (same variables as example-chat)
	node examples/run.mjs live-dashboard
