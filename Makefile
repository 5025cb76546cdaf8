# vmd: a plain, non-recursive GNU Makefile.
#
#   make            build/vmd; installs nothing: a missing build dependency is named, with
#                   the apt-get line that installs it (scripts/install-deps --check)
#   make install    build/vmd, the unit, man pages, the JSON Schema, bash completion and
#                   the sysusers.d file of the VMM user
#                   under DESTDIR + PREFIX (default /usr/local); make uninstall removes them
#   make demo       run the daemon on examples/ (noop backend) and show vmd status
#   make deb        the Debian package, from a copy of the tree, in build/deb/
#   make check      every test, built with AddressSanitizer and UBSan, plus the format check;
#                   it and make demo install what they need (scripts/install-deps)
#   make fuzz       run every libFuzzer target for FUZZ_SECONDS each (default 60): the loader,
#                   the QMP stream, the VMMs' replies through the backends, vmd's own records
#   make bench      reaction latency, cold start, RSS and idle wakeups of the daemon; the
#                   same reaction with hung VMMs, and the watchdog; QEMU start against a
#                   plain launcher of the same command
#   make format     reformat the sources with clang-format 14
#
# WERROR=0 turns -Werror off (an escape hatch for newer compilers; check keeps it on).

CC ?= gcc
CLANG ?= clang
CLANG_FORMAT ?= clang-format-14
PYTHON ?= /usr/bin/python3
WERROR ?= 1
FUZZ_SECONDS ?= 60

B := build

# make V=1 shows whole command lines.
ifeq ($(V),1)
say :=
else
say = @printf '  %-6s %s\n' '$(1)' '$(2)';
endif
PKGS := yaml-0.1 jansson libsystemd libcurl libnl-route-3.0 libisofs-1

# Evaluated when a recipe runs, after build/.build-deps has found pkg-config and the -dev packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS)) -linotifytools -lpthread

WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
	-Wno-missing-field-initializers -Wformat=2 -Wno-format-nonliteral
BASE_CFLAGS = -std=gnu11 -D_GNU_SOURCE -Ireconciler -Ibackends $(WARN) $(PKG_CFLAGS) -MMD -MP
ifeq ($(WERROR),1)
BASE_CFLAGS += -Werror
endif
CFLAGS ?= -O2 -g
# dpkg-buildflags' CPPFLAGS and LDFLAGS (hardening) reach the build; empty by default.
CPPFLAGS ?=
LDFLAGS ?=
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

LIB_SRCS := \
	reconciler/util.c \
	reconciler/diag.c \
	reconciler/yaml-tree.c \
	reconciler/yaml-decode.c \
	reconciler/spec.c \
	reconciler/disk-image.c \
	reconciler/spec-check.c \
	reconciler/spec-yaml.c \
	reconciler/spec-yaml-provision.c \
	reconciler/spec-provision.c \
	reconciler/probe-spec.c \
	reconciler/after-spec.c \
	reconciler/sandbox-dir.c \
	reconciler/sandbox-file.c \
	reconciler/source-revision.c \
	reconciler/spec-json.c \
	reconciler/hashmap.c \
	reconciler/prioq.c \
	reconciler/plan.c \
	reconciler/log.c \
	reconciler/status.c \
	reconciler/status-line.c \
	reconciler/events.c \
	reconciler/desired.c \
	reconciler/deletion-guard.c \
	reconciler/host-systemd.c \
	reconciler/vm-scope.c \
	reconciler/telemetry.c \
	reconciler/host-ports.c \
	reconciler/ordering.c \
	reconciler/neigh.c \
	reconciler/addresses.c \
	reconciler/image-copies.c \
	reconciler/snapshot.c \
	reconciler/suspend.c \
	reconciler/template.c \
	reconciler/probe.c \
	reconciler/rollout.c \
	reconciler/idle.c \
	reconciler/executor.c \
	reconciler/watcher.c \
	reconciler/manager.c \
	reconciler/cli-validate.c \
	reconciler/cli-daemon.c \
	reconciler/cli-status.c \
	reconciler/cli-plan.c \
	reconciler/cli-approve.c \
	reconciler/cli-console.c \
	reconciler/cli-wait.c \
	reconciler/cli-events.c \
	reconciler/cli-wake.c \
	backends/backend.c \
	backends/noop.c \
	backends/vmm.c \
	backends/console.c \
	backends/guest-agent.c \
	backends/vmm-vm.c \
	backends/vmm-start.c \
	backends/vmm-pass.c \
	backends/vmm-files.c \
	backends/vmm-job-report.c \
	backends/vmm-job-end.c \
	backends/vmm-stray.c \
	backends/vmm-ops.c \
	backends/vmm-idle.c \
	backends/vmm-job.c \
	backends/vmm-image.c \
	backends/vmm-worker.c \
	backends/vmm-boot.c \
	backends/vmm-api.c \
	backends/http-unix.c \
	backends/http-fds.c \
	backends/qmp.c \
	backends/provision.c \
	backends/qemu-argv.c \
	backends/qemu.c \
	backends/qemu-hotplug.c \
	backends/qemu-fds.c \
	backends/qemu-snapshot.c \
	backends/netdev.c \
	backends/cloud-hypervisor.c \
	backends/cloud-hypervisor-snapshot.c \
	backends/firecracker.c \
	backends/firecracker-snapshot.c \
	backends/firecracker-jail.c
MAIN_SRC := reconciler/main.c

TESTS := util hashmap list prioq status desired console yaml-tree yaml-decode spec disk-image spec-check spec-yaml spec-json provision sandbox-dir sandbox-file plan backend-noop vmm http-unix http-unix-loop http-fds cloud-hypervisor firecracker qmp qemu-argv qemu qemu-net qemu-image qemu-provision qemu-sim qemu-user qemu-fds vmm-user vmm-net hung-vmm vm-safety host-ports neigh guest-agent readiness rollout ordering events source-revision watcher \
	cli-validate schema daemon state-dir files deletion-guard vm-scope journal units install systemd readme metrics man fleet \
	suspend vmm-suspend vmm-suspend-daemon idle template ch-image files-step vmgenid

# libFuzzer targets, tests/fuzz-NAME.c; make check replays the seeds of each (tests/run).
FUZZ_TARGETS := spec-yaml qmp vmm-reply records
FUZZ_BINS := $(FUZZ_TARGETS:%=$(B)/fuzz/fuzz-%)

OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o)
SAN_OBJS := $(LIB_SRCS:%.c=$(B)/san/%.o)
TEST_BINS := $(TESTS:%=$(B)/san/tests/test-%)

.PHONY: all check test format format-check fuzz fuzz-build clean demo bench install uninstall deb
.DELETE_ON_ERROR:
.SECONDARY:

all: $(B)/vmd

# make builds only: a missing build dependency fails here, naming its apt-get line.
$(B)/.build-deps: scripts/install-deps
	@mkdir -p $(B)
	@scripts/install-deps --check
	@touch $@

# What the tests and the demo need besides: installed, since make check and make demo may.
$(B)/.deps: scripts/install-deps
	@mkdir -p $(B)
	scripts/install-deps
	@touch $@

$(B)/obj/%.o: %.c | $(B)/.build-deps
	@mkdir -p $(dir $@)
	$(call say,CC,$@) $(CC) $(BASE_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(B)/san/%.o: %.c | $(B)/.deps
	@mkdir -p $(dir $@)
	$(call say,CC,$@) $(CC) $(BASE_CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(B)/vmd: $(OBJS) $(B)/obj/$(MAIN_SRC:.c=.o)
	$(call say,LD,$@) $(CC) $(CFLAGS) $(LDFLAGS) $^ $(PKG_LIBS) -o $@

$(B)/san/vmd: $(SAN_OBJS) $(B)/san/$(MAIN_SRC:.c=.o)
	$(call say,LD,$@) $(CC) $(SAN_FLAGS) $^ $(PKG_LIBS) -o $@

TEST_HELPERS := $(B)/san/tests/helpers.o $(B)/san/tests/daemon-fixture.o \
	$(B)/san/tests/manager-fixture.o $(B)/san/tests/qemu-fixture.o \
	$(B)/san/tests/net-fixture.o

$(B)/san/tests/test-%: $(B)/san/tests/test-%.o $(TEST_HELPERS) $(SAN_OBJS)
	$(call say,LD,$@) $(CC) $(SAN_FLAGS) $^ $(PKG_LIBS) -lcmocka -o $@

# The scripted HTTP server and what goes with it, for the tests of the HTTP transports only.
HTTP_TESTS := http-unix http-unix-loop http-fds
$(HTTP_TESTS:%=$(B)/san/tests/test-%): $(B)/san/tests/http-fixture.o

# The test guest: Debian's kernel and busybox (tests/guest/build).
$(B)/guest/vmlinux: tests/guest/build tests/guest/init | $(B)/.deps
	$(call say,GUEST,$(B)/guest) tests/guest/build $(B)/guest >/dev/null

# yaml-language-server, for the editor test (tests/test-schema.c): from npm, under build/.
$(B)/npm/.stamp: scripts/install-yaml-language-server
	scripts/install-yaml-language-server $(B)/npm
	@touch $@

# test-systemd installs the package (make deb) in a booted Debian 12 (tests/systemd/),
# whose root file system is debootstrapped once into build/systemd.
test: $(TEST_BINS) $(B)/san/vmd $(FUZZ_BINS) $(B)/guest/vmlinux $(B)/deb/vmd.deb-path $(B)/npm/.stamp
	VMD_SRCDIR=$(CURDIR) VMD_BIN=$(CURDIR)/$(B)/san/vmd PYTHON=$(PYTHON) \
		VMD_GUEST=$(CURDIR)/$(B)/guest VMD_DEB=$$(cat $(B)/deb/vmd.deb-path) \
		VMD_SYSTEMD_CACHE=$(CURDIR)/$(B)/systemd \
		tests/run $(TEST_BINS) $(FUZZ_BINS:%=--fuzz %)

check: format-check test

demo: $(B)/vmd | $(B)/.deps
	scripts/demo

# Figures, not tests: the optimised build, against baselines measured in the same run.
$(B)/bench/bench-daemon: tests/bench-daemon.c | $(B)/.deps
	@mkdir -p $(dir $@)
	$(call say,CC,$@) $(CC) -std=gnu11 -O2 -g $(WARN) $< $(PKG_LIBS) -o $@

bench: $(B)/vmd $(B)/bench/bench-daemon $(B)/guest/vmlinux
	$(B)/bench/bench-daemon $(CURDIR)/$(B)/vmd
	$(PYTHON) tests/bench-hung.py $(CURDIR)/$(B)/vmd $(CURDIR)
	$(PYTHON) tests/bench-qemu.py $(CURDIR)/$(B)/vmd $(CURDIR)/$(B)/guest
	$(PYTHON) tests/bench-image.py $(CURDIR)/$(B)/vmd $(CURDIR)/$(B)/guest
	$(PYTHON) tests/bench-suspend.py $(CURDIR)/$(B)/vmd $(CURDIR)/$(B)/guest

C_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find reconciler backends tests -name '*.[ch]')

format:
	$(CLANG_FORMAT) -i $(C_SOURCES)

format-check: | $(B)/.deps
	$(CLANG_FORMAT) --dry-run --Werror $(C_SOURCES)

# libFuzzer needs clang; each target links the sources directly, not the gcc objects.
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_COMMON := tests/fuzz-common.c

$(B)/fuzz/fuzz-%: tests/fuzz-%.c $(FUZZ_COMMON) tests/fuzz-common.h $(LIB_SRCS) \
		$(wildcard reconciler/*.h backends/*.h) | $(B)/.deps
	@mkdir -p $(dir $@)
	$(call say,FUZZ,$@) $(CLANG) -std=gnu11 -D_GNU_SOURCE -Ireconciler -Ibackends -Itests \
		$(PKG_CFLAGS) $(FUZZ_FLAGS) $< $(FUZZ_COMMON) $(LIB_SRCS) $(PKG_LIBS) -o $@

fuzz-build: $(FUZZ_BINS)

# New inputs go to build/fuzz/corpus-NAME; the checked-in seeds (tests/fuzz/fuzz-NAME, and
# tests/spec for the loader) are only read. vmd's log is silenced (stderr closed).
FUZZ_RUN = -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=2048 -close_fd_mask=2

fuzz: $(FUZZ_BINS)
	@mkdir -p $(FUZZ_TARGETS:%=$(B)/fuzz/corpus-%)
	$(B)/fuzz/fuzz-spec-yaml $(FUZZ_RUN) -max_len=65536 $(B)/fuzz/corpus-spec-yaml \
		tests/spec/good tests/spec/bad
	$(B)/fuzz/fuzz-qmp $(FUZZ_RUN) -max_len=16384 $(B)/fuzz/corpus-qmp tests/fuzz/fuzz-qmp
	$(B)/fuzz/fuzz-vmm-reply $(FUZZ_RUN) -max_len=16384 $(B)/fuzz/corpus-vmm-reply \
		tests/fuzz/fuzz-vmm-reply
	$(B)/fuzz/fuzz-records $(FUZZ_RUN) -max_len=16384 $(B)/fuzz/corpus-records \
		tests/fuzz/fuzz-records

# make install: PREFIX (default /usr/local) and DESTDIR as usual; the units go to UNITDIR
# (the Debian package: PREFIX=/usr UNITDIR=/lib/systemd/system), with ExecStart= pointing
# at BINDIR. tests/test-install.c checks the list and that make uninstall leaves nothing.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/vmd
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
# journalctl --catalog reads /usr/lib and /usr/local/lib; systemd's dpkg trigger updates it.
CATALOGDIR ?= $(PREFIX)/lib/systemd/catalog
# systemd-sysusers reads /usr/lib/sysusers.d and /usr/local/lib/sysusers.d: the VMM user.
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
# The binary installed: tests install the sanitizer build they already have.
VMD_BINARY ?= $(B)/vmd

UNITS := $(wildcard units/*.service units/*.socket units/*.timer)
MAN5 := $(wildcard docs/*.5)
MAN8 := $(wildcard docs/*.8)
SCHEMAS := $(wildcard schemas/*.json)
# Each installed file, and the directories make uninstall removes when they are left empty.
INSTALLED = $(BINDIR)/vmd $(UNITS:units/%=$(UNITDIR)/%) $(MAN5:docs/%=$(MANDIR)/man5/%) \
	$(MAN8:docs/%=$(MANDIR)/man8/%) $(SCHEMAS:schemas/%=$(DATADIR)/%) $(BASHCOMPDIR)/vmd \
	$(CATALOGDIR)/vmd.catalog $(SYSUSERSDIR)/vmd.conf
INSTALLED_DIRS = $(DATADIR)

install: $(VMD_BINARY)
	install -D -m 0755 $(VMD_BINARY) $(DESTDIR)$(BINDIR)/vmd
	install -d $(DESTDIR)$(UNITDIR)
	for u in $(UNITS); do \
		sed 's|/usr/bin/vmd|$(BINDIR)/vmd|g' $$u >$(DESTDIR)$(UNITDIR)/$${u#units/} && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$${u#units/} || exit 1; \
	done
	$(if $(MAN5),install -D -m 0644 -t $(DESTDIR)$(MANDIR)/man5 $(MAN5))
	$(if $(MAN8),install -D -m 0644 -t $(DESTDIR)$(MANDIR)/man8 $(MAN8))
	install -D -m 0644 -t $(DESTDIR)$(DATADIR) $(SCHEMAS)
	install -D -m 0644 completions/vmd.bash $(DESTDIR)$(BASHCOMPDIR)/vmd
	install -D -m 0644 catalog/vmd.catalog $(DESTDIR)$(CATALOGDIR)/vmd.catalog
	install -D -m 0644 sysusers/vmd.conf $(DESTDIR)$(SYSUSERSDIR)/vmd.conf

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(addprefix $(DESTDIR),$(INSTALLED_DIRS)) 2>/dev/null

# The Debian package, built from a copy of the tree (dpkg-buildpackage writes beside the
# tree it builds): build/deb/vmd_VERSION_ARCH.deb, named in build/deb/vmd.deb-path.
DEB_VERSION = $(shell dpkg-parsechangelog -l debian/changelog -S Version)
DEB_SRC = $(B)/deb/vmd-$(DEB_VERSION)

deb: $(B)/deb/vmd.deb-path

$(B)/deb/vmd.deb-path: $(wildcard $(shell git ls-files -co --exclude-standard 2>/dev/null)) | $(B)/.deps
	rm -rf $(B)/deb
	mkdir -p $(DEB_SRC)
	tar -c --exclude=./build --exclude=./.git -f - . | tar -x -C $(DEB_SRC)
	$(call say,DEB,$(B)/deb) cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b >../build.log 2>&1 || \
		{ tail -n 40 ../build.log; exit 1; }
	ls $(CURDIR)/$(B)/deb/vmd_$(DEB_VERSION)_*.deb >$@

clean:
	rm -rf $(B)

# Only the compilers' files: build/systemd holds a root file system, with its own *.d dirs.
-include $(shell find $(B)/obj $(B)/san -name '*.d' -type f 2>/dev/null)
