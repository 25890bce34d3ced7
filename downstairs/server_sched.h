/* crucible-c downstairs: the job ordering rule, as a data structure.
 *
 * Every unfinished IO job of the region (whatever connection sent it)
 * sits in one list, in arrival order.  A job may start only when no
 * EARLIER unfinished job conflicts with it:
 *   - two extent jobs (WRITE, READ, TRIM) conflict iff same extent;
 *   - a barrier (FLUSH, EXTENT_STATES_REQ) conflicts with every job, both
 *     ways: it waits for everything before it, everything after waits
 *     for it.
 * So conflicting jobs run one at a time in arrival order, and jobs on
 * different extents run in parallel.  sched_done() starts every job the
 * finished one was holding back; nothing else ever starts a job.
 *
 * Groups.  A started job is "queued" until the caller hands it to a
 * worker (sched_submitted).  A later job whose earlier conflicting jobs
 * are all queued, on its extent, and neither it nor they a barrier, may
 * start too: the caller runs it after them, in the same worker, in
 * arrival order (group commit: one hand-off and one transaction for
 * several writes of an extent).  Once submitted, a job blocks later
 * conflicting ones as before.
 *
 * Pure bookkeeping, no libuv and no locking: used on the loop thread only.
 * sched_add() is the only call that allocates (-ENOMEM); sched_done()
 * cannot fail, so a finished job can always be retired.
 */
#ifndef CRUCIBLE_SERVER_SCHED_H
#define CRUCIBLE_SERVER_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Embedded in the caller's job; the caller owns the memory. */
struct sched_job {
  struct sched_job *prev, *next;
  uint32_t eid; /* extent, for extent jobs */
  bool barrier; /* FLUSH and friends */
  bool running; /* set by the scheduler when it says "start" */
  bool queued;  /* started, not yet submitted (see Groups above) */
};

struct sched {
  struct sched_job *head, *tail;
  size_t count;
  /* Scratch hash set of extent ids for sched_done(); sized by sched_add
   * to at least twice count, so it never fills. */
  uint32_t *set_key, *set_stamp;
  size_t set_cap; /* power of two */
  uint32_t stamp;
};

typedef void (*sched_start_fn)(struct sched_job *j, void *arg);

void sched_init(struct sched *s);
/* Frees the scratch set; the list must be empty. */
void sched_free(struct sched *s);

/* Append j (eid and barrier set by the caller).  Returns 1 if j may start
 * now (it is then marked running and queued, and the caller must start
 * it), 0 if it must wait, -ENOMEM (j not added). */
int sched_add(struct sched *s, struct sched_job *j);

/* j (running, submitted) finished: unlink it and call start() for every
 * job that may start now, in list order (each is marked running and
 * queued first). */
void sched_done(struct sched *s, struct sched_job *j, sched_start_fn start,
                void *arg);

/* j (running) was handed to a worker: later conflicting jobs wait for
 * it from now on. */
void sched_submitted(struct sched_job *j);

/* Unlink a job that never started (shutdown). */
void sched_remove(struct sched *s, struct sched_job *j);

/* 1 if a conflicts with b (symmetric). */
static inline int sched_conflict(const struct sched_job *a,
                                 const struct sched_job *b)
{
  return a->barrier || b->barrier || a->eid == b->eid;
}

/* 1 if earlier job a (conflicting with b) lets b start behind it. */
static inline int sched_joinable(const struct sched_job *a,
                                 const struct sched_job *b)
{
  return a->running && a->queued && !a->barrier && !b->barrier &&
         a->eid == b->eid;
}

#endif
