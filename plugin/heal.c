/* crucible-c upstairs: heal on read.
 *
 * When a read from one replica failed verification (bad hash, bad tag, a
 * read error) or returned an authentic but older version, and another
 * replica then returned good data, the good block is written back, as
 * stored (same version, nonce, tag, hash and ciphertext), to the bad
 * replica only: a WRITE job targeted at that one downstairs
 * (job->only), which the loop orders by job id like any other write.
 *
 * Invariant: up__heal_read runs on the reading caller thread while it
 * holds the range lock of the read, so no newer guest write to those
 * blocks can be queued before the heal: the heal never overwrites newer
 * data.  It waits (bounded by timeout) for each heal's outcome and logs
 * "healed downstairs H:P lba L" once per block healed.
 */
#include <errno.h>
#include <stdio.h>
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
  return up__blk_check(up, r, i, lba, scratch, ver) == NULL;
}

/* Run heal job (aimed at downstairs d alone) and log its outcome, one
 * line: what names what the job wrote ("(extent E block B" or "to zeroes
 * (version V"), the job id closes it.  Takes the caller's reference. */
static int heal_run(struct upstairs *up, struct up_job *job, int d,
                    uint64_t lba, const char *what)
{
  int r = -EIO;

  /* A snapshot is read-only everywhere (the downstairs refuses a
   * reader's WRITE too): the bad copy stays, the read is served from a
   * good one.  Said once per block read; -EROFS, so a scrub counts it
   * not healed. */
  if (up_snapshot_mode(up)) {
    log_warn("downstairs %s lba %llu: not healed (snapshot=%s is read-only)",
             up->cl[d].name, (unsigned long long) lba, up->cfg.snapshot);
    up__job_put(job);
    return -EROFS;
  }
  job->only = 1u << d;
  if (up__run_jobs(up, &job, 1, &r) < 0 || !job)
    return r < 0 ? r : -EIO;
  if (r == 0)
    log_warn("healed downstairs %s lba %llu %s, job %llu)", up->cl[d].name,
             (unsigned long long) lba, what, (unsigned long long) job->id);
  else {
    log_warn("heal of downstairs %s lba %llu failed: %s", up->cl[d].name,
             (unsigned long long) lba, log_strerror(-r));
    up__admin_note(up, "heal of downstairs %s lba %llu failed: %s",
                   up->cl[d].name, (unsigned long long) lba, log_strerror(-r));
  }
  up__job_put(job);
  return r;
}

/* Write block i of the good reply to downstairs d and wait for it. */
int up__heal_block(struct upstairs *up, const struct proto_read_done *g,
                   uint32_t i, uint64_t lba, int d)
{
  uint32_t bs = up->region.block_size;
  struct up_job *job =
      up__job_new(PROTO_T_WRITE, lba, 1, PROTO_IO_HDR_LEN + PROTO_CTX_LEN + bs);
  char what[64];

  if (!job)
    return -ENOMEM;
  proto_put_write_hdr(job->frame, 0, lba, 1, bs);
  memcpy(job->frame + PROTO_IO_HDR_LEN, g->ctxs + (size_t) i * PROTO_CTX_LEN,
         PROTO_CTX_LEN);
  memcpy(job->frame + PROTO_IO_HDR_LEN + PROTO_CTX_LEN,
         g->data + (size_t) i * bs, bs);
  snprintf(what, sizeof what, "(extent %llu block %llu",
           (unsigned long long) geom_extent_of(&up->region, lba),
           (unsigned long long) (lba % up->region.extent_size));
  return heal_run(up, job, d, lba, what);
}

int up__heal_zero(struct upstairs *up, uint64_t lba, uint64_t version, int d)
{
  struct up_job *job = up__job_new(PROTO_T_TRIM, lba, 1, PROTO_TRIM_LEN);
  char what[64];

  if (!job)
    return -ENOMEM;
  memset(job->frame, 0, PROTO_TRIM_LEN);
  job->version = version;
  snprintf(what, sizeof what, "to zeroes (version %llu",
           (unsigned long long) version);
  return heal_run(up, job, d, lba, what);
}

/* Is block i of bad job b (from downstairs d) worse than the good one
 * (version gver)? */
static bool heal_needed(struct upstairs *up, struct up_job *b, int d,
                        uint32_t i, uint64_t gver, uint8_t *scratch)
{
  uint64_t ver;

  if ((b->failed & (1u << d)))
    return true;
  if (!(b->seen & (1u << d)) || (b->vmask & (1u << d)) || b->reply[d].n != b->n)
    return false; /* a versions-only answer holds no data to judge */
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
    if ((good->seen & (1u << d)) && !(good->vmask & (1u << d)) &&
        good->reply[d].n == good->n)
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
