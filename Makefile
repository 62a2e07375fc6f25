# baton — quick start: `make demo` runs the supervisor with 4 demo workers on
# 127.0.0.1:8080; `make test` runs the whole test suite. Both install what they
# need on a fresh Debian machine (libsystemd-dev pinned to the installed
# libsystemd0, so apt never upgrades systemd itself).

SWIFT ?= swift
PORT ?= 8080
WORKERS ?= 4

.PHONY: demo test build deps bench lint clean fuzz

deps:
	@./scripts/install-deps

build: deps
	$(SWIFT) build

demo: build
	.build/debug/baton demo --port $(PORT) --workers $(WORKERS)

# BATON_WMO_TESTS=1: each test target compiles as one whole module (Package.swift).
# TEST_BUILD_FLAGS: no DWARF in the test build, which nobody steps through (clean builds
# here, two each: 115.4 and 113.3 s with it, 97.8 and 107.2 s without; 21 s less CPU). A failing #expect still names its file and line
# (the macro records them); a crash's backtrace names functions, without lines. The index
# store stays: test discovery reads it (without it the build fails, "index store path does
# not exist").
TEST_BUILD_FLAGS ?= -debug-info-format none
test: deps
	BATON_WMO_TESTS=1 $(SWIFT) build --build-tests $(TEST_BUILD_FLAGS)
	FUZZ_TYPECHECK_ONLY=1 ./scripts/fuzz
	BATON_WMO_TESTS=1 $(SWIFT) test --skip-build $(TEST_BUILD_FLAGS)

# The benchmark harness (not tests): every scenario in one go, each printing a
# table; `compare` (baton vs gunicorn, uWSGI, puma) writes
# Benchmarks/results/latest.{json,md} and PNG plots. QUICK=1: one repetition.
# scripts/install-bench-deps installs the peers, wrk and matplotlib (bench only).
BENCH_SCENARIOS ?= deploy-under-load deploy-under-load-boot2 compare systemd sampling-cost deploy-memory deploy-reservation control-latency spawn-cost

bench: deps
	./scripts/install-bench-deps
	# every product in one build: 98 s here, 134 s as three --product builds. The Swift runtime
	# and Foundation linked in statically, as a host should run baton, so its memory is
	# counted in full (docs/ARCHITECTURE.md, "Footprint of the supervisor").
	$(SWIFT) build -c release --static-swift-stdlib
	.build/release/baton-bench $(BENCH_SCENARIOS) $(if $(QUICK),--quick,)

# libFuzzer on the config text checks and the control-socket decoder (not part of `test`,
# which replays Fuzz/crashes and Fuzz/corpus instead). FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz

lint:
	$(SWIFT) format lint --strict --recursive Sources Tests Benchmarks/Sources

clean:
	rm -rf .build
