/* crucible-c downstairs: job ordering (see server_sched.h for the rule).
 *
 * Invariant, asserted whenever a job starts: every job earlier in the
 * list that is still unfinished and conflicts with it is joinable (a
 * queued group on its extent, server_sched.h).  Liveness: after
 * sched_done(), every job whose earlier jobs are all non-conflicting is
 * running (tests/unit/test_server_sched.c checks both against a naive
 * model on random job streams).
 */
#include "server_sched.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/list.h"

void sched_init(struct sched *s)
{
  memset(s, 0, sizeof *s);
}

void sched_free(struct sched *s)
{
  assert(s->head == NULL && s->count == 0);
  free(s->set_key);
  free(s->set_stamp);
  memset(s, 0, sizeof *s);
}

/* Grow the scratch set so it holds at least 2 * want slots. */
static int set_reserve(struct sched *s, size_t want)
{
  size_t cap = s->set_cap ? s->set_cap : 64;
  while (cap < 2 * want)
    cap *= 2;
  if (cap == s->set_cap)
    return 0;
  uint32_t *k = calloc(cap, sizeof *k);
  uint32_t *st = calloc(cap, sizeof *st);
  if (!k || !st) {
    free(k);
    free(st);
    return -ENOMEM;
  }
  free(s->set_key);
  free(s->set_stamp);
  s->set_key = k;
  s->set_stamp = st;
  s->set_cap = cap;
  s->stamp = 0;
  return 0;
}

/* Start a new, empty set (stamps make clearing O(1)). */
static void set_clear(struct sched *s)
{
  if (++s->stamp == 0) {
    memset(s->set_stamp, 0, s->set_cap * sizeof *s->set_stamp);
    s->stamp = 1;
  }
}

/* Is eid present?  With add, insert it too. */
static int set_test(struct sched *s, uint32_t eid, bool add)
{
  size_t mask = s->set_cap - 1;
  size_t i = ((uint32_t) (eid * 2654435761u)) & mask;
  for (;; i = (i + 1) & mask) {
    if (s->set_stamp[i] != s->stamp) {
      if (add) {
        s->set_stamp[i] = s->stamp;
        s->set_key[i] = eid;
      }
      return 0;
    }
    if (s->set_key[i] == eid)
      return 1;
  }
}

#ifndef NDEBUG
/* The ordering invariant, checked the slow way. */
static int may_run(const struct sched_job *j)
{
  for (const struct sched_job *p = j->prev; p; p = p->prev)
    if (sched_conflict(p, j) && !sched_joinable(p, j))
      return 0;
  return 1;
}
#endif

/* Mark j started. */
static void start_job(struct sched_job *j)
{
  j->running = true;
  j->queued = true;
}

void sched_submitted(struct sched_job *j)
{
  assert(j->running);
  j->queued = false;
}

int sched_add(struct sched *s, struct sched_job *j)
{
  if (set_reserve(s, s->count + 1) < 0)
    return -ENOMEM;
  j->running = false;
  j->queued = false;
  j->next = NULL;
  j->prev = s->tail;
  if (s->tail)
    s->tail->next = j;
  else
    s->head = j;
  s->tail = j;
  s->count++;
  for (const struct sched_job *p = j->prev; p; p = p->prev)
    if (sched_conflict(p, j) && !sched_joinable(p, j))
      return 0;
  start_job(j);
  return 1;
}

/* Unlink j from the list. */
static void unlink_job(struct sched *s, struct sched_job *j)
{
  DLIST_UNLINK(s->head, s->tail, j);
  s->count--;
}

void sched_remove(struct sched *s, struct sched_job *j)
{
  assert(!j->running);
  unlink_job(s, j);
}

/* One pass in arrival order, remembering the extents of the jobs passed
 * that block (all but queued ones): a job may start iff its extent is not
 * among them; a barrier may start only at the head, and nothing after a
 * barrier may start. */
void sched_done(struct sched *s, struct sched_job *j, sched_start_fn start,
                void *arg)
{
  assert(j->running && !j->queued);
  unlink_job(s, j);
  set_clear(s);
  for (struct sched_job *p = s->head; p; p = p->next) {
    if (p->barrier) {
      if (p == s->head && !p->running) {
        start_job(p);
        start(p, arg);
      }
      break;
    }
    int blocked = set_test(s, p->eid, false);
    if (!p->running && !blocked) {
      assert(may_run(p));
      start_job(p);
      start(p, arg);
    }
    if (!(p->running && p->queued))
      set_test(s, p->eid, true);
  }
}
