/* Unit test for downstairs/server_sched.c: the job ordering rule, checked
 * against a naive model on random job streams.
 *
 * Model: a job may run iff no earlier unfinished job conflicts with it
 * (same extent, or either is a barrier).  We add random jobs, finish
 * random running ones, and after every step check
 *   safety:   every running job is allowed by the model;
 *   liveness: every allowed job is running (nothing waits needlessly);
 *   order:    conflicting jobs started in arrival order.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../downstairs/server_sched.h"

#define MAXJ 500

struct tjob {
  struct sched_job s; /* first */
  int id;
  int started_seq;
  bool finished;
};

static struct tjob jobs[MAXJ];
static int start_seq;

static void on_start(struct sched_job *s, void *arg)
{
  struct tjob *j = (struct tjob *) s;
  (void) arg;
  assert(j->started_seq == 0);
  j->started_seq = ++start_seq;
}

/* Model: j may run iff no earlier unfinished job conflicts. */
static bool model_allowed(int id)
{
  for (int k = 0; k < id; k++)
    if (jobs[k].started_seq >= 0 && !jobs[k].finished &&
        sched_conflict(&jobs[k].s, &jobs[id].s))
      return false;
  return true;
}

static void check_all(int added)
{
  for (int i = 0; i < added; i++) {
    struct tjob *j = &jobs[i];
    if (j->finished)
      continue;
    bool allowed = model_allowed(i);
    bool running = j->started_seq > 0;
    assert(running == j->s.running);
    if (running && !allowed) {
      fprintf(stderr, "job %d running but not allowed\n", i);
      abort();
    }
    if (allowed && !running) {
      fprintf(stderr, "job %d allowed but waiting\n", i);
      abort();
    }
  }
}

static void run_one(unsigned seed, int nextents, int barrier_pct)
{
  struct sched s;
  int added = 0, finished = 0;
  srand(seed);
  memset(jobs, 0, sizeof jobs);
  start_seq = 0;
  sched_init(&s);
  while (finished < MAXJ) {
    bool add = added < MAXJ && (rand() % 3 != 0 || finished == added);
    if (add) {
      struct tjob *j = &jobs[added];
      j->id = added;
      j->s.eid = (uint32_t) (rand() % nextents);
      j->s.barrier = rand() % 100 < barrier_pct;
      int r = sched_add(&s, &j->s);
      assert(r >= 0);
      if (r == 1)
        on_start(&j->s, NULL);
      added++;
    } else {
      /* Finish a random running job. */
      int cand[MAXJ], nc = 0;
      for (int i = 0; i < added; i++)
        if (jobs[i].started_seq > 0 && !jobs[i].finished)
          cand[nc++] = i;
      assert(nc > 0); /* liveness: something unfinished always runs */
      struct tjob *j = &jobs[cand[rand() % nc]];
      j->finished = true;
      sched_done(&s, &j->s, on_start, NULL);
      finished++;
    }
    check_all(added);
  }
  /* Order: conflicting jobs started in arrival order. */
  for (int a = 0; a < MAXJ; a++)
    for (int b = a + 1; b < MAXJ && b < a + 64; b++)
      if (sched_conflict(&jobs[a].s, &jobs[b].s))
        assert(jobs[a].started_seq < jobs[b].started_seq);
  assert(s.head == NULL && s.count == 0);
  sched_free(&s);
}

int main(void)
{
  for (unsigned seed = 1; seed <= 5; seed++) {
    run_one(seed, 1, 0);
    run_one(seed, 4, 2);
    run_one(seed, 64, 5);
    run_one(seed, 100000, 1);
  }
  /* sched_remove on a waiting job (shutdown path). */
  struct sched s;
  struct tjob a = {0}, b = {0};
  sched_init(&s);
  a.s.eid = b.s.eid = 3;
  assert(sched_add(&s, &a.s) == 1);
  assert(sched_add(&s, &b.s) == 0);
  sched_remove(&s, &b.s);
  sched_done(&s, &a.s, on_start, NULL);
  sched_free(&s);
  printf("test_server_sched: ok\n");
  return 0;
}
