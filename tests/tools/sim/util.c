/* crucible-sim: small helpers: time, the PRNG, events and failure reports. */
#include "sim.h"

const char *const kind_name[5] = {"read", "write", "trim", "zero", "flush"};
const char *const fault_name[NFAULT] = {
    "kill-ds",    "stop-ds", "flip",     "kill-nbdkit", "restart",
    "down-crash", "away",    "rollback", "extend",      "snapshot"};
struct sim *g_sim;

/* ---- small helpers ---------------------------------------------------- */

double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

uint64_t splitmix(uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void rng_seed(struct rng *r, uint64_t seed)
{
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

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
uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
  return lo + rng_next(r) % (hi - lo + 1);
}

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

void on_signal(int sig)
{
  struct sim *s = g_sim;
  struct proc *p[4] = {&s->nbdkit, &s->ds[0], &s->ds[1], &s->ds[2]};
  for (int i = 0; i < 4; i++)
    if (p[i]->pid > 0)
      kill(p[i]->pid, SIGKILL);
  _exit(128 + sig);
}

/* Record one event: in the ring (printed on failure) and in sim.log. */
void __attribute__((format(printf, 2, 3)))
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
void tail_file(const char *path, int n)
{
  char cmd[600];
  snprintf(cmd, sizeof cmd, "tail -n %d '%s' >&2", n, path);
  fprintf(stderr, "--- last %d lines of %s:\n", n, path);
  if (system(cmd) != 0)
    fprintf(stderr, "(could not read it)\n");
}

/* Report a failure with everything needed to replay it, clean up, exit 1. */
void __attribute__((noreturn, format(printf, 2, 3)))
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
  fprintf(stderr,
          "crucible-sim: seed %" PRIu64 " (replay: crucible-sim "
          "--seed %" PRIu64 " --seconds %u --extent-count %u --timeout %u%s"
          "%s%s)\n",
          s->o.seed, s->o.seed, s->o.seconds, s->o.extent_count, s->o.timeout,
          s->o.inject ? " --inject-bug" : "",
          s->o.lenient ? " --lenient-crash" : "", extra);
  uint64_t first = s->nhist > HIST_SHOW ? s->nhist - HIST_SHOW : 0;
  fprintf(stderr, "crucible-sim: last %" PRIu64 " events:\n", s->nhist - first);
  for (uint64_t i = first; i < s->nhist; i++)
    fprintf(stderr, "  %s\n", s->hist[i % HIST]);
  tail_file(s->nblog, 25);
  if (s->logf)
    fflush(s->logf);
  kill_children(s);
  exit(1);
}

void *xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "crucible-sim: out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}
