/* crucible-c upstairs: the online scrub (crucible-admin scrub start).
 *
 * One background thread reads the whole volume, extent by extent in
 * chunks of at most PROTO_MAX_JOB_BYTES, from EVERY full replica (one
 * READ job aimed at all of them, job->only: the downstairs checks each
 * block's stored bytes against its hash and flags BAD what matches none),
 * and checks every replica's copy of every block here (up__blk_check:
 * GCM with the key, the hash on a plain region).  Per block the newest
 * authentic version wins, as verify=all reads: a replica whose copy
 * failed its check (bad) or is authentic but older (stale) is healed
 * with the winner's stored block through heal.c, the same WRITE aimed at
 * that one downstairs a read's heal uses.  A block no replica holds
 * authentically is unhealable (logged, counted, left).  Blocks all
 * replicas hold as zeroes move nothing.
 *
 * Ordering: each chunk is read and healed under the range lock of its
 * blocks (io.c), so guest writes to it wait for one chunk and a heal
 * never overwrites newer data; the jobs go through the normal queue, in
 * id order with guest IO.  Live-repair targets (job->lr_mask) are not
 * judged: live repair levels them.  Rate: the bytes of the volume
 * scanned per second are held to sc.rate by sleeping between chunks (on
 * sc.cv, so stop is prompt).  One scrub at a time; up_stop stops and
 * joins it before the loop goes (up__scrub_stop).  One log line at start
 * and end and per finding.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

static const char *const sc_state_name[] = {
    [UP_SC_NEVER] = "never",   [UP_SC_RUNNING] = "running",
    [UP_SC_DONE] = "done",     [UP_SC_STOPPED] = "stopped",
    [UP_SC_FAILED] = "failed",
};

void up__scrub_init(struct upstairs *up)
{
  pthread_condattr_t ca;

  pthread_mutex_init(&up->sc.mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&up->sc.cv, &ca);
  pthread_condattr_destroy(&ca);
}

void up__scrub_free(struct upstairs *up)
{
  pthread_mutex_destroy(&up->sc.mu);
  pthread_cond_destroy(&up->sc.cv);
}

/* Record one finding (ring) and log it. */
static void sc_find(struct upstairs *up, const struct up_scrub_finding *f)
{
  struct up_scrub *sc = &up->sc;

  log_warn("scrub: downstairs %s extent %llu block %llu (lba %llu): %s%s: "
           "%s",
           up->cl[f->ds].name, (unsigned long long) f->extent,
           (unsigned long long) f->block, (unsigned long long) f->lba,
           f->stale ? "stale: " : "bad: ", f->why,
           f->healed              ? "healed"
           : f->unhealable        ? "unhealable"
           : up_snapshot_mode(up) ? "not healed (snapshot= is read-only)"
                                  : "heal failed");
  pthread_mutex_lock(&sc->mu);
  sc->f[sc->nf % UP_SCRUB_FINDINGS] = *f;
  sc->nf++;
  if (f->stale)
    sc->blocks_stale++;
  else
    sc->blocks_bad++;
  sc->blocks_healed += f->healed;
  sc->blocks_unhealable += f->unhealable;
  pthread_mutex_unlock(&sc->mu);
}

/* Judge block i of job (read from every replica in mask) and heal. */
static void sc_block(struct upstairs *up, struct up_job *job, unsigned mask,
                     uint32_t i, uint8_t *tmp)
{
  uint64_t lba = job->lba + i, ver[UP_DOWNSTAIRS] = {0}, best = 0;
  const char *why[UP_DOWNSTAIRS] = {NULL};
  int bd = -1;

  for (int d = 0; d < UP_DOWNSTAIRS; d++) {
    if (!(mask & (1u << d)))
      continue;
    if ((job->failed & (1u << d)) || !(job->seen & (1u << d)) ||
        job->reply[d].n != job->n)
      why[d] = "read failed";
    else
      why[d] = up__blk_check(up, &job->reply[d], i, lba, tmp, &ver[d]);
    if (!why[d] && (bd < 0 || ver[d] > best)) {
      best = ver[d];
      bd = d;
    }
  }
  for (int d = 0; d < UP_DOWNSTAIRS; d++) {
    struct up_scrub_finding f = {.ds = d, .lba = lba};
    if (!(mask & (1u << d)) || (!why[d] && ver[d] >= best))
      continue;
    if (why[d] && !strcmp(why[d], "read failed"))
      continue; /* a replica lost mid-scrub: not a finding about a block */
    f.stale = !why[d];
    f.extent = geom_extent_of(&up->region, lba);
    f.block = lba % up->region.extent_size;
    f.version = ver[d];
    f.good_version = best;
    if (why[d])
      snprintf(f.why, sizeof f.why, "%s", why[d]);
    else
      snprintf(f.why, sizeof f.why, "version %llu older than %llu",
               (unsigned long long) ver[d], (unsigned long long) best);
    if (bd < 0)
      f.unhealable = true;
    else if (best == 0) { /* the winner holds zeroes: trim with its version */
      struct proto_ctx zc;
      proto_ctx_get(job->reply[bd].ctxs + (size_t) i * PROTO_CTX_LEN, &zc);
      f.healed = zc.version && up__heal_zero(up, lba, zc.version, d) == 0;
    } else
      f.healed = up__heal_block(up, &job->reply[bd], i, lba, d) == 0;
    sc_find(up, &f);
  }
}

/* Sleep until bytes scanned since t0 fit the rate; true if asked to
 * quit. */
static bool sc_pace(struct upstairs *up, const struct timespec *t0,
                    uint64_t bytes)
{
  struct up_scrub *sc = &up->sc;
  struct timespec dl = *t0;
  bool quit;
  uint64_t rate;

  pthread_mutex_lock(&sc->mu);
  rate = sc->rate ? sc->rate : 1;
  dl.tv_sec += (time_t) (bytes / rate);
  dl.tv_nsec += (long) ((bytes % rate) * 1000000000ull / rate);
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  while (!sc->quit &&
         pthread_cond_timedwait(&sc->cv, &sc->mu, &dl) != ETIMEDOUT)
    ;
  quit = sc->quit;
  pthread_mutex_unlock(&sc->mu);
  return quit;
}

/* Scrub one chunk: read it from every replica under its range lock,
 * judge and heal each block.  0 or -EIO (the volume cannot serve it). */
static int sc_chunk(struct upstairs *up, uint64_t lba, uint32_t n, uint8_t *tmp)
{
  struct up_range rg = {.start = lba, .end = lba + n};
  struct up_job *job;
  unsigned mask;
  int res, r;

  if ((r = up__range_lock(up, &rg)) < 0)
    return r;
  job = up__job_new(PROTO_T_READ, lba, n, PROTO_IO_HDR_LEN);
  if (!job) {
    up__range_unlock(up, &rg);
    return -ENOMEM;
  }
  memset(job->frame, 0, PROTO_IO_HDR_LEN);
  job->only = (1u << UP_DOWNSTAIRS) - 1; /* the loop sends to the active */
  up__run_jobs(up, &job, 1, &res);
  r = -EIO;
  if (job) {
    pthread_mutex_lock(&up->lock);
    mask = job->sent & ~job->lr_mask;
    pthread_mutex_unlock(&up->lock);
    if (__builtin_popcount(mask & job->seen) >= 2 || (res == 0 && mask)) {
      for (uint32_t i = 0; i < n; i++)
        sc_block(up, job, mask, i, tmp);
      r = 0;
    }
    up__job_put(job);
  }
  up__range_unlock(up, &rg);
  return r;
}

/* The scrub thread: every extent, chunk by chunk. */
static void *sc_thread(void *arg)
{
  struct upstairs *up = arg;
  struct up_scrub *sc = &up->sc;
  uint32_t bs = up->region.block_size;
  uint64_t max = proto_max_job_blocks(PROTO_T_READ, bs), done = 0;
  uint8_t *tmp = malloc(bs);
  enum up_scrub_state end = UP_SC_DONE;
  struct timespec t0;
  char why[160] = "";
  uint64_t blocks;

  /* The size at the start: an extend meanwhile is not scrubbed. */
  pthread_mutex_lock(&sc->mu);
  blocks = sc->bytes_total / bs;
  pthread_mutex_unlock(&sc->mu);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint64_t lba = 0; lba < blocks && tmp;) {
    uint64_t n = geom_left_in_extent(&up->region, lba);
    int r;
    if (n > max)
      n = max;
    if (n > blocks - lba)
      n = blocks - lba;
    if (sc_pace(up, &t0, done * bs)) {
      end = UP_SC_STOPPED;
      snprintf(why, sizeof why, "stopped at unload");
      break;
    }
    if ((r = sc_chunk(up, lba, (uint32_t) n, tmp)) < 0) {
      end = UP_SC_FAILED;
      snprintf(why, sizeof why, "cannot read lba %llu from two replicas: %s",
               (unsigned long long) lba, log_strerror(-r));
      break;
    }
    lba += n;
    done += n;
    pthread_mutex_lock(&sc->mu);
    sc->bytes_done = done * bs;
    sc->ext_done = (uint32_t) (lba / up->region.extent_size);
    pthread_mutex_unlock(&sc->mu);
  }
  if (!tmp) {
    end = UP_SC_FAILED;
    snprintf(why, sizeof why, "out of memory");
  }
  free(tmp);
  pthread_mutex_lock(&sc->mu);
  sc->state = end;
  sc->end_s = (uint64_t) time(NULL);
  snprintf(sc->why, sizeof sc->why, "%s", why);
  if (end == UP_SC_FAILED)
    up__admin_note(up, "scrub failed: %s", why);
  log_msg(end == UP_SC_DONE ? LOG_NOTICE : LOG_WARN,
          "scrub %s%s%s: %u/%u extents, %llu bytes, %llu bad, %llu stale, "
          "%llu healed, %llu unhealable",
          sc_state_name[end], why[0] ? ": " : "", why, sc->ext_done,
          sc->ext_total, (unsigned long long) sc->bytes_done,
          (unsigned long long) sc->blocks_bad,
          (unsigned long long) sc->blocks_stale,
          (unsigned long long) sc->blocks_healed,
          (unsigned long long) sc->blocks_unhealable);
  pthread_mutex_unlock(&sc->mu);
  return NULL;
}

int up__scrub_start(struct upstairs *up, uint64_t rate)
{
  struct up_scrub *sc = &up->sc;
  int r;

  if (up__phase(up) != UP_PH_RUNNING)
    return -EIO;
  pthread_mutex_lock(&sc->mu);
  if (sc->state == UP_SC_RUNNING) {
    pthread_mutex_unlock(&sc->mu);
    return -EBUSY;
  }
  if (sc->thr_started) { /* the last one ended: reap it */
    pthread_join(sc->thr, NULL);
    sc->thr_started = false;
  }
  sc->state = UP_SC_RUNNING;
  sc->rate = rate;
  sc->why[0] = '\0';
  sc->start_s = (uint64_t) time(NULL);
  sc->end_s = 0;
  sc->ext_done = 0;
  sc->ext_total =
      (uint32_t) (up_size(up) / up->region.block_size / up->region.extent_size);
  sc->bytes_done = 0;
  sc->bytes_total = up_size(up);
  sc->blocks_bad = sc->blocks_stale = 0;
  sc->blocks_healed = sc->blocks_unhealable = 0;
  sc->nf = 0;
  sc->runs++;
  r = -pthread_create(&sc->thr, NULL, sc_thread, up);
  if (r < 0)
    sc->state = UP_SC_FAILED;
  else
    sc->thr_started = true;
  log_msg(r < 0 ? LOG_ERROR : LOG_NOTICE,
          "scrub %s: %u extents, %llu bytes "
          "at %llu MB/s",
          r < 0 ? "cannot start" : "started", sc->ext_total,
          (unsigned long long) sc->bytes_total,
          (unsigned long long) (rate / 1000000));
  pthread_mutex_unlock(&sc->mu);
  return r;
}

void up__scrub_stop(struct upstairs *up)
{
  struct up_scrub *sc = &up->sc;
  bool join;

  pthread_mutex_lock(&sc->mu);
  sc->quit = true;
  pthread_cond_broadcast(&sc->cv);
  join = sc->thr_started;
  sc->thr_started = false;
  pthread_mutex_unlock(&sc->mu);
  if (join)
    pthread_join(sc->thr, NULL);
}

void up__scrub_json(struct upstairs *up, struct up_jbuf *j, bool findings)
{
  struct up_scrub *sc = &up->sc;

  pthread_mutex_lock(&sc->mu);
  up__jb_printf(
      j,
      "{\"state\":\"%s\",\"runs\":%llu,\"rate\":%llu,"
      "\"extents_done\":%u,\"extents_total\":%u,"
      "\"bytes_done\":%llu,\"bytes_total\":%llu,"
      "\"blocks_bad\":%llu,\"blocks_stale\":%llu,"
      "\"blocks_healed\":%llu,\"blocks_unhealable\":%llu,"
      "\"start\":%llu,\"end\":%llu,\"why\":",
      sc_state_name[sc->state], (unsigned long long) sc->runs,
      (unsigned long long) sc->rate, sc->ext_done, sc->ext_total,
      (unsigned long long) sc->bytes_done, (unsigned long long) sc->bytes_total,
      (unsigned long long) sc->blocks_bad,
      (unsigned long long) sc->blocks_stale,
      (unsigned long long) sc->blocks_healed,
      (unsigned long long) sc->blocks_unhealable,
      (unsigned long long) sc->start_s, (unsigned long long) sc->end_s);
  up__jb_str(j, sc->why);
  if (findings) {
    bool first = true;
    up__jb_printf(j, ",\"findings\":[");
    for (uint64_t k = sc->nf > UP_SCRUB_FINDINGS ? sc->nf - UP_SCRUB_FINDINGS
                                                 : 0;
         k < sc->nf; k++) {
      const struct up_scrub_finding *f = &sc->f[k % UP_SCRUB_FINDINGS];
      up__jb_printf(j, "%s{\"downstairs\":", first ? "" : ",");
      first = false;
      up__jb_str(j, up->cl[f->ds].name);
      up__jb_printf(
          j,
          ",\"kind\":\"%s\",\"extent\":%llu,\"block\":%llu,"
          "\"lba\":%llu,\"version\":%llu,\"good_version\":%llu,"
          "\"healed\":%s,\"unhealable\":%s,\"why\":",
          f->stale ? "stale" : "bad", (unsigned long long) f->extent,
          (unsigned long long) f->block, (unsigned long long) f->lba,
          (unsigned long long) f->version, (unsigned long long) f->good_version,
          f->healed ? "true" : "false", f->unhealable ? "true" : "false");
      up__jb_str(j, f->why);
      up__jb_printf(j, "}");
    }
    up__jb_printf(j, "]");
  }
  up__jb_printf(j, "}");
  pthread_mutex_unlock(&sc->mu);
}

void up__scrub_text(struct upstairs *up, struct up_jbuf *j)
{
  struct up_scrub *sc = &up->sc;

  pthread_mutex_lock(&sc->mu);
  up__jb_printf(j, "scrub: %s", sc_state_name[sc->state]);
  if (sc->state != UP_SC_NEVER)
    up__jb_printf(j,
                  ", %u/%u extents, %llu/%llu bytes, %llu bad, %llu "
                  "stale, %llu healed, %llu unhealable%s%s",
                  sc->ext_done, sc->ext_total,
                  (unsigned long long) sc->bytes_done,
                  (unsigned long long) sc->bytes_total,
                  (unsigned long long) sc->blocks_bad,
                  (unsigned long long) sc->blocks_stale,
                  (unsigned long long) sc->blocks_healed,
                  (unsigned long long) sc->blocks_unhealable,
                  sc->why[0] ? ": " : "", sc->why);
  up__jb_printf(j, "\n");
  for (uint64_t k = sc->nf > UP_SCRUB_FINDINGS ? sc->nf - UP_SCRUB_FINDINGS : 0;
       k < sc->nf; k++) {
    const struct up_scrub_finding *f = &sc->f[k % UP_SCRUB_FINDINGS];
    up__jb_printf(j,
                  "finding: %s downstairs %s extent %llu block %llu (lba "
                  "%llu): %s: %s\n",
                  f->stale ? "stale" : "bad", up->cl[f->ds].name,
                  (unsigned long long) f->extent, (unsigned long long) f->block,
                  (unsigned long long) f->lba, f->why,
                  f->healed       ? "healed"
                  : f->unhealable ? "unhealable"
                                  : "heal failed");
  }
  pthread_mutex_unlock(&sc->mu);
}
