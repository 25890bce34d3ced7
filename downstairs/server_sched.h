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
 * now (it is then marked running and the caller must start it), 0 if it
 * must wait, -ENOMEM (j not added). */
int sched_add(struct sched *s, struct sched_job *j);

/* j (running) finished: unlink it and call start() for every job that
 * may start now, in list order (each is marked running first). */
void sched_done(struct sched *s, struct sched_job *j, sched_start_fn start,
                void *arg);

/* Unlink a job that never started (shutdown). */
void sched_remove(struct sched *s, struct sched_job *j);

/* 1 if a conflicts with b (symmetric). */
static inline int sched_conflict(const struct sched_job *a,
                                 const struct sched_job *b)
{
  return a->barrier || b->barrier || a->eid == b->eid;
}

#endif
