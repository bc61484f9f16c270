# internald — one Makefile, read top to bottom.
#
#   make            build build/internald and build/internalctl
#   make run        install missing packages, build, import zones/regions.jsonl and
#                   zones/demo.jsonl, serve [::1]:5353
#   make test       unit + integration + netns (root) suites, then unit + integration again
#                   under AddressSanitizer/UndefinedBehaviorSanitizer, then format-check
#   make bench      bench/run (dnsperf against Knot DNS and NSD)
#   make fuzz       libFuzzer targets for FUZZ_SECONDS each (clang)
#   make install PREFIX=/usr/local DESTDIR=   (also the systemd units of man/*.service)
#
# Build output lives under $(O) (build/ by default, build/san/ for the sanitizer build).

O        ?= build
PREFIX   ?= /usr/local
SYSTEMD_UNITDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR  ?=
CC       ?= cc
PKGS     := libuv ldns lmdb jansson libfstrm libprotobuf-c libmicrohttpd libnats
SAN      ?= 0
FUZZ_SECONDS ?= 60

# Debian packages: to build and run (make run), to test (make test), to benchmark.
DEB_BUILD := build-essential pkg-config libldns-dev libuv1-dev liblmdb-dev libjansson-dev \
	     libnats-dev libmicrohttpd-dev libfstrm-dev libprotobuf-c-dev protobuf-c-compiler
DEB_RUN   := $(DEB_BUILD) bind9-dnsutils
DEB_TEST  := $(DEB_RUN) libcmocka-dev knot-dnsutils ldnsutils iproute2 clang-format lmdb-utils \
	     libclang-rt-14-dev clang knot dnsperf time procps nats-server prometheus fstrm-bin \
	     dnstap-ldns unbound dnsmasq-base curl
DEB_BENCH := $(DEB_TEST) nsd gnuplot-nox

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Iinclude $(WARN) -pthread
VERSION  ?= $(shell git describe --tags --always 2>/dev/null || echo unknown)
CFLAGS   += -DINTERNALD_VERSION=\"$(VERSION)\"
CFLAGS   += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread
# each program records only the libraries it calls: internald never links libnats
LDFLAGS  += -Wl,--as-needed
ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=address,undefined
endif

# Pure modules and the registry's read side: shared by both programs and by every unit test.
CORE     := wire names org regions answer reg_core reg_codec reg_read config log cache metrics \
	    kvkey
# The registry's write side and JSON Lines: internalctl and the tests, never internald.
WRITE    := reg_write reg_check reg_upgrade jsonl
SERVER   := server srv_worker srv_udp srv_tcp forward dnstap metrics_http
CORE_O   := $(CORE:%=$(O)/%.o)
WRITE_O  := $(WRITE:%=$(O)/%.o)
SERVER_O := $(SERVER:%=$(O)/%.o) $(O)/dnstap.pb-c.o
UNITS    := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))

.PHONY: all deps deps-run deps-test deps-bench run test unit integration netns sanitize format format-check bench fuzz \
	fuzz-replay install clean
all: $(O)/internald $(O)/internalctl

$(O)/%.o: src/%.c $(wildcard include/*.h src/*.h) | $(O)
	$(CC) $(CFLAGS) -c -o $@ $<
$(O):
	mkdir -p $(O)/tests

# dnstap.proto -> protobuf-c code in $(O), at build time (generated files are never committed)
$(O)/dnstap.pb-c.c: src/dnstap.proto | $(O)
	protoc-c --proto_path=src --c_out=$(O) src/dnstap.proto
$(O)/dnstap.pb-c.h: $(O)/dnstap.pb-c.c
$(O)/dnstap.pb-c.o: $(O)/dnstap.pb-c.c $(O)/dnstap.pb-c.h
	$(CC) $(CFLAGS) -I$(O) -c -o $@ $<
$(O)/dnstap.o: CFLAGS += -I$(O)
$(O)/dnstap.o: $(O)/dnstap.pb-c.h

$(O)/internald: $(O)/internald.o $(SERVER_O) $(CORE_O)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
FLEET_O  := $(O)/kv.o $(O)/follow.o $(O)/publish.o
$(O)/internalctl: $(O)/internalctl.o $(O)/zone.o $(FLEET_O) $(O)/metrics_http.o $(WRITE_O) $(CORE_O)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/tests/%: tests/unit/%.c $(CORE_O) $(WRITE_O) $(O)/zone.o tests/unit/testreg.h | $(O)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(WRITE_O) $(CORE_O) $(O)/zone.o $(LDFLAGS) $(LDLIBS) \
		-lcmocka
DNSTAP_O := $(O)/dnstap.o $(O)/dnstap.pb-c.o $(O)/log.o
$(O)/tests/test_dnstap: tests/unit/test_dnstap.c $(DNSTAP_O) | $(O)
	$(CC) $(CFLAGS) -I$(O) -o $@ $< $(DNSTAP_O) $(LDFLAGS) $(LDLIBS) -lcmocka
$(O)/tests/dnsq: tests/integration/dnsq.c | $(O)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)
$(O)/tests/dnsdiff: tests/integration/dnsdiff.c | $(O)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

$(O)/tests/kvtool: tests/integration/kvtool.c $(O)/kv.o $(O)/log.o | $(O)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(O)/kv.o $(O)/log.o $(LDFLAGS) $(LDLIBS)

# Installs what is missing (as root) or prints the exact apt-get line and stops.
# make deps-run: what make run needs; make deps (deps-test): what make test needs too.
DEPS_FOR = $(if $(filter deps-run,$@),$(DEB_RUN),$(if $(filter deps-bench,$@),$(DEB_BENCH),$(DEB_TEST)))
deps deps-run deps-test deps-bench:
	@missing=""; for p in $(DEPS_FOR); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "deps: missing packages; run as root:"; \
	    echo "  apt-get update && apt-get install -y$$missing"; exit 1; fi; fi

run: deps-run
	$(MAKE) all
	rm -rf run/db && mkdir -p run
	$(O)/internalctl --db run/db import zones/regions.jsonl zones/demo.jsonl
	@echo
	@echo "internald serves the demo org on [::1]:5353. Try, in another terminal:"
	@echo "  dig @::1 -p 5353 +short AAAA web.internal"
	@echo "  dig @::1 -p 5353 +short TXT vms.web.internal"
	@echo "  dig @::1 -p 5353 +short AAAA top2.nearest.of.web.internal"
	@echo "  curl -s 'http://[::1]:9153/metrics' | grep internald_queries_total"
	@echo
	$(O)/internald --db run/db --listen '[::1]:5353' --default-org demo \
		--region ord --workers 2 --metrics '[::1]:9153'

unit: $(UNITS:%=$(O)/tests/%)
	@set -e; for t in $^; do echo "== $$t"; CMOCKA_MESSAGE_OUTPUT=stdout ./$$t; done

integration: all $(O)/tests/dnsq $(O)/tests/dnsdiff $(O)/tests/kvtool
	O=$(O) tests/integration/run
	O=$(O) tests/integration/forward
	O=$(O) tests/integration/cache
	O=$(O) tests/integration/robust
	O=$(O) tests/integration/dnstap
	O=$(O) tests/integration/diff
	O=$(O) tests/integration/ops
	O=$(O) tests/integration/examples
	O=$(O) tests/integration/sync
	O=$(O) tests/integration/fleet

netns: all
	O=$(O) tests/netns/run
	O=$(O) tests/netns/user

sanitize:
	$(MAKE) O=build/san SAN=1 CC=clang unit integration

test: deps-test
	$(MAKE) all $(BENCH_TOOLS)
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) netns
	$(MAKE) fuzz-replay
	$(MAKE) sanitize
	$(MAKE) format-check
	@echo "make test: every suite passed"

SOURCES := $(wildcard src/*.c src/*.h include/*.h tests/unit/*.c tests/unit/*.h tests/integration/*.c \
	     tests/fuzz/*.c tests/fuzz/*.h bench/*.c)
format:
	clang-format -i $(SOURCES)
format-check:
	clang-format --dry-run -Werror $(SOURCES)

$(O)/startstop: bench/startstop.c $(WRITE_O) $(CORE_O)
	$(CC) $(CFLAGS) -o $@ $< $(WRITE_O) $(CORE_O) $(LDFLAGS) $(LDLIBS)

$(O)/burst: bench/burst.c | $(O)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

$(O)/syncprobe: bench/syncprobe.c $(O)/kv.o $(O)/log.o | $(O)
	$(CC) $(CFLAGS) -o $@ $< $(O)/kv.o $(O)/log.o $(LDFLAGS) $(LDLIBS)

$(O)/fleetprobe: bench/fleetprobe.c $(O)/kv.o $(CORE_O)
	$(CC) $(CFLAGS) -o $@ $< $(O)/kv.o $(CORE_O) $(LDFLAGS) $(LDLIBS)

$(O)/cachebench: bench/cachebench.c $(CORE_O)
	$(CC) $(CFLAGS) -o $@ $< $(CORE_O) $(LDFLAGS) $(LDLIBS)

BENCH_TOOLS := $(O)/startstop $(O)/burst $(O)/syncprobe $(O)/cachebench $(O)/fleetprobe
bench: deps-bench all $(BENCH_TOOLS)
	bench/run

# libFuzzer targets; fuzz-replay runs each seed corpus once (fast, part of make test).
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Iinclude -g -O1 -fsanitize=fuzzer,address,undefined \
	       $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_SRC := $(CORE:%=src/%.c) $(WRITE:%=src/%.c)
$(O)/fuzz/%: tests/fuzz/fuzz_%.c tests/fuzz/fuzzreg.h $(FUZZ_SRC) $(wildcard include/*.h) src/reg_impl.h
	mkdir -p $(O)/fuzz
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC) $(LDLIBS)
fuzz-replay: $(FUZZ_TARGETS:%=$(O)/fuzz/%)
	@set -e; for t in $(FUZZ_TARGETS); do echo "== fuzz corpus $$t"; \
	  $(O)/fuzz/$$t -runs=0 tests/fuzz/corpus/$$t; done
fuzz: $(FUZZ_TARGETS:%=$(O)/fuzz/%)
	@set -e; for t in $(FUZZ_TARGETS); do mkdir -p $(O)/fuzz/corpus-$$t; \
	  $(O)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) $(O)/fuzz/corpus-$$t \
	    tests/fuzz/corpus/$$t; done

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin \
		$(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(O)/internald $(O)/internalctl $(DESTDIR)$(PREFIX)/sbin/
	install -m 644 man/internald.8 man/internalctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 man/internald.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/internald.7 $(DESTDIR)$(PREFIX)/share/man/man7/
	install -d $(DESTDIR)$(SYSTEMD_UNITDIR)
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' man/internald.service >$(DESTDIR)$(SYSTEMD_UNITDIR)/internald.service
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' man/internald-follow.service \
		>$(DESTDIR)$(SYSTEMD_UNITDIR)/internald-follow.service
	chmod 644 $(DESTDIR)$(SYSTEMD_UNITDIR)/internald.service \
		$(DESTDIR)$(SYSTEMD_UNITDIR)/internald-follow.service

clean:
	rm -rf build run
