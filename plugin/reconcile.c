/* crucible-c upstairs: block-level reconciliation at start-up.
 *
 * After every ready downstairs accepted ACTIVATE and before any guest IO,
 * each extent that is dirty on some replica, or whose (gen, flush, dirty)
 * differ, is compared block by block and brought level:
 *
 *   1. The loop thread plans (up__reconcile_start): per extent, the
 *      CANDIDATES are the replicas whose (gen, flush) is the highest.  A
 *      replica with a lower pair missed a flush of that extent, so it
 *      missed writes the others made durable, and nothing it holds can be
 *      newer than what they hold: it may receive blocks, never give them.
 *   2. The caller thread of up_start (up__reconcile) reads each replica's
 *      contexts of the extent, without data (READ with PROTO_F_CTX_ONLY).
 *      The downstairs marks PROTO_CTX_BAD every block whose bytes match
 *      none of its contexts: such a block is never a source.
 *   3. Per block (up__rec_decide, unit-tested): the winner is the newest
 *      version any replica holds that is not BAD (candidates only break
 *      ties: a higher extent number does not prove a replica holds
 *      everything, see up__rec_decide).  Versions of writes and of trims
 *      share one counter, so a trim newer than a write wins, and a write
 *      that two replicas hold beats an older one the third holds; a write
 *      against zeroes whose trim version a flush forgot goes to the
 *      majority.
 *      Every replica that holds something else is a target.
 *   4. A written winner's block is read with its data and checked here
 *      (GCM with the key, the hash on a plain region) and against what its
 *      contexts said; one that fails is excluded for that block (and
 *      healed: a target) and the block decided again; one whose read is
 *      lost (faulted) drops out of the chunk, winner and target alike.  It is then written, as stored (same version,
 *      nonce, tag), to each target alone, whose downstairs checks the hash
 *      before it commits (region_write); a zero winner becomes a TRIM with
 *      the winner's version.  A block no candidate holds authentically is
 *      left alone and logged: reads of it fail loudly, never old bytes.
 *   5. EXTENT_FLUSH with our generation and one fresh flush number to
 *      every replica of the extent, clean or not: they end clean, with
 *      equal numbers, so the next start has nothing to do.
 *
 * Only blocks that differ move, through the upstairs (after an unclean
 * stop that is what was in flight, not the volume).  Interrupted at any
 * point, each block of a target is old or new (the downstairs' crash
 * rule); an extent not yet flushed still differs or is dirty, so the next
 * start compares it again and finds less to do.
 *
 * Jobs are ordinary tracker jobs (jobs.c) marked sys, allowed in phase
 * RECONCILE, each aimed at one downstairs (only).  A downstairs that fails
 * one is faulted by the tracker and drops out; fewer than two: start fails.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

#define REC_ROUNDS 3 /* decisions per block: winners that fail are excluded */

/* Per block of the chunk being worked on. */
struct rec_blk {
  struct up_rec_blk b[UP_DOWNSTAIRS];
  unsigned excl;    /* replicas whose copy failed our check */
  unsigned targets; /* replicas to bring level */
  int w;            /* winner, -1 none */
  bool done;
};

/* One chunk of an extent: [lba, lba + n), what each replica in part
 * said (cand: those that may give blocks). */
struct rec_chunk {
  struct upstairs *up;
  const char *what; /* log prefix: "reconcile", "live repair" */
  uint32_t eid;
  uint64_t lba;
  uint32_t n;
  unsigned cand, part, vers;
  struct rec_blk *blk;
  struct up_rec_sum *sum;
};

/* Do two replicas' contexts of a block name the same contents? */
static bool rec_same(const struct up_rec_blk *a, const struct up_rec_blk *b)
{
  bool pa = a->flags & PROTO_CTX_PRESENT, pb = b->flags & PROTO_CTX_PRESENT;

  if ((a->flags | b->flags) & PROTO_CTX_BAD)
    return false;
  if (!pa && !pb)
    return true; /* zeroes either way, whichever trim made them */
  return pa && pb && a->version == b->version && a->hash == b->hash;
}

/* May replica i's copy be weighed (answered, not BAD, not excluded)? */
static bool rec_eligible(const struct up_rec_blk *b, int i, unsigned excluded)
{
  return b[i].ok && !(b[i].flags & PROTO_CTX_BAD) && !(excluded & (1u << i));
}

int up__rec_decide(const struct up_rec_blk b[UP_DOWNSTAIRS], unsigned excluded,
                   unsigned *targets)
{
  int w = -1;

  *targets = 0;
  /* Versions are authenticated (the GCM tag binds them, and a written
   * winner's data is checked before it moves), so the newest version any
   * replica holds wins, candidate or not: a higher (gen, flush) does not
   * mean a replica holds everything the others do, since a heal or a
   * repair write to one replica raises only its extent's number at the
   * next flush (a rolled-back replica that was healed then looks
   * newest). */
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    if (!rec_eligible(b, i, excluded))
      continue;
    if (w < 0 || b[i].version > b[w].version ||
        (b[i].version == b[w].version && b[i].cand && !b[w].cand))
      w = i;
  }
  if (w < 0)
    return -1;
  if (b[w].flags & PROTO_CTX_PRESENT) {
    /* Zeroes whose trim version a flush forgot (version 0) are not
     * older than any write: a replica rolled back or away before the
     * trim holds the write.  Between them the majority of the replicas
     * that answered decides; on a tie the candidates (highest (gen,
     * flush): a replica below them missed a flush) decide if they are
     * all on one side; else it cannot be decided (-2: left, reads of it
     * fail loudly). */
    unsigned hold = 0, z0 = 0, chold = 0, cz0 = 0;
    int zi = -1;
    for (int i = 0; i < UP_DOWNSTAIRS; i++) {
      if (!rec_eligible(b, i, excluded))
        continue;
      if (rec_same(&b[i], &b[w])) {
        hold++;
        chold += b[i].cand;
      } else if (!(b[i].flags & PROTO_CTX_PRESENT) && b[i].version == 0) {
        z0++;
        cz0 += b[i].cand;
        if (zi < 0 || (b[i].cand && !b[zi].cand))
          zi = i;
      }
    }
    if (z0 > hold || (z0 == hold && z0 && cz0 && !chold))
      w = zi;
    else if (z0 == hold && z0 && !(chold && !cz0))
      return -2;
  }
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (i != w && b[i].ok &&
        ((excluded & (1u << i)) || !rec_same(&b[i], &b[w])))
      *targets |= 1u << i;
  return w;
}

/* A sys job aimed at downstairs d alone. */
static struct up_job *rec_job(uint16_t type, uint64_t lba, uint32_t n,
                              size_t len, int d)
{
  struct up_job *job = up__job_new(type, lba, n, len);

  if (job) {
    memset(job->frame, 0, len < PROTO_IO_HDR_LEN ? len : PROTO_IO_HDR_LEN);
    job->sys = true;
    job->only = 1u << d;
  }
  return job;
}

/* Put jobs[0..nj) (any may be NULL). */
static void rec_put_all(struct up_job **jobs, unsigned nj)
{
  for (unsigned i = 0; i < nj; i++)
    if (jobs[i])
      up__job_put(jobs[i]);
}

/* Step 2: every replica's contexts of the chunk into ch->blk[].b. */
static int rec_read_ctxs(struct rec_chunk *ch)
{
  struct up_job *jobs[UP_DOWNSTAIRS];
  int res[UP_DOWNSTAIRS];

  struct up_job *by[UP_DOWNSTAIRS] = {NULL};
  int at[UP_DOWNSTAIRS];
  unsigned nj = 0;

  for (int d = 0; d < UP_DOWNSTAIRS; d++) {
    at[d] = -1;
    if (!(ch->part & (1u << d)))
      continue;
    jobs[nj] = rec_job(PROTO_T_READ, ch->lba, ch->n, PROTO_IO_HDR_LEN, d);
    if (!jobs[nj]) {
      rec_put_all(jobs, nj);
      return -ENOMEM;
    }
    jobs[nj]->ctx_only = true;
    jobs[nj]->versions = (ch->vers >> d) & 1;
    at[d] = (int) nj++;
  }
  up__run_jobs(ch->up, jobs, nj, res);
  for (int d = 0; d < UP_DOWNSTAIRS; d++)
    by[d] = at[d] >= 0 ? jobs[at[d]] : NULL;
  for (int d = 0; d < UP_DOWNSTAIRS; d++) {
    const struct proto_read_done *r = by[d] ? &by[d]->reply[d] : NULL;
    bool ok = r && res[at[d]] == 0 && by[d]->ds[d] == JS_DONE && r->n == ch->n;
    for (uint32_t i = 0; i < ch->n; i++) {
      struct up_rec_blk *b = &ch->blk[i].b[d];
      struct proto_ctx c = {0};
      if (ok)
        proto_ctx_get(r->ctxs + (size_t) i * PROTO_CTX_LEN, &c);
      *b = (struct up_rec_blk){.ok = ok,
                               .cand = (ch->cand >> d) & 1,
                               .flags = c.flags,
                               .version = c.version,
                               .hash = c.hash};
    }
  }
  rec_put_all(jobs, nj);
  return 0;
}

/* Step 3 for every block not settled yet; true if any needs a copy. */
static bool rec_decide_all(struct rec_chunk *ch)
{
  bool work = false;

  for (uint32_t i = 0; i < ch->n; i++) {
    struct rec_blk *k = &ch->blk[i];
    if (k->done)
      continue;
    k->w = up__rec_decide(k->b, k->excl, &k->targets);
    if (k->w == -2) {
      log_error("%s: lba %llu (extent %u): one replica holds a write, as "
                "many hold zeroes a flush left without a version; no "
                "majority, left as it is",
                ch->what, (unsigned long long) (ch->lba + i), ch->eid);
      ch->sum->unresolved++;
      k->done = true;
      continue;
    }
    if (k->w < 0) {
      bool any = false, heard = false;
      for (int d = 0; d < UP_DOWNSTAIRS; d++) {
        any |=
            k->b[d].ok && (k->b[d].flags & (PROTO_CTX_PRESENT | PROTO_CTX_BAD));
        heard |= k->b[d].ok && k->b[d].cand;
      }
      /* No candidate answered (each was lost, and faulted): nothing is
       * known of this block, and the extent is compared again later. */
      if (any && heard) {
        log_error("%s: lba %llu (extent %u): no replica holds an "
                  "authentic copy of its newest version; left as it is",
                  ch->what, (unsigned long long) (ch->lba + i), ch->eid);
        ch->sum->unresolved++;
      }
      k->done = true;
    } else if (k->targets == 0) {
      k->done = true;
    } else {
      work = true;
    }
  }
  return work;
}

/* Blocks [i, j) of the chunk that a run can cover: same winner, same
 * targets, same kind (written or zero) and, for zeroes, same version. */
static uint32_t rec_run_end(const struct rec_chunk *ch, uint32_t i)
{
  const struct rec_blk *a = &ch->blk[i];
  const struct up_rec_blk *wa = &a->b[a->w];
  uint32_t j = i + 1;

  for (; j < ch->n; j++) {
    const struct rec_blk *k = &ch->blk[j];
    const struct up_rec_blk *wk;
    if (k->done || k->w != a->w || k->targets != a->targets)
      break;
    wk = &k->b[k->w];
    if ((wk->flags & PROTO_CTX_PRESENT) != (wa->flags & PROTO_CTX_PRESENT))
      break;
    if (!(wa->flags & PROTO_CTX_PRESENT) && wk->version != wa->version)
      break;
  }
  return j;
}

/* Check block i of the winner's data reply against its decision; false
 * (and the winner excluded for it) if it fails. */
static bool rec_verify(struct rec_chunk *ch, const struct proto_read_done *r,
                       uint32_t k, uint32_t i, uint8_t *scratch)
{
  struct rec_blk *b = &ch->blk[i];
  struct proto_ctx c;
  uint64_t ver;
  const char *why = up__blk_check(ch->up, r, k, ch->lba + i, scratch, &ver);

  proto_ctx_get(r->ctxs + (size_t) k * PROTO_CTX_LEN, &c);
  if (!why && (c.version != b->b[b->w].version || c.hash != b->b[b->w].hash ||
               !(c.flags & PROTO_CTX_PRESENT)))
    why = "its data came with other contexts than it reported";
  if (!why)
    return true;
  log_warn("%s: downstairs %s: lba %llu: %s; trying the others", ch->what,
           ch->up->cl[b->w].name, (unsigned long long) (ch->lba + i), why);
  b->excl |= 1u << b->w;
  return false;
}

/* Step 4 for a run [i, j) of written blocks: read them from the winner,
 * check each, write the good ones to every target. */
static int rec_copy_run(struct rec_chunk *ch, uint32_t i, uint32_t j)
{
  struct upstairs *up = ch->up;
  uint32_t bs = up->region.block_size, n = j - i;
  int w = ch->blk[i].w, rd, res[UP_DOWNSTAIRS];
  unsigned targets = ch->blk[i].targets;
  struct up_job *src =
      rec_job(PROTO_T_READ, ch->lba + i, n, PROTO_IO_HDR_LEN, w);
  struct up_job *out[UP_DOWNSTAIRS] = {NULL};
  uint8_t *scratch = malloc(bs);
  const struct proto_read_done *r;
  size_t len = PROTO_IO_HDR_LEN + (size_t) n * (PROTO_CTX_LEN + bs);
  bool all_good = true;
  unsigned no = 0;

  if (!src || !scratch) {
    if (src)
      up__job_discard(src);
    free(scratch);
    return -ENOMEM;
  }
  up__run_jobs(up, &src, 1, &rd);
  r = src ? &src->reply[w] : NULL;
  if (!src || rd < 0 || src->ds[w] != JS_DONE || r->n != n) {
    /* Lost or failing, so faulted: what its contexts said is void, and
     * it is no target either (excl would make it one).  If it came back
     * meanwhile, a write now would reach the new connection, outside the
     * work its admission planned: unmarked, after an EXTENT_FLUSH, so
     * the next FLUSH would give that extent a number there alone. */
    for (uint32_t k = i; k < j; k++)
      ch->blk[k].b[w].ok = false;
    rec_put_all(&src, 1);
    free(scratch);
    return 0;
  }
  for (uint32_t k = 0; k < n; k++)
    all_good &= rec_verify(ch, r, k, i + k, scratch);
  free(scratch);
  if (!all_good) { /* decided again next round, block by block */
    up__job_put(src);
    return 0;
  }
  for (int d = 0; d < UP_DOWNSTAIRS; d++) {
    if (!(targets & (1u << d)))
      continue;
    out[no] = rec_job(PROTO_T_WRITE, ch->lba + i, n, len, d);
    if (!out[no])
      break;
    proto_put_write_hdr(out[no]->frame, 0, ch->lba + i, n, bs);
    memcpy(out[no]->frame + PROTO_IO_HDR_LEN, r->ctxs,
           (size_t) n * PROTO_CTX_LEN);
    memcpy(out[no]->frame + PROTO_IO_HDR_LEN + (size_t) n * PROTO_CTX_LEN,
           r->data, (size_t) n * bs);
    no++;
  }
  up__job_put(src);
  up__run_jobs(up, out, no, res);
  for (unsigned k = 0; k < no; k++)
    if (out[k] && res[k] == 0)
      ch->sum->copied += n;
  rec_put_all(out, no);
  for (uint32_t k = i; k < j; k++)
    ch->blk[k].done = true; /* a target that failed was faulted */
  return 0;
}

/* Step 4 for a run [i, j) of zero blocks: trim them on every target with
 * the winner's version. */
static int rec_trim_run(struct rec_chunk *ch, uint32_t i, uint32_t j)
{
  struct up_job *out[UP_DOWNSTAIRS] = {NULL};
  const struct rec_blk *a = &ch->blk[i];
  int res[UP_DOWNSTAIRS];
  unsigned no = 0;

  for (int d = 0; d < UP_DOWNSTAIRS; d++) {
    if (!(a->targets & (1u << d)))
      continue;
    out[no] = rec_job(PROTO_T_TRIM, ch->lba + i, j - i, PROTO_TRIM_LEN, d);
    if (!out[no])
      break;
    out[no++]->version = a->b[a->w].version;
  }
  up__run_jobs(ch->up, out, no, res);
  for (unsigned k = 0; k < no; k++)
    if (out[k] && res[k] == 0)
      ch->sum->trimmed += j - i;
  rec_put_all(out, no);
  for (uint32_t k = i; k < j; k++)
    ch->blk[k].done = true;
  return 0;
}

/* Steps 2-4 for one chunk of an extent. */
static int rec_chunk_run(struct rec_chunk *ch)
{
  int r = rec_read_ctxs(ch);

  for (int round = 0; r == 0 && round < REC_ROUNDS; round++) {
    if (!rec_decide_all(ch))
      return 0;
    for (uint32_t i = 0, j; r == 0 && i < ch->n; i = j) {
      struct rec_blk *k = &ch->blk[i];
      if (k->done) {
        j = i + 1;
        continue;
      }
      j = rec_run_end(ch, i);
      r = k->b[k->w].flags & PROTO_CTX_PRESENT ? rec_copy_run(ch, i, j)
                                               : rec_trim_run(ch, i, j);
    }
  }
  for (uint32_t i = 0; r == 0 && i < ch->n; i++)
    if (!ch->blk[i].done) {
      log_error("%s: lba %llu (extent %u): no copy passed the check "
                "in %d rounds; left as it is",
                ch->what, (unsigned long long) (ch->lba + i), ch->eid,
                REC_ROUNDS);
      ch->sum->unresolved++;
    }
  return r;
}

/* Step 5: EXTENT_FLUSH to every active replica; 0 if at least two took
 * it (the others were faulted by the tracker). */
static int rec_flush_extent(struct upstairs *up, uint32_t eid)
{
  struct up_job *job =
      up__job_new(PROTO_T_EXTENT_FLUSH, eid, 0, PROTO_EXTENT_FLUSH_LEN);
  unsigned ok = 0;
  int res;

  if (!job)
    return -ENOMEM;
  job->sys = true;
  up__run_jobs(up, &job, 1, &res);
  for (int d = 0; job && d < UP_DOWNSTAIRS; d++)
    ok += (job->seen >> d) & 1u; /* the decision's record, not ds[] */
  rec_put_all(&job, 1);
  return ok >= 2 ? 0 : -EIO;
}

int up__rec_range(struct upstairs *up, const char *what, uint32_t eid,
                  uint64_t lba, uint32_t n, unsigned cand, unsigned part,
                  unsigned vers, struct up_rec_sum *sum)
{
  struct rec_blk *blk = calloc(n ? n : 1, sizeof *blk);
  struct rec_chunk ch = {.up = up,
                         .what = what,
                         .eid = eid,
                         .lba = lba,
                         .n = n,
                         .cand = cand,
                         .part = part,
                         .vers = vers,
                         .blk = blk,
                         .sum = sum};
  int r;

  if (!blk)
    return -ENOMEM;
  r = rec_chunk_run(&ch);
  free(blk);
  return r;
}

/* One extent, chunk by chunk, then its flush. */
static int rec_extent(struct upstairs *up, uint32_t eid, struct up_rec_sum *sum)
{
  uint32_t chunk = proto_max_job_blocks(PROTO_T_READ, up->region.block_size);
  uint64_t first = (uint64_t) eid * up->region.extent_size;
  uint64_t end = first + up->region.extent_size;
  struct up_rec_sum before = *sum;
  int r = 0;

  for (uint64_t lba = first; r == 0 && lba < end; lba += chunk)
    r = up__rec_range(up, "reconcile", eid, lba,
                      (uint32_t) (end - lba < chunk ? end - lba : chunk),
                      up->rep.rec_cand[eid], (1u << UP_DOWNSTAIRS) - 1, 0, sum);
  if (r == 0)
    r = rec_flush_extent(up, eid);
  if (r == 0 && (sum->copied != before.copied ||
                 sum->trimmed != before.trimmed || up_debug_repair))
    log_info("reconcile extent %u: %llu blocks copied, %llu trimmed", eid,
             (unsigned long long) (sum->copied - before.copied),
             (unsigned long long) (sum->trimmed - before.trimmed));
  return r;
}

/* Hand the outcome to the loop thread (up__reconcile_poll). */
static void rec_finish(struct upstairs *up, int result)
{
  __atomic_store_n(&up->rep.rec_result, result, __ATOMIC_SEQ_CST);
  pthread_mutex_lock(&up->lock);
  if (!up->stopping)
    uv_async_send(&up->async); /* under the lock: see up_stop */
  pthread_mutex_unlock(&up->lock);
}

int up__reconcile(struct upstairs *up)
{
  struct up_rec_sum sum = {0, 0, 0};
  int r = 0;

  for (uint32_t e = 0; r == 0 && e < up->region.extent_count; e++) {
    if (!up->rep.rec_cand[e])
      continue;
    r = rec_extent(up, e, &sum);
    if (r < 0)
      log_error("reconcile extent %u failed: %s", e, log_strerror(-r));
    __atomic_add_fetch(&up->rep.rec_done, 1, __ATOMIC_SEQ_CST);
  }

  if (r == 0) /* one line an operator sees without -v */
    log_notice("reconciliation done: %u extents compared, %llu blocks copied, "
               "%llu trimmed, %llu without an authentic copy",
               up->rep.rec_total, (unsigned long long) sum.copied,
               (unsigned long long) sum.trimmed,
               (unsigned long long) sum.unresolved);
  rec_finish(up, r == 0 ? 1 : -1);
  return r < 0 ? -EIO : 0;
}

/* Reconciled: the volume takes IO. */
static void rec_running(struct upstairs *up)
{
  unsigned active = 0;

  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    active += up->cl[i].state == CL_ACTIVE;
  log_info("active: generation %llu, %u of 3 downstairs",
           (unsigned long long) up->gen, active);
  up__set_phase(up, UP_PH_RUNNING);
  up__ds_update_all(up);
}

/* Extent state e of downstairs c. */
static void rec_state(const struct cl *c, uint32_t e,
                      struct proto_extent_state *s)
{
  proto_extent_state_get(c->states + (size_t) e * PROTO_EXTENT_STATE_LEN, s);
}

/* The candidates of extent e among the active replicas (those with the
 * highest (gen, flush)), or 0 if no replica is dirty and all agree. */
static uint8_t rec_plan(struct upstairs *up, uint32_t e)
{
  struct proto_extent_state s, best = {0, 0, 0}, first = {0, 0, 0};
  unsigned cand = 0, n = 0;
  bool need = false;

  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    if (up->cl[i].state != CL_ACTIVE)
      continue;
    rec_state(&up->cl[i], e, &s);
    if (n++ == 0)
      first = s;
    need |= s.dirty || s.gen != first.gen || s.flush != first.flush;
    if (!cand || s.gen > best.gen ||
        (s.gen == best.gen && s.flush > best.flush)) {
      cand = 0;
      best = s;
    }
    if (s.gen == best.gen && s.flush == best.flush)
      cand |= 1u << i;
  }
  return need ? (uint8_t) cand : 0;
}

void up__reconcile_start(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;
  uint32_t count = up->region.extent_count;

  int first = -1;

  rp->rec_total = 0;
  rp->rec_done = 0;
  rp->rec_result = 0;
  free(rp->rec_cand);
  rp->rec_cand = calloc(count ? count : 1, 1);
  if (!rp->rec_cand || up__xs_init(up) < 0) {
    up__start_fail(up, "reconciliation: out of memory");
    return;
  }
  for (int i = 0; i < UP_DOWNSTAIRS && first < 0; i++)
    if (up->cl[i].state == CL_ACTIVE)
      first = i;
  for (uint32_t e = 0; e < count; e++) {
    rp->rec_total += (rp->rec_cand[e] = rec_plan(up, e)) != 0;
    if (!rp->rec_cand[e] && first >= 0) {
      /* All agree: that is what an up-to-date replica holds.  The
       * others get theirs from the EXTENT_FLUSH that ends their
       * reconciliation (up__xs_note). */
      struct proto_extent_state s;
      rec_state(&up->cl[first], e, &s);
      rp->xs[e] = (struct up_xstate){s.gen, s.flush};
    }
  }

  log_info("reconciliation: %u of %u extents to compare", rp->rec_total, count);
  if (rp->rec_total == 0) { /* never RECONCILE: up_start runs nothing */
    rec_running(up);
    return;
  }
  up__set_phase(up, UP_PH_RECONCILE);
  up__reconcile_poll(up);
}

void up__reconcile_poll(struct upstairs *up)
{
  struct up_repair *rp = &up->rep;
  int res = __atomic_load_n(&rp->rec_result, __ATOMIC_SEQ_CST);
  unsigned done = __atomic_load_n(&rp->rec_done, __ATOMIC_SEQ_CST);
  unsigned active = 0;

  if (up__phase(up) != UP_PH_RECONCILE)
    return;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    if (up->cl[i].state == CL_ACTIVE) {
      active++;
      up__ds_progress(up, &up->cl[i], done, rp->rec_total);
    }
  if (res < 0 || (res == 0 && active < 2))
    up__start_fail(up, "reconciliation failed (%u of 3 downstairs left)",
                   active);
  else if (res > 0)
    rec_running(up);
  if (res != 0) /* handled: the drain need not call again */
    __atomic_store_n(&rp->rec_result, 0, __ATOMIC_RELEASE);
}
