/* crucible-c upstairs: live repair (loop thread only; the driver's state
 * is struct up_repair, upstairs_int.h).  Reconciliation at start-up is
 * block level and lives in reconcile.c.
 *
 * Live repair (phase RUNNING): a downstairs that comes back is activated
 * with our generation but marked lr: it gets no reads, it gets WRITE and
 * TRIM only for extents <= lr_limit, and every FLUSH.  Extents are then
 * copied one by one, in order, from the lowest-index fully active
 * downstairs; lr_limit advances after each.  IO that touches the extent
 * under repair is held (in order) until the extent is reopened
 * everywhere; IO to other extents and flushes go on.  When the last extent is done the
 * downstairs becomes fully active.
 *
 * Any failure of a step faults the downstairs that failed (it reconnects
 * with backoff and starts over); the live repair restarts later.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

static void rep_next(struct upstairs *up);

/* Send one repair frame of the current step to downstairs i. */
static int rep_send(struct upstairs *up, int i, uint16_t type)
{
  struct up_repair *rp = &up->rep;
  struct cl *c = &up->cl[i];
  struct cl *s = &up->cl[rp->src];
  struct proto_extent_op o = {.job_id = ++up->next_id | UP_REPAIR_ID_BIT,
                              .eid = rp->eid};
  uint8_t buf[PROTO_EXTENT_REPAIR_LEN];

  if (c->state != CL_ACTIVE)
    return -1;
  if (type == PROTO_T_EXTENT_REPAIR) {
    if (s->addr.ss_family == AF_INET) {
      const struct sockaddr_in *a = (const struct sockaddr_in *) &s->addr;
      o.family = 4;
      o.port = ntohs(a->sin_port);
      memcpy(o.addr, &a->sin_addr, 4);
    } else {
      const struct sockaddr_in6 *a = (const struct sockaddr_in6 *) &s->addr;
      o.family = 6;
      o.port = ntohs(a->sin6_port);
      memcpy(o.addr, &a->sin6_addr, 16);
    }
  }
  rp->wait_id[i] = o.job_id;
  rp->wait |= 1u << i;
  if (up_debug_repair)
    log_debug("repair: %s extent %u to %s, job %llu", proto_type_name(type),
              rp->eid, c->name, (unsigned long long) o.job_id);
  if (cl_send_copy(c, buf, proto_put_extent_op(buf, type, &o)) < 0) {
    cl_fault(c, "send failed during repair");
    return -1;
  }
  return 0;
}

/* Start step st of the current extent. */
static void rep_step(struct upstairs *up, enum up_rstep st)
{
  struct up_repair *rp = &up->rep;
  unsigned all = rp->targets | (1u << rp->src);
  static const uint16_t type[] = {0, PROTO_T_EXTENT_CLOSE,
                                  PROTO_T_EXTENT_REPAIR,
                                  PROTO_T_EXTENT_REOPEN};
  unsigned mask = st == UP_RS_REPAIR ? rp->targets : all;

  unsigned seq = ++rp->seq;

  rp->step = st;
  rp->wait = 0;
  rp->step_ms = uv_now(&up->loop);
  for (int i = 0; i < UP_DOWNSTAIRS && rp->seq == seq; i++)
    if ((mask & (1u << i)) && rep_send(up, i, type[st]) < 0 &&
        rp->seq == seq)
      up__repair_lost(up, &up->cl[i]); /* if cl_close did not already */
}

/* Start every job held while the extent was under repair, in order. */
static void rep_release(struct upstairs *up)
{
  struct up_job *job = up->rep.held_head, *next;

  up->rep.held_head = up->rep.held_tail = NULL;
  for (; job; job = next) {
    next = job->next;
    up__job_start(up, job);
  }
}

/* The current extent is finished (ok) or abandoned. */
static void rep_extent_end(struct upstairs *up, bool ok)
{
  struct up_repair *rp = &up->rep;
  uint32_t count = up->region.extent_count;

  rp->step = UP_RS_IDLE;
  rp->wait = 0;
  if (ok && rp->lr >= 0) {
    struct cl *c = &up->cl[rp->lr];
    c->lr_limit = rp->eid;
    if (count < 10 || (rp->eid + 1) % (count / 10) == 0 ||
        rp->eid + 1 == count)
      log_info("live repair of %s: %u/%u extents", c->name, rp->eid + 1,
               count);
    up__ds_progress(up, c, rp->eid + 1, count);
  }
  rep_release(up);
  rep_next(up);
}

/* Live repair: the next target to work on, or -1. */
static int lr_pick(struct upstairs *up)
{
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (up->cl[i].state == CL_ACTIVE && up->cl[i].lr)
      return i;
  return -1;
}

/* Live repair of rp->lr is complete: it becomes fully active. */
static void lr_finish(struct upstairs *up)
{
  struct cl *c = &up->cl[up->rep.lr];

  c->lr = false;
  __atomic_add_fetch(&up->n_active, 1, __ATOMIC_SEQ_CST);
  log_info("live repair of %s complete: %u extents in %.1f s; active again "
           "(%u of 3)", c->name, up->region.extent_count,
           (double) (uv_now(&up->loop) - up->rep.lr_start_ms) / 1000,
           __atomic_load_n(&up->n_active, __ATOMIC_SEQ_CST));
  up->rep.lr = -1;
  up__ds_update(up, c);
}

/* Live repair: set up the next extent, or finish.  false if idle. */
static bool lr_next(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;
  int src = -1;

  if (rp->lr >= 0 && (up->cl[rp->lr].state != CL_ACTIVE ||
                      !up->cl[rp->lr].lr))
    rp->lr = -1;
  if (rp->lr >= 0 && up->cl[rp->lr].lr_limit + 1 >=
                         (int64_t) up->region.extent_count)
    lr_finish(up);
  if (rp->lr < 0) {
    rp->lr = lr_pick(up);
    if (rp->lr < 0)
      return false;
    rp->lr_start_ms = uv_now(&up->loop);
    log_info("live repair of %s: starting, %u extents", up->cl[rp->lr].name,
             up->region.extent_count);
  }
  for (int i = 0; i < UP_DOWNSTAIRS && src < 0; i++)
    if (up->cl[i].state == CL_ACTIVE && !up->cl[i].lr)
      src = i;
  if (src < 0)
    return false; /* nothing to copy from: wait for one to return */
  rp->src = src;
  rp->targets = 1u << rp->lr;
  rp->eid = (uint32_t) (up->cl[rp->lr].lr_limit + 1);
  return true;
}

/* Pick the next piece of work and start it. */
static void rep_next(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;
  enum up_phase ph = up__phase(up);

  if (rp->step != UP_RS_IDLE)
    return;
  if (ph == UP_PH_RUNNING && lr_next(up)) {
    /* No EXTENT_FLUSH here: the copy may be dirty (the target rehashes
     * it at open) and the next FLUSH makes all three agree; flushing
     * only the source would leave its flush number apart. */
    rep_step(up, UP_RS_CLOSE);
  }
}

void up__lr_admit(struct upstairs *up, struct cl *c)
{
  c->lr = true;
  c->lr_limit = -1;
  log_info("downstairs %s is back (generation %llu): live repair queued",
           c->name, (unsigned long long) up->gen);
  up__ds_progress(up, c, 0, up->region.extent_count);
  up__ds_update(up, c);
  rep_next(up);
}

bool up__repair_on_done(struct upstairs *up, struct cl *c,
                        const struct proto_job_done *d)
{
  struct up_repair *rp = &up->rep;
  unsigned bit = 1u << c->idx;

  if (!(d->job_id & UP_REPAIR_ID_BIT))
    return false;
  if (!(rp->wait & bit) || rp->wait_id[c->idx] != d->job_id) {
    /* The answer to a step that was abandoned (a peer was lost). */
    if (up_debug_repair)
      log_debug("repair: late answer from %s, job %llu", c->name,
                (unsigned long long) (d->job_id & ~UP_REPAIR_ID_BIT));
    return true;
  }
  rp->wait &= ~bit;
  if (d->err) {
    /* aborts via up__repair_lost */
    cl_fault(c, "repair step failed on extent %u: %s", rp->eid,
             log_strerror(d->err > 0 ? d->err : EIO));
    return true;
  }
  if (rp->wait == 0) {
    if (rp->step == UP_RS_REOPEN)
      rep_extent_end(up, true);
    else
      rep_step(up, rp->step + 1);
  }
  return true;
}

void up__repair_lost(struct upstairs *up, struct cl *c)
{
  struct up_repair *rp = &up->rep;
  unsigned bit = 1u << c->idx;

  if (rp->step == UP_RS_IDLE)
    return;
  if (c->idx != rp->src && !(rp->targets & bit))
    return;
  log_warn("repair of extent %u abandoned: downstairs %s lost", rp->eid,
           c->name);
  if (rp->lr == c->idx)
    rp->lr = -1;
  rep_extent_end(up, false);
}

void up__repair_tick(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;
  uint64_t tmo = up->cfg.timeout * 10000ull;

  if (rp->step == UP_RS_IDLE) {
    rep_next(up); /* a source may have returned */
    return;
  }
  if (uv_now(&up->loop) - rp->step_ms < (tmo < 60000 ? 60000 : tmo))
    return;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (rp->wait & (1u << i)) {
      cl_fault(&up->cl[i], "repair step timed out on extent %u", rp->eid);
    }
}

bool up__repair_hold(struct upstairs *up, struct up_job *job)
{
  struct up_repair *rp = &up->rep;

  /* Only jobs on that extent wait: jobs on other extents never overlap
   * them, and a FLUSH need only cover writes already acknowledged, which
   * held ones are not.  Held jobs keep their order among themselves. */
  if (rp->step == UP_RS_IDLE || job->type == PROTO_T_FLUSH ||
      geom_extent_of(&up->region, job->lba) != rp->eid)
    return false;
  job->next = NULL;
  if (rp->held_tail)
    rp->held_tail->next = job;
  else
    rp->held_head = job;
  rp->held_tail = job;
  return true;
}

void up__repair_fail_held(struct upstairs *up, int err)
{
  struct up_job *job = up->rep.held_head, *next;

  up->rep.held_head = up->rep.held_tail = NULL;
  for (; job; job = next) {
    bool first;
    next = job->next;
    pthread_mutex_lock(&up->lock);
    first = !job->decided;
    if (first) {
      job->decided = true;
      job->result = job->type == PROTO_T_READ ? -EIO : err;
      if (job->req) {
        job->req->pending--;
        pthread_cond_broadcast(&job->req->cond);
        job->req = NULL;
      }
    }
    pthread_mutex_unlock(&up->lock);
    if (first)
      up__stats_decided(up, job, job->result);
    up__job_loop_put(job);
  }
}
