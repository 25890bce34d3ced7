# crucible-c: replicated, encrypted network block store.
#   make            build crucible.so, crucible-downstairs and crucible-admin
#   make check      build and run every test (last line: N passed, N failed)
#   make run        start a local volume: three downstairs + nbdkit
#   make soak       the randomized whole-system test: SEED=N SECONDS=S
#   make install    PREFIX=/usr/local DESTDIR=
#   make check-vm   boot a Linux guest under qemu on a volume (tests/vm)
#   make SANITIZE=1 check   the same under ASan+UBSan
#   make cross ARCH=arm64   crucible.so and crucible-downstairs for aarch64
#                           in build/arm64/ (Debian's cross gcc, multiarch)
#   make check-arm64        its unit tests and a mixed volume under qemu-user
#   make check-unsigned-char   unit tests built with -funsigned-char
#   make format     clang-format every C file in place (test-format checks)

PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
PKGS     := nbdkit libcrypto libuv sqlite3 libxxhash
PKG_CONFIG ?= pkg-config
# The step that installs the build's packages ($(B)/.deps): a cross build
# runs scripts/cross-deps.sh instead.
DEPS_SH  ?= scripts/deps.sh

B        := build
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Werror -fPIC -pthread \
            -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE
# Deferred (=): on a fresh machine the packages arrive during this very
# make run (the $(B)/.deps step), after the Makefile was parsed.
LDLIBS    = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lpthread
CPPFLAGS += $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
ifeq ($(SANITIZE),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

COMMON_SRC := $(wildcard common/*.c)
PLUGIN_SRC := $(wildcard plugin/*.c)
DS_SRC     := $(wildcard downstairs/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
TOOL_SRC   := $(wildcard tests/tools/*.c)

COMMON_OBJ := $(COMMON_SRC:%.c=$(B)/%.o)
COMMON_DS_OBJ := $(filter-out $(B)/common/crypt.o,$(COMMON_OBJ))
PLUGIN_OBJ := $(PLUGIN_SRC:%.c=$(B)/%.o)
DS_OBJ     := $(DS_SRC:%.c=$(B)/%.o)
# The command line (main.c and the subcommands, cli_*.c) is the daemon's
# alone: unit tests and fuzz harnesses link the rest (cli.c included).
DS_CLI_SRC := downstairs/main.c $(wildcard downstairs/cli_*.c)
DS_LIB_OBJ := $(filter-out $(DS_CLI_SRC:%.c=$(B)/%.o),$(DS_OBJ))
UP_LIB_OBJ := $(filter-out $(B)/plugin/crucible.o,$(PLUGIN_OBJ))
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(B)/tools/%) $(B)/tools/crucible-sim
SIM_SRC    := $(wildcard tests/tools/sim/*.c)

.PHONY: all deps check unit run soak install clean format bench bench-smoke bench-link bench-resync check-vm
all: $(B)/.deps crucible.so crucible-downstairs crucible-admin

# Install missing Debian packages (as root) or print the apt-get line.
$(B)/.deps: $(DEPS_SH)
	@mkdir -p $(B)
	@sh $(DEPS_SH)
	@touch $@
deps:
	@sh scripts/deps.sh

# Rebuild everything when the flags change (SANITIZE=1 and back).
$(B)/.flags: FORCE
	@mkdir -p $(B)
	@echo '$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || \
	  echo '$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS)' > $@
FORCE:

$(B)/%.o: %.c $(B)/.flags $(B)/.deps
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# $(B)/...: the same products of another build directory (make cross).
crucible.so $(B)/crucible.so: $(PLUGIN_OBJ) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(LDLIBS)

# The downstairs never holds a key: it links no cipher (common/crypt.c).
crucible-downstairs $(B)/crucible-downstairs: $(DS_OBJ) $(COMMON_DS_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The admin socket's client: one file, no library.
crucible-admin $(B)/crucible-admin: $(B)/admin/crucible-admin.o
	$(CC) $(LDFLAGS) -o $@ $^

$(B)/tests/%: tests/unit/%.c $(COMMON_OBJ) $(DS_LIB_OBJ) $(UP_LIB_OBJ) $(B)/.flags
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(COMMON_OBJ) \
	  $(DS_LIB_OBJ) $(UP_LIB_OBJ) $(LDLIBS)

$(B)/tools/%: tests/tools/%.c $(COMMON_OBJ) $(B)/.flags
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(COMMON_OBJ) $(LDLIBS) -lnbd

# The simulation driver: one binary from tests/tools/sim/.
$(B)/tools/crucible-sim: $(SIM_SRC) tests/tools/sim/sim.h $(COMMON_OBJ) $(B)/.flags
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $(SIM_SRC) $(COMMON_OBJ) \
	  $(LDLIBS) -lnbd

unit: $(UNIT_BIN)

check: all $(UNIT_BIN) $(TOOL_BIN)
	@SANITIZE=$(SANITIZE) sh tests/run-tests.sh

run: all
	@bash scripts/run-local.sh

# One style: clang-format 14 with the tree's .clang-format (test-format).
FORMAT_DIRS := common plugin downstairs admin bench tests/unit tests/tools \
               tests/fuzz
format:
	find $(FORMAT_DIRS) -name '*.[ch]' -exec clang-format -i {} +

# The randomized whole-system test for as long as asked:
#   make soak [SEED=N] [SECONDS=S] [SIM_ARGS="--no flip"]
# (SEED default: random, printed; SECONDS default 600.)
SEED    ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
# Expanded once: the seed printed is the seed run.
SEED    := $(SEED)
SECONDS ?= 600
soak: all $(B)/tools/crucible-sim
	@echo "soak: SEED=$(SEED) SECONDS=$(SECONDS) $(SIM_ARGS)"
	@SIM_SEED=$(SEED) SIM_SECONDS=$(SECONDS) SIM_ARGS="$(SIM_ARGS)" \
	  bash tests/e2e/test-sim.sh

bench: all $(B)/bench/prims
	@bash bench/bench.sh
# The per-primitive cost model (bench/prims.c), only for `make bench`.
$(B)/bench/prims: bench/prims.c $(B)/.flags $(B)/.deps
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)
bench-smoke: all
	@bash bench/bench.sh --smoke
bench-link: all
	@bash bench/bench-link.sh
bench-resync: all
	@bash bench/resync.sh

# libFuzzer harnesses (tests/fuzz/) with clang, ASan and UBSan, built in
# build/fuzz/; `make fuzz` runs each for FUZZ_SECONDS (tests/e2e/test-fuzz.sh).
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FB           := $(B)/fuzz
FUZZ_CFLAGS  := -g -O1 -std=gnu11 -Wall -Wextra -Werror -pthread \
                -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE -fno-omit-frame-pointer \
                -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=undefined
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,$(FB)/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIB_OBJ := $(patsubst %.c,$(FB)/obj/%.o,$(COMMON_SRC) \
                  $(filter-out $(DS_CLI_SRC),$(DS_SRC)))
.PHONY: fuzz fuzz-build
$(FB)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<
$(FB)/libcrucible.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
$(FB)/fuzz_%: tests/fuzz/fuzz_%.c $(FB)/libcrucible.a
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -o $@ $< \
	  $(FB)/libcrucible.a $(LDLIBS)
fuzz-build: $(FUZZ_BIN)
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/e2e/test-fuzz.sh

PLUGINDIR = $(shell pkg-config --variable=plugindir nbdkit 2>/dev/null || echo $(PREFIX)/lib/nbdkit/plugins)
MANDIR    = $(PREFIX)/share/man
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PLUGINDIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 755 crucible-downstairs crucible-admin $(DESTDIR)$(PREFIX)/bin/
	install -m 755 crucible.so $(DESTDIR)$(PLUGINDIR)/nbdkit-crucible-plugin.so
	install -m 644 man/nbdkit-crucible-plugin.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/crucible-downstairs.8 man/crucible-admin.8 \
	  $(DESTDIR)$(MANDIR)/man8/

# Cross build (docs: README "Raspberry Pi").  A second make of this file
# with B=build/$(ARCH), the cross compiler and the target's pkg-config
# files (Debian multiarch); nbdkit's plugin header is arch-independent
# and its nbdkit.pc empty, so nbdkit is left out of the target's PKGS.
# Native builds are untouched: nothing of build/$(ARCH) is linked into
# them.  Never sanitized (ASan does not run under qemu-user).
ARCH     ?= arm64
ifeq ($(ARCH),arm64)
TRIPLE   := aarch64-linux-gnu
QEMU_ARCH := aarch64
endif
XB       := $(B)/$(ARCH)
XMAKE     = PKG_CONFIG_LIBDIR=/usr/lib/$(TRIPLE)/pkgconfig:/usr/share/pkgconfig \
            ARCH=$(ARCH) $(MAKE) --no-print-directory B=$(XB) SANITIZE= \
            CC=$(TRIPLE)-gcc PKGS="libcrypto libuv sqlite3 libxxhash" \
            DEPS_SH=scripts/cross-deps.sh
.PHONY: cross cross-deps cross-unit check-arm64 check-unsigned-char
cross-deps:
	@ARCH=$(ARCH) sh scripts/cross-deps.sh
cross:
	@test -n "$(TRIPLE)" || { echo "cross: ARCH=$(ARCH) unknown (arm64)" >&2; exit 2; }
	+@$(XMAKE) $(XB)/crucible.so $(XB)/crucible-downstairs
cross-unit: cross
	+@$(XMAKE) $(UNIT_BIN:$(B)/%=$(XB)/%)
# The target's unit tests under qemu-user, then the mixed volume
# (native nbdkit + crucible.so, downstairs of both architectures).
check-arm64: all cross-unit
	@XB=$(XB) QEMU_ARCH=$(QEMU_ARCH) \
	  bash tests/arm64/run.sh

# The unit tests built with -funsigned-char (arm64's char) on this host,
# in build/uchar/, so char-signedness bugs show on x86 (part of check).
UB       := $(B)/uchar
check-unsigned-char: $(B)/.deps
	+@CFLAGS="-O2 -g -funsigned-char" $(MAKE) --no-print-directory -s \
	  B=$(UB) $(UNIT_BIN:$(B)/%=$(UB)/%)
	@sh tests/arm64/unit.sh $(UB)/tests

# Boot a Linux guest under qemu on a crucible volume (not part of check).
check-vm: all
	@bash tests/vm/check-vm.sh

clean:
	rm -rf $(B) crucible.so crucible-downstairs crucible-admin

-include $(shell find $(B) -name '*.d' 2>/dev/null)
