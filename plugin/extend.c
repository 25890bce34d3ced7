/* crucible-c upstairs: extend, growing the volume (docs/DESIGN.md
 * "Extend"; the state is struct up_extend, upstairs_int.h).
 *
 * A replica only grows: region_extend (downstairs/region.c) adds zero
 * extents, with region.json's count as its commit point, and shrinking
 * is refused everywhere.  The volume's size is the extent count of every
 * replica that takes IO.  So:
 *   - online (up_extend): EXTEND(count) to every active downstairs that
 *     has fewer; once every one answered, if at least two full replicas
 *     have count, the repair tables grow and then the count is published
 *     (up_size, nbdkit's .get_size).  One that failed was faulted; it is
 *     levelled when it returns.  Fewer than two: the volume keeps its
 *     size, those that grew keep theirs, and a retry completes it.
 *   - start-up (up__extend_level_start): replicas of different sizes
 *     are levelled up to the largest, after ACTIVATE and before
 *     reconciliation.  It completes an extend that a crash interrupted:
 *     the extents it adds hold zeroes, and a larger replica can hold
 *     data past the smaller size only if the volume ran at that size,
 *     which takes two replicas at it; so any two replicas include one
 *     that holds every acknowledged write, and reconciliation compares
 *     the new extents (the levelled replica reports them (0, 0), clean).
 *   - a downstairs that returns smaller (it missed an extend) is
 *     extended before it is admitted (and live-repaired); one that
 *     returns larger is refused (activate.c up_check_rejoin) until an
 *     extend to its size or a restart levels the volume.
 * One operation at a time (the loop thread runs it, as control frames,
 * like live repair's EXTENT_MARK); a downstairs activated meanwhile is
 * held (CL_ACTIVATING: it gets no IO) and admitted after it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

void up__extend_init(struct upstairs *up)
{
  struct up_extend *ex = &up->ex;
  pthread_condattr_t ca;

  pthread_mutex_init(&ex->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ex->cv, &ca);
  pthread_condattr_destroy(&ca);
  ex->who = -1;
}

void up__extend_free(struct upstairs *up)
{
  pthread_mutex_destroy(&up->ex.mu);
  pthread_cond_destroy(&up->ex.cv);
}

static uint64_t ex_bytes(const struct upstairs *up, uint32_t count)
{
  return (uint64_t) count * up->region.extent_size * up->region.block_size;
}

/* The extent count c's region has, as it last told us. */
static uint32_t ex_has(const struct cl *c)
{
  return c->hello.region.extent_count;
}

/* Answer the waiting up_extend (ONLINE only; a caller that gave up is
 * not waiting any more: the answer is dropped). */
static void ex_answer(struct upstairs *up, int result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ex_answer(struct upstairs *up, int result, const char *fmt, ...)
{
  struct up_extend *ex = &up->ex;
  va_list ap;

  pthread_mutex_lock(&ex->mu);
  if (ex->waiting && ex->op_seq == ex->req_seq) {
    va_start(ap, fmt);
    vsnprintf(ex->msg, sizeof ex->msg, fmt, ap);
    va_end(ap);
    ex->result = result;
    ex->new_size = ex_bytes(up, up->region.extent_count);
    ex->took_ms = uv_now(&up->loop) - ex->start_ms;
    ex->done = true;
    pthread_cond_broadcast(&ex->cv);
  }
  pthread_mutex_unlock(&ex->mu);
}

/* Send EXTEND(count) to c, after the job frames queued before it.
 * 0, or -1 (faulted). */
static int ex_send(struct upstairs *up, struct cl *c, uint32_t count)
{
  struct up_extend *ex = &up->ex;
  struct proto_extent_op o = {
      .job_id = UP_REPAIR_ID_BIT | UP_EXTEND_ID_BIT | ++ex->seq, .eid = count};
  uint8_t buf[PROTO_EXTENT_OP_LEN];

  if (up_debug_repair)
    log_debug("extend: EXTEND to %u extents to %s", count, c->name);
  if (cl_send_copy(c, buf, proto_put_extent_op(buf, PROTO_T_EXTEND, &o)) < 0) {
    ex->failed |= 1u << c->idx;
    cl_fault(c, "send failed (EXTEND to %u extents)", count);
    return -1;
  }
  ex->out |= 1u << c->idx;
  ex->conn_ms[c->idx] = c->conn_ms;
  return 0;
}

/* Start an operation towards count extents. */
static void ex_begin(struct upstairs *up, enum up_ex_kind kind, uint32_t count)
{
  struct up_extend *ex = &up->ex;
  uint32_t least = count;

  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (up->cl[i].have_hello && ex_has(&up->cl[i]) < least)
      least = ex_has(&up->cl[i]);
  ex->kind = kind;
  ex->count = count;
  ex->from = up->region.extent_count;
  ex->out = ex->failed = 0;
  ex->commit_wait = false;
  ex->start_ms = uv_now(&up->loop);
  /* The downstairs makes each extent's two files and syncs them: allow
   * 10 ms per extent beyond the usual timeout. */
  ex->deadline_ms =
      ex->start_ms + up->cfg.timeout * 1000ull + 10ull * (count - least);
}

/* Grow c's copy of its extent states to count (new extents: (0, 0),
 * clean, what the downstairs reports for them). */
static int ex_grow_states(struct cl *c, uint32_t count)
{
  uint8_t *s;

  if (c->nstates >= count)
    return 0;
  s = realloc(c->states, (size_t) count * PROTO_EXTENT_STATE_LEN);
  if (!s)
    return -ENOMEM;
  for (uint32_t e = c->nstates; e < count; e++)
    proto_extent_state_put(s + (size_t) e * PROTO_EXTENT_STATE_LEN,
                           &(struct proto_extent_state){0, 0, 0});
  c->states = s;
  c->nstates = count;
  return 0;
}

static void ex_step(struct upstairs *up);

/* Admit the downstairs held during an operation, one at a time (each
 * may start an ADMIT levelling of its own). */
static void ex_release_held(struct upstairs *up)
{
  struct up_extend *ex = &up->ex;

  while (ex->kind == UP_EX_NONE && ex->hold) {
    int i = __builtin_ctz(ex->hold);
    struct cl *c = &up->cl[i];

    ex->hold &= ~(1u << i);
    if (c->state != CL_ACTIVATING || c->conn_ms != ex->conn_ms[i])
      continue; /* lost meanwhile: it comes back through ACTIVATE */
    if (!up__extend_admit(up, c))
      up__admit(up, c);
  }
}

static void ex_end(struct upstairs *up)
{
  up->ex.kind = UP_EX_NONE;
  ex_release_held(up);
}

/* ONLINE: every EXTEND answered; publish the new count if two full
 * replicas have it. */
static void ex_commit(struct upstairs *up)
{
  struct up_extend *ex = &up->ex;
  unsigned have = 0;
  uint64_t from = ex_bytes(up, ex->from), to = ex_bytes(up, ex->count);
  int r;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    if (c->state != CL_ACTIVE)
      continue;
    if (ex_has(c) < ex->count) /* never: it was sent EXTEND or held */
      cl_fault(c, "not extended to %u extents", ex->count);
    else if (!c->lr)
      have++;
  }
  if (have < 2) {
    log_error("extend to %llu bytes failed: only %u replicas could grow; "
              "the volume keeps %llu bytes",
              (unsigned long long) to, have, (unsigned long long) from);
    up__admin_note(up,
                   "extend to %llu bytes failed: only %u replicas "
                   "could grow",
                   (unsigned long long) to, have);
    ex_answer(up, -EIO,
              "only %u of 3 replicas could grow to %llu bytes (see "
              "the log): the volume keeps %llu bytes; a retry completes it",
              have, (unsigned long long) to, (unsigned long long) from);
    ex_end(up);
    return;
  }
  r = up__xs_grow(up, ex->count);
  if (r == -EBUSY) { /* a live-repair worker is still leaving */
    ex->commit_wait = true;
    return;
  }
  if (r < 0) {
    log_error("extend to %llu bytes: %s", (unsigned long long) to,
              log_strerror(-r));
    ex_answer(up, r, "cannot grow the upstairs' tables: %s", log_strerror(-r));
    ex_end(up);
    return;
  }
  if (ex->count == ex->from) { /* a retry that found every one grown */
    ex_answer(up, 0, "the volume already has %llu bytes",
              (unsigned long long) to);
    ex_end(up);
    return;
  }
  /* The tables first (a job past the old end indexes them as it gets
   * its id), then the count that lets callers past the old end. */
  __atomic_store_n(&up->block_count,
                   geom_blocks(&up->region) / up->region.extent_count *
                       ex->count,
                   __ATOMIC_RELEASE);
  __atomic_store_n(&up->region.extent_count, ex->count, __ATOMIC_RELEASE);
  ex->extends++;
  log_notice("volume extended from %llu to %llu bytes (%u to %u extents) "
             "in %llu ms: new connections see the new size",
             (unsigned long long) from, (unsigned long long) to, ex->from,
             ex->count,
             (unsigned long long) (uv_now(&up->loop) - ex->start_ms));
  ex_answer(up, 0, "extended from %llu to %llu bytes",
            (unsigned long long) from, (unsigned long long) to);
  up__stats_write(up);
  ex_end(up);
}

/* After any answer or loss: finish the operation once nothing is out. */
static void ex_step(struct upstairs *up)
{
  struct up_extend *ex = &up->ex;

  if (ex->kind == UP_EX_NONE || ex->out || ex->sending)
    return;
  if (ex->kind == UP_EX_START) {
    ex->kind = UP_EX_NONE;
    log_info("start-up: replicas levelled to %u extents in %llu ms", ex->count,
             (unsigned long long) (uv_now(&up->loop) - ex->start_ms));
    up__handshake_step(up); /* reconciliation next */
  } else if (ex->kind == UP_EX_ADMIT) {
    struct cl *c = &up->cl[ex->who];
    bool ok = !(ex->failed & (1u << ex->who)) && c->state == CL_ACTIVATING &&
              c->conn_ms == ex->conn_ms[ex->who];
    ex->kind = UP_EX_NONE;
    ex->who = -1;
    if (ok) {
      log_info("downstairs %s extended to %u extents: admitted", c->name,
               ex->count);
      up__admit(up, c);
    }
    ex_release_held(up);
  } else {
    ex_commit(up);
  }
}

bool up__extend_on_done(struct upstairs *up, struct cl *c,
                        const struct proto_job_done *d)
{
  struct up_extend *ex = &up->ex;
  unsigned bit = 1u << c->idx;

  if (!(d->job_id & UP_EXTEND_ID_BIT))
    return false;
  if (!(ex->out & bit)) {
    cl_fault(c, "reply for an EXTEND never sent (job %llu)",
             (unsigned long long) (d->job_id &
                                   ~(UP_REPAIR_ID_BIT | UP_EXTEND_ID_BIT)));
    return true;
  }
  ex->out &= ~bit;
  if (d->err) {
    ex->failed |= bit;
    up__admin_note(up, "downstairs %s: EXTEND to %u extents failed: %s",
                   c->name, ex->count, log_strerror(d->err > 0 ? d->err : EIO));
    cl_fault(c, "EXTEND to %u extents failed: %s", ex->count,
             log_strerror(d->err > 0 ? d->err : EIO));
  } else {
    c->hello.region.extent_count = ex->count;
    if (ex->kind != UP_EX_ONLINE && ex_grow_states(c, ex->count) < 0) {
      ex->failed |= bit;
      cl_fault(c, "out of memory for its extent states");
    }
  }
  ex_step(up);
  return true;
}

void up__extend_lost(struct upstairs *up, struct cl *c)
{
  struct up_extend *ex = &up->ex;
  unsigned bit = 1u << c->idx;

  ex->hold &= ~bit;
  if (!(ex->out & bit))
    return;
  ex->out &= ~bit;
  ex->failed |= bit;
  ex_step(up);
}

void up__extend_tick(struct upstairs *up)
{
  struct up_extend *ex = &up->ex;
  uint64_t now = uv_now(&up->loop);

  if (ex->kind == UP_EX_NONE)
    return;
  ex->sending = true; /* no step until every one was looked at */
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    unsigned bit = 1u << i;
    bool gone;
    if (!(ex->out & bit))
      continue;
    gone = c->conn_ms != ex->conn_ms[i] ||
           (c->state != CL_ACTIVE && c->state != CL_ACTIVATING);
    if (!gone && now < ex->deadline_ms)
      continue;
    ex->out &= ~bit;
    ex->failed |= bit;
    if (!gone)
      cl_fault(c, "EXTEND to %u extents not answered within %llu s", ex->count,
               (unsigned long long) (ex->deadline_ms - ex->start_ms) / 1000);
  }
  ex->sending = false;
  if (ex->commit_wait) {
    ex->commit_wait = false;
    ex_commit(up);
    return;
  }
  ex_step(up);
}

bool up__extend_level_start(struct upstairs *up)
{
  struct up_extend *ex = &up->ex;
  uint32_t count = up->region.extent_count;

  if (ex->kind == UP_EX_START)
    return true;
  if (ex->start_done)
    return false;
  ex->start_done = true;
  ex_begin(up, UP_EX_START, count);
  ex->sending = true;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    if (c->state != CL_ACTIVE || ex_has(c) >= count)
      continue;
    log_notice("downstairs %s has %u extents, the largest replica %u (an "
               "extend that did not finish everywhere): extending it",
               c->name, ex_has(c), count);
    ex_send(up, c, count);
  }
  ex->sending = false;
  if (ex->out)
    return true;
  ex->kind = UP_EX_NONE;
  if (!ex->failed)
    return false;
  up__handshake_step(up); /* with fewer: go on or fail */
  return true;
}

bool up__extend_admit(struct upstairs *up, struct cl *c)
{
  struct up_extend *ex = &up->ex;
  uint32_t count = up->region.extent_count;

  if (ex->kind != UP_EX_NONE) {
    ex->hold |= 1u << c->idx;
    ex->conn_ms[c->idx] = c->conn_ms;
    log_info("downstairs %s activated during an extend: admitted after it",
             c->name);
    return true;
  }
  if (ex_has(c) >= count)
    return false;
  log_notice("downstairs %s has %u extents, the volume %u (it missed an "
             "extend): extending it before its live repair",
             c->name, ex_has(c), count);
  ex_begin(up, UP_EX_ADMIT, count);
  ex->who = c->idx;
  ex->sending = true;
  ex_send(up, c, count);
  ex->sending = false;
  ex_step(up); /* the send failed: nothing is out */
  return true;
}

void up__extend_on_async(struct upstairs *up)
{
  struct up_extend *ex = &up->ex;
  uint32_t count, cur = up->region.extent_count;
  unsigned full = 0;
  bool req;

  pthread_mutex_lock(&ex->mu);
  req = ex->req;
  count = ex->req_count;
  ex->req = false;
  pthread_mutex_unlock(&ex->mu);
  if (!req)
    return;
  pthread_mutex_lock(&ex->mu);
  ex->op_seq = ex->req_seq;
  pthread_mutex_unlock(&ex->mu);
  if (up__phase(up) != UP_PH_RUNNING) {
    ex_answer(up, -EIO, "the volume is not running");
    return;
  }
  if (ex->kind != UP_EX_NONE) {
    ex_answer(up, -EBUSY, "%s",
              ex->kind == UP_EX_ONLINE ? "another extend runs"
                                       : "a returning downstairs is being "
                                         "extended: retry in a moment");
    return;
  }
  if (count < cur) {
    ex_answer(up, -EINVAL,
              "shrinking is not supported: the volume is %llu "
              "bytes",
              (unsigned long long) ex_bytes(up, cur));
    return;
  }
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    const struct cl *c = &up->cl[i];
    if (c->state == CL_ACTIVE && c->lr) {
      ex_answer(up, -EBUSY,
                "live repair of %s runs: extend once it is "
                "complete (see status)",
                c->name);
      return;
    }
    full += c->state == CL_ACTIVE;
  }
  if (full < 2) {
    ex_answer(up, -EIO, "only %u of 3 downstairs are active", full);
    return;
  }
  ex_begin(up, UP_EX_ONLINE, count);
  if (count > cur)
    log_notice("extend: growing the volume from %llu to %llu bytes (%u to "
               "%u extents)",
               (unsigned long long) ex_bytes(up, cur),
               (unsigned long long) ex_bytes(up, count), cur, count);
  ex->sending = true;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    if (c->state == CL_ACTIVE && ex_has(c) < count)
      ex_send(up, c, count);
  }
  ex->sending = false;
  ex_step(up); /* nothing to send: commits at once */
}

int up_extend(struct upstairs *up, uint64_t size, struct up_extend_res *res)
{
  struct up_extend *ex = &up->ex;
  uint64_t ext = (uint64_t) up->region.extent_size * up->region.block_size;
  uint32_t cur = __atomic_load_n(&up->region.extent_count, __ATOMIC_ACQUIRE);
  uint64_t want = ext ? size / ext + (size % ext != 0) : 0;
  struct proto_region def = {.block_size = up->region.block_size,
                             .extent_size = up->region.extent_size};
  struct timespec dl;
  uint64_t seq;
  int r;

  memset(res, 0, sizeof *res);
  res->requested = size;
  res->old_size = res->new_size = cur * ext;
  if (!up_running(up)) {
    snprintf(res->msg, sizeof res->msg, "the volume is not running");
    return -EIO;
  }
  if (up_snapshot_mode(up)) {
    snprintf(res->msg, sizeof res->msg,
             "serving snapshot %s read-only: extend the live volume",
             up->cfg.snapshot);
    return -EROFS;
  }
  def.extent_count = (uint32_t) (want <= PROTO_MAX_EXTENTS ? want : 0);
  if (size == 0 || geom_check(&def) < 0) {
    snprintf(res->msg, sizeof res->msg,
             "size %llu: must be 1..%llu bytes "
             "(%u extents of %llu bytes)",
             (unsigned long long) size,
             (unsigned long long) ext * PROTO_MAX_EXTENTS, PROTO_MAX_EXTENTS,
             (unsigned long long) ext);
    return -EINVAL;
  }
  if (want < cur) {
    snprintf(res->msg, sizeof res->msg,
             "shrinking is not supported: the "
             "volume is %llu bytes, %llu asked",
             (unsigned long long) (cur * ext), (unsigned long long) size);
    return -EINVAL;
  }
  if (want - cur > UP_EXTEND_MAX_ADD) {
    snprintf(res->msg, sizeof res->msg,
             "at most %u extents (%llu bytes) "
             "per extend: extend in steps",
             UP_EXTEND_MAX_ADD, (unsigned long long) ext * UP_EXTEND_MAX_ADD);
    return -EINVAL;
  }
  pthread_mutex_lock(&ex->mu);
  if (ex->waiting) {
    pthread_mutex_unlock(&ex->mu);
    snprintf(res->msg, sizeof res->msg, "another extend runs");
    return -EBUSY;
  }
  ex->waiting = true;
  ex->req = true;
  ex->done = false;
  ex->req_count = (uint32_t) want;
  ex->old_size = cur * ext;
  seq = ++ex->req_seq;
  pthread_mutex_unlock(&ex->mu);
  pthread_mutex_lock(&up->lock);
  if (!up->stopping)
    uv_async_send(&up->adm_async); /* under the lock: see up_stop */
  pthread_mutex_unlock(&up->lock);
  up__deadline(up, &dl,
               up->cfg.timeout + UP_WAIT_SLACK_S +
                   (unsigned) ((want - cur) / 100) + 2);
  pthread_mutex_lock(&ex->mu);
  r = 0;
  while (!ex->done && !ex->abort && r != ETIMEDOUT)
    r = pthread_cond_timedwait(&ex->cv, &ex->mu, &dl);
  if (ex->done && ex->req_seq == seq) {
    r = ex->result;
    snprintf(res->msg, sizeof res->msg, "%s", ex->msg);
    res->new_size = ex->new_size;
    res->took_ms = ex->took_ms;
  } else {
    snprintf(res->msg, sizeof res->msg, "%s",
             ex->abort
                 ? "the volume is stopping"
                 : "no answer in time (see the log: it may still complete)");
    r = ex->abort ? -EIO : -ETIMEDOUT;
  }
  ex->waiting = false;
  ex->req = false;
  pthread_mutex_unlock(&ex->mu);
  return r;
}

void up__extend_abort(struct upstairs *up)
{
  pthread_mutex_lock(&up->ex.mu);
  up->ex.abort = true;
  pthread_cond_broadcast(&up->ex.cv);
  pthread_mutex_unlock(&up->ex.mu);
}

void up__extend_json(struct upstairs *up, struct up_jbuf *j)
{
  static const char *const kind[] = {"idle", "levelling at start",
                                     "levelling a returning downstairs",
                                     "extending"};
  const struct up_extend *ex = &up->ex;

  up__jb_printf(j, "{\"state\":\"%s\",\"extends\":%llu,\"size\":%llu}",
                kind[ex->kind], (unsigned long long) ex->extends,
                (unsigned long long) ex_bytes(up, up->region.extent_count));
}
