/* nbdverify: a data-verification workload over NBD for the failure tests.
 *
 *   nbdverify --uri URI --state FILE --seed N write [--count WRITES]
 *             [--block-size 4096] [--blocks N] [--flush-every K]
 *             [--duration SECS] [--random] [--tolerate-errors]
 *   nbdverify --uri URI --state FILE verify [--unflushed-ok]
 *
 * write covers blocks [0, --blocks) (default: the whole export) in order,
 * or at random with --random, until --count writes (default: one pass, or
 * unlimited with --duration) or --duration seconds; --flush-every K
 * flushes after every K writes and at the end (not when stopped by a
 * signal).  A second write run continues the state file (same seed).
 * --tolerate-errors counts failed writes and flushes instead of stopping,
 * and reconnects if the connection died.  Beware: after a reconnect, a
 * write left in flight on the old connection may in theory still land
 * later, over a newer gen (NBD orders nothing across connections).
 *
 * Block format.  Every block written starts with a 48-byte little-endian
 * header: magic "NBDVRFY1", lba u64, gen u64, seed u64, block size u32,
 * zero u32, sum u64 (a hash of the other header bytes and the filler); the
 * rest is filler generated from (seed, lba, gen).  Any block read back is
 * therefore classified exactly: zeros (never written), a valid block of
 * some (lba, gen), or garbage (torn, corrupt, foreign seed).
 *
 * State file.  Per block it records the last generation acked (the write
 * returned success), the last generation covered by a completed flush, and
 * the last generation issued (a write that failed may or may not have
 * landed).  Invariant: flushed <= acked <= issued.  The file is replaced
 * atomically (temp + rename) after every flush and at exit, including on
 * SIGTERM/SIGINT (which stop a run cleanly); it is not fsynced, because
 * it only has to survive the death of the storage under test, not of this
 * machine.  SIGKILL loses the writes acked since the last save, so stop
 * the tool with SIGTERM.
 *
 * Verification.  A block must read as a gen in [lo, issued] of its own lba
 * (gen 0 = zeros) where lo = acked, or lo = flushed with --unflushed-ok.
 * Without errors issued == acked, so the block must be exactly its last
 * acked gen.  Exit status: 0 all good, 1 bad data or I/O failure, 2 usage.
 */
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#define HDR_MAGIC "NBDVRFY1"
#define HDR_SIZE 48
#define HDR_SUM_OFF 40
#define STATE_MAGIC "NBDVSTA1"
#define STATE_VERSION 1
#define MAX_BLOCK_SIZE (1 << 20)
#define READ_CHUNK (1 << 20) /* verify reads this many bytes at once */
#define MAX_REPORT 10        /* bad blocks printed by verify */
#define RECONNECT_WAIT 30.0  /* seconds of failed reconnects, at most */

/* Per-block state, saved to the state file as three u32 (native order:
 * the file never leaves this machine). */
struct blk {
  uint32_t acked, flushed, issued;
};

/* The run's state.  The fields up to blk are the state file's header,
 * written as they lie in memory (STATE_HDR bytes, no padding); the
 * nblocks struct blk follow it. */
struct state {
  char magic[8];    /* STATE_MAGIC */
  uint32_t version; /* STATE_VERSION */
  uint32_t bs;      /* block size */
  uint64_t nblocks; /* blocks in the test area, from lba 0 */
  uint64_t seed;
  uint64_t cursor; /* next lba of a sequential write run */
  uint64_t writes; /* writes attempted over all runs */
  struct blk *blk; /* nblocks entries, owned */
  uint64_t *dirty; /* lbas with acked > flushed, owned */
  uint64_t ndirty;
};
#define STATE_HDR offsetof(struct state, blk)
_Static_assert(STATE_HDR == 48, "state header has padding");

struct opts {
  const char *uri, *state, *cmd;
  uint64_t seed, count, blocks, flush_every;
  double duration;
  uint32_t bs;
  bool have_seed, have_bs, random, tolerate, unflushed_ok;
};

enum cls { C_ZERO, C_VALID, C_GARBAGE };

/* True once SIGTERM or SIGINT is pending: finish up and exit.  Both stay
 * blocked (see main) and are polled between requests, because libnbd's
 * synchronous calls fail on EINTR with the request still in flight.  The
 * price: a hung server holds nbdverify until SIGKILL. */
static bool stop_requested(void)
{
  sigset_t pending;
  return sigpending(&pending) == 0 &&
         (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT));
}

/* Print usage and exit 2. */
static void __attribute__((noreturn)) usage(void)
{
  fprintf(stderr, "usage: nbdverify --uri URI --state FILE --seed N write "
                  "[--count WRITES]\n"
                  "         [--block-size 4096] [--blocks N] [--flush-every K] "
                  "[--duration SECS]\n"
                  "         [--random] [--tolerate-errors]\n"
                  "       nbdverify --uri URI --state FILE verify "
                  "[--unflushed-ok]\n");
  exit(2);
}

/* Parse an unsigned number or exit 2. */
static uint64_t parse_u64(const char *s, const char *what)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || end == s || *end || *s == '-') {
    fprintf(stderr, "nbdverify: bad %s: %s\n", what, s);
    exit(2);
  }
  return v;
}

/* Fill *o from the command line; exit 2 on any error. */
static void parse_args(int argc, char **argv, struct opts *o)
{
  static const struct option lo[] = {
      {"uri", 1, 0, 'u'},          {"state", 1, 0, 's'},
      {"seed", 1, 0, 'S'},         {"count", 1, 0, 'c'},
      {"block-size", 1, 0, 'b'},   {"blocks", 1, 0, 'n'},
      {"flush-every", 1, 0, 'f'},  {"duration", 1, 0, 'd'},
      {"random", 0, 0, 'r'},       {"tolerate-errors", 0, 0, 't'},
      {"unflushed-ok", 0, 0, 'o'}, {0, 0, 0, 0}};
  int c;
  char *end;

  memset(o, 0, sizeof *o);
  o->bs = 4096;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'u': o->uri = optarg; break;
    case 's': o->state = optarg; break;
    case 'S':
      o->seed = parse_u64(optarg, "seed");
      o->have_seed = 1;
      break;
    case 'c': o->count = parse_u64(optarg, "count"); break;
    case 'n': o->blocks = parse_u64(optarg, "blocks"); break;
    case 'f': o->flush_every = parse_u64(optarg, "flush-every"); break;
    case 'r': o->random = true; break;
    case 't': o->tolerate = true; break;
    case 'o': o->unflushed_ok = true; break;
    case 'b':
      o->bs = parse_u64(optarg, "block-size");
      o->have_bs = true;
      break;
    case 'd':
      o->duration = strtod(optarg, &end);
      if (*end || o->duration <= 0)
        usage();
      break;
    default: usage();
    }
  }
  if (optind != argc - 1 || !o->uri || !o->state)
    usage();
  o->cmd = argv[optind];
  if (o->bs < 512 || o->bs > MAX_BLOCK_SIZE || o->bs % 512) {
    fprintf(stderr, "nbdverify: block size must be 512..1M, 512-aligned\n");
    exit(2);
  }
}

/* Monotonic time in seconds. */
static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* splitmix64 finalizer: a cheap, well-mixed 64-bit hash. */
static uint64_t mix64(uint64_t x)
{
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* Little-endian 64-bit load and store at any alignment. */
static uint64_t get64(const uint8_t *p)
{
  uint64_t v;
  memcpy(&v, p, 8);
  return le64toh(v);
}

static void put64(uint8_t *p, uint64_t v)
{
  v = htole64(v);
  memcpy(p, &v, 8);
}

/* Hash of a block except its sum field. */
static uint64_t block_sum(const uint8_t *buf, uint32_t bs)
{
  uint64_t h = 0x6e62647672667931ULL;
  for (uint32_t i = 0; i < bs; i += 8)
    if (i != HDR_SUM_OFF)
      h = mix64(h ^ get64(buf + i));
  return h;
}

/* Write into buf the block that (lba, gen) of this seed must contain. */
static void fill_block(uint8_t *buf, uint32_t bs, uint64_t lba, uint64_t gen,
                       uint64_t seed)
{
  uint64_t x = mix64(seed ^ mix64(lba ^ mix64(gen)));

  memcpy(buf, HDR_MAGIC, 8);
  put64(buf + 8, lba);
  put64(buf + 16, gen);
  put64(buf + 24, seed);
  put64(buf + 32, bs); /* u32 block size, then u32 zero */
  for (uint32_t i = HDR_SIZE; i < bs; i += 8)
    put64(buf + i, mix64(x += 0x9e3779b97f4a7c15ULL));
  put64(buf + HDR_SUM_OFF, block_sum(buf, bs));
}

/* Classify one block read back; for C_VALID set *lba and *gen.  scratch
 * is a bs-sized buffer.  A block is valid only if it is byte for byte the
 * block its header names, so torn or corrupt blocks are garbage. */
static enum cls classify(const uint8_t *buf, uint8_t *scratch,
                         const struct state *st, uint64_t *lba, uint64_t *gen)
{
  if (buf[0] == 0 && memcmp(buf, buf + 1, st->bs - 1) == 0)
    return C_ZERO;
  if (memcmp(buf, HDR_MAGIC, 8) != 0 ||
      get64(buf + HDR_SUM_OFF) != block_sum(buf, st->bs))
    return C_GARBAGE;
  *lba = get64(buf + 8);
  *gen = get64(buf + 16);
  fill_block(scratch, st->bs, *lba, *gen, st->seed);
  if (*gen == 0 || memcmp(buf, scratch, st->bs) != 0)
    return C_GARBAGE; /* also: other seed or block size */
  return C_VALID;
}

/* Allocate the arrays of *st for its nblocks.  Returns 0 or -ENOMEM. */
static int state_alloc(struct state *st)
{
  if (st->nblocks == 0 || st->nblocks > (1ULL << 32))
    return -ENOMEM;
  st->blk = calloc(st->nblocks, sizeof *st->blk);
  st->dirty = calloc(st->nblocks, sizeof *st->dirty);
  st->ndirty = 0;
  return st->blk && st->dirty ? 0 : -ENOMEM;
}

/* Read the state file into *st.  Returns 0, -ENOENT, or -EINVAL. */
static int state_load(const char *path, struct state *st)
{
  FILE *f = fopen(path, "rb");
  int r = -EINVAL;

  if (!f)
    return errno == ENOENT ? -ENOENT : -EINVAL;
  if (fread(st, STATE_HDR, 1, f) != 1 || memcmp(st->magic, STATE_MAGIC, 8) ||
      st->version != STATE_VERSION || state_alloc(st) < 0 ||
      fread(st->blk, sizeof *st->blk, st->nblocks, f) != st->nblocks)
    goto out;
  for (uint64_t i = 0; i < st->nblocks; i++) {
    const struct blk *b = &st->blk[i];
    if (b->flushed > b->acked || b->acked > b->issued)
      goto out;
    if (b->acked > b->flushed)
      st->dirty[st->ndirty++] = i;
  }
  r = 0;
out:
  fclose(f);
  return r;
}

/* Replace the state file atomically.  Returns 0 or -errno. */
static int state_save(const char *path, const struct state *st)
{
  char tmp[4096];
  FILE *f;
  int ok;

  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp)
    return -ENAMETOOLONG;
  if (!(f = fopen(tmp, "wb")))
    return -errno;
  ok = fwrite(st, STATE_HDR, 1, f) == 1 &&
       fwrite(st->blk, sizeof *st->blk, st->nblocks, f) == st->nblocks;
  if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
    int e = errno ? errno : EIO;
    unlink(tmp);
    return -e;
  }
  return 0;
}

/* Connect to the URI; returns a handle or NULL (error printed). */
static struct nbd_handle *nv_connect(const char *uri)
{
  struct nbd_handle *h = nbd_create();
  if (h && nbd_connect_uri(h, uri) == 0)
    return h;
  fprintf(stderr, "nbdverify: %s: %s\n", uri, nbd_get_error());
  nbd_close(h);
  return NULL;
}

/* Replace a dead connection, retrying until RECONNECT_WAIT seconds pass
 * or a stop is requested.  Returns 0, or -1 with *hp left NULL. */
static int reconnect(struct nbd_handle **hp, const char *uri)
{
  double give_up = now() + RECONNECT_WAIT;

  nbd_close(*hp);
  *hp = NULL;
  while (!stop_requested() && now() < give_up) {
    if ((*hp = nv_connect(uri)) != NULL)
      return 0;
    usleep(200 * 1000);
  }
  return -1;
}

/* Mark every dirty block flushed after a successful flush. */
static void state_flushed(struct state *st)
{
  for (uint64_t i = 0; i < st->ndirty; i++) {
    struct blk *b = &st->blk[st->dirty[i]];
    b->flushed = b->acked;
  }
  st->ndirty = 0;
}

/* Set up *st for a write run: load the state file or start a new one
 * sized to the export.  Exits 2 if the options contradict the file. */
static void write_setup(const struct opts *o, struct state *st,
                        struct nbd_handle *h)
{
  int64_t size = nbd_get_size(h);
  int r = state_load(o->state, st);

  if (size < 0) {
    fprintf(stderr, "nbdverify: get_size: %s\n", nbd_get_error());
    exit(1);
  }
  if (r == 0) {
    if ((o->have_seed && o->seed != st->seed) ||
        (o->have_bs && o->bs != st->bs) ||
        (uint64_t) size / st->bs < st->nblocks) {
      fprintf(stderr, "nbdverify: %s: seed, block size or size differ\n",
              o->state);
      exit(2);
    }
    return;
  }
  if (r != -ENOENT || !o->have_seed) {
    fprintf(stderr, "nbdverify: %s: %s\n", o->state,
            r == -ENOENT ? "no state file: --seed required" : "corrupt");
    exit(2);
  }
  memcpy(st->magic, STATE_MAGIC, 8);
  st->version = STATE_VERSION;
  st->bs = o->bs;
  st->seed = o->seed;
  st->nblocks = (uint64_t) size / o->bs;
  if (o->blocks && o->blocks < st->nblocks)
    st->nblocks = o->blocks;
  if (state_alloc(st) < 0) {
    fprintf(stderr, "nbdverify: bad export size %" PRId64 "\n", size);
    exit(1);
  }
}

/* Counters of one write run. */
struct wstats {
  uint64_t writes, errors, flushes, flush_errors, reconnects;
};

/* Flush and, on success, record it.  Returns 0, or -1 if a failure is
 * not tolerated. */
static int do_flush(struct nbd_handle *h, const struct opts *o,
                    struct state *st, struct wstats *ws)
{
  int r;

  if (nbd_flush(h, 0) == -1) {
    ws->flush_errors++;
    fprintf(stderr, "nbdverify: flush: %s\n", nbd_get_error());
    return o->tolerate ? 0 : -1;
  }
  ws->flushes++;
  state_flushed(st);
  if ((r = state_save(o->state, st)) < 0) {
    fprintf(stderr, "nbdverify: %s: %s\n", o->state, strerror(-r));
    return -1;
  }
  return 0;
}

/* Write one block (the next lba in the run's order).  Returns 0, or -1 if
 * an error is not tolerated or the connection cannot be restored. */
static int write_one(struct nbd_handle **hp, const struct opts *o,
                     struct state *st, struct wstats *ws, uint8_t *buf)
{
  uint64_t lba, gen;
  struct blk *b;

  if (o->random)
    lba = mix64(st->seed ^ mix64(st->writes + 1)) % st->nblocks;
  else
    lba = st->cursor++ % st->nblocks;
  b = &st->blk[lba];
  gen = b->issued + 1;
  b->issued = gen; /* from now on the block may hold gen */
  st->writes++;
  ws->writes++;
  fill_block(buf, st->bs, lba, gen, st->seed);
  if (nbd_pwrite(*hp, buf, st->bs, lba * st->bs, 0) == 0) {
    if (b->acked == b->flushed)
      st->dirty[st->ndirty++] = lba;
    b->acked = gen;
    return 0;
  }
  ws->errors++;
  if (ws->errors <= MAX_REPORT)
    fprintf(stderr, "nbdverify: write lba %" PRIu64 " gen %" PRIu64 ": %s\n",
            lba, gen, nbd_get_error());
  if (!o->tolerate)
    return -1;
  if (nbd_aio_is_dead(*hp) || nbd_aio_is_closed(*hp)) {
    ws->reconnects++;
    return reconnect(hp, o->uri);
  }
  usleep(10 * 1000); /* do not spin on a failing server */
  return 0;
}

/* The write command: returns the exit status. */
static int cmd_write(const struct opts *o, struct state *st)
{
  struct wstats ws = {0};
  struct nbd_handle *h = nv_connect(o->uri);
  double start = now(), end = o->duration ? start + o->duration : 0;
  uint64_t count = o->count;
  uint8_t *buf;
  int ok = 1, r;

  if (!h)
    return 1;
  write_setup(o, st, h);
  if (!count && !end)
    count = st->nblocks; /* default: one pass over the area */
  if (!(buf = malloc(st->bs))) {
    nbd_close(h);
    return 1;
  }
  while (ok && !stop_requested() && (!count || ws.writes < count) &&
         (!end || now() < end)) {
    ok = write_one(&h, o, st, &ws, buf) == 0;
    if (ok && o->flush_every && ws.writes % o->flush_every == 0)
      ok = do_flush(h, o, st, &ws) == 0;
  }
  if (ok && !stop_requested() && o->flush_every && st->ndirty)
    ok = do_flush(h, o, st, &ws) == 0; /* the tail of the run */
  if ((r = state_save(o->state, st)) < 0) {
    fprintf(stderr, "nbdverify: %s: %s\n", o->state, strerror(-r));
    ok = 0;
  }
  printf("wrote %" PRIu64 " blocks in %.1f s: %" PRIu64
         " write errors, %" PRIu64 " flushes, %" PRIu64
         " flush errors, %" PRIu64 " reconnects%s\n",
         ws.writes, now() - start, ws.errors, ws.flushes, ws.flush_errors,
         ws.reconnects, stop_requested() ? " (stopped)" : "");
  free(buf);
  nbd_close(h);
  return ok ? 0 : 1;
}

/* Check one block read back against its state.  Returns true if good;
 * otherwise writes the reason into why. */
static bool check_block(const uint8_t *buf, uint8_t *scratch,
                        const struct state *st, uint64_t lba, bool unflushed_ok,
                        char *why, size_t len)
{
  const struct blk *b = &st->blk[lba];
  uint64_t lo = unflushed_ok ? b->flushed : b->acked, hi = b->issued;
  uint64_t flba = 0, fgen = 0;
  enum cls c = classify(buf, scratch, st, &flba, &fgen);
  const char *what;

  if (c == C_ZERO && lo == 0)
    return true;
  if (c == C_VALID && flba == lba && fgen >= lo && fgen <= hi)
    return true;
  if (c == C_ZERO)
    what = "zeros (never written or lost)";
  else if (c == C_GARBAGE)
    what = "garbage";
  else if (flba != lba)
    what = "relocated block";
  else
    what = fgen < lo ? "older gen" : "newer gen";
  if (c == C_VALID)
    snprintf(why, len, "%s: found lba %" PRIu64 " gen %" PRIu64, what, flba,
             fgen);
  else
    snprintf(why, len, "%s", what);
  return false;
}

/* Report one bad block (the first MAX_REPORT only). */
static void report_bad(const struct state *st, uint64_t lba, uint64_t nbad,
                       bool uok, const char *why)
{
  const struct blk *b = &st->blk[lba];
  uint64_t lo = uok ? b->flushed : b->acked;

  if (nbad > MAX_REPORT)
    return;
  if (lo == b->issued)
    printf("bad block lba %" PRIu64 ": expected gen %" PRIu64 ", %s\n", lba, lo,
           why);
  else
    printf("bad block lba %" PRIu64 ": expected gen %" PRIu64 "..%" PRIu64
           ", %s\n",
           lba, lo, (uint64_t) b->issued, why);
}

/* Verify n blocks from lba, read in one request; counts into *nok and
 * *nbad. */
static void verify_chunk(struct nbd_handle *h, const struct opts *o,
                         const struct state *st, uint64_t lba, uint64_t n,
                         uint8_t *buf, uint8_t *scratch, uint64_t *nok,
                         uint64_t *nbad)
{
  bool rd = nbd_pread(h, buf, n * st->bs, lba * st->bs, 0) == 0;
  char why[160];

  if (!rd)
    fprintf(stderr, "nbdverify: read lba %" PRIu64 ": %s\n", lba,
            nbd_get_error());
  for (uint64_t i = 0; i < n; i++) {
    if (rd && check_block(buf + i * st->bs, scratch, st, lba + i,
                          o->unflushed_ok, why, sizeof why))
      (*nok)++;
    else
      report_bad(st, lba + i, ++*nbad, o->unflushed_ok,
                 rd ? why : "read error");
  }
}

/* The verify command: returns the exit status. */
static int cmd_verify(const struct opts *o, struct state *st)
{
  struct nbd_handle *h = nv_connect(o->uri);
  uint64_t per = READ_CHUNK / st->bs, nok = 0, nbad = 0;
  uint8_t *buf = malloc(per * st->bs), *scratch = malloc(st->bs);
  int rc = 1;

  if (!h || !buf || !scratch)
    goto out;
  if (nbd_get_size(h) < (int64_t) (st->nblocks * st->bs)) {
    fprintf(stderr, "nbdverify: export smaller than the state's area\n");
    goto out;
  }
  for (uint64_t lba = 0; lba < st->nblocks && !stop_requested(); lba += per)
    verify_chunk(h, o, st, lba,
                 st->nblocks - lba < per ? st->nblocks - lba : per, buf,
                 scratch, &nok, &nbad);
  printf("verified %" PRIu64 " blocks: %" PRIu64 " ok, %" PRIu64 " bad\n",
         nok + nbad, nok, nbad);
  rc = nbad || stop_requested() ? 1 : 0;
out:
  free(buf);
  free(scratch);
  nbd_close(h);
  return rc;
}

/* Parse the command line, block the stop signals, run the command. */
int main(int argc, char **argv)
{
  struct opts o;
  struct state st = {0};
  sigset_t stop_signals;
  int r, rc;

  parse_args(argc, argv, &o);
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, NULL);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(o.cmd, "write") == 0) {
    rc = cmd_write(&o, &st);
  } else if (strcmp(o.cmd, "verify") != 0) {
    usage();
  } else if ((r = state_load(o.state, &st)) < 0) {
    fprintf(stderr, "nbdverify: %s: %s\n", o.state,
            r == -ENOENT ? "no such file" : "corrupt state file");
    rc = 1;
  } else {
    rc = cmd_verify(&o, &st);
  }
  free(st.blk);
  free(st.dirty);
  return rc;
}
