/* crucible-c: progress reports for long command-line work (progress.h). */
#include <string.h>
#include <time.h>

#include "progress.h"

#define BAR_WIDTH 24

/* Monotonic seconds. */
static double now_secs(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

void progress_bytes(uint64_t v, char *buf, size_t len)
{
  static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB",
                                     "TiB",   "PiB", "EiB"};
  int u = 0;
  double d = (double) v;
  while (d >= 1024 && u < 6)
    d /= 1024, u++;
  if (u == 0 || d == (double) (uint64_t) d)
    snprintf(buf, len, "%.0f %s", d, unit[u]);
  else
    snprintf(buf, len, "%.1f %s", d, unit[u]);
}

void progress_duration(double secs, char *buf, size_t len)
{
  if (secs < 0 || secs > 99 * 3600.0 || secs != secs) {
    snprintf(buf, len, "--:--");
    return;
  }
  unsigned s = (unsigned) (secs + 0.5);
  if (s >= 3600)
    snprintf(buf, len, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(buf, len, "%u:%02u", s / 60, s % 60);
}

int progress_format(char *buf, size_t len, const char *label, bool tty,
                    uint64_t done, uint64_t total, double elapsed)
{
  char d[32], t[32], rate[32], eta[16];
  double frac = total ? (double) done / (double) total : 0;
  /* Rate over the whole run: steadier than an instantaneous one. */
  double bps = elapsed > 0 ? (double) done / elapsed : 0;
  double left = bps > 0 && total ? (double) (total - done) / bps : -1;

  if (frac > 1)
    frac = 1;
  unsigned pct = (unsigned) (frac * 100); /* 99.9% is not done: round down */
  progress_bytes(done, d, sizeof d);
  progress_bytes(total, t, sizeof t);
  progress_bytes((uint64_t) bps, rate, sizeof rate);
  progress_duration(left, eta, sizeof eta);
  if (!tty)
    return snprintf(buf, len, "%s: %3u%% %s of %s, %s/s, ETA %s", label, pct, d,
                    t, rate, eta);
  char bar[BAR_WIDTH + 1];
  int fill = (int) (frac * BAR_WIDTH);
  memset(bar, '#', (size_t) fill);
  memset(bar + fill, '.', (size_t) (BAR_WIDTH - fill));
  bar[BAR_WIDTH] = '\0';
  return snprintf(buf, len, "%s [%s] %3u%% %s/%s %s/s ETA %s", label, bar, pct,
                  d, t, rate, eta);
}

void progress_start(struct progress *p, FILE *out, bool tty, const char *label,
                    uint64_t total)
{
  memset(p, 0, sizeof *p);
  p->out = out;
  p->tty = tty;
  p->label = label;
  p->total = total;
  p->start = now_secs();
  p->last = 0; /* relative to start, like progress_update_at's clock */
}

/* Print the current state now. */
static void report(struct progress *p, double elapsed)
{
  char line[PROGRESS_LINE_MAX];
  progress_format(line, sizeof line, p->label, p->tty, p->done, p->total,
                  elapsed);
  if (p->tty) {
    fprintf(p->out, "\r\033[K%s", line);
    p->drawn = true;
  } else {
    fprintf(p->out, "%s\n", line);
  }
  fflush(p->out);
}

void progress_update_at(struct progress *p, uint64_t done, double now)
{
  p->done = p->total && done > p->total ? p->total : done;
  if (p->out == NULL)
    return;
  double interval = p->tty ? PROGRESS_TTY_INTERVAL : PROGRESS_LOG_INTERVAL;
  if (now - p->last < interval)
    return;
  p->last = now;
  report(p, now);
}

void progress_update(struct progress *p, uint64_t done)
{
  progress_update_at(p, done, now_secs() - p->start);
}

void progress_clear(struct progress *p)
{
  if (p->out && p->drawn) {
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->drawn = false;
  }
}

void progress_end(struct progress *p, bool ok)
{
  char d[32], rate[32];
  double elapsed = now_secs() - p->start;
  progress_clear(p);
  if (p->out == NULL || !ok)
    return; /* the caller says what failed, in one line */
  progress_bytes(p->done, d, sizeof d);
  progress_bytes(elapsed > 0 ? (uint64_t) ((double) p->done / elapsed) : 0,
                 rate, sizeof rate);
  fprintf(p->out, "%s: %s in %.1f s, %s/s\n", p->label, d, elapsed, rate);
  fflush(p->out);
}
