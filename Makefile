# scalene-attach: build, test, demo and benchmark.
#
#   make demo    build everything, start a demo workload, profile it, print, clean up
#   make test    build everything and run every test (unit + integration on every installed CPython)
#   make bench   overhead and accuracy figures (not part of make test)
#   make fuzz    every fuzz target for FUZZ_SECONDS (default 60) each
#
# Missing Debian packages are installed first (apt-get, as root).

SWIFT        ?= swift
CC           ?= cc
# The tool links the Swift runtime statically: it starts in a few milliseconds and needs nothing
# from the toolchain at run time. Swift Testing has no static build, so the tests are compiled in a
# second (dynamic) release build in its own directory; they run the static tool.
# libstdc++ and libgcc_s (asked for by the static Swift runtime's link file and by clang) are
# linked from their archives too, through the linker scripts in STATIC_LINK_DIR: the tool then
# needs nothing but glibc. That folder goes to clang (swiftc -Xclang-linker), so that it is searched
# before clang's own library folders (with -Xlinker -L those would win).
# The static runtime's link file also exports every symbol (-export-dynamic): nothing looks our
# symbols up at run time, so a version script keeps them all local (half a megabyte of dynamic
# symbol table less, and less for ld.so to do at start-up).
STATIC_LINK_DIR := $(CURDIR)/build/static-link
TOOL_FLAGS   ?= -c release --static-swift-stdlib -Xlinker --strip-debug -Xswiftc -Xclang-linker -Xswiftc -L$(STATIC_LINK_DIR) \
                -Xlinker --version-script=$(STATIC_LINK_DIR)/local-symbols.map
TEST_FLAGS   ?= -c release --scratch-path .build-tests
DEB_PACKAGES := libelf-dev libunwind-dev libpython3-dev patchelf gpgv debian-archive-keyring zlib1g-dev
# What the view tests drive: a real terminal (tmux) and a real browser (headless chromium); the
# pprof reader the pprof and snapshot tests read our files with (go tool pprof); prlimit (util-linux);
# libcurl, which --push loads at run time (the push tests; the tool never links it).
TEST_DEB_PACKAGES := tmux chromium util-linux golang-go libcurl4
BIN_DIR       = $(shell $(SWIFT) build $(TOOL_FLAGS) --show-bin-path 2>/dev/null)
AGENT        := build/libscalene_agent.so

SCALENE_VENV := .venv-scalene

# The fuzzers: libFuzzer with AddressSanitizer, in a build of their own. `make fuzz` runs each
# target FUZZ_SECONDS; `make test` replays the committed inputs and adds FUZZ_TEST_SECONDS of fresh
# ones per target (seven targets: about a minute and a quarter).
FUZZ_FLAGS   ?= -c debug --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
FUZZ_BIN      = $(shell $(SWIFT) build $(FUZZ_FLAGS) --show-bin-path 2>/dev/null)/scalene-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 10

.PHONY: all deps build agent static-link test-deps pythons test demo bench layouts screenshots clean fuzz fuzz-build fuzz-seeds

all: build

# Installs the Debian packages the build needs, only when one is missing.
deps:
	@$(MAKE) --no-print-directory install-debs PACKAGES="$(DEB_PACKAGES)"

install-debs:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# The injected agent is plain C: never a SwiftPM product (that would link the Swift runtime into
# the target). It is installed next to the binary, where scalene-attach looks for it.
agent: deps
	$(MAKE) -C agent CC="$(CC)"

build: deps agent static-link
	$(SWIFT) build $(TOOL_FLAGS) --product scalene-attach
	cp $(AGENT) "$(BIN_DIR)/libscalene_agent.so"
	@echo "built $(BIN_DIR)/scalene-attach"

# `-lstdc++` and `-lgcc_s` resolve to these scripts, which name the static archives (found
# through the compiler, not a hard-coded gcc version).
static-link:
	@mkdir -p "$(STATIC_LINK_DIR)"
	@for pair in libstdc++.so:libstdc++.a libgcc_s.so:libgcc_eh.a; do \
	  archive=$$($(CC) -print-file-name=$${pair#*:}); \
	  case "$$archive" in /*) ;; *) echo "$(CC) cannot find $${pair#*:} (install g++)" >&2; exit 1;; esac; \
	  echo "INPUT($$archive)" > "$(STATIC_LINK_DIR)/$${pair%%:*}.tmp"; \
	  cmp -s "$(STATIC_LINK_DIR)/$${pair%%:*}.tmp" "$(STATIC_LINK_DIR)/$${pair%%:*}" \
	    && rm "$(STATIC_LINK_DIR)/$${pair%%:*}.tmp" \
	    || mv "$(STATIC_LINK_DIR)/$${pair%%:*}.tmp" "$(STATIC_LINK_DIR)/$${pair%%:*}"; \
	done
	@echo '{ local: *; };' > "$(STATIC_LINK_DIR)/local-symbols.map"

# Scalene itself (from PyPI), to check that its model validates and its viewer renders our JSON;
# tmux and chromium for the views.
test-deps:
	@$(MAKE) --no-print-directory install-debs PACKAGES="$(TEST_DEB_PACKAGES)"
	@if [ ! -x $(SCALENE_VENV)/bin/scalene ]; then \
	  echo "Installing scalene from PyPI into $(SCALENE_VENV)"; \
	  python3 -m venv $(SCALENE_VENV) && $(SCALENE_VENV)/bin/pip install -q --disable-pip-version-check scalene; \
	fi

# CPython 3.14 and 3.15 from Debian sid (static and shared-libpython shapes), unpacked outside the
# clone in $(PYTHONS_CACHE); reused when present. A failure to reach the archive is recorded in the
# cache's manifest.json and the tests report those interpreters as skipped, with the reason.
PYTHONS_CACHE ?= /var/cache/scalene-attach/pythons
pythons: deps
	@SCALENE_PYTHONS="$(PYTHONS_CACHE)" python3 fixtures/interpreters/provision.py

# The native-allocation library the memory fixtures load with ctypes.
build/fixtures/libnativealloc.so: fixtures/memory/native_alloc.c
	@mkdir -p build/fixtures
	$(CC) -shared -fPIC -O2 -fno-builtin -o $@ $<

# A native thread with no Python state for the CPU tests (fixtures/cpu/hidden_spinner.py).
build/fixtures/libspinner.so: fixtures/cpu/spinner.c
	@mkdir -p build/fixtures
	$(CC) -shared -fPIC -O2 -pthread -o $@ $<

# A launcher that runs a command under a seccomp filter refusing process_vm_readv, as Docker's
# default profile does (the container tests).
build/fixtures/seccomp-deny: fixtures/container/seccomp_deny.c
	@mkdir -p build/fixtures
	$(CC) -O2 -o $@ $<

# Unit tests, and integration tests that run the built tool against real CPython processes.
# CPU shares are measured against the fixture's own clock, and a busy machine skews them: the
# CPU-accuracy suite runs last, alone, one test at a time; everything else runs in parallel first.
QUIET_TESTS := IntegrationTests.CPUAccuracyTests
TEST_ENV = SCALENE_PYTHONS="$(PYTHONS_CACHE)" SCALENE_ATTACH_BIN="$(BIN_DIR)/scalene-attach"
test: build test-deps pythons build/fixtures/libnativealloc.so build/fixtures/libspinner.so build/fixtures/seccomp-deny fuzz-build
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	@status=0; \
	$(TEST_ENV) $(SWIFT) test $(TEST_FLAGS) --skip-build --skip '$(QUIET_TESTS)' || status=1; \
	echo "== the CPU-accuracy suite, alone"; \
	$(TEST_ENV) $(SWIFT) test $(TEST_FLAGS) --skip-build --filter '$(QUIET_TESTS)' || status=1; \
	exit $$status
	$(MAKE) -C agent test
	sh fixtures/fuzz/run-fuzzers.sh "$(FUZZ_BIN)" $(FUZZ_TEST_SECONDS)

fuzz-build: deps
	$(SWIFT) build $(FUZZ_FLAGS) --product scalene-fuzz

# Every fuzz target for FUZZ_SECONDS (crashes are kept as regression inputs under fixtures/fuzz).
fuzz: fuzz-build
	sh fixtures/fuzz/run-fuzzers.sh "$(FUZZ_BIN)" $(FUZZ_SECONDS)

# Re-records the seed corpus from every installed interpreter (see fixtures/fuzz/make_seeds.py).
fuzz-seeds: deps pythons
	$(SWIFT) build $(TEST_FLAGS) --product scalene-fuzz
	SCALENE_PYTHONS="$(PYTHONS_CACHE)" python3 fixtures/fuzz/make_seeds.py --fuzz-bin "$$($(SWIFT) build $(TEST_FLAGS) --show-bin-path)/scalene-fuzz"

demo: build
	@SCALENE_ATTACH_BIN="$(BIN_DIR)/scalene-attach" sh fixtures/demo/run-demo.sh

bench: build pythons
	@SCALENE_PYTHONS="$(PYTHONS_CACHE)" SCALENE_ATTACH_BIN="$(BIN_DIR)/scalene-attach" python3 fixtures/bench/bench.py

# The README's pictures of the HTML report and of top, made from a live demo workload.
screenshots: build
	@SCALENE_ATTACH_BIN="$(BIN_DIR)/scalene-attach" sh fixtures/screenshots/make-screenshots.sh fixtures/screenshots

# Regenerates the per-version layout and opcode tables from the installed interpreters' headers.
layouts: pythons
	SCALENE_PYTHONS="$(PYTHONS_CACHE)" python3 fixtures/generators/generate_layouts.py

clean:
	rm -rf .build .build-tests .build-fuzz build
	$(MAKE) -C agent clean
