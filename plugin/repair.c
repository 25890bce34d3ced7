/* crucible-c upstairs: resync and live repair (docs/DESIGN.md "Live
 * repair"; the state is struct up_repair, upstairs_int.h).
 *
 * What changed while a downstairs was away.  The loop keeps, per extent,
 * the (gen, flush) that an up-to-date replica holds (xs) and the extents
 * written or trimmed since the last FLUSH (wsf), as jobs get their ids
 * (up__xs_note): a FLUSH sets xs of every extent in wsf to (gen, its
 * number), an EXTENT_FLUSH that of its extent.  A replica whose extent
 * state equals xs, that is clean there and that was not written there
 * since the last FLUSH holds what the others hold: it received every job
 * up to the FLUSH that gave it that number, in order.  So when a
 * downstairs returns (up__lr_admit) its pending set is every extent where
 * it is dirty, its state differs from xs, or wsf is set (all of them
 * that hold anything if it is a different region: a replaced disk).
 * Memory: 16 bytes and 5 bits per extent, whatever the outage.
 *
 * From its return the downstairs (the target, c->lr) gets every WRITE,
 * TRIM and FLUSH, and no reads.  A FLUSH there must not level a pending
 * extent (after a crash the next start would not compare it), so each
 * pending extent is marked there (EXTENT_MARK: dirty until EXTENT_FLUSH,
 * FLUSH skips it) before anything could: at admission if it is dirty
 * there, else before the first WRITE/TRIM sent to it (up__lr_before_send).
 *
 * The worker thread then takes the pending extents in order, in chunks of
 * at most 4 MiB, each under a range lock (guest requests on that chunk
 * wait for one chunk, never for the extent): the sources' and the
 * target's contexts are compared and the blocks that differ copied from
 * the newest authentic source version, exactly as at start-up
 * (up__rec_range, reconcile.c).  Guest writes that ran before the lock
 * reach the target ahead of the compare (one stream per downstairs, id
 * order); those after it, behind the copy.  Last, EXTENT_FLUSH of the
 * extent to the target and every active replica not pending there (the
 * sources and any admitted meanwhile, lr_level_set): all level, the mark
 * gone, the pending bit cleared (up__xs_note).  When none is left, the target is
 * active.  A source or the target lost abandons the work (epoch); it is
 * issued again when possible, and a target that returns is compared
 * afresh.  Only `only` jobs run while fewer than two are active, so a
 * volume with one full replica left can still rebuild another.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

static bool bit_get(const uint64_t *m, uint32_t e)
{
  return __atomic_load_n(&m[e / 64], __ATOMIC_ACQUIRE) & (1ull << (e % 64));
}

static void bit_set(uint64_t *m, uint32_t e)
{
  __atomic_or_fetch(&m[e / 64], 1ull << (e % 64), __ATOMIC_RELEASE);
}

static void bit_clear(uint64_t *m, uint32_t e)
{
  __atomic_and_fetch(&m[e / 64], ~(1ull << (e % 64)), __ATOMIC_RELEASE);
}

static uint32_t bit_count(const uint64_t *m, size_t words)
{
  uint32_t n = 0;

  for (size_t w = 0; w < words; w++)
    n += (uint32_t) __builtin_popcountll(
        __atomic_load_n(&m[w], __ATOMIC_ACQUIRE));
  return n;
}

int up__xs_init(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;
  uint32_t count = up->region.extent_count;
  size_t words = count ? (count + 63) / 64 : 1;
  bool ok;

  if (rp->xs)
    return 0;
  rp->words = words;
  rp->lr = -1;
  rp->want = -1;
  rp->xs = calloc(count ? count : 1, sizeof *rp->xs);
  rp->wsf = calloc(words, sizeof *rp->wsf);
  ok = rp->xs && rp->wsf;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    rp->pend[i] = calloc(words, sizeof *rp->pend[i]);
    rp->mark[i] = calloc(words, sizeof *rp->mark[i]);
    ok &= rp->pend[i] && rp->mark[i];
  }
  if (!rp->mu_init) {
    if (pthread_mutex_init(&rp->mu, NULL) != 0)
      return -ENOMEM;
    if (pthread_mutex_init(&rp->gate, NULL) != 0) {
      pthread_mutex_destroy(&rp->mu);
      return -ENOMEM;
    }
    if (pthread_cond_init(&rp->cv, NULL) != 0) {
      pthread_mutex_destroy(&rp->mu);
      pthread_mutex_destroy(&rp->gate);
      return -ENOMEM;
    }
    rp->mu_init = true;
  }
  return ok ? 0 : -ENOMEM; /* freed by up__repair_free */
}

/* Grow one table of n elements of size sz to m (new ones zero). */
static int xs_grow1(void **p, size_t sz, size_t n, size_t m)
{
  uint8_t *q = realloc(*p, m * sz);

  if (!q)
    return -ENOMEM;
  memset(q + n * sz, 0, (m - n) * sz);
  *p = q;
  return 0;
}

int up__xs_grow(struct upstairs *up, uint32_t count)
{
  struct up_repair *rp = &up->rep;
  uint32_t old = up->region.extent_count;
  size_t words = (count + 63) / 64;
  int r = 0;

  if (!rp->xs)
    return -ENOMEM;
  if (count <= old)
    return 0;
  pthread_mutex_lock(&rp->mu);
  if (rp->lr >= 0 || rp->running) {
    pthread_mutex_unlock(&rp->mu);
    return -EBUSY;
  }
  /* Each table on its own: a failure leaves the grown ones larger,
   * which is harmless (words changes only once all grew). */
  r = xs_grow1((void **) &rp->xs, sizeof *rp->xs, old, count);
  if (r == 0 && words > rp->words) {
    r = xs_grow1((void **) &rp->wsf, sizeof *rp->wsf, rp->words, words);
    for (int i = 0; r == 0 && i < UP_DOWNSTAIRS; i++) {
      r = xs_grow1((void **) &rp->pend[i], sizeof *rp->pend[i], rp->words,
                   words);
      if (r == 0)
        r = xs_grow1((void **) &rp->mark[i], sizeof *rp->mark[i], rp->words,
                     words);
    }
    if (r == 0)
      rp->words = words;
  }
  pthread_mutex_unlock(&rp->mu);
  return r;
}

/* Who takes live repair's EXTENT_FLUSH of e, chosen (only) when it was
 * made: decided again here, as it gets its number (loop thread), because
 * xs[e] takes that number and whoever does not take it is no longer
 * level there.  Every active replica not pending on e takes it: it holds
 * what the sources hold (level at admission, every write since), even if
 * it is no source of this work (admitted while it ran: a target waiting
 * its turn, or one with nothing to compare); left out, it would keep the
 * old number, not pending, for good.  A replica pending on e takes it
 * only as the current target (rp->lr): a source of the work that was
 * lost and readmitted since (pending again) must be compared first.
 * None at all: a bit past the downstairs, so that the job still goes to
 * chosen ones (only != 0), that is to none, and levels no one. */
static unsigned lr_level_set(struct upstairs *up, unsigned only, uint32_t e)
{
  const struct up_repair *rp = &up->rep;
  unsigned set = 0;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    if (up->cl[i].state != CL_ACTIVE)
      continue;
    if (!bit_get(rp->pend[i], e) || (i == rp->lr && (only & (1u << i))))
      set |= 1u << i;
  }
  return set ? set : 1u << UP_DOWNSTAIRS;
}

void up__xs_note(struct upstairs *up, struct up_job *job)
{
  struct up_repair *rp = &up->rep;
  uint32_t e;

  if (!rp->xs)
    return;
  switch (job->type) {
  case PROTO_T_WRITE:
  case PROTO_T_TRIM:
    bit_set(rp->wsf, geom_extent_of(&up->region, job->lba));
    break;
  case PROTO_T_SNAPSHOT: /* a create is a FLUSH (snapshot.c) */
    if (!up__snap_is_flush(job))
      break;
    /* fallthrough */
  case PROTO_T_FLUSH:
    for (size_t w = 0; w < rp->words; w++) {
      uint64_t m = rp->wsf[w];
      rp->wsf[w] = 0;
      for (; m; m &= m - 1)
        rp->xs[w * 64 + (size_t) __builtin_ctzll(m)] =
            (struct up_xstate){up->gen, job->flush_no};
    }
    break;
  case PROTO_T_EXTENT_FLUSH:
    e = (uint32_t) job->lba;
    if (job->only)
      job->only = lr_level_set(up, job->only, e);
    rp->xs[e] = (struct up_xstate){up->gen, job->flush_no};
    bit_clear(rp->wsf, e);
    for (int i = 0; i < UP_DOWNSTAIRS; i++)
      if (!job->only || (job->only & (1u << i))) {
        bit_clear(rp->pend[i], e);
        bit_clear(rp->mark[i], e);
      }
    break;
  default: break;
  }
}

/* Send EXTENT_MARK(e) to c (loop thread, in its stream).  -1: faulted. */
static int lr_mark(struct upstairs *up, struct cl *c, uint32_t e)
{
  struct up_repair *rp = &up->rep;
  struct proto_extent_op o = {.job_id = ++rp->mark_id | UP_REPAIR_ID_BIT,
                              .eid = e};
  uint8_t buf[PROTO_EXTENT_OP_LEN];

  if (up_debug_repair)
    log_debug("repair: EXTENT_MARK extent %u to %s, job %llu", e, c->name,
              (unsigned long long) (o.job_id & ~UP_REPAIR_ID_BIT));
  if (cl_send_copy(c, buf, proto_put_extent_op(buf, PROTO_T_EXTENT_MARK, &o)) <
      0) {
    cl_fault(c, "send failed (EXTENT_MARK of extent %u)", e);
    return -1;
  }
  bit_set(rp->mark[c->idx], e);
  return 0;
}

int up__lr_before_send(struct upstairs *up, struct cl *c,
                       const struct up_job *job)
{
  struct up_repair *rp = &up->rep;
  uint32_t e = geom_extent_of(&up->region, job->lba);

  if (!rp->xs || !bit_get(rp->pend[c->idx], e) || bit_get(rp->mark[c->idx], e))
    return 0;
  return lr_mark(up, c, e);
}

bool up__repair_on_done(struct upstairs *up, struct cl *c,
                        const struct proto_job_done *d)
{
  if (!(d->job_id & UP_REPAIR_ID_BIT))
    return false;
  if (up__extend_on_done(up, c, d)) /* loop-sent too (extend.c) */
    return true;
  if (d->err)
    cl_fault(c, "EXTENT_MARK failed (job %llu): %s",
             (unsigned long long) (d->job_id & ~UP_REPAIR_ID_BIT),
             log_strerror(d->err > 0 ? d->err : EIO));
  return true;
}

/* ---- the worker thread ---- */

/* Has the loop abandoned or reissued the work of epoch? */
static bool lr_stale(struct upstairs *up, unsigned epoch)
{
  return __atomic_load_n(&up->rep.epoch, __ATOMIC_ACQUIRE) != epoch;
}

/* Ask the loop to look at the worker's state. */
static void lr_poke(struct upstairs *up)
{
  __atomic_store_n(&up->rep.poke, 1, __ATOMIC_RELEASE);
  pthread_mutex_lock(&up->lock);
  if (!up->stopping)
    uv_async_send(&up->async); /* under the lock: see up_stop */
  pthread_mutex_unlock(&up->lock);
}

/* EXTENT_FLUSH of e to the sources and the target (and every other
 * replica level there: lr_level_set): 0 if the target and at least one
 * source took it (a failing one was faulted). */
static int lr_level(struct upstairs *up, uint32_t e, int t, unsigned src)
{
  struct up_job *job =
      up__job_new(PROTO_T_EXTENT_FLUSH, e, 0, PROTO_EXTENT_FLUSH_LEN);
  bool ok = false;
  int res;

  if (!job)
    return -ENOMEM;
  job->only = src | (1u << t);
  up__run_jobs(up, &job, 1, &res);
  if (job) {
    bool one = false;
    for (int d = 0; d < UP_DOWNSTAIRS; d++)
      one |= (src & job->seen & (1u << d)) != 0;
    ok = res == 0 && one && (job->seen & (1u << t));
    if (up_debug_repair)
      log_debug("repair: EXTENT_FLUSH extent %u flush %llu to mask %x "
                "(target %s): taken by mask %x",
                e, (unsigned long long) job->flush_no, job->only,
                up->cl[t].name, job->seen);
    up__job_put(job);
  }
  return ok ? 0 : -EIO;
}

static uint64_t lr_now_us(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* Compare one chunk (under its range lock). */
static int lr_chunk(struct upstairs *up, int t, unsigned src, uint32_t e,
                    uint64_t lba, uint32_t n, struct up_rec_sum *sum)
{
  struct up_range rg = {.start = lba, .end = lba + n};
  int r = up__range_lock(up, &rg);

  if (r < 0)
    return r;
  /* The sources (serving the guest) only look up their versions; the
   * target reads its blocks so that a BAD one is replaced. */
  r = up__rec_range(up, "live repair", e, lba, n, src, src | (1u << t), src,
                    sum);
  up__range_unlock(up, &rg);
  return r;
}

/* Repair extent e of target t from the sources src.  Guest IO goes
 * first: idle, every worker copies at once; once guest jobs arrived
 * during a worker's last chunk (busy), its chunks pass through the gate
 * one at a time among all workers, each followed by a rest UP_LR_REST
 * times as long as it took, gate held. */
static int lr_extent(struct upstairs *up, int t, unsigned src, unsigned epoch,
                     uint32_t e, bool *busy)
{
  struct up_repair *rp = &up->rep;
  uint32_t bs = up->region.block_size;
  uint32_t chunk = proto_max_job_blocks(PROTO_T_READ, bs);
  uint64_t first = (uint64_t) e * up->region.extent_size;
  uint64_t end = first + up->region.extent_size;

  for (uint64_t lba = first; lba < end; lba += chunk) {
    uint32_t n = (uint32_t) (end - lba < chunk ? end - lba : chunk);
    struct up_rec_sum sum = {0, 0, 0};
    uint64_t g0 = __atomic_load_n(&up->guest_jobs, __ATOMIC_RELAXED);
    uint64_t t0 = lr_now_us(), took;
    bool gated = *busy;
    int r;

    if (lr_stale(up, epoch))
      return -ECANCELED;
    if (gated)
      pthread_mutex_lock(&rp->gate);
    r = lr_chunk(up, t, src, e, lba, n, &sum);
    took = lr_now_us() - t0;
    *busy = __atomic_load_n(&up->guest_jobs, __ATOMIC_RELAXED) != g0;
    if (gated) {
      if (*busy && r == 0) {
        took *= UP_LR_REST;
        usleep((useconds_t) (took < 2000000 ? took : 2000000));
      }
      pthread_mutex_unlock(&rp->gate);
    }
    if (r < 0)
      return r;
    __atomic_add_fetch(&rp->bytes_done, (uint64_t) n * bs, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rp->copied_bytes, sum.copied * bs, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rp->blocks_copied, sum.copied, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rp->blocks_trimmed, sum.trimmed, __ATOMIC_RELAXED);
    __atomic_add_fetch(&rp->unresolved, sum.unresolved, __ATOMIC_RELAXED);
  }
  if (lr_stale(up, epoch))
    return -ECANCELED;
  return lr_level(up, e, t, src);
}

/* Every extent still pending on t, in order, shared with the other
 * workers through the cursor. */
static int lr_run(struct upstairs *up, int t, unsigned src, unsigned epoch)
{
  struct up_repair *rp = &up->rep;
  bool busy = false;

  for (;;) {
    uint32_t e = __atomic_fetch_add(&rp->cursor, 1, __ATOMIC_ACQ_REL);
    int r;
    if (e >= up->region.extent_count)
      return 0;
    if (lr_stale(up, epoch))
      return -ECANCELED;
    if (!bit_get(rp->pend[t], e))
      continue;
    if ((r = lr_extent(up, t, src, epoch, e, &busy)) < 0) {
      if (r != -ECANCELED && !lr_stale(up, epoch))
        log_warn("live repair of %s: extent %u: %s", up->cl[t].name, e,
                 log_strerror(-r));
      return r;
    }
    __atomic_add_fetch(&rp->ext_done, 1, __ATOMIC_RELAXED);
  }
  return 0;
}

/* One of UP_LR_WORKERS threads: each runs every piece of work issued
 * (epoch) once; the last one to finish it reports to the loop. */
static void *lr_worker(void *arg)
{
  struct upstairs *up = arg;
  struct up_repair *rp = &up->rep;
  unsigned mine = 0; /* the last epoch this worker ran */

  pthread_mutex_lock(&rp->mu);
  for (;;) {
    int t, r;
    unsigned src, epoch;
    bool last;
    while (!rp->quit && (rp->want < 0 || rp->epoch == mine))
      pthread_cond_wait(&rp->cv, &rp->mu);
    if (rp->quit)
      break;
    t = rp->want;
    src = rp->want_src;
    epoch = mine = rp->epoch;
    rp->running++;
    pthread_mutex_unlock(&rp->mu);
    r = lr_run(up, t, src, epoch);
    pthread_mutex_lock(&rp->mu);
    rp->running--;
    if (rp->epoch != epoch)
      continue; /* abandoned or reissued meanwhile */
    rp->fin_fail |= r < 0;
    last = --rp->left == 0;
    if (last) { /* done, or failed: the loop decides */
      __atomic_store_n(&rp->fin_ok, !rp->fin_fail, __ATOMIC_RELAXED);
      __atomic_store_n(&rp->fin_epoch, epoch, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&rp->mu);
    if (last)
      lr_poke(up);
    pthread_mutex_lock(&rp->mu);
  }
  pthread_mutex_unlock(&rp->mu);
  return NULL;
}

/* ---- the loop side ---- */

static void lr_schedule(struct upstairs *up);

/* Copy the worker's counters into the target's stats; log progress. */
static void lr_progress(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;
  struct up_ds_stats *s;

  if (rp->lr < 0)
    return;
  s = &up->dst[rp->lr];
  s->rep_bytes_done = __atomic_load_n(&rp->bytes_done, __ATOMIC_RELAXED);
  s->rep_bytes_total = rp->bytes_total;
  s->rep_copied = __atomic_load_n(&rp->copied_bytes, __ATOMIC_RELAXED);
  up__ds_progress(up, &up->cl[rp->lr],
                  __atomic_load_n(&rp->ext_done, __ATOMIC_RELAXED),
                  rp->ext_total);
}

/* Hand (t, src) to the worker under a new epoch, or take work away
 * (t < 0). */
static void lr_issue(struct upstairs *up, int t, unsigned src)
{
  struct up_repair *rp = &up->rep;
  int r = 0;

  pthread_mutex_lock(&rp->mu);
  __atomic_add_fetch(&rp->epoch, 1, __ATOMIC_ACQ_REL);
  rp->want = t;
  rp->want_src = src;
  __atomic_store_n(&rp->cursor, 0, __ATOMIC_RELEASE);
  rp->fin_fail = false;
  while (t >= 0 && rp->nthr < UP_LR_WORKERS && r == 0) {
    r = pthread_create(&rp->thr[rp->nthr], NULL, lr_worker, up);
    rp->nthr += r == 0;
  }
  rp->left = rp->nthr;
  pthread_cond_broadcast(&rp->cv);
  pthread_mutex_unlock(&rp->mu);
  if (t >= 0 && rp->nthr == 0) {
    log_error("live repair: cannot start its threads: %s", log_strerror(r));
    rp->lr = -1;
  }
}

/* Target c is done: it takes reads and counts for quorum. */
static void lr_finish(struct upstairs *up, struct cl *c, bool nothing)
{
  struct up_repair *rp = &up->rep;
  double secs = (double) (uv_now(&up->loop) - rp->lr_start_ms) / 1000;

  c->lr = false;
  __atomic_add_fetch(&up->n_active, 1, __ATOMIC_SEQ_CST);
  if (nothing)
    log_info("live repair of %s complete: nothing to compare; active again "
             "(%u of 3)",
             c->name, __atomic_load_n(&up->n_active, __ATOMIC_SEQ_CST));
  else
    log_info("live repair of %s complete: %u extents compared, %llu blocks "
             "copied, %llu trimmed, %llu without an authentic copy, in "
             "%.1f s; active again (%u of 3)",
             c->name, rp->ext_total, (unsigned long long) rp->blocks_copied,
             (unsigned long long) rp->blocks_trimmed,
             (unsigned long long) rp->unresolved, secs,
             __atomic_load_n(&up->n_active, __ATOMIC_SEQ_CST));
  if (rp->lr == c->idx)
    rp->lr = -1;
  up__ds_update(up, c);
  lr_schedule(up);
}

/* Start work if there is a target and a source and nothing runs. */
static void lr_schedule(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;
  unsigned src = 0;
  int t = -1;
  char from[700] = "";
  size_t len = 0;

  if (rp->lr >= 0 || !rp->xs || up__phase(up) != UP_PH_RUNNING)
    return;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    const struct cl *c = &up->cl[i];
    if (c->state != CL_ACTIVE)
      continue;
    if (c->lr && t < 0)
      t = i;
    else if (!c->lr)
      src |= 1u << i;
  }
  if (t < 0 || !src)
    return; /* nothing to do, or nothing to copy from: wait */
  rp->lr = t;
  rp->src = src;
  rp->lr_start_ms = uv_now(&up->loop);
  rp->ext_total = bit_count(rp->pend[t], rp->words);
  rp->bytes_total =
      (uint64_t) rp->ext_total * up->region.extent_size * up->region.block_size;
  __atomic_store_n(&rp->ext_done, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&rp->bytes_done, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&rp->copied_bytes, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&rp->blocks_copied, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&rp->blocks_trimmed, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&rp->unresolved, 0, __ATOMIC_RELAXED);
  up->dst[t].rep_start_ms = rp->lr_start_ms;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (src & (1u << i))
      len += (size_t) snprintf(from + len, sizeof from - len, "%s%s",
                               len ? " and " : "", up->cl[i].name);
  log_info("live repair of %s: starting, %u of %u extents to compare, from "
           "%s",
           up->cl[t].name, rp->ext_total, up->region.extent_count, from);
  lr_issue(up, t, src);
  lr_progress(up);
}

void up__lr_admit(struct upstairs *up, struct cl *c)
{
  struct up_repair *rp = &up->rep;
  int i = c->idx;
  bool other =
      c->inst_known && memcmp(c->inst, c->hello.instance, sizeof c->inst) != 0;
  uint32_t n = 0;

  memcpy(c->inst, c->hello.instance, sizeof c->inst);
  c->inst_known = true;
  c->lr = true;
  if (!rp->xs) { /* never (activation allocates): be safe */
    cl_fault(c, "live repair: no extent table");
    return;
  }
  memset(rp->pend[i], 0, rp->words * sizeof *rp->pend[i]);
  memset(rp->mark[i], 0, rp->words * sizeof *rp->mark[i]);
  for (uint32_t e = 0; e < up->region.extent_count; e++) {
    struct proto_extent_state s;
    const struct up_xstate *x = &rp->xs[e];
    bool differ;
    proto_extent_state_get(c->states + (size_t) e * PROTO_EXTENT_STATE_LEN, &s);
    differ = s.dirty || s.gen != x->gen || s.flush != x->flush ||
             bit_get(rp->wsf, e);
    if (other) /* a replaced region: all that either side holds */
      differ |= x->gen || x->flush || s.gen || s.flush;
    if (differ) {
      bit_set(rp->pend[i], e);
      n++;
    }
  }
  log_info("downstairs %s is back (generation %llu)%s: %u of %u extents "
           "differ",
           c->name, (unsigned long long) up->gen,
           other ? ", a different region than before" : "", n,
           up->region.extent_count);
  up->dst[i].rep_done = 0;
  up->dst[i].rep_total = n;
  up->dst[i].rep_bytes_done = up->dst[i].rep_copied = 0;
  up->dst[i].rep_bytes_total =
      (uint64_t) n * up->region.extent_size * up->region.block_size;
  if (n == 0) {
    rp->lr_start_ms = uv_now(&up->loop);
    lr_finish(up, c, true);
    return;
  }
  /* A FLUSH would level the pending extents it holds dirty: mark them
   * first (the others are marked before their first write). */
  for (uint32_t e = 0; e < up->region.extent_count; e++) {
    struct proto_extent_state s;
    if (!bit_get(rp->pend[i], e))
      continue;
    proto_extent_state_get(c->states + (size_t) e * PROTO_EXTENT_STATE_LEN, &s);
    if (s.dirty && lr_mark(up, c, e) < 0)
      return; /* faulted */
  }
  up__ds_update(up, c);
  lr_schedule(up);
}

/* Has the worker finished the current work?  Then finish the target, go
 * over what is left, or (after an error, logged) leave it to the tick. */
static void lr_check(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;
  bool ok;

  if (rp->lr < 0 || __atomic_load_n(&rp->fin_epoch, __ATOMIC_ACQUIRE) !=
                        __atomic_load_n(&rp->epoch, __ATOMIC_ACQUIRE))
    return;
  ok = __atomic_load_n(&rp->fin_ok, __ATOMIC_RELAXED);
  lr_progress(up);
  if (ok && bit_count(rp->pend[rp->lr], rp->words) == 0) {
    lr_finish(up, &up->cl[rp->lr], false);
    return;
  }
  rp->lr = -1;
  if (ok)
    lr_schedule(up);
}

void up__lr_poll(struct upstairs *up)
{
  if (__atomic_exchange_n(&up->rep.poke, 0, __ATOMIC_ACQ_REL))
    lr_check(up);
}

void up__repair_lost(struct upstairs *up, struct cl *c)
{
  struct up_repair *rp = &up->rep;

  up__extend_lost(up, c);

  if (rp->lr < 0 || (c->idx != rp->lr && !(rp->src & (1u << c->idx))))
    return;
  if (c->idx == rp->lr)
    log_warn("live repair of %s interrupted: it was lost", c->name);
  else
    log_warn("live repair of %s interrupted: source %s lost",
             up->cl[rp->lr].name, c->name);
  rp->lr = -1;
  lr_issue(up, -1, 0);
  lr_schedule(up); /* from the sources left, if any */
}

void up__repair_tick(struct upstairs *up)
{
  lr_check(up);
  lr_progress(up);
  lr_schedule(up);
}

void up__repair_stop(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;

  if (!rp->mu_init)
    return;
  pthread_mutex_lock(&rp->mu);
  rp->quit = true;
  __atomic_add_fetch(&rp->epoch, 1, __ATOMIC_ACQ_REL);
  pthread_cond_broadcast(&rp->cv);
  pthread_mutex_unlock(&rp->mu);
  for (; rp->nthr > 0; rp->nthr--)
    pthread_join(rp->thr[rp->nthr - 1], NULL);
}

void up__repair_free(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;

  up__repair_stop(up);
  free(rp->xs);
  free(rp->wsf);
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    free(rp->pend[i]);
    free(rp->mark[i]);
  }
  if (rp->mu_init) {
    pthread_mutex_destroy(&rp->mu);
    pthread_mutex_destroy(&rp->gate);
    pthread_cond_destroy(&rp->cv);
  }
  free(rp->rec_cand);
}
