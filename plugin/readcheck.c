/* crucible-c upstairs: checking a decided READ (caller threads, range
 * lock held): verify=one (the data reply alone), verify=fresh (the data
 * reply against the versions the other replicas claim, docs/DESIGN.md
 * "Read") and verify=all (every replica's data, the newest authentic).
 * Stale or bad replicas found are healed (heal.c); one that claims a
 * version it cannot produce is faulted through the loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "upstairs_int.h"

/* verify=one: the data reply must be good for every block. */
static int read_verify_one(struct upstairs *up, struct up_job *job,
                           uint8_t *dst)
{
  uint32_t bs = up->region.block_size;
  uint64_t ver;

  for (int d = 0; d < UP_DOWNSTAIRS; d++) {
    if (!(job->seen & (1u << d)) || (job->vmask & (1u << d)))
      continue;
    for (uint32_t i = 0; i < job->n; i++) {
      const char *why = up__blk_check(up, &job->reply[d], i, job->lba + i,
                                      dst + (size_t) i * bs, &ver);
      if (!why && up__vcache_stale(up, job->lba + i, ver))
        why = "older version than written (rollback)"; /* vcache.c */
      if (why) {
        log_warn("downstairs %s: read lba %llu: %s, job %llu", up->cl[d].name,
                 (unsigned long long) (job->lba + i), why,
                 (unsigned long long) job->id);
        return -EBADMSG;
      }
    }
    return 0;
  }
  return -EIO;
}

/* What replica d said of block i of job: version and whether written. */
static void fresh_ctx(const struct up_job *job, int d, uint32_t i,
                      struct proto_ctx *c)
{
  proto_ctx_get(job->reply[d].ctxs + (size_t) i * PROTO_CTX_LEN, c);
}

/* Read block lba from d alone and check it: 0 and the plaintext in out if
 * it authenticates as written with version >= want; its reply is kept in
 * *held (caller puts it) for healing others. */
static int fresh_prove(struct upstairs *up, int d, uint64_t lba, uint64_t want,
                       uint8_t *out, struct up_job **held)
{
  struct up_job *job = up__job_new(PROTO_T_READ, lba, 1, PROTO_IO_HDR_LEN);
  struct proto_ctx c;
  uint64_t ver;
  int res;

  *held = NULL;
  if (!job)
    return -ENOMEM;
  memset(job->frame, 0, PROTO_IO_HDR_LEN);
  job->only = 1u << d;
  up__run_jobs(up, &job, 1, &res);
  if (!job)
    return -EIO;
  *held = job;
  if (res < 0 || !(job->seen & (1u << d)))
    return -EIO;
  proto_ctx_get(job->reply[d].ctxs, &c);
  if (up__blk_check(up, &job->reply[d], 0, lba, out, &ver) ||
      !(c.flags & PROTO_CTX_PRESENT) || ver < want)
    return -EBADMSG;
  return 0;
}

/* Ask the loop to fault downstairs d (a caller thread cannot). */
static void fresh_fault(struct upstairs *up, int d, const char *why)
{
  pthread_mutex_lock(&up->lock);
  if (!up->fault_req[d]) {
    up->fault_req[d] = true;
    snprintf(up->fault_why[d], sizeof up->fault_why[d], "%s", why);
  }
  if (!up->stopping)
    uv_async_send(&up->async);
  pthread_mutex_unlock(&up->lock);
}

/* Do two answers name the same contents?  Zeroes equal zeroes, whatever
 * trim made them (a flush forgets a trim's version). */
static bool fresh_same(const struct proto_ctx *a, const struct proto_ctx *b)
{
  bool pa = a->flags & PROTO_CTX_PRESENT, pb = b->flags & PROTO_CTX_PRESENT;

  return (!pa && !pb) || (pa && pb && a->version == b->version);
}

/* Serve the written version top that replica d claims, proven by its
 * data (read into a scratch block, so out keeps p's data if it fails);
 * heal every replica in stale with it.  0, -EIO (lost), or -EBADMSG (d
 * cannot produce it: a lie, d faulted). */
static int fresh_take(struct upstairs *up, struct up_job *job, int d,
                      uint64_t lba, uint64_t top, unsigned stale, uint8_t *out)
{
  struct up_job *held = NULL;
  uint8_t *tmp = malloc(up->region.block_size);
  char why[160];
  int r = tmp ? fresh_prove(up, d, lba, top, tmp, &held) : -ENOMEM;

  if (r == 0) {
    memcpy(out, tmp, up->region.block_size);
    for (int o = 0; o < UP_DOWNSTAIRS; o++)
      if (stale & (1u << o)) {
        log_warn("downstairs %s: read lba %llu: older than version %llu on "
                 "%s (stale or rolled back), job %llu",
                 up->cl[o].name, (unsigned long long) lba,
                 (unsigned long long) top, up->cl[d].name,
                 (unsigned long long) job->id);
        up__heal_block(up, &held->reply[d], 0, lba, o);
      }
  } else if (r == -EBADMSG) {
    snprintf(why, sizeof why,
             "claims version %llu of lba %llu and cannot "
             "produce it (a lie)",
             (unsigned long long) top, (unsigned long long) lba);
    log_error("downstairs %s: %s; faulting it, job %llu", up->cl[d].name, why,
              (unsigned long long) job->id);
    fresh_fault(up, d, why);
  }
  free(tmp);
  if (held)
    up__job_put(held);
  return r;
}

/* One block of read_fresh; p's answer (data, authenticated) is in out.
 * Honest, up-to-date replicas agree exactly, so any difference is a
 * stale or lying replica, and the rule is:
 *   - W, the newest written version anyone reports, beats every written
 *     answer with a lower version and every zero answer whose trim
 *     version is known and lower; it must be proven (authentic data with
 *     that version) by a replica that holds it, else that replica lied
 *     and is faulted;
 *   - zeroes whose version a flush forgot (0), or a newer trim, are not
 *     beaten by W and cannot be proven: between them and W the majority
 *     decides (two of three), and one against one fails the read (EIO)
 *     rather than guess;
 *   - the losers are healed to the winner. */
static int fresh_block(struct upstairs *up, struct up_job *job, int p,
                       unsigned others, uint32_t i, uint8_t *out)
{
  uint64_t lba = job->lba + i, top = 0, zver = 0;
  unsigned all = others | (1u << p), hold = 0, zero = 0, beaten = 0;
  struct proto_ctx c[UP_DOWNSTAIRS];
  bool same = true;
  int holder = -1;

  fresh_ctx(job, p, i, &c[p]); /* first: every other is compared with it */
  for (int d = 0; d < UP_DOWNSTAIRS; d++)
    if (all & (1u << d)) {
      fresh_ctx(job, d, i, &c[d]);
      same &= fresh_same(&c[d], &c[p]);
      if ((c[d].flags & PROTO_CTX_PRESENT) && c[d].version > top)
        top = c[d].version;
    }
  if (same)
    return 0;
  for (int d = 0; d < UP_DOWNSTAIRS; d++) {
    if (!(all & (1u << d)))
      continue;
    if (c[d].flags & PROTO_CTX_PRESENT) {
      if (c[d].version == top) {
        hold |= 1u << d;
        if (holder < 0 || d == p)
          holder = d;
      } else {
        beaten |= 1u << d;
      }
    } else if (top && c[d].version && c[d].version < top) {
      beaten |= 1u << d;
    } else {
      zero |= 1u << d;
      if (c[d].version > zver)
        zver = c[d].version;
    }
  }
  if (!zero ||
      (__builtin_popcount(hold) >= 2 && __builtin_popcount(zero) == 1)) {
    /* W wins (nothing it cannot beat, or two hold it against one). */
    if (holder == p) {
      for (int d = 0; d < UP_DOWNSTAIRS; d++)
        if ((beaten | zero) & (1u << d)) {
          log_warn("downstairs %s: read lba %llu: %s %llu where %s holds "
                   "version %llu (stale or rolled back), job %llu",
                   up->cl[d].name, (unsigned long long) lba,
                   c[d].flags & PROTO_CTX_PRESENT ? "version"
                                                  : "zeroes, version",
                   (unsigned long long) c[d].version, up->cl[p].name,
                   (unsigned long long) top, (unsigned long long) job->id);
          up__heal_block(up, &job->reply[p], i, lba, d);
        }
      return 0;
    }
    return fresh_take(up, job, holder, lba, top, beaten | zero, out) == 0
               ? 0
               : -EIO;
  }
  if (__builtin_popcount(zero) >= 2) { /* zeroes, two against one */
    memset(out, 0, up->region.block_size);
    for (int d = 0; d < UP_DOWNSTAIRS; d++)
      if ((hold | beaten) & (1u << d)) {
        log_warn("downstairs %s: read lba %llu: version %llu where two "
                 "others hold zeroes (stale or rolled back), job %llu",
                 up->cl[d].name, (unsigned long long) lba,
                 (unsigned long long) c[d].version,
                 (unsigned long long) job->id);
        up__heal_zero(up, lba, zver, d);
      }
    return 0;
  }
  log_error("read lba %llu: replicas disagree (zeroes against version "
            "%llu) and none can be proven; not served, job %llu",
            (unsigned long long) lba, (unsigned long long) top,
            (unsigned long long) job->id);
  return -EIO;
}

/* verify=all: per block, the newest version that authenticates; then
 * every replica that failed it or served an older version is healed
 * with the winner's stored block (heal.c). */
static int read_verify_all(struct upstairs *up, struct up_job *job,
                           uint8_t *dst)
{
  uint32_t bs = up->region.block_size;
  uint8_t *tmp = malloc(bs);

  if (!tmp)
    return -ENOMEM;
  for (uint32_t i = 0; i < job->n; i++) {
    uint64_t best = 0, ver[UP_DOWNSTAIRS] = {0};
    int bd = -1;
    unsigned bad = 0;
    for (int d = 0; d < UP_DOWNSTAIRS; d++) {
      const char *why;
      if ((job->failed & (1u << d)))
        bad |= 1u << d;
      if (!(job->seen & (1u << d)))
        continue;
      why = up__blk_check(up, &job->reply[d], i, job->lba + i, tmp, &ver[d]);
      if (why) {
        log_warn("downstairs %s: read lba %llu: %s, job %llu", up->cl[d].name,
                 (unsigned long long) (job->lba + i), why,
                 (unsigned long long) job->id);
        bad |= 1u << d;
      } else if (bd < 0 || ver[d] > best) {
        memcpy(dst + (size_t) i * bs, tmp, bs);
        best = ver[d];
        bd = d;
      }
    }
    if (bd < 0) {
      free(tmp);
      return -EIO;
    }
    if (best > 0) {
      /* Zeroes whose trim version a flush forgot cannot be proven newer:
       * two replicas holding them outvote one newer write (a replica
       * rolled back to before the trim), as in read_fresh. */
      unsigned nz = 0, nb = 0;
      uint64_t zv = 0;
      for (int d = 0; d < UP_DOWNSTAIRS; d++) {
        struct proto_ctx c;
        if (!(job->seen & (1u << d)) || (bad & (1u << d)))
          continue;
        nb += ver[d] == best;
        if (ver[d] == 0) {
          nz++;
          proto_ctx_get(job->reply[d].ctxs + (size_t) i * PROTO_CTX_LEN, &c);
          zv = c.version > zv ? c.version : zv;
        }
      }
      if (nz >= 2 && nb < 2) {
        memset(dst + (size_t) i * bs, 0, bs);
        for (int d = 0; d < UP_DOWNSTAIRS; d++)
          if ((job->seen & (1u << d)) && ver[d] > 0) {
            log_warn("downstairs %s: read lba %llu: version %llu where two "
                     "others hold zeroes (rollback), job %llu",
                     up->cl[d].name, (unsigned long long) (job->lba + i),
                     (unsigned long long) ver[d], (unsigned long long) job->id);
            up__heal_zero(up, job->lba + i, zv, d);
          }
        continue;
      }
    }
    for (int d = 0; d < UP_DOWNSTAIRS; d++) {
      if (d == bd || best == 0)
        continue; /* nothing written: nothing to copy */
      if (!(bad & (1u << d)) && (!(job->seen & (1u << d)) || ver[d] >= best))
        continue;
      if ((job->seen & (1u << d)) && !(bad & (1u << d)))
        log_warn("downstairs %s: read lba %llu: version %llu older than "
                 "%llu on %s (rollback), job %llu",
                 up->cl[d].name, (unsigned long long) (job->lba + i),
                 (unsigned long long) ver[d], (unsigned long long) best,
                 up->cl[bd].name, (unsigned long long) job->id);
      up__heal_block(up, &job->reply[bd], i, job->lba + i, d);
    }
  }
  free(tmp);
  return 0;
}

/* The freshness check (verify=fresh), after the data reply passed
 * read_verify_one into dst.  Per block, the versions the other replicas
 * claim (read in the same round, job->vmask) are compared with the one
 * served; honest, up-to-date replicas agree exactly (the range lock keeps
 * overlapping writes out), so any difference is a stale or lying one:
 *   - a claim older than the data's: that replica is stale, healed;
 *   - a newer written claim: its data is read (fresh_prove) and must
 *     authenticate with at least that version; then it is served and the
 *     stale ones healed, else the claimant lied and is faulted;
 *   - a newer trim (zeroes) cannot be proven: it is served only if another
 *     replica agrees with it, ignored (and healed) if another agrees with
 *     the data, and the read fails (EIO) when two replicas disagree with
 *     nothing to tell them apart.
 * The data's own zero answer is weighed the same way.  No versions reply
 * at all: not served (one replica's word is not enough). */
static int read_fresh(struct upstairs *up, struct up_job *job, uint8_t *dst)
{
  uint32_t bs = up->region.block_size;
  unsigned others = job->seen & job->vmask;
  int p = -1, r = 0;

  for (int d = 0; d < UP_DOWNSTAIRS && p < 0; d++)
    if (job->seen & job->dmask & (1u << d))
      p = d;
  if (p < 0)
    return -EIO;
  if (!others) {
    log_error("read lba %llu n %u: no other downstairs answered with its "
              "versions; not served on the word of %s alone, job %llu",
              (unsigned long long) job->lba, job->n, up->cl[p].name,
              (unsigned long long) job->id);
    return -EIO;
  }
  for (uint32_t i = 0; i < job->n && r == 0; i++)
    r = fresh_block(up, job, p, others, i, dst + (size_t) i * bs);
  return r;
}

int up__read_check(struct upstairs *up, struct up_job *job, uint8_t *dst)
{
  int r = up->cfg.verify == UP_VERIFY_ALL ? read_verify_all(up, job, dst)
                                          : read_verify_one(up, job, dst);

  if (r == 0 && up->cfg.verify == UP_VERIFY_FRESH)
    r = read_fresh(up, job, dst);
  return r;
}
