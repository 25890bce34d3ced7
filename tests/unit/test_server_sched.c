/* Unit test for downstairs/server_sched.c: the job ordering rule, checked
 * against a naive model on random job streams.
 *
 * Model: a job may start iff every earlier unfinished job that conflicts
 * with it (same extent, or either is a barrier) is joinable: started but
 * not yet submitted, on the same extent, neither a barrier (a group run
 * in one worker, in order).  We add random jobs, submit every queued job
 * at random moments (as the server does once per loop turn: one batch),
 * finish random submitted ones, and after every step check
 *   safety:   a job started only when the model allowed it, and every
 *             running job shares its batch with each earlier unfinished
 *             job it conflicts with;
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
  int batch; /* 0 while queued, then the batch it was submitted in */
  bool finished;
};

static struct tjob jobs[MAXJ];
static int start_seq, nbatch;

/* Model: j may start iff every earlier unfinished conflicting job is
 * queued (started, batch 0) on j's extent, neither a barrier.  Looks only
 * at the test's own records of earlier jobs. */
static bool model_allowed(int id)
{
  const struct tjob *j = &jobs[id];
  for (int k = 0; k < id; k++) {
    const struct tjob *p = &jobs[k];
    if (p->finished || !sched_conflict(&p->s, &j->s))
      continue;
    bool queued = p->started_seq > 0 && p->batch == 0;
    if (!queued || p->s.barrier || j->s.barrier)
      return false;
  }
  return true;
}

static void on_start(struct sched_job *s, void *arg)
{
  struct tjob *j = (struct tjob *) s;
  (void) arg;
  assert(j->started_seq == 0);
  assert(s->running && s->queued);
  if (!model_allowed(j->id)) {
    fprintf(stderr, "job %d started but not allowed\n", j->id);
    abort();
  }
  j->started_seq = ++start_seq;
}

/* Hand every queued job to "a worker": one batch. */
static void submit_all(int added)
{
  nbatch++;
  for (int i = 0; i < added; i++)
    if (jobs[i].started_seq > 0 && jobs[i].batch == 0) {
      jobs[i].batch = nbatch;
      sched_submitted(&jobs[i].s);
    }
}

/* A running job shares its batch (or the queue) with every earlier
 * unfinished job it conflicts with, and that one started first. */
static bool model_safe(int id)
{
  const struct tjob *j = &jobs[id];
  for (int k = 0; k < id; k++) {
    const struct tjob *p = &jobs[k];
    if (p->finished || !sched_conflict(&p->s, &j->s))
      continue;
    if (p->started_seq == 0 || p->batch != j->batch || p->s.barrier ||
        j->s.barrier || p->started_seq > j->started_seq)
      return false;
  }
  return true;
}

static void check_all(int added)
{
  for (int i = 0; i < added; i++) {
    struct tjob *j = &jobs[i];
    if (j->finished)
      continue;
    bool running = j->started_seq > 0;
    assert(running == j->s.running);
    assert(!running || j->s.queued == (j->batch == 0));
    if (running && !model_safe(i)) {
      fprintf(stderr,
              "job %d running beside a conflicting job of another "
              "batch\n",
              i);
      abort();
    }
    if (!running && model_allowed(i)) {
      fprintf(stderr, "job %d allowed but waiting\n", i);
      abort();
    }
  }
}

/* submit_pct: chance per step that the queued jobs are submitted (100:
 * at once, as without groups). */
static void run_one(unsigned seed, int nextents, int barrier_pct,
                    int submit_pct)
{
  struct sched s;
  int added = 0, finished = 0;
  srand(seed);
  memset(jobs, 0, sizeof jobs);
  start_seq = nbatch = 0;
  sched_init(&s);
  while (finished < MAXJ) {
    bool add = added < MAXJ && (rand() % 3 != 0 || finished == added);
    if (rand() % 100 < submit_pct) {
      submit_all(added);
      check_all(added);
    }
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
      /* Finish a random submitted job. */
      int cand[MAXJ], nc = 0;
      for (int i = 0; i < added; i++)
        if (jobs[i].started_seq > 0 && jobs[i].batch > 0 && !jobs[i].finished)
          cand[nc++] = i;
      if (nc == 0) { /* all running ones are still queued */
        submit_all(added);
        check_all(added);
        continue;
      }
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
    run_one(seed, 1, 0, 100);
    run_one(seed, 4, 2, 100);
    run_one(seed, 64, 5, 100);
    run_one(seed, 100000, 1, 100);
    /* Groups: jobs stay queued for a while, later ones join them. */
    run_one(seed, 1, 0, 20);
    run_one(seed, 4, 2, 30);
    run_one(seed, 16, 5, 10);
    run_one(seed, 64, 1, 50);
  }
  /* sched_remove on a waiting job (shutdown path). */
  struct sched s;
  struct tjob a = {0}, b = {0};
  sched_init(&s);
  a.s.eid = b.s.eid = 3;
  assert(sched_add(&s, &a.s) == 1);
  sched_submitted(&a.s);
  assert(sched_add(&s, &b.s) == 0);
  sched_remove(&s, &b.s);
  sched_done(&s, &a.s, on_start, NULL);
  /* A group: b joins a while a is queued; c, after a barrier, waits. */
  struct tjob c = {0}, f = {0};
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  a.s.eid = b.s.eid = c.s.eid = 5;
  f.s.barrier = true;
  assert(sched_add(&s, &a.s) == 1);
  assert(sched_add(&s, &b.s) == 1);
  assert(sched_add(&s, &f.s) == 0);
  assert(sched_add(&s, &c.s) == 0);
  sched_submitted(&a.s);
  sched_submitted(&b.s);
  sched_done(&s, &a.s, on_start, NULL);
  assert(!f.s.running);
  sched_done(&s, &b.s, on_start, NULL);
  assert(f.s.running && !c.s.running);
  sched_submitted(&f.s);
  sched_done(&s, &f.s, on_start, NULL);
  assert(c.s.running);
  sched_submitted(&c.s);
  sched_done(&s, &c.s, on_start, NULL);
  sched_free(&s);
  printf("test_server_sched: ok\n");
  return 0;
}
