/* crucible-c upstairs: the loop side of the job tracker.
 *
 * Caller threads queue jobs (up__submit); the async callback drains the
 * whole queue, assigns ids in queue order and sends each job: WRITE, TRIM
 * and FLUSH to every active downstairs (the same frame buffer), READ to one
 * (least in flight, rotating) or, with verify=all, to all.  Replies and
 * faults move ds[i] out of SENT; job_eval() decides the outcome and drops
 * the job from the in-flight list once nothing is SENT.  The invariants are
 * in upstairs_int.h.  Loop thread only, except up__submit.  What the
 * layers above must hear of (repair, the version cache, snapshots, the
 * counters, reconcile's and repair's polls, the stop) goes through the
 * up->jh hooks (struct up_job_hooks), never a call by name.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/geom.h"
#include "../common/list.h"
#include "../common/log.h"
#include "upstairs_int.h"

/* Jobs that only read (READ, EXTENT_MAP_REQ): a fenced upstairs gets
 * EIO for them, not EROFS, and a live-repair target none of them. */
static bool job_reads(const struct up_job *job)
{
  return job->type == PROTO_T_READ || job->type == PROTO_T_EXTENT_MAP_REQ;
}

/* Move ds[i] of job one step: NONE -> SENT, then SENT -> DONE, ERR or
 * SKIP, exactly once each (upstairs_int.h). */
static void job_step(struct up_job *job, int i, enum up_job_state to)
{
  assert(i >= 0 && i < UP_DOWNSTAIRS);
  assert(to == JS_SENT ? job->ds[i] == JS_NONE
                       : job->ds[i] == JS_SENT &&
                             (to == JS_DONE || to == JS_ERR || to == JS_SKIP));
  job->ds[i] = (uint8_t) to;
}

/* Drop one reference (caller's or loop's); free on the last. */
void up__job_put(struct up_job *job)
{
  if (__atomic_sub_fetch(&job->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    free(job->reply_buf[i]);
  free(job->frame);
  free(job);
}

/* Drop one loop-internal reference; the last releases the loop's ref. */
void up__job_loop_put(struct up_job *job)
{
  if (--job->loop_refs == 0)
    up__job_put(job);
}

/* May job run in the current phase (under up->lock)?  Only while
 * running, or a reconciliation job while reconciling. */
static bool job_phase_ok(const struct upstairs *up, const struct up_job *job)
{
  return !up->stopping && (up->phase == UP_PH_RUNNING ||
                           (job->sys && up->phase == UP_PH_RECONCILE));
}

/* Queue a job for req and wake the loop (caller thread). */
int up__submit(struct upstairs *up, struct up_req *req, struct up_job *job)
{
  pthread_mutex_lock(&up->lock);
  if (!job_phase_ok(up, job)) {
    pthread_mutex_unlock(&up->lock);
    return -EIO;
  }
  job->req = req;
  req->pending++;
  if (!job->only && !job->sys)
    __atomic_add_fetch(&up->guest_jobs, 1, __ATOMIC_RELAXED);

  FIFO_PUSH(up->q_head, up->q_tail, job, next);
  /* A busy loop drains the queue in up__before_poll before it sleeps:
   * only an idle one needs the eventfd write (and the read and callback
   * it costs the loop). */
  if (__atomic_load_n(&up->loop_idle, __ATOMIC_RELAXED))
    uv_async_send(&up->async); /* under the lock: see up_stop */
  pthread_mutex_unlock(&up->lock);
  return 0;
}

/* Wake the callers of every job decided since the last call: one lock
 * round and one signal per finished request for a whole loop turn
 * (up__before_poll), instead of a lock round per job while the woken
 * callers contend for that lock.  A caller past its deadline detached
 * its jobs (req NULL) and is not touched. */
void up__wake_flush(struct upstairs *up)
{
  unsigned n = up->nwake;

  if (n == 0)
    return;
  up->nwake = 0;
  pthread_mutex_lock(&up->lock);
  for (unsigned i = 0; i < n; i++) {
    struct up_job *job = up->wake[i];
    if (job->req) {
      if (--job->req->pending == 0)
        pthread_cond_signal(&job->req->cond);
      job->req = NULL;
    }
  }
  pthread_mutex_unlock(&up->lock);
  for (unsigned i = 0; i < n; i++)
    up__job_loop_put(up->wake[i]);
}

/* Keep decided job for up__wake_flush (a loop ref held meanwhile).
 * false if out of memory: the caller wakes it now. */
static bool job_wake_later(struct upstairs *up, struct up_job *job)
{
  if (up->nwake == up->wake_cap) {
    unsigned cap = up->wake_cap ? 2 * up->wake_cap : 64;
    struct up_job **w = realloc(up->wake, cap * sizeof *w);
    if (!w)
      return false;
    up->wake = w;
    up->wake_cap = cap;
  }
  job->loop_refs++;
  up->wake[up->nwake++] = job;
  return true;
}

/* Set the outcome once; its caller (if it still waits) is woken at the
 * end of the loop turn (up__wake_flush). */
static void job_decide(struct upstairs *up, struct up_job *job, int result)
{
  bool first;

  pthread_mutex_lock(&up->lock);
  first = !job->decided;
  if (first) {
    job->decided = true;
    job->result = result;
    for (int i = 0; i < UP_DOWNSTAIRS; i++) {
      job->seen |= (unsigned) (job->ds[i] == JS_DONE) << i;
      job->failed |= (unsigned) (job->ds[i] == JS_ERR) << i;
      job->sent |= (unsigned) (job->ds[i] != JS_NONE) << i;
    }
    if ((job->type == PROTO_T_FLUSH || up->jh->is_flush(job)) && result == 0 &&
        job->flush_dirty && job->flush_no > up->acked_flush)
      up->acked_flush = job->flush_no;
    /* One wake-up per request: its caller waits for pending == 0
     * (up__req_wait, the only waiter on req->cond), so waking it for
     * each of a request's jobs only makes it sleep again.  Signalled
     * under the lock: once pending is 0 the caller may return and
     * destroy the condvar. */
    if (job->req && !job_wake_later(up, job)) {
      if (--job->req->pending == 0)
        pthread_cond_signal(&job->req->cond);
      job->req = NULL;
    }
  }
  pthread_mutex_unlock(&up->lock);
  if (first)
    up->jh->decided(up, job, result);
}

/* Take the job off the in-flight list. */
static void job_untrack(struct upstairs *up, struct up_job *job)
{
  if (!job->tracked)
    return;
  DLIST_UNLINK(up->if_head, up->if_tail, job);
  job->tracked = false;
  up__job_loop_put(job);
}

/* The errno a failed write/trim/flush reports: the downstairs' own if all
 * that answered with an error agree (ENOSPC...), else EIO. */
static int job_fail_code(const struct up_job *job)
{
  int e = 0;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    if (job->ds[i] != JS_ERR)
      continue;
    if (e && e != job->ds_err[i])
      return -EIO;
    e = job->ds_err[i];
  }
  return e > 0 ? -e : -EIO;
}

/* Did a data reply arrive (a versions-only one does not count)? */
static bool job_data_ok(const struct up_job *job)
{
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (job->ds[i] == JS_DONE && !(job->vmask & (1u << i)))
      return true;
  return false;
}

/* A fresh READ may be decided before every reply is in: once its data
 * replica failed (the caller tries another), or once its data and one
 * versions reply arrived and every other versions reply still out is
 * from a downstairs silent for UP_FRESH_LIVE_MS (a hung one must not hold
 * every read; a live one is waited for, so that all answers are weighed
 * and a stale one is healed). */
static bool read_ready(struct upstairs *up, const struct up_job *job)
{
  bool data_done = false, data_out = false, ver = false, live = false;
  uint64_t now = uv_now(&up->loop);

  if (!job->vmask)
    return false;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    if (job->dmask & (1u << i)) {
      data_done |= job->ds[i] == JS_DONE;
      data_out |= job->ds[i] == JS_SENT;
    } else if (job->vmask & (1u << i)) {
      ver |= job->ds[i] == JS_DONE;
      live |= job->ds[i] == JS_SENT &&
              now - up->cl[i].last_rx_ms < UP_FRESH_LIVE_MS;
    }
  }
  return !data_out && (!data_done || (ver && !live));
}

bool up__job_rule(const struct up_job *job, unsigned write_quorum,
                  bool fresh_ready, int *result)
{
  /* ok, pending: every downstairs; okf, pendf: full replicas only (not
   * live-repair targets, which hold only part of the volume). */
  unsigned ok = 0, pending = 0, okf = 0, pendf = 0;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    bool full = !(job->lr_mask & (1u << i));
    ok += job->ds[i] == JS_DONE;
    pending += job->ds[i] == JS_SENT;
    okf += full && job->ds[i] == JS_DONE;
    pendf += full && job->ds[i] == JS_SENT;
  }
  switch (job->type) {
  case PROTO_T_WRITE:
  case PROTO_T_TRIM:
    if (job->only) { /* chosen targets: done when they answered */
      *result = ok ? 0 : -EIO;
      return pending == 0;
    }
    if (okf >= 2 && ok >= write_quorum) {
      *result = 0;
      return true;
    }
    *result = job_fail_code(job);
    return okf + pendf < 2 || ok + pending < write_quorum;
  case PROTO_T_SNAPSHOT: /* snapshot.c: as FLUSH, or as chosen targets */
    if (job->only) {
      *result = ok ? 0 : job_fail_code(job);
      return pending == 0;
    }
    /* fallthrough */
  case PROTO_T_FLUSH: /* a live-repair target's answer is not waited for */
    *result = okf >= 2 ? 0 : job_fail_code(job);
    return pendf == 0;
  case PROTO_T_READ:
    *result = job_data_ok(job) ? 0 : -EIO;
    return pending == 0 || fresh_ready;
  case PROTO_T_EXTENT_FLUSH: /* the caller reads seen/failed per replica */
  default: *result = ok ? 0 : -EIO; return pending == 0;
  }
}

/* Decide what can be decided; untrack when nothing is SENT any more. */
static void job_eval(struct upstairs *up, struct up_job *job)
{
  bool pending = false;
  int result;

  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    pending |= job->ds[i] == JS_SENT;
  if (up__job_rule(job, up->cfg.write_quorum,
                   job->type == PROTO_T_READ && pending && read_ready(up, job),
                   &result))
    job_decide(up, job, result);
  if (!pending)
    job_untrack(up, job);
}

/* Append to the in-flight list (id order). */
static void job_track(struct upstairs *up, struct up_job *job)
{
  job->prev = up->if_tail;
  job->next = NULL;
  if (up->if_tail)
    up->if_tail->next = job;
  else
    up->if_head = job;
  up->if_tail = job;
  job->tracked = true;
}

/* Write the assigned id (and flush number) into the job's frame header. */
static void job_patch(struct upstairs *up, struct up_job *job)
{
  struct proto_flush f;

  switch (job->type) {
  case PROTO_T_WRITE:
    proto_put_write_hdr(job->frame, job->id, job->lba, job->n,
                        up->region.block_size);
    up->wr_since_flush = true;
    break;
  case PROTO_T_TRIM:
    proto_put_trim(job->frame, job->id, job->lba, job->n, job->version);
    up->wr_since_flush = true;
    break;
  case PROTO_T_READ:
    proto_put_read(job->frame, job->id, job->lba, job->n,
                   (job->ctx_only ? PROTO_F_CTX_ONLY : 0) |
                       (job->versions ? PROTO_F_VERSIONS : 0));
    proto_put_read(job->vframe, job->id, job->lba, job->n,
                   PROTO_F_CTX_ONLY | PROTO_F_VERSIONS);
    break;
  case PROTO_T_EXTENT_MAP_REQ:
    proto_put_extent_map_req(job->frame, job->id, job->lba, job->n);
    break;
  case PROTO_T_SNAPSHOT: up->jh->patch_snapshot(up, job); break;
  case PROTO_T_EXTENT_FLUSH: {
    struct proto_extent_op o = {.job_id = job->id,
                                .eid = (uint32_t) job->lba,
                                .flush_no = up->flush_no++,
                                .gen = up->gen};
    job->flush_no = o.flush_no;
    proto_put_extent_op(job->frame, PROTO_T_EXTENT_FLUSH, &o);
    break;
  }
  default:
    job->flush_no = up->flush_no++;
    job->flush_dirty = up->wr_since_flush;
    up->wr_since_flush = false;
    f = (struct proto_flush){job->id, job->flush_no, up->gen};
    proto_put_flush(job->frame, &f);
    break;
  }
  up->jh->tracked(up, job);
}

/* May downstairs c get this job?  A job aimed at chosen downstairs goes
 * to those; otherwise a live-repair target gets every WRITE, TRIM and
 * FLUSH (repair.c) and no READ or EXTENT_MAP_REQ (its map is partial).
 * Every other active downstairs gets an EXTENT_MAP_REQ (extents.c). */
static bool job_wants(const struct cl *c, const struct up_job *job)
{
  if (c->state != CL_ACTIVE || (job->tried & (1u << c->idx)))
    return false;
  if (job->only)
    return (job->only & (1u << c->idx)) != 0;
  return !c->lr || !job_reads(job);
}

/* Which downstairs get this job: a bitmask. */
static unsigned job_targets(struct upstairs *up, struct up_job *job)
{
  unsigned mask = 0, best = 0;
  int pick = -1;

  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (job_wants(&up->cl[i], job))
      mask |= 1u << i;
  if (job->only || job->type != PROTO_T_READ ||
      up->cfg.verify == UP_VERIFY_ALL || !mask)
    return mask;
  /* Least in flight; ties rotate so idle replicas share the reads. */
  up->read_rr++;
  for (int k = 0; k < UP_DOWNSTAIRS; k++) {
    int i = (int) ((up->read_rr + (unsigned) k) % UP_DOWNSTAIRS);
    if ((mask & (1u << i)) && (pick < 0 || up->cl[i].inflight < best)) {
      pick = i;
      best = up->cl[i].inflight;
    }
  }
  job->dmask = 1u << pick;
  if (up->cfg.verify == UP_VERIFY_FRESH) {
    /* Versions from every other full replica, those a retry no longer
     * reads data from included: one is enough, all are asked. */
    for (int i = 0; i < UP_DOWNSTAIRS; i++)
      if (i != pick && up->cl[i].state == CL_ACTIVE && !up->cl[i].lr)
        job->vmask |= 1u << i;
  }
  return job->dmask | job->vmask;
}

/* Fault a downstairs that fell too far behind: writes acked by the
 * others pile up for it without bound otherwise (the upstairs' memory:
 * max-behind= is what a Raspberry Pi lowers).  Its lag is what it has in
 * flight beyond the most loaded other full replica: what that one has
 * answered (with the third: a quorum) and this one has not.  Requests in
 * flight to all three, or a replica merely slower than the fastest, are
 * nobody's lag.  With no other replica, all of it.  Past the bound for
 * UP_BEHIND_GRACE_MS, or past twice the bound: faulted (so the memory
 * held for it stays under twice max-behind). */
static void job_check_behind(struct upstairs *up, struct cl *c)
{
  uint64_t most = 0, lag, now = uv_now(&up->loop);
  bool hard;
  if (c->state != CL_ACTIVE)
    return;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    const struct cl *o = &up->cl[i];
    if (o != c && o->state == CL_ACTIVE && !o->lr && o->inflight_bytes > most)
      most = o->inflight_bytes;
  }
  lag = c->inflight_bytes > most ? c->inflight_bytes - most : 0;
  if (c->inflight <= UP_MAX_BEHIND_JOBS && lag <= up->cfg.max_behind) {
    c->behind = false;
    return;
  }
  hard = c->inflight > 2 * UP_MAX_BEHIND_JOBS || lag > 2 * up->cfg.max_behind;
  if (!c->behind) {
    c->behind = true;
    c->behind_ms = now;
  }
  if (!hard && now - c->behind_ms < UP_BEHIND_GRACE_MS)
    return;
  cl_fault(c,
           "too far behind (%u jobs, %llu bytes in flight, %llu more "
           "than the others%s)",
           c->inflight, (unsigned long long) c->inflight_bytes,
           (unsigned long long) lag, hard ? "" : ", for 1 s");
}

/* Send one drained job (or fail it at once).  Jobs aimed at chosen
 * downstairs (repair, heal) run with fewer than two active too: live
 * repair rebuilds a replica from the last full one. */
void up__job_start(struct upstairs *up, struct up_job *job)
{
  unsigned mask;
  bool fenced, running;

  pthread_mutex_lock(&up->lock);
  fenced = up->fenced;
  running = job_phase_ok(up, job);
  pthread_mutex_unlock(&up->lock);
  if (fenced || !running ||
      (!job->only && __atomic_load_n(&up->n_active, __ATOMIC_SEQ_CST) < 2)) {
    if (fenced && !job_reads(job))
      log_debug("write refused: fenced by a newer generation");
    job_decide(up, job, fenced && !job_reads(job) ? -EROFS : -EIO);
    up__job_loop_put(job);
    return;
  }
  job->id = ++up->next_id;
  job_patch(up, job);
  job_track(up, job);
  job->sent_ms = uv_now(&up->loop);
  job->sent_us = uv_hrtime() / 1000;
  mask = job_targets(up, job);
  if (up_debug_io)
    log_debug("job %llu %s lba %llu n %u to mask %x",
              (unsigned long long) job->id, proto_type_name(job->type),
              (unsigned long long) job->lba, job->n, mask);
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct cl *c = &up->cl[i];
    if (!(mask & (1u << i)))
      continue;
    if (c->lr) {
      job->lr_mask |= 1u << i;
      if ((job->type == PROTO_T_WRITE || job->type == PROTO_T_TRIM) &&
          up->jh->before_send(up, c, job) < 0)
        continue; /* faulted */
    }
    if ((job->vmask & (1u << i)
             ? cl_send_job_frame(c, job, job->vframe, sizeof job->vframe)
             : cl_send_job_frame(c, job, job->frame, job->frame_len)) < 0) {
      cl_fault(c, "send failed, job %llu", (unsigned long long) job->id);
      continue;
    }
    job->loop_refs++; /* the batch's (client.h) */
    job_step(job, i, JS_SENT);
    c->inflight++;
    c->inflight_bytes += job->frame_len;
  }
  job_eval(up, job);
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    job_check_behind(up, &up->cl[i]);
}

static void loop_busy(struct upstairs *up)
{
  __atomic_store_n(&up->loop_idle, false, __ATOMIC_RELAXED);
}

/* Drain the whole submit queue in order (or shut down). */
static void drain_queue(struct upstairs *up)
{
  struct up_job *job, *next;
  bool stopping;

  char why[UP_DOWNSTAIRS][160];
  bool fault[UP_DOWNSTAIRS];

  pthread_mutex_lock(&up->lock);
  job = up->q_head;
  up->q_head = up->q_tail = NULL;
  stopping = up->stopping;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    fault[i] = up->fault_req[i];
    up->fault_req[i] = false;
    memcpy(why[i], up->fault_why[i], sizeof why[i]);
  }
  pthread_mutex_unlock(&up->lock);
  for (int i = 0; i < UP_DOWNSTAIRS && !stopping; i++)
    if (fault[i] && up->cl[i].state == CL_ACTIVE)
      cl_fault(&up->cl[i], "%s", why[i]); /* before the jobs: a retry
                                             asks the others */
  for (; job; job = next) {
    next = job->next;
    if (stopping) {
      job_decide(up, job, -EIO);
      up__job_loop_put(job);
    } else {
      up__job_start(up, job);
    }
  }
  /* One write per downstairs for the whole pass (client.c batches). */
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    cl_flush_now(&up->cl[i]);
  if (stopping)
    up->jh->stopping(up);
  else
    up->jh->drained(up);
}

void up__drain(uv_async_t *a)
{
  struct upstairs *up = a->data;

  loop_busy(up);
  drain_queue(up);
}

/* The queue is checked and the loop marked idle under the same lock a
 * submitter holds to push and test the mark: a job pushed before is
 * started here, one pushed after sees the mark and wakes the loop. */
void up__before_poll(uv_prepare_t *p)
{
  struct upstairs *up = p->data;

  for (;;) {
    for (int i = 0; i < UP_DOWNSTAIRS; i++)
      cl_flush_now(&up->cl[i]);
    up__wake_flush(up);
    pthread_mutex_lock(&up->lock);
    bool more = up->q_head != NULL;
    if (!more)
      up->loop_idle = true;
    pthread_mutex_unlock(&up->lock);
    if (!more)
      return;
    drain_queue(up);
    if (up->shut)
      return;
  }
}

/* The tracked job with this id, or NULL. */
static struct up_job *job_find(struct upstairs *up, uint64_t id)
{
  for (struct up_job *j = up->if_head; j; j = j->next)
    if (j->id == id)
      return j;
  return NULL;
}

/* A reply that names no job we sent to c: the connection is broken. */
static void job_bad_reply(struct cl *c, uint64_t id)
{
  cl_fault(c, "reply for unknown job %llu", (unsigned long long) id);
}

/* JOB_DONE for a WRITE, TRIM or FLUSH.  An error faults the downstairs. */
void up__on_job_done(struct upstairs *up, struct cl *c,
                     const struct proto_job_done *d)
{
  struct up_job *job = job_find(up, d->job_id);
  char why[128];

  loop_busy(up); /* replies arrive: it passes up__before_poll again */
  if (!job || job->ds[c->idx] != JS_SENT || job_reads(job)) {
    job_bad_reply(c, d->job_id);
    return;
  }
  c->inflight--;
  c->inflight_bytes -= job->frame_len;
  up->jh->replied(up, c, job, d->err == 0);
  if (d->err == 0) {
    job_step(job, c->idx, JS_DONE);
    job_eval(up, job);
    return;
  }
  job_step(job, c->idx, JS_ERR);
  job->ds_err[c->idx] = d->err > 0 ? d->err : EIO;
  /* A snapshot command refused (snapshot.c) faults nobody. */
  if (job->type == PROTO_T_SNAPSHOT &&
      (d->err == EEXIST || d->err == ENOENT || d->err == EINVAL)) {
    job_eval(up, job);
    return;
  }
  /* The reason first: job_eval may drop the last reference to job. */
  snprintf(why, sizeof why, "%s error: %s, job %llu",
           proto_type_name(job->type), log_strerror(job->ds_err[c->idx]),
           (unsigned long long) job->id);
  job_eval(up, job);
  cl_fault(c, "%s", why);
}

/* READ_DONE: hand the frame (buf, now ours) to the job for the caller. */
void up__on_read_done(struct upstairs *up, struct cl *c, uint8_t *buf,
                      const struct proto_read_done *d)
{
  struct up_job *job = job_find(up, d->job_id);

  loop_busy(up);
  if (!job || job->ds[c->idx] != JS_SENT || job->type != PROTO_T_READ) {
    free(buf);
    job_bad_reply(c, d->job_id);
    return;
  }
  if (d->err == 0 &&
      (d->data == NULL) != (job->ctx_only || (job->vmask & (1u << c->idx)))) {
    free(buf);
    cl_fault(c, "READ_DONE %s data for job %llu", d->data ? "with" : "without",
             (unsigned long long) d->job_id);
    return;
  }
  c->inflight--;
  c->inflight_bytes -= job->frame_len;
  up->jh->replied(up, c, job, d->err == 0 && d->n == job->n);
  if (d->err != 0 || d->n != job->n) {
    log_warn("downstairs %s: read lba %llu failed: %s, job %llu", c->name,
             (unsigned long long) job->lba,
             d->err ? log_strerror(d->err > 0 ? d->err : EIO) : "short reply",
             (unsigned long long) job->id);
    free(buf);
    job_step(job, c->idx, JS_ERR);
  } else {
    job->reply_buf[c->idx] = buf;
    job->reply[c->idx] = *d;
    job_step(job, c->idx, JS_DONE);
  }
  job_eval(up, job);
}

/* EXTENT_MAP: keep a copy of the bitmap in the job for the caller
 * (extents.c).  An error answer counts as no answer; a bitmap of another
 * length than asked is a broken peer. */
void up__on_extent_map(struct upstairs *up, struct cl *c,
                       const struct proto_extent_map *d)
{
  struct up_job *job = job_find(up, d->job_id);
  uint8_t *bits = NULL;

  if (!job || job->ds[c->idx] != JS_SENT ||
      job->type != PROTO_T_EXTENT_MAP_REQ) {
    job_bad_reply(c, d->job_id);
    return;
  }
  if (d->err == 0 && d->n != job->n) {
    cl_fault(c, "EXTENT_MAP of %u blocks for %u, job %llu", d->n, job->n,
             (unsigned long long) d->job_id);
    return;
  }
  c->inflight--;
  c->inflight_bytes -= job->frame_len;
  up->jh->replied(up, c, job, d->err == 0);
  if (d->err == 0 && (bits = malloc(proto_map_bytes(d->n))) != NULL)
    memcpy(bits, d->bits, proto_map_bytes(d->n));
  if (!bits) {
    log_warn("downstairs %s: block status lba %llu failed: %s, job %llu",
             c->name, (unsigned long long) job->lba,
             log_strerror(d->err ? d->err : ENOMEM),
             (unsigned long long) job->id);
    job_step(job, c->idx, JS_ERR);
  } else {
    job->reply_buf[c->idx] = bits;
    job->reply[c->idx].n = d->n;
    job->reply[c->idx].data = bits;
    job_step(job, c->idx, JS_DONE);
  }
  job_eval(up, job);
}

void up__on_reply_buf(struct upstairs *up, struct cl *c, uint64_t id,
                      uint16_t type, int err, uint8_t *buf, uint32_t n)
{
  struct up_job *job = job_find(up, id);

  if (!job || job->ds[c->idx] != JS_SENT || job->type != type) {
    free(buf);
    job_bad_reply(c, id);
    return;
  }
  c->inflight--;
  c->inflight_bytes -= job->frame_len;
  up->jh->replied(up, c, job, err == 0);
  job->ds_err[c->idx] = err;
  job->reply_buf[c->idx] = buf;
  job->reply[c->idx].n = n;
  job_step(job, c->idx, err ? JS_ERR : JS_DONE);
  job_eval(up, job);
}

/* c is gone: every job still outstanding on it is skipped for it. */
void up__ds_lost(struct upstairs *up, struct cl *c)
{
  struct up_job *job, *next;

  for (job = up->if_head; job; job = next) {
    next = job->next;
    if (job->ds[c->idx] != JS_SENT)
      continue;
    job_step(job, c->idx, JS_SKIP);
    job_eval(up, job); /* may untrack job, never next */
  }
  c->inflight = 0;
  c->inflight_bytes = 0;
  c->behind = false;
}

/* Fault every downstairs with a job outstanding longer than timeout, or
 * lagging past max-behind beyond the grace (the loop's 1 s tick). */
void up__check_timeouts(struct upstairs *up)
{
  uint64_t now = uv_now(&up->loop), tmo = up->cfg.timeout * 1000ull;
  uint64_t which[UP_DOWNSTAIRS] = {0};

  for (struct up_job *j = up->if_head; j; j = j->next) {
    if (now - j->sent_ms < tmo)
      break; /* the list is in send order */
    for (int i = 0; i < UP_DOWNSTAIRS; i++)
      if (j->ds[i] == JS_SENT && !which[i])
        which[i] = j->id;
  }
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (which[i]) {
      cl_fault(&up->cl[i], "timeout, job %llu", (unsigned long long) which[i]);
    }
  /* A lag past max-behind whose grace ran out while no job started
   * (a FLUSH waits for every full replica: the guest is held). */
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (up->cl[i].behind)
      job_check_behind(up, &up->cl[i]);
}

/* Fail everything queued and in flight (stop, fence).  err is -EROFS
 * for writes when fenced; reads then get -EIO. */
void up__fail_all(struct upstairs *up, int err)
{
  struct up_job *job, *next;

  pthread_mutex_lock(&up->lock);
  job = up->q_head;
  up->q_head = up->q_tail = NULL;
  pthread_mutex_unlock(&up->lock);
  for (; job; job = next) {
    next = job->next;
    job_decide(up, job, job_reads(job) ? -EIO : err);
    up__job_loop_put(job);
  }
  while ((job = up->if_head) != NULL) {
    for (int i = 0; i < UP_DOWNSTAIRS; i++)
      if (job->ds[i] == JS_SENT) {
        job_step(job, i, JS_SKIP);
        up->cl[i].inflight--;
        up->cl[i].inflight_bytes -= job->frame_len;
      }
    job_decide(up, job, job_reads(job) ? -EIO : err);
    job_untrack(up, job);
  }
}
