# KeyTrail. Two commands do all set-up on a fresh Debian machine with the Rust toolchain:
#   make run    build and start ktd on the embedded default (data in ./data)
#   make test   the whole test suite
#
# The build directory lives outside the checkout so fresh clones on the same machine reuse it
# (RocksDB compiles from source in ~15 minutes on 2 cores).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/keytrail/target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/debug
GRPC ?= http://127.0.0.1:50051
HTTP ?= http://127.0.0.1:8080
DEMO_STATE ?= ./demo-state

.PHONY: run test demo build deps lint fmt fuzz clean-data crash-test bench-load scale-test

## deps: system packages the build needs (libclang for RocksDB's bindings, a C++ compiler).
deps:
	@./scripts/ensure-deps.sh

# Every target builds the same package set with the same targets, so Cargo resolves the same
# features and RocksDB (whose build script depends on bindgen's resolved features) is compiled
# once, not once per command.
CARGO_SET := --workspace --all-targets

build: deps
	$(CARGO) build $(CARGO_SET)

## run: build, then serve on 127.0.0.1 until Ctrl-C. A signing key is generated on first start,
## and a local witness key (data/witness.key, for `make demo`'s kt-audit witness) whose verifier
## key ktd accepts cosignatures from.
WITNESS_KEY ?= data/witness.key
# Where `make demo`'s witness serves its latest cosigned checkpoint (gossip).
WITNESS_ADDR ?= 127.0.0.1:8081

run: build
	@test -f $(WITNESS_KEY) || $(BIN)/kt-audit witness-keygen --out $(WITNESS_KEY) --name keytrail.localhost/witness >/dev/null
	@echo
	@echo "Starting ktd (Ctrl-C to stop). In another terminal, try:"
	@echo "  make demo"
	@echo "  $(BIN)/kt --log-key data/log.pub --state $(DEMO_STATE)/kt.json append -n demo 'hello, log'"
	@echo "  $(BIN)/kt --log-key data/log.pub --state $(DEMO_STATE)/kt.json checkpoint"
	@echo "  $(BIN)/kt --log-key data/log.pub --state $(DEMO_STATE)/kt.json prove 0"
	@echo "  $(BIN)/kt --log-key data/log.pub --state $(DEMO_STATE)/kt.json verify"
	@echo "  $(BIN)/kt --log-key data/log.pub --vrf-key data/vrf.pub --state $(DEMO_STATE)/kt.json --keys $(DEMO_STATE)/keys.json key new alice@example.org"
	@echo "  $(BIN)/kt --log-key data/log.pub --vrf-key data/vrf.pub --state $(DEMO_STATE)/kt.json --keys $(DEMO_STATE)/keys.json key register alice@example.org --provider-token \$$(cat data/provider.token)"
	@echo "  $(BIN)/kt --log-key data/log.pub --vrf-key data/vrf.pub --state $(DEMO_STATE)/kt.json --keys $(DEMO_STATE)/keys.json key rotate alice@example.org"
	@echo "  $(BIN)/kt --log-key data/log.pub --vrf-key data/vrf.pub --state $(DEMO_STATE)/kt.json lookup alice@example.org"
	@echo "  $(BIN)/kt --log-key data/log.pub --vrf-key data/vrf.pub --state $(DEMO_STATE)/kt.json history alice@example.org"
	@echo "  $(BIN)/kt --log-key data/log.pub --vrf-key data/vrf.pub --state $(DEMO_STATE)/kt.json --keys $(DEMO_STATE)/keys.json monitor alice@example.org --once"
	@echo "  $(BIN)/kt-audit --log-key data/log.pub --state-dir $(DEMO_STATE)/audit --tiles-url $(HTTP) --once"
	@echo "  $(BIN)/kt-audit --log-key data/log.pub --state-dir $(DEMO_STATE)/witness --witness-key $(WITNESS_KEY) --follow   # the witness"
	@echo "  $(BIN)/kt --log-key data/log.pub --state $(DEMO_STATE)/kt.json --witness \$$(cat $(WITNESS_KEY).pub) --max-age 60 checkpoint"
	@echo "  curl -s $(HTTP)/checkpoint"
	@echo
	$(BIN)/ktd --witness "$$(cat $(WITNESS_KEY).pub)"

## demo: against a running `make run`: append, verify, prove, audit.
demo: build
	@test -f data/log.pub || { echo "no data/log.pub: start the server with 'make run' first"; exit 1; }
	$(BIN)/kt --server $(GRPC) --log-key data/log.pub --state $(DEMO_STATE)/kt.json append -n demo "hello from make demo"
	$(BIN)/kt --server $(GRPC) --log-key data/log.pub --state $(DEMO_STATE)/kt.json append -n demo/notes "a second record"
	$(BIN)/kt --server $(GRPC) --log-key data/log.pub --state $(DEMO_STATE)/kt.json append -n demo "and a third"
	$(BIN)/kt --server $(GRPC) --log-key data/log.pub --state $(DEMO_STATE)/kt.json checkpoint
	$(BIN)/kt --server $(GRPC) --log-key data/log.pub --state $(DEMO_STATE)/kt.json prove 0
	$(BIN)/kt --server $(GRPC) --log-key data/log.pub --state $(DEMO_STATE)/kt.json verify
	@# A user's key: a device key, registered by the provider, rotated by the user, looked up,
	@# its history, and the owner's monitor (a fresh identity per run, so the demo can repeat).
	@id="demo-$$(date +%s)@example.org"; \
	kt="$(BIN)/kt --server $(GRPC) --log-key data/log.pub --vrf-key data/vrf.pub --state $(DEMO_STATE)/kt.json --keys $(DEMO_STATE)/keys.json"; \
	set -ex; \
	$$kt key new $$id; \
	$$kt key register $$id --provider-token "$$(cat data/provider.token)"; \
	$$kt key rotate $$id --alg secp256k1; \
	$$kt lookup $$id; \
	$$kt history $$id; \
	$$kt monitor $$id --once; \
	$$kt message send $$id -n demo/chat "signed by $$id's current key"; \
	$$kt message read $$id; \
	$$kt lookup nobody@example.org
	$(BIN)/kt-audit --server $(GRPC) --log-key data/log.pub --state-dir $(DEMO_STATE)/audit --tiles-url $(HTTP) --once
	@# Witnessing: a local kt-audit witness follows the log and cosigns each checkpoint it has
	@# verified; the client requires that cosignature (a 1-of-1 policy) and a checkpoint at most
	@# 60 s old, so the lookup below is accepted only under the witness quorum.
	@test -f $(WITNESS_KEY).pub || { echo "no $(WITNESS_KEY).pub: restart ktd with 'make run'"; exit 1; }
	@$(BIN)/kt-audit --server $(GRPC) --log-key data/log.pub --state-dir $(DEMO_STATE)/witness \
		--witness-key $(WITNESS_KEY) --follow --quiet --serve-latest $(WITNESS_ADDR) & witness=$$!; \
	trap 'kill $$witness 2>/dev/null' EXIT; \
	id="witnessed-$$(date +%s)@example.org"; \
	kt="$(BIN)/kt --server $(GRPC) --log-key data/log.pub --vrf-key data/vrf.pub --state $(DEMO_STATE)/kt.json --keys $(DEMO_STATE)/keys.json --witness $$(cat $(WITNESS_KEY).pub) --witness-threshold 1 --max-age 60 --quorum-wait 60"; \
	set -ex; \
	$$kt key new $$id; \
	$$kt key register $$id --provider-token "$$(cat data/provider.token)"; \
	$$kt lookup $$id; \
	$$kt append -n demo "accepted under a witness quorum"; \
	$$kt checkpoint; \
	$$kt check-witness $$(cat $(WITNESS_KEY).pub) http://$(WITNESS_ADDR)/checkpoint

## test: the whole suite (unit, vectors, property, end-to-end over loopback with RocksDB).
test: build
	$(CARGO) test $(CARGO_SET)

## crash-test: SIGKILL ktd under load CRASH_CYCLES times and check after every restart that nothing
## acknowledged or served was lost (docs/reliability.md); `make test` runs the same test with 25.
## KT_CRASH_SEED repeats a run's choices (the seed is printed at the start).
CRASH_CYCLES ?= 500
crash-test: build
	KT_CRASH_CYCLES=$(CRASH_CYCLES) $(CARGO) test $(CARGO_SET) -- sigkill_under_load --nocapture

## bench-load: a short run of every kt-bench workload (docs/performance.md) against a release
## ktd on a fresh temporary data dir with its per-peer rate limits off, then stops it. Release
## builds go to their own target dir, so the debug build of `make test` is not disturbed (the
## first one compiles RocksDB again, about 15 minutes). JSON reports land in BENCH_OUT.
RELEASE_TARGET ?= $(HOME)/.cache/keytrail/target-release
BENCH_ARGS ?= --duration 5s --warmup 1s --clients 64 --connections 4
BENCH_USERS ?= 2000
BENCH_ADDR ?= 127.0.0.1:50071
BENCH_OUT ?= /tmp/kt-bench-results
# One package set for every release build, so that none of them changes the feature set of another.
RELEASE_BUILD = CARGO_TARGET_DIR=$(RELEASE_TARGET) $(CARGO) build --release -p ktd -p kt-bench -p kt-audit --bins
bench-load: deps
	$(RELEASE_BUILD)
	@mkdir -p $(BENCH_OUT); dir=$$(mktemp -d); \
	$(RELEASE_TARGET)/release/ktd --data-dir $$dir/db --grpc-addr $(BENCH_ADDR) --http-addr 127.0.0.1:0 \
		--read-rate-per-sec 0 --write-rate-per-sec 0 >$$dir/ktd.out 2>&1 & ktd=$$!; \
	trap 'kill $$ktd 2>/dev/null; wait $$ktd; rm -rf $$dir' EXIT; \
	for i in $$(seq 300); do grep -q "ktd serving" $$dir/ktd.out && break; sleep 0.1; done; \
	grep -q "ktd serving" $$dir/ktd.out || { cat $$dir/ktd.out; exit 1; }; \
	bench="$(RELEASE_TARGET)/release/kt-bench --server http://$(BENCH_ADDR) --data-dir $$dir/db $(BENCH_ARGS)"; \
	prefix=load$$$$; set -ex; \
	$$bench append --json $(BENCH_OUT)/append.json; \
	$$bench register --json $(BENCH_OUT)/register.json; \
	$$bench lookup --users $(BENCH_USERS) --prefix $$prefix --json $(BENCH_OUT)/lookup.json; \
	$$bench rotate --users $(BENCH_USERS) --prefix $$prefix --skip-setup --json $(BENCH_OUT)/rotate.json; \
	$$bench history --users $(BENCH_USERS) --prefix $$prefix --skip-setup --json $(BENCH_OUT)/history.json; \
	$$bench mix --users $(BENCH_USERS) --prefix $$prefix --skip-setup --json $(BENCH_OUT)/mix.json

## scale-test: load SCALE_LEVELS registered users into a release ktd's storage through its real
## write path and measure, at each size, restart time, lookups and histories under load (kt-bench),
## RSS and disk (docs/performance.md). Not part of `make test`: 10^7 users take about an hour and
## several GB of disk. The data dir SCALE_DIR is kept, so a later run resumes where it stopped.
SCALE_LEVELS ?= 100000,1000000,10000000
SCALE_DIR ?= $(HOME)/.cache/keytrail/scale-db
SCALE_ARGS ?= --seconds 10 --clients 64 --connections 4
scale-test: deps
	$(RELEASE_BUILD)
	@mkdir -p $(BENCH_OUT)
	$(RELEASE_TARGET)/release/kt-scale --ktd $(RELEASE_TARGET)/release/ktd \
		--kt-audit $(RELEASE_TARGET)/release/kt-audit --data-dir $(SCALE_DIR) \
		--levels $(SCALE_LEVELS) $(SCALE_ARGS) --json $(BENCH_OUT)/scale.json

## lint: formatting and clippy, as required on every commit.
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_SET) -- -D warnings

## fuzz: every libFuzzer target for FUZZ_SECONDS each (docs/testing.md); not part of `make test`.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := entry note checkpoint_body cosignature_line map_proof map_page tiles merkle_proofs proto_answers
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)-fuzz cargo fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

fmt:
	$(CARGO) fmt --all

clean-data:
	rm -rf data $(DEMO_STATE)
