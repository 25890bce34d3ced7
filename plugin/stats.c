/* crucible-c upstairs: observability (stats=FILE, status lines).
 *
 * Status lines: every change of a downstairs' state (enum up_dstate) is
 * logged once, by ds_line(), as "downstairs H:P: STATE[ DETAIL]" with the
 * state names of the stats file: "connecting", "reconciling", "active",
 * "faulted: WHY", "offline: WHY", "live-repair N/M".  A live repair also
 * logs its progress ("live-repair N/M") when 10 % more extents are done
 * or UP_PROGRESS_MS passed since the last line, and once at the end.
 * faulted and offline are warnings (nbdkit_error "warning: ...") while
 * the volume runs; everything else, and every line during start-up
 * (which fails with one error line of its own) or stop, is informational
 * (nbdkit_debug, shown with nbdkit -v).
 *
 * States: connecting = a connection is being set up (TCP, HELLO,
 * EXTENT_STATES, waiting for or answering ACTIVATE), or activated while
 * the others still answer; reconciling = activated, start-up
 * reconciliation runs; active = taking IO; live-repair = activated after
 * a fault, extents being copied to it; faulted = it was activated once
 * and its connection is lost (reconnecting with backoff; a TCP connect
 * attempt to a host that is still down does not count as connecting);
 * offline = never activated and not connected, or given up for good
 * (refused, fenced, stopped).
 *
 * Volume health: one value for the whole volume, "healthy" (3 active),
 * "degraded" (2 active: IO goes on, one more fault fails it; a replica
 * in live-repair is not active yet) or "failed" (fewer: IO fails, or
 * fenced by a newer upstairs; also while starting, before two are
 * active).  Every change is one line "volume: HEALTH (N of 3 downstairs
 * active)": a notice for healthy and a warning otherwise while the
 * volume runs, informational during start-up and stop.
 *
 * Stats file (stats=FILE): rewritten by the loop thread every second
 * (the 1 s tick), on every state change and a last time at stop, as
 * FILE.tmp in the same directory then rename(2), so a reader always sees
 * one whole JSON document.  No fsync: it is a monitoring snapshot, not
 * state.  A write failure logs one warning, then nothing until a write
 * works again.  Fields (counters cumulative since up_start):
 *
 *   version 1; time (unix seconds); phase connecting | reconciling |
 *   running | failed | stopped; health healthy | degraded | failed; gen (0 before activation); size (bytes,
 *   0 before activation);
 *   downstairs[3]: address, state, inflight_jobs, inflight_bytes (frame
 *     bytes), reads, writes, trims, flushes, read_bytes, write_bytes
 *     (block data of completed jobs), latency_us {p50, p99} (send to
 *     reply, over the replies from that downstairs in the last 1 s
 *     window; null when none arrived in it; a value is the upper edge of
 *     a log bucket, at most 25 % above the true one), errors (error
 *     replies), faults, reconnects (TCP connections after the first),
 *     repair {extents_done, extents_total} (the current or last repair:
 *     live repair counts every extent, reconciliation the extents that
 *     differed at start; 0/0 if none);
 *   flush (the next flush number); per downstairs also connected and
 *   last_error (its last failure, or null); scrub {state, runs, rate,
 *   extents_done/total, bytes_done/total, blocks_bad, blocks_stale,
 *   blocks_healed, blocks_unhealable, start, end, why} (scrub.c);
 *   volume: reads, writes, trims, flushes, read_bytes, write_bytes,
 *     errors: jobs as the callers submitted them (a request is split at
 *     extent boundaries and 4 MiB); heal writes and read retries on
 *     another replica are not counted; errors are jobs that failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

#define HIST_SUB_BITS 2 /* log2(UP_HIST_SUB) */
_Static_assert(1 << HIST_SUB_BITS == UP_HIST_SUB, "UP_HIST_SUB");

static const char *const dstate_name[] = {
    [UP_DS_CONNECTING] = "connecting",   [UP_DS_RECONCILING] = "reconciling",
    [UP_DS_ACTIVE] = "active",           [UP_DS_FAULTED] = "faulted",
    [UP_DS_LIVE_REPAIR] = "live-repair", [UP_DS_OFFLINE] = "offline",
};

/* Bucket of a latency in µs. */
static unsigned hist_index(uint64_t us)
{
  unsigned k, i;

  if (us < UP_HIST_SUB)
    return (unsigned) us;
  k = 63u - (unsigned) __builtin_clzll(us); /* us in [2^k, 2^(k+1)) */
  i = UP_HIST_SUB * (k - HIST_SUB_BITS + 1) +
      (unsigned) ((us >> (k - HIST_SUB_BITS)) & (UP_HIST_SUB - 1));
  return i < UP_HIST_BUCKETS ? i : UP_HIST_BUCKETS - 1;
}

/* Largest value that falls in bucket i. */
static uint64_t hist_upper(unsigned i)
{
  unsigned k = i / UP_HIST_SUB + HIST_SUB_BITS - 1;
  uint64_t sub = i % UP_HIST_SUB;

  if (i < UP_HIST_SUB)
    return i;
  return ((UP_HIST_SUB + sub + 1) << (k - HIST_SUB_BITS)) - 1;
}

void up__hist_add(struct up_hist *h, uint64_t us)
{
  h->b[hist_index(us)]++;
  h->n++;
}

int64_t up__hist_pct(const struct up_hist *h, unsigned pct)
{
  uint64_t rank = ((uint64_t) h->n * pct + 99) / 100, seen = 0;

  if (h->n == 0)
    return -1;
  if (rank == 0)
    rank = 1;
  for (unsigned i = 0; i < UP_HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= rank)
      return (int64_t) hist_upper(i);
  }
  return (int64_t) hist_upper(UP_HIST_BUCKETS - 1);
}

/* c's state, derived (see the header comment). */
enum up_dstate up__ds_state(struct upstairs *up, const struct cl *c)
{
  enum up_phase ph;

  if (c->final || c->state == CL_GONE)
    return UP_DS_OFFLINE;
  switch (c->state) {
  case CL_ACTIVE:
    if (c->lr)
      return UP_DS_LIVE_REPAIR;
    ph = up__phase(up);
    if (ph == UP_PH_RECONCILE)
      return UP_DS_RECONCILING;
    if (ph == UP_PH_CONNECT || ph == UP_PH_ACTIVATING)
      return UP_DS_CONNECTING;
    return UP_DS_ACTIVE;
  case CL_CONNECTING:
    if (c->dstate == UP_DS_FAULTED || c->dstate == UP_DS_OFFLINE)
      return (enum up_dstate) c->dstate;
    return UP_DS_CONNECTING;
  case CL_IDLE:
  case CL_CLOSING: return c->was_active ? UP_DS_FAULTED : UP_DS_OFFLINE;
  default: return UP_DS_CONNECTING;
  }
}

/* A live repair's progress: "E/N extents, D/T MiB compared, C MiB
 * copied, R MB/s, ETA S s" (static buffer: loop thread only). */
static const char *ds_repair_detail(struct upstairs *up, const struct cl *c)
{
  static char buf[200];
  const struct up_ds_stats *s = &up->dst[c->idx];
  uint64_t now = up->loop_init ? uv_now(&up->loop) : 0;
  double secs =
      now > s->rep_start_ms ? (double) (now - s->rep_start_ms) / 1e3 : 0;
  double rate = secs > 0 ? (double) s->rep_bytes_done / secs : 0;
  double left = (double) (s->rep_bytes_total - s->rep_bytes_done);
  char eta[32] = "?";

  if (s->rep_bytes_done >= s->rep_bytes_total)
    snprintf(eta, sizeof eta, "0");
  else if (rate > 0)
    snprintf(eta, sizeof eta, "%.0f", left / rate);
  snprintf(buf, sizeof buf,
           "%u/%u extents, %.1f/%.1f MiB compared, %.1f MiB copied, "
           "%.0f MB/s, ETA %s s",
           s->rep_done, s->rep_total, (double) s->rep_bytes_done / 1048576.0,
           (double) s->rep_bytes_total / 1048576.0,
           (double) s->rep_copied / 1048576.0, rate / 1e6, eta);
  return buf;
}

/* The one status line format: "downstairs H:P: STATE[: why| n/m]".
 * progress: a live-repair progress line, not a change of state. */
static void ds_line(struct upstairs *up, struct cl *c, enum up_dstate st,
                    bool progress)
{
  const struct up_ds_stats *s = &up->dst[c->idx];
  enum up_phase ph = up__phase(up);
  /* Start-up has its own one-line outcome (up_error, "activated"), stop
   * is the operator's doing: only a running volume's changes are news,
   * and the loss of a downstairs that was activated. */
  bool news = !up->shut && ph == UP_PH_RUNNING;
  enum log_level lv = news && !progress ? LOG_NOTICE : LOG_INFO;
  char detail[160] = "";

  if (st == UP_DS_FAULTED || st == UP_DS_OFFLINE) {
    snprintf(detail, sizeof detail, ": %s", c->why);
    if (!up->shut && c->was_active)
      lv = LOG_WARN;
  } else if (st == UP_DS_LIVE_REPAIR) {
    snprintf(detail, sizeof detail, " %u/%u", s->rep_done, s->rep_total);
    c->prog_ms = up->loop_init ? uv_now(&up->loop) : 0;
    c->prog_done = s->rep_done;
  }
  if (progress && st == UP_DS_LIVE_REPAIR) {
    log_msg(lv, "live repair of %s: %s", c->name, ds_repair_detail(up, c));
    return;
  }
  log_msg(lv, "downstairs %s: %s%s", c->name, dstate_name[st], detail);
  if (lv == LOG_WARN)
    up__admin_note(up, "downstairs %s: %s%s", c->name, dstate_name[st], detail);
}

static const char *const health_name[] = {
    [UP_H_NONE] = "failed",
    [UP_H_HEALTHY] = "healthy",
    [UP_H_DEGRADED] = "degraded",
    [UP_H_FAILED] = "failed",
};

/* The volume's health from its downstairs' states (header comment);
 * *nactive gets the number active. */
static enum up_health vol_health(struct upstairs *up, unsigned *nactive)
{
  unsigned n = 0;
  bool fenced;

  pthread_mutex_lock(&up->lock);
  fenced = up->fenced;
  pthread_mutex_unlock(&up->lock);
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    n += up__ds_state(up, &up->cl[i]) == UP_DS_ACTIVE;
  *nactive = n;
  if (fenced || n < 2)
    return UP_H_FAILED;
  return n == UP_DOWNSTAIRS ? UP_H_HEALTHY : UP_H_DEGRADED;
}

/* Log the volume's health if it changed (one line per change). */
static void vol_update(struct upstairs *up)
{
  unsigned n;
  enum up_health h = vol_health(up, &n);
  bool news = !up->shut && up__phase(up) == UP_PH_RUNNING;

  if (h == up->health)
    return;
  up->health = h;
  log_msg(!news               ? LOG_INFO
          : h == UP_H_HEALTHY ? LOG_NOTICE
                              : LOG_WARN,
          "volume: %s (%u of 3 downstairs active)", health_name[h], n);
}

void up__ds_update(struct upstairs *up, struct cl *c)
{
  enum up_dstate st = up__ds_state(up, c);
  int was = c->dstate;

  if ((int) st == was)
    return;
  c->dstate = (int) st;
  if (st == UP_DS_FAULTED && (was == UP_DS_ACTIVE || was == UP_DS_RECONCILING ||
                              was == UP_DS_LIVE_REPAIR))
    up->dst[c->idx].faults++;
  ds_line(up, c, st, false);
  vol_update(up);
  up__stats_write(up);
}

void up__ds_update_all(struct upstairs *up)
{
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    up__ds_update(up, &up->cl[i]);
}

void up__ds_progress(struct upstairs *up, struct cl *c, uint32_t done,
                     uint32_t total)
{
  struct up_ds_stats *s = &up->dst[c->idx];
  uint64_t now = uv_now(&up->loop);

  s->rep_done = done;
  s->rep_total = total;
  if (c->dstate != UP_DS_LIVE_REPAIR || !c->lr)
    return;
  if (done < total && now - c->prog_ms < UP_PROGRESS_MS &&
      (uint64_t) (done - c->prog_done) * 10 < total)
    return;
  ds_line(up, c, UP_DS_LIVE_REPAIR, true);
}

void up__stats_reply(struct upstairs *up, struct cl *c,
                     const struct up_job *job, bool ok)
{
  struct up_ds_stats *s = &up->dst[c->idx];
  uint64_t now_us = uv_hrtime() / 1000;
  uint64_t bytes = (uint64_t) job->n * up->region.block_size;

  up__hist_add(&s->win, now_us - job->sent_us);
  if (!ok) {
    s->errors++;
    return;
  }
  switch (job->type) {
  case PROTO_T_READ:
    s->reads++;
    s->read_bytes += bytes;
    break;
  case PROTO_T_WRITE:
    s->writes++;
    s->write_bytes += bytes;
    break;
  case PROTO_T_TRIM: s->trims++; break;
  case PROTO_T_EXTENT_MAP_REQ: break; /* block status: no data moves */
  default: s->flushes++; break;
  }
}

void up__stats_decided(struct upstairs *up, const struct up_job *job,
                       int result)
{
  struct up_vol_stats *v = &up->vst;
  uint64_t bytes = (uint64_t) job->n * up->region.block_size;

  if (job->only || job->tried || job->sys)
    return;
  if (result < 0) {
    v->errors++;
    return;
  }
  switch (job->type) {
  case PROTO_T_READ:
    v->reads++;
    v->read_bytes += bytes;
    break;
  case PROTO_T_WRITE:
    v->writes++;
    v->write_bytes += bytes;
    break;
  case PROTO_T_TRIM: v->trims++; break;
  case PROTO_T_EXTENT_MAP_REQ: break;
  default: v->flushes++; break;
  }
}

/* Append formatted text to j (overflow is remembered, not written
 * past). */
void up__jb_printf(struct up_jbuf *j, const char *fmt, ...)
{
  va_list ap;
  int n;

  if (j->over)
    return;
  va_start(ap, fmt);
  n = vsnprintf(j->b + j->len, j->cap - j->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t) n >= j->cap - j->len)
    j->over = true;
  else
    j->len += (size_t) n;
}

/* Append s as a JSON string (host names are ours, but escape anyway). */
void up__jb_str(struct up_jbuf *j, const char *s)
{
  up__jb_printf(j, "\"");
  for (; *s; s++) {
    unsigned char ch = (unsigned char) *s;
    if (ch == '"' || ch == '\\')
      up__jb_printf(j, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      up__jb_printf(j, "\\u%04x", ch);
    else
      up__jb_printf(j, "%c", ch);
  }
  up__jb_printf(j, "\"");
}

#define jb_printf up__jb_printf
#define jb_str up__jb_str
#define jbuf up_jbuf

/* A latency value, or null. */
static void jb_lat(struct jbuf *j, const char *key, int64_t us)
{
  if (us < 0)
    jb_printf(j, "\"%s\":null", key);
  else
    jb_printf(j, "\"%s\":%lld", key, (long long) us);
}

/* One downstairs object. */
static void stats_ds(struct upstairs *up, int i, struct jbuf *j)
{
  const struct cl *c = &up->cl[i];
  const struct up_ds_stats *s = &up->dst[i];

  jb_printf(j, "%s\n  {\"address\":", i ? "," : "");
  jb_str(j, c->name);
  jb_printf(j,
            ",\"state\":\"%s\",\"inflight_jobs\":%u,"
            "\"inflight_bytes\":%llu,\"reads\":%llu,\"writes\":%llu,"
            "\"trims\":%llu,\"flushes\":%llu,\"read_bytes\":%llu,"
            "\"write_bytes\":%llu,\"latency_us\":{",
            dstate_name[up__ds_state(up, c)], c->inflight,
            (unsigned long long) c->inflight_bytes,
            (unsigned long long) s->reads, (unsigned long long) s->writes,
            (unsigned long long) s->trims, (unsigned long long) s->flushes,
            (unsigned long long) s->read_bytes,
            (unsigned long long) s->write_bytes);
  jb_lat(j, "p50", s->p50_us);
  jb_printf(j, ",");
  jb_lat(j, "p99", s->p99_us);
  jb_printf(j,
            "},\"errors\":%llu,\"faults\":%llu,\"reconnects\":%llu,"
            "\"repair\":{\"extents_done\":%u,\"extents_total\":%u,"
            "\"bytes_done\":%llu,\"bytes_total\":%llu,"
            "\"copied_bytes\":%llu}",
            (unsigned long long) s->errors, (unsigned long long) s->faults,
            (unsigned long long) s->reconnects, s->rep_done, s->rep_total,
            (unsigned long long) s->rep_bytes_done,
            (unsigned long long) s->rep_bytes_total,
            (unsigned long long) s->rep_copied);
  jb_printf(j, ",\"connected\":%s,\"last_error\":",
            c->state >= CL_HELLO && c->state <= CL_ACTIVE ? "true" : "false");
  if (c->why[0])
    jb_str(j, c->why);
  else
    jb_printf(j, "null");
  jb_printf(j, "}");
}

/* The whole document (no trailing newline). */
void up__stats_render(struct upstairs *up, struct jbuf *j)
{
  static const char *const phase[] = {
      [UP_PH_NEW] = "connecting",        [UP_PH_CONNECT] = "connecting",
      [UP_PH_ACTIVATING] = "connecting", [UP_PH_RECONCILE] = "reconciling",
      [UP_PH_RUNNING] = "running",       [UP_PH_FAILED] = "failed",
      [UP_PH_STOPPED] = "stopped",
  };
  const struct up_vol_stats *v = &up->vst;
  bool known = up->block_count > 0;
  unsigned nactive;

  jb_printf(
      j,
      "{\"version\":1,\"time\":%lld,\"phase\":\"%s\","
      "\"health\":\"%s\",\"gen\":%llu,\"flush\":%llu,"
      "\"size\":%llu,",
      (long long) time(NULL), phase[up__phase(up)],
      health_name[vol_health(up, &nactive)], (unsigned long long) up->gen,
      (unsigned long long) __atomic_load_n(&up->flush_no, __ATOMIC_SEQ_CST),
      (unsigned long long) (known ? geom_size(&up->region) : 0));
  /* snapshot=: its name (proto_snap_name_ok: nothing to escape). */
  if (up_snapshot_mode(up))
    jb_printf(j, "\"snapshot\":\"%s\",", up->cfg.snapshot);
  jb_printf(j, "\"downstairs\":[");
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    stats_ds(up, i, j);
  jb_printf(j,
            "],\n \"volume\":{\"reads\":%llu,\"writes\":%llu,"
            "\"trims\":%llu,\"flushes\":%llu,\"read_bytes\":%llu,"
            "\"write_bytes\":%llu,\"errors\":%llu},\n \"scrub\":",
            (unsigned long long) v->reads, (unsigned long long) v->writes,
            (unsigned long long) v->trims, (unsigned long long) v->flushes,
            (unsigned long long) v->read_bytes,
            (unsigned long long) v->write_bytes,
            (unsigned long long) v->errors);
  up__scrub_json(up, j, false);
  jb_printf(j, "}");
}

/* The human status text (crucible-admin status). */
void up__status_text(struct upstairs *up, struct jbuf *j)
{
  static const char *const phase[] = {
      [UP_PH_NEW] = "connecting",        [UP_PH_CONNECT] = "connecting",
      [UP_PH_ACTIVATING] = "connecting", [UP_PH_RECONCILE] = "reconciling",
      [UP_PH_RUNNING] = "running",       [UP_PH_FAILED] = "failed",
      [UP_PH_STOPPED] = "stopped",
  };
  unsigned nactive, inflight = 0;
  enum up_health h = vol_health(up, &nactive);
  uint64_t nerr;

  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    inflight += up->cl[i].inflight;
  jb_printf(j, "volume: %s (%u of 3 downstairs active), phase %s\n",
            health_name[h], nactive, phase[up__phase(up)]);
  if (up_snapshot_mode(up))
    jb_printf(j, "serving snapshot %s read-only\n", up->cfg.snapshot);
  jb_printf(
      j,
      "generation %llu, flush %llu, size %llu bytes, %u jobs in "
      "flight\n",
      (unsigned long long) up->gen,
      (unsigned long long) __atomic_load_n(&up->flush_no, __ATOMIC_SEQ_CST),
      (unsigned long long) (up->block_count ? geom_size(&up->region) : 0),
      inflight);
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    enum up_dstate st = up__ds_state(up, c);
    jb_printf(j, "downstairs %s: %s, %u jobs in flight", c->name,
              dstate_name[st], c->inflight);
    if (st == UP_DS_LIVE_REPAIR)
      jb_printf(j, ", live repair %s", ds_repair_detail(up, c));
    if (c->why[0])
      jb_printf(j, ", last error: %s", c->why);
    jb_printf(j, "\n");
  }
  up__scrub_text(up, j);
  pthread_mutex_lock(&up->adm_err_lock);
  nerr = up->adm_nerr;
  for (uint64_t k = nerr > UP_ERR_RING ? nerr - UP_ERR_RING : 0; k < nerr; k++)
    jb_printf(j, "error: %s\n", up->adm_err[k % UP_ERR_RING]);
  pthread_mutex_unlock(&up->adm_err_lock);
}

/* Write buf to tmp and rename it over path.  0 or -errno. */
static int stats_save(const char *path, const char *tmp, const char *buf,
                      size_t len)
{
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  size_t off = 0;
  int r = 0;

  if (fd < 0)
    return -errno;
  while (off < len && r == 0) {
    ssize_t n = write(fd, buf + off, len - off);
    if (n > 0)
      off += (size_t) n;
    else if (n < 0 && errno != EINTR)
      r = -errno;
  }
  if (close(fd) < 0 && r == 0)
    r = -errno;
  if (r == 0 && rename(tmp, path) < 0)
    r = -errno;
  if (r < 0)
    unlink(tmp);
  return r;
}

void up__stats_write(struct upstairs *up)
{
  char tmp[sizeof up->cfg.stats_path + 8], buf[16384];
  struct jbuf j = {.b = buf, .cap = sizeof buf};
  int r;

  if (!up->cfg.stats_path[0])
    return;
  up__stats_render(up, &j);
  jb_printf(&j, "\n");
  snprintf(tmp, sizeof tmp, "%s.tmp", up->cfg.stats_path);
  r = j.over ? -ENOBUFS : stats_save(up->cfg.stats_path, tmp, j.b, j.len);
  if (r < 0 && !up->stats_failing)
    log_warn("stats file %s: cannot write: %s (not updated until a write "
             "works again)",
             up->cfg.stats_path, log_strerror(-r));
  else if (r == 0 && up->stats_failing)
    log_info("stats file %s: written again", up->cfg.stats_path);
  up->stats_failing = r < 0;
}

void up__stats_tick(struct upstairs *up)
{
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct up_ds_stats *s = &up->dst[i];
    s->p50_us = up__hist_pct(&s->win, 50);
    s->p99_us = up__hist_pct(&s->win, 99);
    memset(&s->win, 0, sizeof s->win);
  }
  up__ds_update_all(up);
  up__stats_write(up);
}
