# crucible-c: replicated, encrypted network block store.
#   make            build crucible.so and crucible-downstairs
#   make check      build and run every test (last line: N passed, N failed)
#   make run        start a local volume: three downstairs + nbdkit
#   make soak       the randomized whole-system test: SEED=N SECONDS=S
#   make install    PREFIX=/usr/local DESTDIR=
#   make check-vm   boot a Linux guest under qemu on a volume (tests/vm)
#   make SANITIZE=1 check   the same under ASan+UBSan

PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
PKGS     := nbdkit libcrypto libuv sqlite3 libxxhash

B        := build
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 -Wall -Wextra -Werror -fPIC -pthread \
            -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE
# Deferred (=): on a fresh machine the packages arrive during this very
# make run (the $(B)/.deps step), after the Makefile was parsed.
LDLIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
CPPFLAGS += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
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
PLUGIN_OBJ := $(PLUGIN_SRC:%.c=$(B)/%.o)
DS_OBJ     := $(DS_SRC:%.c=$(B)/%.o)
DS_LIB_OBJ := $(filter-out $(B)/downstairs/main.o,$(DS_OBJ))
UP_LIB_OBJ := $(filter-out $(B)/plugin/crucible.o,$(PLUGIN_OBJ))
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(B)/tools/%) $(B)/tools/crucible-sim
SIM_SRC    := $(wildcard tests/tools/sim/*.c)

.PHONY: all deps check unit run soak install clean bench bench-smoke bench-link bench-resync check-vm
all: $(B)/.deps crucible.so crucible-downstairs crucible-admin

# Install missing Debian packages (as root) or print the apt-get line.
$(B)/.deps: scripts/deps.sh
	@mkdir -p $(B)
	@sh scripts/deps.sh
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

crucible.so: $(PLUGIN_OBJ) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(LDLIBS)

crucible-downstairs: $(DS_OBJ) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The admin socket's client (admin/): libc only.
crucible-admin: $(B)/admin/crucible-admin.o
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
                  $(filter-out downstairs/main.c,$(DS_SRC)))
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
	install -m 755 crucible-downstairs $(DESTDIR)$(PREFIX)/bin/
	install -m 755 crucible-admin $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/crucible-admin.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 755 crucible.so $(DESTDIR)$(PLUGINDIR)/nbdkit-crucible-plugin.so
	install -m 644 man/nbdkit-crucible-plugin.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/crucible-downstairs.8 $(DESTDIR)$(MANDIR)/man8/

# Boot a Linux guest under qemu on a crucible volume (not part of check).
check-vm: all
	@bash tests/vm/check-vm.sh

clean:
	rm -rf $(B) crucible.so crucible-downstairs crucible-admin

-include $(shell find $(B) -name '*.d' 2>/dev/null)
