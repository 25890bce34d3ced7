/* crucible-c downstairs: a FLUSH of the region (region.h region_flush,
 * region_flush_n): every dirty extent not marked for repair, the open
 * ones in parallel, the evicted ones after them one at a time
 * (docs/DESIGN.md "Region on disk", the flush paragraph). */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "extent.h"
#include "region.h"
#include "region_int.h"

/* Is extent eid known dirty and not marked for repair (and open, if
 * open)?  A marked extent is skipped here, not only in ext_flush: if it
 * was evicted, selecting it would reopen it, and reopening a dirty
 * extent rehashes every block it has rows for, at every flush. */
static bool flush_candidate(struct region *r, uint32_t eid, bool open)
{
  pthread_mutex_lock(&r->mu);
  struct rext *re = r->ext[eid];
  bool yes = re && re->in_lru == open && re->x.meta_known && re->x.meta.dirty &&
             !re->x.repair;
  pthread_mutex_unlock(&r->mu);
  return yes;
}

int region_flush(struct region *r, uint64_t flush_no, uint64_t gen)
{
  return region_flush_n(r, flush_no, gen, NULL);
}

static int flush_one(struct region *r, uint32_t eid, uint64_t flush_no,
                     uint64_t gen)
{
  struct rext *re;
  int ret = region__ext_get(r, eid, true, &re);
  if (ret == 0) {
    ret = ext_flush(&re->x, flush_no, gen, false);
    region__ext_put(r, re);
  }
  return ret;
}

/* The open dirty extents of one flush, flushed by up to FLUSH_THREADS
 * threads at once: each extent's flush is its own files' syncs (data,
 * then its database's WAL), independent of the others', and the device
 * merges the cache flushes that arrive together, so k extents cost about
 * one extent's syncs instead of k in a row (a file system's commit
 * touches several).  The first error wins; the others still finish. */
#define FLUSH_THREADS 8
struct flush_par {
  struct region *r;
  const uint32_t *eids;
  uint32_t n, next; /* next: atomic */
  uint64_t flush_no, gen;
  int err; /* atomic: first error */
};

static void *flush_worker(void *arg)
{
  struct flush_par *fp = arg;
  for (;;) {
    uint32_t i = __atomic_fetch_add(&fp->next, 1, __ATOMIC_RELAXED);
    if (i >= fp->n)
      return NULL;
    int ret = flush_one(fp->r, fp->eids[i], fp->flush_no, fp->gen);
    int zero = 0;
    if (ret < 0)
      __atomic_compare_exchange_n(&fp->err, &zero, ret, false, __ATOMIC_RELAXED,
                                  __ATOMIC_RELAXED);
  }
}

static int flush_open(struct region *r, const uint32_t *eids, uint32_t n,
                      uint64_t flush_no, uint64_t gen)
{
  struct flush_par fp = {
      .r = r, .eids = eids, .n = n, .flush_no = flush_no, .gen = gen};
  pthread_t th[FLUSH_THREADS - 1];
  unsigned nth = 0;
  /* This thread is one of them; a thread that cannot start is simply
   * not there (its extents go to the others). */
  while (nth < FLUSH_THREADS - 1 && nth + 1 < n &&
         pthread_create(&th[nth], NULL, flush_worker, &fp) == 0)
    nth++;
  flush_worker(&fp);
  for (unsigned i = 0; i < nth; i++)
    pthread_join(th[i], NULL);
  return fp.err;
}

/* Open dirty extents first (in parallel, flush_open), then evicted dirty
 * ones one at a time (each reopened with a rehash, which may evict: the
 * second pass must not evict one the first still needs). */
int region_flush_n(struct region *r, uint64_t flush_no, uint64_t gen,
                   uint32_t *nflushed)
{
  uint32_t count = r->meta.def.extent_count, n = 0;
  if (nflushed)
    *nflushed = 0;
  uint32_t *eids = malloc((size_t) count * sizeof *eids);
  if (eids != NULL)
    for (uint32_t eid = 0; eid < count; eid++)
      if (flush_candidate(r, eid, true))
        eids[n++] = eid;
  /* One extent (or none) starts no thread: this one does it. */
  int ret = eids != NULL ? flush_open(r, eids, n, flush_no, gen) : 0;
  bool listed = eids != NULL;
  free(eids);
  if (ret < 0)
    return ret;
  if (nflushed)
    *nflushed = n;
  /* Without memory for the list, every candidate goes this way. */
  for (int pass = listed; pass < 2; pass++)
    for (uint32_t eid = 0; eid < count; eid++) {
      if (!flush_candidate(r, eid, pass == 0))
        continue;
      if ((ret = flush_one(r, eid, flush_no, gen)) < 0)
        return ret;
      if (nflushed)
        (*nflushed)++;
    }
  return 0;
}
