/* crucible-c upstairs: heal on read.
 *
 * When a read from one replica failed verification (bad hash, bad tag, a
 * read error) or returned an authentic but older version, and another
 * replica then returned good data, the good block is written back, as
 * stored (same version, nonce, tag, hash and ciphertext), to the bad
 * replica only: a WRITE job targeted at that one downstairs
 * (job->heal_mask), which the loop orders by job id like any other write.
 *
 * Invariant: up__heal_read runs on the reading caller thread while it
 * holds the range lock of the read, so no newer guest write to those
 * blocks can be queued before the heal: the heal never overwrites newer
 * data.  It waits (bounded by timeout) for each heal's outcome and logs
 * "healed downstairs H:P lba L" once per block healed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

/* Check block i of a reply: true if authentic, *ver its version (0 when
 * never written).  scratch holds one block. */
static bool heal_check(struct upstairs *up, const struct proto_read_done *r,
                       uint32_t i, uint64_t lba, uint8_t *scratch,
                       uint64_t *ver)
{
  uint32_t bs = up->region.block_size;
  const uint8_t *d = r->data + (size_t) i * bs;
  struct proto_ctx c;

  proto_ctx_get(r->ctxs + (size_t) i * PROTO_CTX_LEN, &c);
  *ver = 0;
  if (!(c.flags & PROTO_CTX_PRESENT))
    return true;
  if (up->key) {
    if (crypt_block_decrypt(up->key, up->region.uuid, lba, c.version, d, bs,
                            c.nonce, c.tag, scratch) < 0)
      return false;
  } else if (crypt_hash_plain(d, bs) != c.hash) {
    return false;
  }
  *ver = c.version;
  return true;
}

/* Write block i of the good reply to downstairs d and wait for it. */
void up__heal_block(struct upstairs *up, const struct proto_read_done *g,
                       uint32_t i, uint64_t lba, int d)
{
  uint32_t bs = up->region.block_size;
  size_t len = PROTO_IO_HDR_LEN + PROTO_CTX_LEN + bs;
  struct up_job *job = calloc(1, sizeof *job);
  struct up_req req = {.pending = 0};
  pthread_condattr_t ca;
  struct timespec dl;
  int r = -EIO;

  if (job)
    job->frame = malloc(len);
  if (!job || !job->frame) {
    free(job);
    return;
  }
  job->type = PROTO_T_WRITE;
  job->lba = lba;
  job->n = 1;
  job->frame_len = len;
  job->refs = 2;
  job->loop_refs = 1;
  job->heal_mask = 1u << d;
  proto_put_write_hdr(job->frame, 0, lba, 1, bs);
  memcpy(job->frame + PROTO_IO_HDR_LEN,
         g->ctxs + (size_t) i * PROTO_CTX_LEN, PROTO_CTX_LEN);
  memcpy(job->frame + PROTO_IO_HDR_LEN + PROTO_CTX_LEN,
         g->data + (size_t) i * bs, bs);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&req.cond, &ca);
  pthread_condattr_destroy(&ca);
  if (up__submit(up, &req, job) < 0) {
    up__job_put(job);
    up__job_put(job);
    pthread_cond_destroy(&req.cond);
    return;
  }
  up__deadline(up, &dl, up->cfg.timeout + UP_WAIT_SLACK_S);
  pthread_mutex_lock(&up->lock);
  while (req.pending > 0)
    if (pthread_cond_timedwait(&req.cond, &up->lock, &dl) == ETIMEDOUT)
      break;
  if (job->decided)
    r = job->result;
  else if (job->req) {
    job->req = NULL; /* abandoned: the loop finishes it alone */
    req.pending--;
  }
  pthread_mutex_unlock(&up->lock);
  pthread_cond_destroy(&req.cond);
  if (r == 0)
    log_warn("healed downstairs %s lba %llu (extent %llu block %llu, job "
             "%llu)", up->cl[d].name, (unsigned long long) lba,
             (unsigned long long) geom_extent_of(&up->region, lba),
             (unsigned long long) (lba % up->region.extent_size),
             (unsigned long long) job->id);
  else
    log_warn("heal of downstairs %s lba %llu failed: %s", up->cl[d].name,
             (unsigned long long) lba, log_strerror(-r));
  up__job_put(job);
}

/* Is block i of bad job b (from downstairs d) worse than the good one
 * (version gver)? */
static bool heal_needed(struct upstairs *up, struct up_job *b, int d,
                        uint32_t i, uint64_t gver, uint8_t *scratch)
{
  uint64_t ver;

  if (b->ds[d] == DS_ERR)
    return true;
  if (b->ds[d] != DS_DONE || b->reply[d].n != b->n)
    return false;
  if (!heal_check(up, &b->reply[d], i, b->lba + i, scratch, &ver))
    return true;
  return ver < gver;
}

void up__heal_read(struct upstairs *up, struct up_job *good,
                   struct up_job **bad, unsigned nbad)
{
  uint8_t *scratch = malloc(up->region.block_size);
  int gd = -1;

  for (int d = 0; d < UP_DOWNSTAIRS && gd < 0; d++)
    if (good->ds[d] == DS_DONE && good->reply[d].n == good->n)
      gd = d;
  if (!scratch || gd < 0) {
    free(scratch);
    return;
  }
  for (uint32_t i = 0; i < good->n; i++) {
    uint64_t gver;
    if (!heal_check(up, &good->reply[gd], i, good->lba + i, scratch, &gver) ||
        gver == 0)
      continue; /* nothing good (or nothing written) to copy */
    for (unsigned k = 0; k < nbad; k++)
      for (int d = 0; d < UP_DOWNSTAIRS; d++)
        if (d != gd && bad[k]->lba == good->lba && bad[k]->n == good->n &&
            heal_needed(up, bad[k], d, i, gver, scratch))
          up__heal_block(up, &good->reply[gd], i, good->lba + i, d);
  }
  free(scratch);
}
