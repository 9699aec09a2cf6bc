# Thin wrapper for newcomers: every target installs what it needs, then calls cmake/ctest.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

PREFIX ?= /usr/local

.PHONY: all build deps demo install deb test-deb test test-unit test-integration test-asan test-tsan test-faults fuzz fuzz-smoke bench format check-format clean

all: build

# Install every Debian package the build and the test suites need (scripts/deps.sh test).
deps:
	@scripts/deps.sh test

build:
	@scripts/deps.sh build
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# Installs lb, lbctl, the systemd unit (lb.service, sysusers lb.conf), an example
# SYSCONFDIR/lb/lb.json (/etc/lb with PREFIX=/usr), bash completion and the docs under
# DESTDIR + PREFIX.
install:
	@scripts/deps.sh build
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

# A Debian package with the ordinary tooling (debian/, dpkg-buildpackage), checked by
# lintian; the .deb lands in dist/deb/.
deb:
	@scripts/deps.sh deb
	scripts/build-deb.sh

# make deb, then the package checked and run as the service (tests/packaging/test_deb.sh).
test-deb: build
	@scripts/deps.sh deb
	cd $(BUILD) && ctest -C deb -L deb --output-on-failure

# Starts lb in front of three built-in test backends; Ctrl-C stops everything.
demo:
	@scripts/deps.sh demo
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh $(BUILD)

# Normal build, every suite; then (in CI, or with SANITIZE=1) the same suites under ASan+UBSan,
# the threaded ones under ThreadSanitizer, and a short run of each fuzz target; in CI the
# fault suite and the Debian package too.
test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory build
	scripts/check-format.sh
	cd $(BUILD) && ctest --output-on-failure -j 1
	@if [ -n "$$CI" ] || [ -n "$$SANITIZE" ]; then $(MAKE) --no-print-directory test-asan test-tsan fuzz-smoke; fi
	@if [ -n "$$CI" ]; then $(MAKE) --no-print-directory test-faults test-deb; fi

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

test-integration: build
	cd $(BUILD) && ctest --output-on-failure -L integration

# The fault suite (tests/faults, docs/TESTING.md "Fault suite") on both engines, each scenario printing one
# line of figures (-V shows them when it passes too). Plain ctest leaves it out: it takes
# about a minute and holds thousands of sockets.
test-faults: build
	cd $(BUILD) && ctest -C faults -L faults -V -j 1

test-asan:
	@$(MAKE) --no-print-directory build BUILD=build-asan CMAKE_FLAGS="-DLB_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug"
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j 1

test-tsan:
	@$(MAKE) --no-print-directory build BUILD=build-tsan CMAKE_FLAGS="-DLB_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug"
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -j 1 -R '$(TSAN_TESTS)'

# The threaded suites: algorithms/QSBR from several threads, the prober, and lb itself
# (workers + prober) running the health, core and edge TCP, UDP, fleet, reload-memory and fd-exhaustion
# suites.
TSAN_TESTS = unit/test_algorithms|integration/test_queue|integration/test_agent|integration/test_per_client|integration/test_slow_start|unit/test_checks|unit/test_client_count|integration/test_health|integration/test_tcp_core|integration/test_tcp_edges|integration/test_udp|integration/test_fleet|integration/test_reload_memory|integration/test_fd_exhaustion

# libFuzzer targets (fuzz/, clang, ASan+UBSan), each for FUZZ_SECONDS on a scratch copy of
# its seed corpus; fails on a crash, leak or hang (docs/TESTING.md "Fuzzing").
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/deps.sh fuzz
	JOBS=$(JOBS) fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20

bench: build
	@scripts/deps.sh bench
	LB_BIN=$(BUILD)/lb bash bench/compare.sh $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	scripts/check-format.sh

clean:
	rm -rf build build-asan build-tsan build-fuzz
