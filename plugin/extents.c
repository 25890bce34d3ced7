/* crucible-c upstairs: block status (which ranges read as zeroes).
 *
 * Runs on the caller's (nbdkit's) thread.  A request is split into one
 * EXTENT_MAP_REQ job per extent (at most UP_MAP_JOBS per call: nbdkit
 * lets a reply cover less than was asked, as long as it starts at the
 * offset); the loop sends each to every fully active downstairs (not to
 * a live-repair target, which holds only part of the volume) in the same
 * stream as the writes, so a downstairs answers after applying every
 * write sent before it (its job order on the extent is that of a READ).
 *
 * THE RULE.  A block is reported as a hole (reads as zeroes) only where
 * at least UP_MAP_QUORUM replicas answered and NONE of them says it may
 * hold data: the union of data.  Why it is safe: every acknowledged
 * write is on at least 2 of the 3 replicas, so any 2 answering replicas
 * include one that holds it; a replica that lies, was rolled back or
 * lost the block can only add "hole" claims, which the union overrides
 * as long as one honest up-to-date replica answers, and all active ones
 * are asked and waited for.  A false "data" only costs the client a
 * read.  Fewer than UP_MAP_QUORUM answers (a map error or a downstairs
 * lost in flight): the whole job's range is reported as data.  No
 * answer at all (the volume cannot serve, every replica failed it): the
 * request fails with EIO, as a read would.
 */
#include <errno.h>
#include <stdlib.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

/* Jobs (extents) per call: 16 default extents are 2 GiB. */
#define UP_MAP_JOBS 16
/* Replicas that must answer before any block may be called a hole. */
#define UP_MAP_QUORUM 2

/* Does any answering replica of job say block i of it may hold data?
 * true as well when too few answered. */
static bool map_data(const struct up_job *job, uint32_t i)
{
  unsigned n = 0;
  bool data = false;

  for (int d = 0; d < UP_DOWNSTAIRS; d++) {
    const uint8_t *bits = job->reply[d].data;
    if (!(job->seen & (1u << d)) || !bits)
      continue;
    n++;
    data |= (bits[i / 8] >> (i % 8)) & 1;
  }
  return n < UP_MAP_QUORUM || data;
}

/* Hand the decided jobs' blocks to add() as coalesced runs in bytes. */
static int map_emit(struct upstairs *up, struct up_job **jobs, unsigned nj,
                    int (*add)(void *, uint64_t, uint64_t, bool), void *arg)
{
  uint64_t bs = up->region.block_size, start = jobs[0]->lba, len = 0;
  bool zero = false;

  for (unsigned k = 0; k < nj; k++)
    for (uint32_t i = 0; i < jobs[k]->n; i++) {
      bool z = !map_data(jobs[k], i);
      if (len && z != zero) {
        int r = add(arg, start * bs, len * bs, zero);
        if (r < 0)
          return r;
        start += len;
        len = 0;
      }
      zero = z;
      len++;
    }
  return add(arg, start * bs, len * bs, zero);
}

int up_extents(struct upstairs *up, uint32_t count, uint64_t off, bool req_one,
               int (*add)(void *arg, uint64_t off, uint64_t len, bool zero),
               void *arg)
{
  uint32_t bs = up->region.block_size;
  struct up_job *jobs[UP_MAP_JOBS];
  int res[UP_MAP_JOBS];
  unsigned nj = 0, maxj = req_one ? 1 : UP_MAP_JOBS;
  uint64_t lba, end;
  int r;

  if (count == 0 || off >= up_size(up) || count > up_size(up) - off)
    return -EINVAL;
  lba = off / bs;
  end = (off + count + bs - 1) / bs;
  for (; lba < end && nj < maxj; nj++) {
    uint64_t n = geom_left_in_extent(&up->region, lba);
    if (n > end - lba)
      n = end - lba;
    if (n > PROTO_MAX_MAP_BLOCKS)
      n = PROTO_MAX_MAP_BLOCKS;
    jobs[nj] = up__job_new(PROTO_T_EXTENT_MAP_REQ, lba, (uint32_t) n,
                           PROTO_EXTENT_MAP_REQ_LEN);
    if (!jobs[nj])
      break;
    lba += n;
  }
  if (nj == 0)
    return -ENOMEM;
  r = up__run_jobs(up, jobs, nj, res);
  /* Report what the decided jobs cover, up to the first failed one. */
  unsigned ok = 0;
  while (ok < nj && jobs[ok] && res[ok] == 0)
    ok++;
  if (ok > 0)
    r = map_emit(up, jobs, ok, add, arg);
  else
    r = r < 0 ? r : res[0] < 0 ? res[0] : -EIO;
  if (up_debug_io)
    log_debug("extents off %llu count %u: %u of %u jobs answered: %d",
              (unsigned long long) off, count, ok, nj, r);
  for (unsigned k = 0; k < nj; k++)
    if (jobs[k])
      up__job_put(jobs[k]);
  return r;
}
