/* Unit test for the upstairs' job decision rule (plugin/jobs.c,
 * up__job_rule) against a model.  A seeded driver makes random jobs (every
 * type, `only` sets, live-repair targets, write_quorum 2 or 3, any subset
 * of the downstairs sent to) and plays random replies in random order:
 * DONE, ERR with an errno, or SKIP (the downstairs was lost or missed its
 * deadline).  After each event it asks the rule, as job_eval does, and
 * holds it to what a naive model says from the whole story:
 *   - the outcome, once the rule gives one, is the model's outcome over
 *     the FINAL state (an early decision is never contradicted by the
 *     replies that follow: an acked write stays acked, a failed one could
 *     not have succeeded);
 *   - the rule decides no later than the model says it must (writes: once
 *     nothing is SENT; flushes: once no full replica is SENT; the others:
 *     once nothing is SENT), and never while it must still wait (a READ
 *     only early when the freshness rule says it is ready);
 *   - a failed write's errno is EIO or the one errno every failing
 *     downstairs gave so far.
 * Replayable: `test_jobs SEED`. */
#include <errno.h>
#include <string.h>

#include "../../plugin/upstairs_int.h"
#include "test.h"

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t) (rng % n);
}

struct story {
  struct up_job job;
  unsigned quorum;
};

/* The model's outcome for a final state (nothing SENT): success? */
static bool model_ok(const struct story *s)
{
  const struct up_job *j = &s->job;
  unsigned ok = 0, okf = 0, data = 0;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    if (j->ds[i] != JS_DONE)
      continue;
    ok++;
    okf += !(j->lr_mask & (1u << i));
    data += !(j->vmask & (1u << i));
  }
  switch (j->type) {
  case PROTO_T_WRITE:
  case PROTO_T_TRIM: return j->only ? ok > 0 : okf >= 2 && ok >= s->quorum;
  case PROTO_T_FLUSH: return okf >= 2;
  case PROTO_T_READ: return data > 0;
  default: return ok > 0;
  }
}

/* Must the rule have decided by now (the model's latest moment)? */
static bool model_due(const struct story *s)
{
  const struct up_job *j = &s->job;
  bool sent = false, sent_full = false;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    sent |= j->ds[i] == JS_SENT;
    sent_full |= j->ds[i] == JS_SENT && !(j->lr_mask & (1u << i));
  }
  return j->type == PROTO_T_FLUSH ? !sent_full : !sent;
}

/* May the rule decide now?  Writes and flushes: whenever the outcome is
 * settled (checked against the final state instead); the rest only when
 * due, a READ also when the freshness rule says it is ready. */
static bool model_may(const struct story *s, bool fresh_ready)
{
  uint16_t t = s->job.type;

  if ((t == PROTO_T_WRITE || t == PROTO_T_TRIM) && !s->job.only)
    return true;
  if (t == PROTO_T_FLUSH)
    return true;
  if (t == PROTO_T_READ && fresh_ready)
    return true;
  return model_due(s);
}

static void new_story(struct story *s)
{
  static const uint16_t types[] = {PROTO_T_WRITE, PROTO_T_TRIM, PROTO_T_FLUSH,
                                   PROTO_T_READ, PROTO_T_EXTENT_FLUSH};
  struct up_job *j = &s->job;

  memset(s, 0, sizeof *s);
  j->type = types[rnd(5)];
  s->quorum = 2 + rnd(2);
  if ((j->type == PROTO_T_WRITE || j->type == PROTO_T_TRIM) && rnd(4) == 0)
    j->only = 1u + rnd(7);
  if (rnd(3) == 0)
    j->lr_mask = 1u << rnd(UP_DOWNSTAIRS);
  if (j->type == PROTO_T_READ && rnd(2))
    j->vmask = rnd(8) & ~(1u << rnd(UP_DOWNSTAIRS)); /* one gets data */
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    bool send = j->only ? (j->only & (1u << i)) != 0 : rnd(6) != 0;
    j->ds[i] = send ? JS_SENT : JS_NONE;
  }
}

/* One story: events until nothing is SENT.  Returns 1 if it checked a
 * decision. */
static int play(struct story *s, unsigned long long seed, int n)
{
  struct up_job *j = &s->job;
  bool decided = false, dec_ok = false;
  int dec_res = 0, res;
  unsigned errs_seen = 0; /* errnos seen before the decision */
  int first_err = 0;
  bool mixed = false;

  for (;;) {
    /* read_ready's precondition: no data reply still out (then only
     * timing says whether the versions replies are waited for). */
    bool sent = false, data_out = false;
    for (int i = 0; i < UP_DOWNSTAIRS; i++) {
      sent |= j->ds[i] == JS_SENT;
      data_out |= j->ds[i] == JS_SENT && !(j->vmask & (1u << i));
    }
    bool fresh_ready =
        j->type == PROTO_T_READ && j->vmask && !data_out && rnd(3) == 0;
    bool d = up__job_rule(j, s->quorum, sent && fresh_ready, &res);
    if (d && !decided) {
      if (!model_may(s, sent && fresh_ready)) {
        fprintf(stderr, "seed %llu story %d: decided too early (type %u)\n",
                seed, n, j->type);
        CHECK(0);
      }
      decided = true;
      dec_ok = res == 0;
      dec_res = res;
      if (res < 0 && res != -EIO)
        CHECK(errs_seen > 0 && !mixed && res == -first_err);
    }
    if (!decided && model_due(s)) {
      fprintf(stderr, "seed %llu story %d: not decided when due (type %u)\n",
              seed, n, j->type);
      CHECK(0);
      return 0;
    }
    if (!sent)
      break;
    /* One reply (or loss) from a random downstairs still SENT. */
    int i;
    do
      i = (int) rnd(UP_DOWNSTAIRS);
    while (j->ds[i] != JS_SENT);
    switch (rnd(5)) {
    case 0:
    case 1:
    case 2: j->ds[i] = JS_DONE; break;
    case 3:
      j->ds[i] = JS_ERR;
      j->ds_err[i] = rnd(2) ? EIO : ENOSPC;
      if (!decided) {
        if (errs_seen && j->ds_err[i] != first_err)
          mixed = true;
        if (!errs_seen)
          first_err = j->ds_err[i];
        errs_seen++;
      }
      break;
    default: j->ds[i] = JS_SKIP; break;
    }
  }
  if (decided && dec_ok != model_ok(s)) {
    fprintf(stderr,
            "seed %llu story %d: type %u decided %d, the final "
            "state says %s\n",
            seed, n, j->type, dec_res, model_ok(s) ? "success" : "failure");
    CHECK(0);
  }
  return decided;
}

/* Hand-written cases: the rules' edges. */
static void test_cases(void)
{
  struct up_job j;
  int r;

  /* A write acked by one full replica and a live-repair target is not
   * acked: the target holds only part of the volume. */
  memset(&j, 0, sizeof j);
  j.type = PROTO_T_WRITE;
  j.lr_mask = 4;
  j.ds[0] = JS_DONE;
  j.ds[1] = JS_SENT;
  j.ds[2] = JS_DONE;
  CHECK(!up__job_rule(&j, 2, false, &r));
  /* ... and fails once the other full replica fails: with the disk's
   * own errno when every failure says the same, else EIO. */
  j.ds[1] = JS_ERR;
  j.ds_err[1] = ENOSPC;
  CHECK(up__job_rule(&j, 2, false, &r) && r == -ENOSPC);
  j.ds[0] = JS_ERR;
  j.ds_err[0] = EIO;
  CHECK(up__job_rule(&j, 2, false, &r) && r == -EIO);
  /* write_quorum=3 waits for the third. */
  memset(&j, 0, sizeof j);
  j.type = PROTO_T_WRITE;
  j.ds[0] = j.ds[1] = JS_DONE;
  j.ds[2] = JS_SENT;
  CHECK(up__job_rule(&j, 2, false, &r) && r == 0);
  CHECK(!up__job_rule(&j, 3, false, &r));
  /* A flush does not wait for a live-repair target. */
  memset(&j, 0, sizeof j);
  j.type = PROTO_T_FLUSH;
  j.lr_mask = 2;
  j.ds[0] = j.ds[2] = JS_DONE;
  j.ds[1] = JS_SENT;
  CHECK(up__job_rule(&j, 2, false, &r) && r == 0);
  /* Nothing sent at all: decided at once, never left waiting. */
  memset(&j, 0, sizeof j);
  j.type = PROTO_T_WRITE;
  CHECK(up__job_rule(&j, 2, false, &r) && r == -EIO);
  j.type = PROTO_T_READ;
  CHECK(up__job_rule(&j, 2, false, &r) && r == -EIO);
  /* A READ whose only answer is versions has no data. */
  memset(&j, 0, sizeof j);
  j.type = PROTO_T_READ;
  j.vmask = 2;
  j.ds[0] = JS_ERR;
  j.ds[1] = JS_DONE;
  CHECK(up__job_rule(&j, 2, false, &r) && r == -EIO);
}

int main(int argc, char **argv)
{
  unsigned long long seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 20261202;
  int decided = 0, stories = 200000;
  struct story s;

  test_cases();
  rng = seed ? seed : 1;
  for (int n = 0; n < stories && test_failures < 10; n++) {
    new_story(&s);
    decided += play(&s, seed, n);
  }
  CHECK(decided > stories / 2); /* the driver did reach decisions */
  printf("test_jobs: seed %llu, %d stories, %d decided\n", seed, stories,
         decided);
  return test_done("test_jobs");
}
