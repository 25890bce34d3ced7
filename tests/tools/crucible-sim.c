/* crucible-sim: the seeded, randomized whole-system test of crucible-c.
 *
 *   crucible-sim --dir DIR [--seed N] [--seconds S] [--extent-count N]
 *                [--timeout SECS] [--downstairs BIN] [--plugin SO]
 *                [--no CLASS]... [--inject-bug]
 *
 * It creates three encrypted regions with create's default geometry
 * (128 MiB extents of 4 KiB blocks, --extent-count of them), runs three
 * real crucible-downstairs on free 127.0.0.1 ports and nbdkit with
 * crucible.so on a Unix socket, all under DIR, and drives NCONN (4) NBD
 * connections with a random mix of pread, pwrite (some FUA), trim, zero
 * (some FUA) and flush, 1 byte to 32 MiB (trims and zeroes up to the whole
 * volume), aligned, 512-aligned or byte-unaligned, a quarter of them
 * crossing an extent boundary, up to PER_CONN in flight per connection.
 * Every read is checked against a model of the volume.  Meanwhile it
 * injects faults from the same seed.  At the end it restarts nbdkit with
 * verify=all, reads and checks the whole volume, stops everything cleanly
 * and requires `crucible-downstairs verify` to pass on every replica and
 * the three replicas' extent data files to be identical.
 *
 * Model rule.  The model M holds, per byte, the id of the latest
 * acknowledged write covering it (0 = zeroes: a zero, a trim, or never
 * written); the content of write w at volume offset o is a pure function
 * of (w, o) (content()), so M needs no data.  M is stored per 512-byte
 * sector (one id, or an index into a table of 512 per-byte ids for a
 * sector that unaligned writes split; such a sector collapses back when
 * its ids agree again): 4 bytes a sector plus 2 KiB per split sector,
 * where per-byte ids everywhere would cost 4 bytes a byte.
 *   - Without a crash of nbdkit, a read must return exactly M.  To keep
 *     that exact with concurrency, ops whose byte ranges overlap are never
 *     in flight together (a range lock: the driver waits before issuing);
 *     a flush takes no lock.
 *   - A flush covers every write acknowledged before it was issued.  The
 *     log L lists, in acknowledgement order, the writes not yet known
 *     durable; a completed flush marks those acked before its issue
 *     durable, a FUA write is durable when acked.  The durable prefix of L
 *     is folded into D, the model of what a crash must keep.
  *   - Across a kill -9 of nbdkit, a byte may read as the newest
 *     acknowledged value covering it (M) or the value of a write in flight
 *     at the crash (added to L as such): an acknowledged write is on at
 *     least two replicas (write-quorum 2), whose downstairs outlive
 *     nbdkit, and reconciliation keeps each block's newest version, so
 *     nothing acknowledged may be lost, flushed or not.  (NBD would allow
 *     losing unflushed writes; --lenient-crash checks only that: the
 *     newest durable value, D or a durable entry of L, or any later
 *     entry.)  After the restart the driver reads every range
 *     L touches once, checks each byte against those candidates, adopts
 *     what it read into M (exact again), flushes, and sets D = M.
 *
 * Fault rules.  Fault classes: kill-ds (kill -9 a downstairs, restart it
 * after some ops), stop-ds (SIGSTOP; half the time SIGCONT after 0.1-2 s
 * with no new ops, below the upstairs' timeout, half the time after some
 * ops and once the upstairs faulted it), flip (stop a downstairs by
 * kill -9 or SIGSTOP, xor one byte of a random written 4 KiB block of its
 * extent file at the offset region.json gives, restart/continue),
 * kill-nbdkit (kill -9 with IO in flight, restart, reconnect), restart
 * (flush, SIGTERM nbdkit, SIGTERM the downstairs, start all again) and
 * down-crash (kill -9 a downstairs, 3-60 ops on the other two, half the
 * time with no flush among them, kill -9 nbdkit, start the downstairs
 * and then nbdkit: reconciliation meets a replica that missed
 * acknowledged writes, flushed or not).
 * They come in rounds, each round a seeded permutation of the enabled
 * classes, the next one a seeded number of ops after the last ended.
 * Survivable: one fault at a time; before each one new ops wait (in-flight
 * ones complete) until the stats file shows phase running and all three
 * downstairs active; a killed downstairs must show as not active before
 * the run goes on.  A block is flipped at most once in a run (never on two
 * replicas), only if no op issued in the last MAX_INFLIGHT ops touched it
 * (so it is on that replica), and a replica holding a flip not yet healed
 * by a live repair (a SIGSTOP flip that ended before the upstairs faulted
 * it) is the only downstairs later faults may take down.
 *
 * Replay.  Ops and faults come from two PRNG streams of the seed and
 * faults fire at fixed op numbers (new ops wait for a fault's conditions),
 * so a seed replays the same op and fault sequence; only which ops are in
 * flight together at a given instant depends on timing.  A failure prints
 * the seed, the command line to replay it and the last HIST_SHOW events
 * (op number, kind, connection, offset, length, write id; faults with the
 * downstairs and pid); DIR/sim.log holds every event.  Exit status 0 all
 * good, 1 failure, 2 usage.
 *
 * --inject-bug is the self-check of the model: one write early in the run
 * is recorded in the model under a wrong write id and read back at once,
 * so the run must fail with MISMATCH.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "../../common/base64.h"
#include "../../common/geom.h"

#define NCONN 4                   /* NBD connections, like nbdcopy */
#define PER_CONN 4                /* ops in flight per connection */
#define MAX_INFLIGHT (NCONN * PER_CONN)
#define MAX_IO (32u << 20)        /* largest read or write */
#define SECTOR 512
#define BLOCK 4096
#define MIXED 0x80000000u         /* sector id: index of per-byte ids */
#define HIST 128                  /* events kept in memory */
#define HIST_SHOW 50              /* events printed on failure */
#define CHUNK (1u << 20)          /* post-crash and final read size */
#define HEALTH_SECS 180           /* bound on waiting for all active */
#define START_SECS 120            /* bound on a process coming up */
#define STOP_SECS 60              /* bound on a clean stop */
#define NFAULT 6

enum kind { K_READ, K_WRITE, K_TRIM, K_ZERO, K_FLUSH };
static const char *const kind_name[] = {"read", "write", "trim", "zero",
                                        "flush"};
enum fclass { F_KILL_DS, F_STOP_DS, F_FLIP, F_KILL_NBDKIT, F_RESTART,
              F_DOWN_CRASH };
static const char *const fault_name[NFAULT] = {
    "kill-ds", "stop-ds", "flip", "kill-nbdkit", "restart", "down-crash"};

/* xoshiro256** seeded by splitmix64. */
struct rng {
  uint64_t s[4];
};

/* Per-byte write ids of the volume (see the header comment). */
struct model {
  uint32_t nsec;
  uint32_t *sec;            /* id, or MIXED | index into mix; owned */
  uint32_t (*mix)[SECTOR];  /* split sectors; owned */
  uint32_t nmix, capmix;
  uint32_t *freel;          /* free indexes of mix; owned */
  uint32_t nfree;
};

/* One write, trim or zero of L (wid 0 for trim and zero). */
struct uentry {
  uint64_t off, len;
  uint32_t wid;
  bool durable;
  bool inflight; /* not acknowledged: in flight at a crash */
};

/* L: entries e[head..n) have absolute numbers base.. in ack order. */
struct ulog {
  struct uentry *e;
  size_t head, n, cap;
  uint64_t base;
};

struct op {
  bool used, done, inject;
  int err;
  enum kind k;
  unsigned conn;
  uint64_t seq, off, len, mark; /* mark: L's end when a flush was issued */
  uint32_t wid;
  bool fua;
  uint8_t *buf; /* owned */
  double t0;
};

struct proc {
  pid_t pid; /* 0: not running */
  bool stopped;
};

struct opts {
  uint64_t seed;
  unsigned seconds, extent_count, timeout;
  const char *dir, *ds_bin, *plugin;
  unsigned disabled; /* bit per enum fclass */
  bool inject;
  bool lenient;      /* --lenient-crash: NBD's rule only (header) */
};

struct sim {
  struct opts o;
  struct rng rops, rfault;
  struct model M, D;
  struct ulog L;
  struct op slot[MAX_INFLIGHT];
  struct nbd_handle *h[NCONN];
  unsigned busy[NCONN];
  uint64_t size, extent_bytes, seq;
  uint32_t next_wid;
  uint64_t *blk_mod;   /* per 4 KiB block: seq of the last op touching it */
  uint8_t *flipped;    /* per block: flipped once */
  bool crashing;
  /* processes */
  struct proc ds[3], nbdkit;
  int port[3];
  char ds_dir[3][512], sock[512], stats[512], key[512], nblog[512];
  /* faults */
  bool fault_active, long_stop, via_kill;
  enum fclass fc;
  int fds;              /* target downstairs of the active fault */
  int corrupt_ds;       /* holds an unhealed flip, or -1 */
  int heal_ds;          /* restarted: its repair heals corrupt_ds */
  bool no_flush;        /* down-crash outage: flushes become writes */
  uint64_t fault_end, next_fault;
  int round[NFAULT], round_pos, round_len;
  bool inject_pending;
  /* counters */
  uint64_t nops[5], bytes[5], nfaults[NFAULT], crash_checked, flips_done;
  double t_start;
  FILE *logf;
  char hist[HIST][200];
  uint64_t nhist;
};

static struct sim *g_sim; /* for the signal handler and cleanup */

/* ---- small helpers ---------------------------------------------------- */

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(struct rng *r)
{
  uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return res;
}

/* Uniform in [lo, hi] (lo <= hi). */
static uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
  return lo + rng_next(r) % (hi - lo + 1);
}

static uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Kill every process we started (SIGCONT first: a stopped one must die). */
static void kill_children(struct sim *s)
{
  struct proc *p[4] = {&s->nbdkit, &s->ds[0], &s->ds[1], &s->ds[2]};
  for (int i = 0; i < 4; i++) {
    if (p[i]->pid <= 0)
      continue;
    kill(p[i]->pid, SIGKILL);
    kill(p[i]->pid, SIGCONT);
    waitpid(p[i]->pid, NULL, 0);
    p[i]->pid = 0;
  }
}

static void on_signal(int sig)
{
  struct sim *s = g_sim;
  struct proc *p[4] = {&s->nbdkit, &s->ds[0], &s->ds[1], &s->ds[2]};
  for (int i = 0; i < 4; i++)
    if (p[i]->pid > 0)
      kill(p[i]->pid, SIGKILL);
  _exit(128 + sig);
}

/* Record one event: in the ring (printed on failure) and in sim.log. */
static void __attribute__((format(printf, 2, 3)))
event(struct sim *s, const char *fmt, ...)
{
  char *line = s->hist[s->nhist++ % HIST];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof s->hist[0], fmt, ap);
  va_end(ap);
  if (s->logf)
    fprintf(s->logf, "%8.3f %s\n", now() - s->t_start, line);
}

/* Print the last n lines of FILE to stderr. */
static void tail_file(const char *path, int n)
{
  char cmd[600];
  snprintf(cmd, sizeof cmd, "tail -n %d '%s' >&2", n, path);
  fprintf(stderr, "--- last %d lines of %s:\n", n, path);
  if (system(cmd) != 0)
    fprintf(stderr, "(could not read it)\n");
}

/* Report a failure with everything needed to replay it, clean up, exit 1. */
static void __attribute__((noreturn, format(printf, 2, 3)))
fail(struct sim *s, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  event(s, "FAIL: %s", msg);
  fprintf(stderr, "crucible-sim: FAIL at op %" PRIu64 ": %s\n", s->seq, msg);
  char extra[200] = "";
  size_t len = 0;
  for (int c = 0; c < NFAULT; c++)
    if (s->o.disabled & 1u << c)
      len += (size_t) snprintf(extra + len, sizeof extra - len, " --no %s",
                               fault_name[c]);
  fprintf(stderr, "crucible-sim: seed %" PRIu64 " (replay: crucible-sim "
          "--seed %" PRIu64 " --seconds %u --extent-count %u --timeout %u%s"
          "%s%s)\n", s->o.seed, s->o.seed, s->o.seconds, s->o.extent_count,
          s->o.timeout, s->o.inject ? " --inject-bug" : "",
          s->o.lenient ? " --lenient-crash" : "", extra);
  uint64_t first = s->nhist > HIST_SHOW ? s->nhist - HIST_SHOW : 0;
  fprintf(stderr, "crucible-sim: last %" PRIu64 " events:\n",
          s->nhist - first);
  for (uint64_t i = first; i < s->nhist; i++)
    fprintf(stderr, "  %s\n", s->hist[i % HIST]);
  tail_file(s->nblog, 25);
  if (s->logf)
    fflush(s->logf);
  kill_children(s);
  exit(1);
}

static void *xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "crucible-sim: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

/* ---- content and model ------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
  z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull;
  z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ull;
  return z ^ (z >> 33);
}

/* The bytes write WID puts at volume offset OFF..OFF+LEN (0: zeroes).
 * Each aligned 8-byte word is a hash of (wid, word index): unique per
 * write and position for volumes below 32 GiB. */
static void content(uint32_t wid, uint64_t off, uint64_t len, uint8_t *buf)
{
  if (wid == 0) {
    memset(buf, 0, len);
    return;
  }
  uint64_t o = off, end = off + len;
  while (o < end) {
    uint64_t w = mix64(((uint64_t)wid << 32 | (o >> 3)) ^ 0x5bd1e995ull);
    for (unsigned b = o & 7; b < 8 && o < end; b++, o++)
      *buf++ = (uint8_t)(w >> (8 * b));
  }
}

static void model_init(struct model *m, uint64_t size)
{
  memset(m, 0, sizeof *m);
  m->nsec = size / SECTOR;
  m->sec = calloc(m->nsec, sizeof *m->sec);
  if (!m->sec)
    exit(1);
}

static void model_free(struct model *m)
{
  free(m->sec);
  free(m->mix);
  free(m->freel);
  memset(m, 0, sizeof *m);
}

/* dst = a deep copy of src (dst freed first). */
static void model_copy(struct model *dst, const struct model *src)
{
  model_free(dst);
  *dst = *src;
  dst->sec = xmalloc(src->nsec * sizeof *src->sec);
  memcpy(dst->sec, src->sec, src->nsec * sizeof *src->sec);
  dst->mix = xmalloc(src->capmix * sizeof *src->mix);
  memcpy(dst->mix, src->mix, src->nmix * sizeof *src->mix);
  dst->freel = xmalloc(src->capmix * sizeof *src->freel);
  memcpy(dst->freel, src->freel, src->nfree * sizeof *src->freel);
}

/* A split-sector slot filled with id FILL; the caller stores MIXED|index. */
static uint32_t mix_alloc(struct model *m, uint32_t fill)
{
  uint32_t i;
  if (m->nfree) {
    i = m->freel[--m->nfree];
  } else {
    if (m->nmix == m->capmix) {
      m->capmix = m->capmix ? 2 * m->capmix : 256;
      m->mix = realloc(m->mix, m->capmix * sizeof *m->mix);
      m->freel = realloc(m->freel, m->capmix * sizeof *m->freel);
      if (!m->mix || !m->freel)
        exit(1);
    }
    i = m->nmix++;
  }
  for (int b = 0; b < SECTOR; b++)
    m->mix[i][b] = fill;
  return i;
}

/* Write id WID over bytes [lo, hi) of sector s (a part of it). */
static void sector_apply_part(struct model *m, uint32_t s, unsigned lo,
                              unsigned hi, uint32_t wid)
{
  uint32_t v = m->sec[s];
  if (!(v & MIXED)) {
    if (v == wid)
      return;
    v = MIXED | mix_alloc(m, v);
    m->sec[s] = v;
  }
  uint32_t *p = m->mix[v & ~MIXED];
  for (unsigned b = lo; b < hi; b++)
    p[b] = wid;
  for (unsigned b = 1; b < SECTOR; b++)
    if (p[b] != p[0])
      return;
  m->sec[s] = p[0]; /* uniform again: collapse */
  m->freel[m->nfree++] = v & ~MIXED;
}

/* Bytes [off, off+len) now hold write WID. */
static void model_apply(struct model *m, uint64_t off, uint64_t len,
                        uint32_t wid)
{
  uint64_t end = off + len;
  while (off < end) {
    uint32_t s = off / SECTOR;
    uint64_t so = (uint64_t)s * SECTOR, n = min64(end, so + SECTOR) - off;
    if (n == SECTOR) {
      if (m->sec[s] & MIXED)
        m->freel[m->nfree++] = m->sec[s] & ~MIXED;
      m->sec[s] = wid;
    } else {
      sector_apply_part(m, s, off - so, off - so + n, wid);
    }
    off += n;
  }
}

static uint32_t model_wid_at(const struct model *m, uint64_t o)
{
  uint32_t v = m->sec[o / SECTOR];
  return v & MIXED ? m->mix[v & ~MIXED][o % SECTOR] : v;
}

/* buf = what the model says bytes [off, off+len) hold. */
static void model_expect(const struct model *m, uint64_t off, uint64_t len,
                         uint8_t *buf)
{
  uint64_t end = off + len;
  while (off < end) {
    uint32_t wid = model_wid_at(m, off);
    uint64_t run = 1;
    if (!(m->sec[off / SECTOR] & MIXED)) {
      run = min64(end, (off / SECTOR + 1) * SECTOR) - off;
    } else {
      while (off + run < end && (off + run) % SECTOR &&
             model_wid_at(m, off + run) == wid)
        run++;
    }
    content(wid, off, run, buf);
    buf += run;
    off += run;
  }
}

/* True if 4 KiB block b is entirely written (no zero id) in m. */
static bool model_block_written(const struct model *m, uint64_t b)
{
  for (uint32_t s = b * (BLOCK / SECTOR); s < (b + 1) * (BLOCK / SECTOR); s++)
    if (m->sec[s] == 0 || (m->sec[s] & MIXED))
      return false;
  return true;
}

/* ---- L: writes not yet durable ---------------------------------------- */

static void ulog_push(struct ulog *l, uint64_t off, uint64_t len,
                      uint32_t wid, bool durable, bool inflight)
{
  if (l->n == l->cap) {
    if (l->head > l->n / 2) {
      memmove(l->e, l->e + l->head, (l->n - l->head) * sizeof *l->e);
      l->n -= l->head;
      l->head = 0;
    } else {
      l->cap = l->cap ? 2 * l->cap : 1024;
      l->e = realloc(l->e, l->cap * sizeof *l->e);
      if (!l->e)
        exit(1);
    }
  }
  l->e[l->n++] = (struct uentry){off, len, wid, durable, inflight};
}

static uint64_t ulog_end(const struct ulog *l)
{
  return l->base + (l->n - l->head);
}

/* Fold the durable prefix of L into D. */
static void ulog_settle(struct ulog *l, struct model *D)
{
  while (l->head < l->n && l->e[l->head].durable) {
    struct uentry *e = &l->e[l->head++];
    model_apply(D, e->off, e->len, e->wid);
    l->base++;
  }
}

/* A flush issued when L ended at MARK completed: those entries are durable. */
static void ulog_flushed(struct ulog *l, struct model *D, uint64_t mark)
{
  for (uint64_t a = l->base; a < mark && a < ulog_end(l); a++)
    l->e[l->head + (a - l->base)].durable = true;
  ulog_settle(l, D);
}

static void ulog_clear(struct ulog *l)
{
  l->base = ulog_end(l);
  l->head = l->n = 0;
}

/* ---- processes -------------------------------------------------------- */

/* fork/exec argv with stdout and stderr appended to LOG; the child dies
 * with us (PR_SET_PDEATHSIG), so nothing outlives a crashed driver. */
static pid_t spawn(struct sim *s, char *const argv[], const char *log)
{
  pid_t pid = fork();
  if (pid < 0)
    fail(s, "fork: %s", strerror(errno));
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (fd < 0 || nul < 0)
      _exit(126);
    dup2(nul, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], argv);
    _exit(127);
  }
  return pid;
}

/* Wait up to SECS for pid to exit; its wait status, or -1 on timeout. */
static int wait_exit(pid_t pid, double secs)
{
  double end = now() + secs;
  int st;
  do {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return st;
    if (r < 0)
      return 0;
    usleep(10000);
  } while (now() < end);
  return -1;
}

/* Signal p and wait (bounded) for it to exit; returns its wait status,
 * or -1 if it had to be SIGKILLed. */
static int proc_stop(struct proc *p, int sig, double secs)
{
  if (p->pid <= 0)
    return 0;
  kill(p->pid, sig);
  if (p->stopped)
    kill(p->pid, SIGCONT);
  int st = wait_exit(p->pid, secs);
  if (st < 0) {
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
  }
  p->pid = 0;
  p->stopped = false;
  return st;
}

/* Run argv to completion (bounded), output to LOG; its exit status. */
static int run_cmd(struct sim *s, char *const argv[], const char *log,
                   double secs)
{
  pid_t pid = spawn(s, argv, log);
  int st = wait_exit(pid, secs);
  if (st < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static int free_port(void)
{
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t alen = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

/* True if something listens on 127.0.0.1:port (from /proc/net/tcp, so
 * checking opens no connection the downstairs would log). */
static bool listening(int port)
{
  char want[32], line[256];
  bool found = false;
  FILE *f = fopen("/proc/net/tcp", "r");
  if (!f)
    return false;
  snprintf(want, sizeof want, "0100007F:%04X", port);
  while (!found && fgets(line, sizeof line, f)) {
    char local[64], remote[64];
    unsigned st;
    if (sscanf(line, " %*d: %63s %63s %x", local, remote, &st) == 3 &&
        strcmp(local, want) == 0 && st == 0x0A)
      found = true;
  }
  fclose(f);
  return found;
}

static void ds_log(struct sim *s, int i, char *buf, size_t n)
{
  snprintf(buf, n, "%s/ds%d.log", s->o.dir, i + 1);
}

/* Start downstairs i on its port and wait until it listens. */
static void ds_start(struct sim *s, int i)
{
  char port[16], log[600];
  snprintf(port, sizeof port, "%d", s->port[i]);
  ds_log(s, i, log, sizeof log);
  char *argv[] = {(char *)s->o.ds_bin, "run", "-d", s->ds_dir[i], "-p", port,
                  "-a", "127.0.0.1", NULL};
  s->ds[i].pid = spawn(s, argv, log);
  s->ds[i].stopped = false;
  double end = now() + START_SECS;
  while (!listening(s->port[i])) {
    if (waitpid(s->ds[i].pid, NULL, WNOHANG) == s->ds[i].pid) {
      s->ds[i].pid = 0;
      tail_file(log, 10);
      fail(s, "downstairs ds%d exited at start", i + 1);
    }
    if (now() > end)
      fail(s, "downstairs ds%d not listening on %d after %d s", i + 1,
           s->port[i], START_SECS);
    usleep(20000);
  }
  event(s, "ds%d started pid %d port %d", i + 1, s->ds[i].pid, s->port[i]);
}

/* Create the three regions, the key file and the ports. */
static void setup_volume(struct sim *s)
{
  char uuid[40], ec[16], log[600], cmd[64];
  uint8_t key[32];
  char key64[BASE64_ENCODED_LEN(32)];
  uint64_t x = s->o.seed ^ 0xc0ffee;
  uint64_t a = splitmix(&x), b = splitmix(&x);
  snprintf(uuid, sizeof uuid, "%08x-%04x-4%03x-8%03x-%012" PRIx64,
           (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
           (unsigned)a & 0xfff, (unsigned)(b >> 52) & 0xfff,
           (uint64_t)(b & 0xffffffffffffull));
  for (int i = 0; i < 32; i += 8) {
    uint64_t k = splitmix(&x);
    memcpy(key + i, &k, 8);
  }
  base64_encode(key, sizeof key, key64);
  snprintf(s->key, sizeof s->key, "%s/key", s->o.dir);
  int fd = open(s->key, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write(fd, key64, strlen(key64)) != (ssize_t)strlen(key64))
    fail(s, "%s: %s", s->key, strerror(errno));
  close(fd);
  snprintf(ec, sizeof ec, "%u", s->o.extent_count);
  snprintf(log, sizeof log, "%s/create.log", s->o.dir);
  for (int i = 0; i < 3; i++) {
    snprintf(s->ds_dir[i], sizeof s->ds_dir[i], "%s/ds%d", s->o.dir, i + 1);
    char *argv[] = {(char *)s->o.ds_bin, "create", "-d", s->ds_dir[i], "-u",
                    uuid, "--encrypted", "--extent-count", ec, NULL};
    if (run_cmd(s, argv, log, 120) != 0) {
      tail_file(log, 5);
      fail(s, "create %s failed", s->ds_dir[i]);
    }
    s->port[i] = free_port();
    if (s->port[i] < 0)
      fail(s, "no free port");
  }
  snprintf(cmd, sizeof cmd, "uuid %s", uuid);
  event(s, "%s, ports %d %d %d", cmd, s->port[0], s->port[1], s->port[2]);
}

/* Read extent size (blocks) from ds1's region.json; check block size. */
static void read_geometry(struct sim *s)
{
  char path[600], buf[4096];
  snprintf(path, sizeof path, "%s/region.json", s->ds_dir[0]);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = 0;
  const char *bs = strstr(buf, "\"block_size\":");
  const char *es = strstr(buf, "\"extent_size\":{\"value\":");
  if (!bs || !es || strtoull(bs + 13, NULL, 10) != BLOCK)
    fail(s, "%s: no block_size 4096 / extent_size: %s", path, buf);
  s->extent_bytes = strtoull(es + 23, NULL, 10) * BLOCK;
  s->size = s->extent_bytes * s->o.extent_count;
}

/* ---- NBD connections and the op engine ------------------------------- */

static int on_done(void *ud, int *error)
{
  struct op *o = ud;
  o->done = true;
  o->err = *error;
  return 1; /* retire the command */
}

static void conns_close(struct sim *s)
{
  for (int c = 0; c < NCONN; c++) {
    if (s->h[c])
      nbd_close(s->h[c]);
    s->h[c] = NULL;
  }
}

/* Connect connection c to nbdkit, retrying until it answers (bounded). */
static void conn_open(struct sim *s, int c)
{
  double end = now() + START_SECS;
  for (;;) {
    struct nbd_handle *h = nbd_create();
    if (!h)
      fail(s, "nbd_create: %s", nbd_get_error());
    /* Unaligned requests must reach the plugin (its minimum is 512). */
    nbd_set_strict_mode(h, nbd_get_strict_mode(h) & ~LIBNBD_STRICT_ALIGN);
    if (nbd_connect_unix(h, s->sock) == 0) {
      int64_t sz = nbd_get_size(h);
      if (sz != (int64_t)s->size)
        fail(s, "export size %" PRId64 ", want %" PRIu64, sz, s->size);
      s->h[c] = h;
      return;
    }
    nbd_close(h);
    if (s->nbdkit.pid <= 0 ||
        waitpid(s->nbdkit.pid, NULL, WNOHANG) == s->nbdkit.pid) {
      s->nbdkit.pid = 0;
      fail(s, "nbdkit exited at start");
    }
    if (now() > end)
      fail(s, "nbdkit not answering after %d s", START_SECS);
    usleep(50000);
  }
}

/* Start nbdkit on the three downstairs (verify=all if asked), connect. */
static void nbdkit_start(struct sim *s, bool verify_all)
{
  char ds[3][64], key[600], stats[600], tmo[32], pidf[600];
  unlink(s->sock);
  unlink(s->stats);
  for (int i = 0; i < 3; i++)
    snprintf(ds[i], sizeof ds[i], "downstairs=127.0.0.1:%d", s->port[i]);
  snprintf(key, sizeof key, "key=+%s", s->key);
  snprintf(stats, sizeof stats, "stats=%s", s->stats);
  snprintf(tmo, sizeof tmo, "timeout=%u", s->o.timeout);
  snprintf(pidf, sizeof pidf, "%s/nbdkit.pid", s->o.dir);
  char *argv[] = {"nbdkit", "-f", "-U", s->sock, "--pidfile", pidf,
                  (char *)s->o.plugin, ds[0], ds[1], ds[2], key, stats, tmo,
                  verify_all ? "verify=all" : NULL, NULL};
  s->nbdkit.pid = spawn(s, argv, s->nblog);
  event(s, "nbdkit started pid %d%s", s->nbdkit.pid,
        verify_all ? " verify=all" : "");
  for (int c = 0; c < NCONN; c++)
    conn_open(s, c);
}

/* Submit o on its connection; returns the libnbd cookie or -1. */
static int64_t submit(struct sim *s, struct op *o)
{
  struct nbd_handle *h = s->h[o->conn];
  nbd_completion_callback cb = {.callback = on_done, .user_data = o};
  uint32_t fl = o->fua ? LIBNBD_CMD_FLAG_FUA : 0;
  switch (o->k) {
  case K_READ:
    return nbd_aio_pread(h, o->buf, o->len, o->off, cb, 0);
  case K_WRITE:
    return nbd_aio_pwrite(h, o->buf, o->len, o->off, cb, fl);
  case K_TRIM:
    return nbd_aio_trim(h, o->len, o->off, cb, fl);
  case K_ZERO:
    return nbd_aio_zero(h, o->len, o->off, cb, fl);
  case K_FLUSH:
    return nbd_aio_flush(h, cb, 0);
  }
  return -1;
}

/* Describe the candidates for a wrong byte: D and the entries of L. */
static void explain_byte(struct sim *s, uint64_t o, uint8_t got)
{
  uint8_t b;
  uint32_t w = model_wid_at(&s->M, o);
  content(w, o, 1, &b);
  fprintf(stderr, "  byte %" PRIu64 ": got 0x%02x, model wid %u = 0x%02x\n",
          o, got, w, b);
  w = model_wid_at(&s->D, o);
  content(w, o, 1, &b);
  fprintf(stderr, "  durable model wid %u = 0x%02x\n", w, b);
  for (size_t i = s->L.head; i < s->L.n; i++) {
    struct uentry *e = &s->L.e[i];
    if (o < e->off || o >= e->off + e->len)
      continue;
    content(e->wid, o, 1, &b);
    fprintf(stderr, "  unflushed wid %u off %" PRIu64 " len %" PRIu64
            "%s = 0x%02x\n", e->wid, e->off, e->len,
            e->durable ? " durable" : "", b);
  }
}

/* Check a completed read against M. */
static void check_read(struct sim *s, struct op *o)
{
  uint8_t *want = xmalloc(o->len);
  model_expect(&s->M, o->off, o->len, want);
  if (memcmp(want, o->buf, o->len) == 0) {
    free(want);
    return;
  }
  uint64_t first = 0, last = 0, nbad = 0;
  for (uint64_t i = 0; i < o->len; i++) {
    if (want[i] == o->buf[i])
      continue;
    if (!nbad++)
      first = i;
    last = i;
  }
  explain_byte(s, o->off + first, o->buf[first]);
  fail(s, "MISMATCH: read op %" PRIu64 " c%u off %" PRIu64 " len %" PRIu64
       ": %" PRIu64 " bytes differ from the model in [%" PRIu64 ", %" PRIu64
       "] (volume offsets; first in block %" PRIu64 ", wid there %u)",
       o->seq, o->conn, o->off, o->len, nbad, o->off + first, o->off + last,
       (o->off + first) / BLOCK, model_wid_at(&s->M, o->off + first));
}

/* Apply an acknowledged op to the model. */
static void acked(struct sim *s, struct op *o)
{
  if (o->k == K_READ) {
    check_read(s, o);
  } else if (o->k == K_FLUSH) {
    ulog_flushed(&s->L, &s->D, o->mark);
  } else {
    uint32_t wid = o->k == K_WRITE ? o->wid : 0;
    if (o->inject) {
      wid = ++s->next_wid; /* the deliberate wrong expectation */
      event(s, "INJECT: op %" PRIu64 " recorded as wid %u", o->seq, wid);
    }
    model_apply(&s->M, o->off, o->len, wid);
    ulog_push(&s->L, o->off, o->len, wid, o->fua, false);
    ulog_settle(&s->L, &s->D);
  }
  s->nops[o->k]++;
  s->bytes[o->k] += o->len;
}

/* Retire a completed op (acked, or failed: a failure only during a crash). */
static void retire(struct sim *s, struct op *o)
{
  if (o->err == 0) {
    acked(s, o);
  } else if (s->crashing) {
    if (o->k == K_WRITE || o->k == K_TRIM || o->k == K_ZERO)
      ulog_push(&s->L, o->off, o->len, o->k == K_WRITE ? o->wid : 0, false,
                true);
  } else {
    fail(s, "%s op %" PRIu64 " c%u off %" PRIu64 " len %" PRIu64
         " failed: %s", kind_name[o->k], o->seq, o->conn, o->off, o->len,
         strerror(o->err));
  }
  free(o->buf);
  s->busy[o->conn]--;
  memset(o, 0, sizeof *o);
}

static unsigned inflight(const struct sim *s)
{
  unsigned n = 0;
  for (int i = 0; i < MAX_INFLIGHT; i++)
    n += s->slot[i].used;
  return n;
}

/* Poll the connections up to ms milliseconds, retire completed ops, and
 * fail on an op in flight longer than its bound. */
static void pump(struct sim *s, int ms)
{
  struct pollfd pfd[NCONN];
  int map[NCONN], n = 0;
  for (int c = 0; c < NCONN; c++) {
    if (!s->h[c] || nbd_aio_is_dead(s->h[c]) || nbd_aio_get_fd(s->h[c]) < 0)
      continue;
    unsigned dir = nbd_aio_get_direction(s->h[c]);
    pfd[n] = (struct pollfd){.fd = nbd_aio_get_fd(s->h[c])};
    pfd[n].events = (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
                    (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
    map[n++] = c;
  }
  if (poll(pfd, n, ms) < 0 && errno != EINTR)
    fail(s, "poll: %s", strerror(errno));
  for (int i = 0; i < n; i++) {
    struct nbd_handle *h = s->h[map[i]];
    int r = 0;
    if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
      r = nbd_aio_notify_read(h);
    if (r == 0 && (pfd[i].revents & POLLOUT))
      r = nbd_aio_notify_write(h);
    if (r < 0 && !s->crashing)
      fail(s, "connection c%d died: %s", map[i], nbd_get_error());
  }
  double limit = now() - (4.0 * s->o.timeout + 60);
  for (int i = 0; i < MAX_INFLIGHT; i++) {
    struct op *o = &s->slot[i];
    if (o->used && o->done)
      retire(s, o);
    else if (o->used && !s->crashing && o->t0 < limit)
      fail(s, "%s op %" PRIu64 " c%u off %" PRIu64 " len %" PRIu64
           " hung for %.0f s", kind_name[o->k], o->seq, o->conn, o->off,
           o->len, now() - o->t0);
  }
}

/* Wait (bounded by the per-op bound in pump) until nothing is in flight. */
static void drain(struct sim *s)
{
  while (inflight(s))
    pump(s, 100);
}

static bool overlaps(const struct sim *s, uint64_t off, uint64_t len)
{
  for (int i = 0; i < MAX_INFLIGHT; i++) {
    const struct op *o = &s->slot[i];
    if (o->used && o->k != K_FLUSH && o->off < off + len &&
        off < o->off + o->len)
      return true;
  }
  return false;
}

/* Issue op *t: wait for a slot on its connection and for the range lock,
 * fill the write buffer, submit. */
static void issue(struct sim *s, const struct op *t)
{
  while (s->busy[t->conn] >= PER_CONN ||
         (t->k != K_FLUSH && overlaps(s, t->off, t->len)))
    pump(s, 100);
  struct op *o = NULL;
  for (int i = 0; i < MAX_INFLIGHT && !o; i++)
    if (!s->slot[i].used)
      o = &s->slot[i];
  *o = *t;
  o->used = true;
  o->t0 = now();
  if (o->k == K_READ || o->k == K_WRITE)
    o->buf = xmalloc(o->len);
  if (o->k == K_WRITE)
    content(o->wid, o->off, o->len, o->buf);
  if (o->k == K_FLUSH)
    o->mark = ulog_end(&s->L);
  if (o->k != K_READ && o->k != K_FLUSH)
    for (uint64_t b = o->off / BLOCK; b <= (o->off + o->len - 1) / BLOCK; b++)
      s->blk_mod[b] = o->seq;
  s->busy[o->conn]++;
  if (submit(s, o) < 0)
    fail(s, "submit %s op %" PRIu64 ": %s", kind_name[o->k], o->seq,
         nbd_get_error());
}

/* ---- the random op stream --------------------------------------------- */

/* A random length: mostly small, sometimes up to max. */
static uint64_t gen_len(struct rng *r, uint64_t max)
{
  uint64_t c = rng_range(r, 0, 99), len;
  if (c < 35)
    len = rng_range(r, 1, 4096);
  else if (c < 70)
    len = rng_range(r, 4096, 256 << 10);
  else if (c < 90)
    len = rng_range(r, 256 << 10, 4 << 20);
  else if (c < 98)
    len = rng_range(r, 4 << 20, 16 << 20);
  else
    len = rng_range(r, 16 << 20, MAX_IO);
  return min64(len, max);
}

/* A random range of at most max bytes: aligned to 4096, 512 or nothing,
 * a quarter of them across an extent boundary. */
static void gen_range(struct sim *s, uint64_t max, uint64_t *off,
                      uint64_t *len)
{
  struct rng *r = &s->rops;
  uint64_t a = rng_range(r, 0, 99), align = a < 45 ? BLOCK : a < 65 ? SECTOR : 1;
  uint64_t n = gen_len(r, max), o;
  n = max64(align, (n + align - 1) / align * align);
  if (s->o.extent_count > 1 && rng_range(r, 0, 3) == 0) {
    uint64_t b = s->extent_bytes * rng_range(r, 1, s->o.extent_count - 1);
    o = n > 1 ? b - rng_range(r, 1, n - 1) : b - 1;
  } else {
    o = rng_range(r, 0, s->size - n);
  }
  o = o / align * align;
  if (o + n > s->size)
    o = s->size - n;
  *off = o;
  *len = n;
}

/* The next op of the stream (deterministic in the seed). */
static void gen_op(struct sim *s, struct op *o)
{
  struct rng *r = &s->rops;
  uint64_t c = rng_range(r, 0, 99);
  memset(o, 0, sizeof *o);
  o->seq = s->seq;
  o->conn = rng_range(r, 0, NCONN - 1);
  o->k = c < 37 ? K_READ : c < 74 ? K_WRITE : c < 84 ? K_TRIM
       : c < 94 ? K_ZERO : K_FLUSH;
  if (o->k == K_FLUSH && s->no_flush)
    o->k = K_WRITE; /* a down-crash outage without flushes */
  if (o->k == K_FLUSH)
    return;
  if ((o->k == K_TRIM || o->k == K_ZERO) && rng_range(r, 0, 19) == 0) {
    o->len = rng_range(r, MAX_IO, s->size); /* up to the whole volume */
    o->off = rng_range(r, 0, s->size - o->len);
  } else {
    gen_range(s, MAX_IO, &o->off, &o->len);
  }
  if (o->k != K_READ)
    o->fua = rng_range(r, 0, 99) < 8 && !s->no_flush;
  if (o->k == K_WRITE)
    o->wid = ++s->next_wid;
}

static void log_op(struct sim *s, const struct op *o)
{
  if (o->k == K_FLUSH)
    event(s, "op %" PRIu64 " flush c%u (covers L < %" PRIu64 ")", o->seq,
          o->conn, ulog_end(&s->L));
  else
    event(s, "op %" PRIu64 " %s c%u off %" PRIu64 " len %" PRIu64
          " wid %u%s", o->seq, kind_name[o->k], o->conn, o->off, o->len,
          o->wid, o->fua ? " fua" : "");
}

/* Issue a read of [off, off+len) on connection c outside the stream. */
static void issue_read(struct sim *s, unsigned c, uint64_t off, uint64_t len)
{
  struct op o = {.k = K_READ, .conn = c, .seq = s->seq, .off = off,
                 .len = len};
  issue(s, &o);
}

/* Flush on connection 0 and wait for everything. */
static void flush_all(struct sim *s)
{
  struct op o = {.k = K_FLUSH, .seq = s->seq};
  drain(s);
  issue(s, &o);
  drain(s);
}

/* ---- stats file ------------------------------------------------------- */

/* Read phase and the three downstairs states; false if unreadable. */
static bool read_stats(struct sim *s, char phase[32], char st[3][32])
{
  char buf[16384];
  FILE *f = fopen(s->stats, "r");
  if (!f)
    return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strstr(buf, "\"phase\":\"");
  const char *q = strstr(buf, "\"downstairs\"");
  if (!p || !q)
    return false;
  sscanf(p + 9, "%31[^\"]", phase);
  for (int i = 0; i < 3; i++) {
    q = strstr(q, "\"state\":\"");
    if (!q)
      return false;
    sscanf(q + 9, "%31[^\"]", st[i]);
    q += 9;
  }
  return true;
}

/* Wait until phase running and all three active (in-flight ops go on,
 * no new ones); then a flip healed by a live repair is forgotten. */
static void wait_healthy(struct sim *s)
{
  char phase[32] = "", st[3][32] = {"", "", ""};
  double end = now() + HEALTH_SECS, t0 = now();
  for (;;) {
    if (read_stats(s, phase, st) && strcmp(phase, "running") == 0 &&
        !strcmp(st[0], "active") && !strcmp(st[1], "active") &&
        !strcmp(st[2], "active"))
      break;
    if (now() > end)
      fail(s, "volume not healthy after %d s: phase %s, ds1 %s, ds2 %s, "
           "ds3 %s", HEALTH_SECS, phase, st[0], st[1], st[2]);
    pump(s, 50);
  }
  if (s->heal_ds >= 0 && s->heal_ds == s->corrupt_ds) {
    event(s, "ds%d live-repaired: its flipped block is healed",
          s->corrupt_ds + 1);
    s->corrupt_ds = -1;
  }
  s->heal_ds = -1;
  if (now() - t0 > 1)
    event(s, "waited %.1f s for all active", now() - t0);
}

/* Wait until the stats file shows downstairs i not active. */
static void wait_not_active(struct sim *s, int i, double secs)
{
  char phase[32] = "", st[3][32] = {"", "", ""};
  double end = now() + secs;
  while (!read_stats(s, phase, st) || strcmp(st[i], "active") == 0) {
    if (now() > end)
      fail(s, "ds%d still active %.0f s after it was killed or stopped",
           i + 1, secs);
    pump(s, 50);
  }
  event(s, "ds%d now %s", i + 1, st[i]);
}

/* ---- faults ----------------------------------------------------------- */

/* Xor one byte of a random written block of replica i (stopped) at the
 * extent file offset the region layout gives; false if none qualifies. */
static bool flip_block(struct sim *s, int i)
{
  uint64_t nblk = s->size / BLOCK, per = s->extent_bytes / BLOCK;
  for (int tries = 0; tries < 200; tries++) {
    uint64_t b = rng_range(&s->rfault, 0, nblk - 1);
    unsigned at = rng_range(&s->rfault, 0, BLOCK - 1);
    if (s->flipped[b] || s->blk_mod[b] + MAX_INFLIGHT >= s->seq ||
        !model_block_written(&s->M, b))
      continue;
    char rel[GEOM_EXTENT_PATH_MAX], path[700];
    geom_extent_path(b / per, rel);
    snprintf(path, sizeof path, "%s/%s", s->ds_dir[i], rel);
    off_t off = (off_t)(b % per) * BLOCK + at;
    uint8_t c;
    int fd = open(path, O_RDWR);
    if (fd < 0 || pread(fd, &c, 1, off) != 1)
      fail(s, "flip: %s: %s", path, strerror(errno));
    c ^= 0x5a;
    if (pwrite(fd, &c, 1, off) != 1)
      fail(s, "flip: %s: %s", path, strerror(errno));
    close(fd);
    s->flipped[b] = 1;
    s->corrupt_ds = i;
    s->flips_done++;
    event(s, "fault flip ds%d lba %" PRIu64 " (%s offset %jd) last "
          "touched by op %" PRIu64, i + 1, b, rel, (intmax_t)off,
          s->blk_mod[b]);
    return true;
  }
  event(s, "fault flip ds%d: no written block untouched lately: skipped",
        i + 1);
  return false;
}

/* Take downstairs i down: kill -9 (and wait until the upstairs sees it)
 * or SIGSTOP. */
static void ds_down(struct sim *s, int i, bool kill9)
{
  if (kill9) {
    event(s, "fault kill -9 ds%d pid %d", i + 1, s->ds[i].pid);
    kill(s->ds[i].pid, SIGKILL);
    waitpid(s->ds[i].pid, NULL, 0);
    s->ds[i].pid = 0;
    wait_not_active(s, i, 2.0 * s->o.timeout + 10);
  } else {
    event(s, "fault SIGSTOP ds%d pid %d", i + 1, s->ds[i].pid);
    kill(s->ds[i].pid, SIGSTOP);
    s->ds[i].stopped = true;
  }
}

/* Bring downstairs i back: restart it, or SIGCONT (after the upstairs
 * faulted it when long_stop). */
static void ds_up(struct sim *s, int i)
{
  if (s->ds[i].pid == 0) {
    ds_start(s, i);
    s->heal_ds = i;
    return;
  }
  if (s->long_stop) {
    wait_not_active(s, i, 4.0 * s->o.timeout + 30);
    s->heal_ds = i;
  }
  event(s, "SIGCONT ds%d pid %d%s", i + 1, s->ds[i].pid,
        s->long_stop ? " (after it was faulted)" : "");
  kill(s->ds[i].pid, SIGCONT);
  s->ds[i].stopped = false;
}

/* After a crash: read every range L touches once, check each byte is one
 * of its candidates, adopt what was read into M. */
static void check_chunk(struct sim *s, uint64_t off, uint64_t n,
                        const uint8_t *got)
{
  static uint8_t ok[CHUNK], closed[CHUNK], cand[CHUNK];
  static uint32_t match[CHUNK];
  memset(ok, 0, n);
  memset(closed, 0, n);
  for (size_t k = s->L.n; k-- > s->L.head;) { /* newest first */
    struct uentry *e = &s->L.e[k];
    uint64_t a = max64(off, e->off), b = min64(off + n, e->off + e->len);
    if (a >= b)
      continue;
    content(e->wid, a, b - a, cand);
    for (uint64_t i = a - off, j = 0; i < b - off; i++, j++) {
      if (closed[i])
        continue;
      if (!ok[i] && cand[j] == got[i]) {
        ok[i] = 1;
        match[i] = e->wid;
      }
      /* Nothing older may show than a durable entry or, unless lenient,
       * an acknowledged one. */
      closed[i] = e->durable || (!s->o.lenient && !e->inflight);
    }
  }
  model_expect(&s->D, off, n, cand);
  for (uint64_t i = 0; i < n; i++) {
    if (!ok[i] && !closed[i] && cand[i] == got[i]) {
      ok[i] = 1;
      match[i] = model_wid_at(&s->D, off + i);
    }
    if (!ok[i]) {
      explain_byte(s, off + i, got[i]);
      fail(s, "MISMATCH after nbdkit crash: byte %" PRIu64 " (block %" PRIu64
           ") is none of its candidates", off + i, (off + i) / BLOCK);
    }
  }
  for (uint64_t i = 0; i < n;) {
    uint64_t j = i + 1;
    while (j < n && match[j] == match[i])
      j++;
    model_apply(&s->M, off + i, j - i, match[i]);
    i = j;
  }
}

static int cmp_entry(const void *a, const void *b)
{
  const struct uentry *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* Check every range L touches (merged), chunk by chunk, on connection 0. */
static void crash_check(struct sim *s)
{
  size_t n = s->L.n - s->L.head;
  struct uentry *r = xmalloc(n * sizeof *r);
  uint8_t *buf = xmalloc(CHUNK);
  uint64_t total = 0;
  memcpy(r, s->L.e + s->L.head, n * sizeof *r);
  qsort(r, n, sizeof *r, cmp_entry);
  for (size_t i = 0; i < n;) {
    uint64_t a = r[i].off, b = r[i].off + r[i].len;
    for (i++; i < n && r[i].off <= b; i++)
      b = max64(b, r[i].off + r[i].len);
    for (uint64_t o = a; o < b; o += CHUNK) {
      uint64_t len = min64(CHUNK, b - o);
      if (nbd_pread(s->h[0], buf, len, o, 0) < 0)
        fail(s, "read after nbdkit crash, off %" PRIu64 " len %" PRIu64
             ": %s", o, len, nbd_get_error());
      check_chunk(s, o, len, buf);
      total += len;
    }
  }
  event(s, "after crash: %zu unflushed writes, %" PRIu64 " bytes checked "
        "against their candidates and adopted", n, total);
  s->crash_checked += total;
  free(r);
  free(buf);
}

/* kill -9 nbdkit with IO in flight, restart it (after downstairs ds, if
 * >= 0, which was down), reconnect, check. */
static void crash_nbdkit(struct sim *s, int ds)
{
  event(s, "fault kill -9 nbdkit pid %d (%u ops in flight)", s->nbdkit.pid,
        inflight(s));
  s->crashing = true;
  kill(s->nbdkit.pid, SIGKILL);
  waitpid(s->nbdkit.pid, NULL, 0);
  s->nbdkit.pid = 0;
  for (int k = 0; k < 20 && inflight(s); k++)
    pump(s, 50);
  conns_close(s);
  for (int i = 0; i < MAX_INFLIGHT; i++) {
    struct op *o = &s->slot[i];
    if (o->used && !o->done)
      o->err = ENOTCONN;
    if (o->used)
      retire(s, o);
  }
  s->crashing = false;
  if (ds >= 0) {
    ds_start(s, ds);
    s->heal_ds = ds;
  }
  nbdkit_start(s, false);
  crash_check(s);
  /* Reconciliation may have copied a flipped block: read every block ever
   * flipped now, not only if the random stream happens to. */
  for (uint64_t b = 0; b < s->size / BLOCK; b++)
    if (s->flipped[b])
      issue_read(s, b % NCONN, b * BLOCK, BLOCK);
  flush_all(s);
  model_copy(&s->D, &s->M);
  ulog_clear(&s->L);
}

/* Flush, close, SIGTERM nbdkit then the downstairs; all must exit 0. */
static void stop_all(struct sim *s, bool downstairs)
{
  flush_all(s);
  conns_close(s);
  int st = proc_stop(&s->nbdkit, SIGTERM, STOP_SECS);
  if (st != 0)
    fail(s, "nbdkit did not exit cleanly on SIGTERM (status %d)", st);
  for (int i = 0; downstairs && i < 3; i++) {
    st = proc_stop(&s->ds[i], SIGTERM, STOP_SECS);
    if (st != 0)
      fail(s, "ds%d did not exit cleanly on SIGTERM (status %d)", i + 1, st);
  }
  event(s, "stopped cleanly");
}

/* Fault restart: stop everything cleanly and start it again. */
static void restart_all(struct sim *s)
{
  event(s, "fault clean restart of everything");
  stop_all(s, true);
  for (int i = 0; i < 3; i++)
    ds_start(s, i);
  nbdkit_start(s, false);
}

/* The next fault class of the current round (a seeded permutation). */
static enum fclass next_class(struct sim *s)
{
  if (s->round_pos == s->round_len) {
    s->round_len = 0;
    for (int c = 0; c < NFAULT; c++)
      if (!(s->o.disabled & 1u << c))
        s->round[s->round_len++] = c;
    for (int i = s->round_len - 1; i > 0; i--) {
      int j = rng_range(&s->rfault, 0, i), t = s->round[i];
      s->round[i] = s->round[j];
      s->round[j] = t;
    }
    s->round_pos = 0;
  }
  return s->round[s->round_pos++];
}

/* Start the next fault (the volume healthy first). */
static void fault_begin(struct sim *s)
{
  s->fc = next_class(s);
  int ds = rng_range(&s->rfault, 0, 2);
  bool kill9 = rng_range(&s->rfault, 0, 1);
  s->long_stop = rng_range(&s->rfault, 0, 1);
  uint64_t dur = rng_range(&s->rfault, 20, 300);
  uint64_t short_dur = rng_range(&s->rfault, 3, 60);
  if (s->corrupt_ds >= 0)
    ds = s->corrupt_ds; /* never a second replica down or corrupt */
  wait_healthy(s);
  s->nfaults[s->fc]++;
  s->fds = ds;
  switch (s->fc) {
  case F_KILL_DS:
    ds_down(s, ds, true);
    break;
  case F_STOP_DS:
    ds_down(s, ds, false);
    break;
  case F_FLIP:
    ds_down(s, ds, kill9);
    flip_block(s, ds);
    break;
  case F_KILL_NBDKIT:
    crash_nbdkit(s, -1);
    return;
  case F_DOWN_CRASH: /* a short outage, then nbdkit dies (fault_tick) */
    ds_down(s, ds, true);
    dur = short_dur;
    /* Half the time no flush in between: the stale replica's extents then
     * carry the same numbers as the others' (only versions tell). */
    s->no_flush = kill9;
    event(s, "down-crash outage of %" PRIu64 " ops%s", dur,
          s->no_flush ? ", no flushes" : "");
    break;
  case F_RESTART:
    restart_all(s);
    return;
  }
  if (s->ds[ds].stopped && !s->long_stop) {
    /* A short SIGSTOP ends well before the upstairs' timeout would fault
     * it: SIGCONT after 0.1..2 s with only the ops already in flight
     * (new ones are slow then: flushes wait for the stopped replica, so
     * counting ops would outlast the timeout). */
    double end = now() + short_dur / 30.0;
    while (now() < end)
      pump(s, 20);
    ds_up(s, ds);
    return;
  }
  s->fault_active = true;
  s->fault_end = s->seq + dur;
}

static void fault_schedule(struct sim *s)
{
  s->next_fault = s->seq + rng_range(&s->rfault, 50, 400);
}

/* Called before each op of the stream: fire or end faults due now. */
static void fault_tick(struct sim *s)
{
  if ((s->o.disabled & ((1u << NFAULT) - 1)) == (1u << NFAULT) - 1)
    return; /* every class disabled */
  if (s->fault_active && s->seq >= s->fault_end) {
    s->no_flush = false;
    if (s->fc == F_DOWN_CRASH)
      crash_nbdkit(s, s->fds);
    else
      ds_up(s, s->fds);
    s->fault_active = false;
    fault_schedule(s);
  } else if (!s->fault_active && s->seq >= s->next_fault) {
    fault_begin(s);
    if (!s->fault_active)
      fault_schedule(s);
  }
}

/* ---- the run ---------------------------------------------------------- */

static void progress(struct sim *s)
{
  double t = now() - s->t_start;
  printf("crucible-sim: %5.0f s  ops %" PRIu64 " (r %" PRIu64 " w %" PRIu64
         " t %" PRIu64 " z %" PRIu64 " f %" PRIu64 ")  faults %" PRIu64
         "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "\n",
         t, s->seq,
         s->nops[K_READ], s->nops[K_WRITE], s->nops[K_TRIM], s->nops[K_ZERO],
         s->nops[K_FLUSH], s->nfaults[0], s->nfaults[1], s->nfaults[2],
         s->nfaults[3], s->nfaults[4], s->nfaults[5]);
  fflush(stdout);
}

/* Drive ops and faults for the run's duration. */
static void run_stream(struct sim *s)
{
  double end = s->t_start + s->o.seconds, next_report = now() + 10;
  fault_schedule(s);
  while (now() < end || s->fault_active) {
    fault_tick(s);
    struct op o;
    gen_op(s, &o);
    if (s->inject_pending && o.k == K_WRITE && s->seq >= 10) {
      o.inject = true;
      s->inject_pending = false;
    }
    log_op(s, &o);
    issue(s, &o);
    if (o.inject) {
      event(s, "op %" PRIu64 " read back of the injected write", s->seq);
      issue_read(s, (o.conn + 1) % NCONN, o.off, o.len);
    }
    s->seq++;
    if (now() > next_report) {
      progress(s);
      next_report += 10;
    }
  }
  drain(s);
}

/* Read the whole volume (nbdkit with verify=all) and check it. */
static void final_read(struct sim *s)
{
  event(s, "final: whole volume read with verify=all");
  for (uint64_t o = 0; o < s->size; o += 4 * CHUNK)
    issue_read(s, (o / (4 * CHUNK)) % NCONN, o, min64(4 * CHUNK, s->size - o));
  drain(s);
}

/* verify -d on each replica, then the extent data files byte for byte. */
static void final_replicas(struct sim *s)
{
  char log[600];
  snprintf(log, sizeof log, "%s/verify.log", s->o.dir);
  for (int i = 0; i < 3; i++) {
    char *argv[] = {(char *)s->o.ds_bin, "verify", "-d", s->ds_dir[i], NULL};
    if (run_cmd(s, argv, log, 600) != 0) {
      tail_file(log, 10);
      fail(s, "crucible-downstairs verify -d %s failed", s->ds_dir[i]);
    }
  }
  uint8_t *b[3];
  for (int i = 0; i < 3; i++)
    b[i] = xmalloc(CHUNK);
  for (uint32_t e = 0; e < s->o.extent_count; e++) {
    char rel[GEOM_EXTENT_PATH_MAX], path[700];
    int fd[3];
    geom_extent_path(e, rel);
    for (int i = 0; i < 3; i++) {
      snprintf(path, sizeof path, "%s/%s", s->ds_dir[i], rel);
      fd[i] = open(path, O_RDONLY);
      if (fd[i] < 0)
        fail(s, "%s: %s", path, strerror(errno));
    }
    for (uint64_t o = 0; o < s->extent_bytes; o += CHUNK) {
      for (int i = 0; i < 3; i++) {
        ssize_t r = pread(fd[i], b[i], CHUNK, o);
        if (r < 0)
          fail(s, "read extent %u of ds%d: %s", e, i + 1, strerror(errno));
        memset(b[i] + r, 0, CHUNK - r); /* short file: zeroes */
      }
      for (int i = 1; i < 3; i++)
        for (uint64_t k = 0; k < CHUNK; k += BLOCK)
          if (memcmp(b[0] + k, b[i] + k, BLOCK))
            fail(s, "replicas differ: extent %u block %" PRIu64 " (lba %"
                 PRIu64 "): ds1 vs ds%d", e, (o + k) / BLOCK,
                 e * (s->extent_bytes / BLOCK) + (o + k) / BLOCK, i + 1);
    }
    for (int i = 0; i < 3; i++)
      close(fd[i]);
  }
  for (int i = 0; i < 3; i++)
    free(b[i]);
  event(s, "final: 3 replicas verify clean and hold identical extent data");
}

static void final_phase(struct sim *s)
{
  if (s->fault_active)
    ds_up(s, s->fds);
  wait_healthy(s);
  stop_all(s, false);
  nbdkit_start(s, true);
  wait_healthy(s);
  final_read(s);
  stop_all(s, true);
  final_replicas(s);
}

static void summary(struct sim *s)
{
  double t = now() - s->t_start, pm = 60.0 / (t > 0 ? t : 1);
  uint64_t total = s->seq;
  printf("crucible-sim: PASS seed %" PRIu64 " in %.0f s: %" PRIu64 " ops "
         "(%.0f/min): read %" PRIu64 " (%" PRIu64 " MiB) write %" PRIu64
         " (%" PRIu64 " MiB) trim %" PRIu64 " zero %" PRIu64 " flush %"
         PRIu64 "\n", s->o.seed, t, total, total * pm, s->nops[K_READ],
         s->bytes[K_READ] >> 20, s->nops[K_WRITE], s->bytes[K_WRITE] >> 20,
         s->nops[K_TRIM], s->nops[K_ZERO], s->nops[K_FLUSH]);
  printf("crucible-sim: faults kill-ds %" PRIu64 " stop-ds %" PRIu64
         " flip %" PRIu64 " (%" PRIu64 " blocks flipped) kill-nbdkit %"
         PRIu64 " restart %" PRIu64 " down-crash %" PRIu64 "; %" PRIu64
         " MiB checked after crashes%s\n", s->nfaults[0], s->nfaults[1],
         s->nfaults[2], s->flips_done, s->nfaults[3], s->nfaults[4],
         s->nfaults[5], s->crash_checked >> 20,
         s->o.lenient ? " (lenient)" : "");
}

static void __attribute__((noreturn)) usage(void)
{
  fprintf(stderr,
          "usage: crucible-sim --dir DIR [--seed N] [--seconds S] "
          "[--extent-count N]\n"
          "         [--timeout SECS] [--downstairs BIN] [--plugin SO]\n"
          "         [--no kill-ds|stop-ds|flip|kill-nbdkit|restart|down-crash]"
          "... [--inject-bug] [--lenient-crash]\n");
  exit(2);
}

static uint64_t num(const char *s)
{
  char *end;
  errno = 0;
  uint64_t v = strtoull(s, &end, 0);
  if (errno || end == s || *end || *s == '-')
    usage();
  return v;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
  static const struct option lo[] = {
      {"seed", 1, 0, 's'},       {"seconds", 1, 0, 't'},
      {"dir", 1, 0, 'd'},        {"extent-count", 1, 0, 'e'},
      {"timeout", 1, 0, 'T'},    {"downstairs", 1, 0, 'D'},
      {"plugin", 1, 0, 'P'},     {"no", 1, 0, 'n'},
      {"inject-bug", 0, 0, 'i'}, {"lenient-crash", 0, 0, 'l'},
      {0, 0, 0, 0}};
  bool seeded = false;
  int c;
  *o = (struct opts){.seconds = 60, .extent_count = 3, .timeout = 5,
                     .ds_bin = "./crucible-downstairs",
                     .plugin = "./crucible.so"};
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 's': o->seed = num(optarg); seeded = true; break;
    case 't': o->seconds = num(optarg); break;
    case 'd': o->dir = optarg; break;
    case 'e': o->extent_count = num(optarg); break;
    case 'T': o->timeout = num(optarg); break;
    case 'D': o->ds_bin = optarg; break;
    case 'P': o->plugin = optarg; break;
    case 'i': o->inject = true; break;
    case 'l': o->lenient = true; break;
    case 'n': {
      int k = 0;
      while (k < NFAULT && strcmp(optarg, fault_name[k]))
        k++;
      if (k == NFAULT)
        usage();
      o->disabled |= 1u << k;
      break;
    }
    default: usage();
    }
  }
  if (!o->dir || optind != argc || o->extent_count < 1 || o->timeout < 1)
    usage();
  if (!seeded) {
    FILE *f = fopen("/dev/urandom", "r");
    if (!f || fread(&o->seed, sizeof o->seed, 1, f) != 1)
      exit(1);
    fclose(f);
    o->seed %= 1000000000000ull; /* short enough to type */
  }
}

int main(int argc, char **argv)
{
  static struct sim sim;
  struct sim *s = &sim;
  char path[600];
  parse_args(argc, argv, &s->o);
  g_sim = s;
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
  s->t_start = now();
  s->corrupt_ds = s->heal_ds = -1;
  s->inject_pending = s->o.inject;
  rng_seed(&s->rops, s->o.seed);
  rng_seed(&s->rfault, s->o.seed ^ 0x6a09e667f3bcc909ull);
  snprintf(path, sizeof path, "%s/sim.log", s->o.dir);
  s->logf = fopen(path, "w");
  snprintf(s->sock, sizeof s->sock, "%s/nbd.sock", s->o.dir);
  snprintf(s->stats, sizeof s->stats, "%s/stats.json", s->o.dir);
  snprintf(s->nblog, sizeof s->nblog, "%s/nbdkit.log", s->o.dir);
  printf("crucible-sim: seed %" PRIu64 ", %u s, %u extents\n", s->o.seed,
         s->o.seconds, s->o.extent_count);
  fflush(stdout);
  event(s, "seed %" PRIu64, s->o.seed);
  setup_volume(s);
  read_geometry(s);
  model_init(&s->M, s->size);
  model_init(&s->D, s->size);
  s->blk_mod = calloc(s->size / BLOCK, sizeof *s->blk_mod);
  s->flipped = calloc(s->size / BLOCK, 1);
  for (int i = 0; i < 3; i++)
    ds_start(s, i);
  nbdkit_start(s, false);
  run_stream(s);
  final_phase(s);
  summary(s);
  fclose(s->logf);
  return 0;
}
