/* crucible-c upstairs: the version cache (single-replica rollback).
 *
 * The upstairs remembers, for the last UP_VCACHE_SLOTS LBAs it wrote in
 * this activation (direct-mapped by lba, a newer write evicts an older
 * one in its slot), the version it wrote.  A read that returns an
 * authentic block with an older version than remembered comes from a
 * replica that was rolled back (or missed the write): io.c treats it as a
 * bad reply, falls back to another replica and heal.c rewrites it.
 *
 * Invariants: an entry is set by the loop thread when the write gets its
 * job id, before it is sent, so a read that starts after the write was
 * acknowledged (range lock) always sees it.  A trim forgets its LBAs
 * (an unwritten block carries no version to compare).  Bounded: 1 MiB.
 */
#include <errno.h>
#include <stdlib.h>

#include "upstairs_int.h"

int up__vcache_init(struct upstairs *up)
{
  pthread_mutex_init(&up->vc_lock, NULL);
  up->vc = calloc(UP_VCACHE_SLOTS, sizeof *up->vc);
  if (!up->vc) {
    pthread_mutex_destroy(&up->vc_lock);
    return -ENOMEM;
  }
  return 0;
}

void up__vcache_free(struct upstairs *up)
{
  free(up->vc);
  up->vc = NULL;
  pthread_mutex_destroy(&up->vc_lock);
}

void up__vcache_note(struct upstairs *up, const struct up_job *job)
{
  struct proto_ctx c = {0};
  uint64_t n = job->n;

  if (!up->vc)
    return;
  if (job->type == PROTO_T_WRITE)
    proto_ctx_get(job->frame + PROTO_IO_HDR_LEN, &c); /* one per job */
  else if (n > UP_VCACHE_SLOTS)
    n = UP_VCACHE_SLOTS;
  pthread_mutex_lock(&up->vc_lock);
  for (uint64_t i = 0; i < n; i++) {
    struct up_vc_slot *s = &up->vc[(job->lba + i) % UP_VCACHE_SLOTS];
    if (job->type == PROTO_T_WRITE) {
      s->lba = job->lba + i;
      s->ver = c.version;
    } else {
      s->ver = 0; /* trim: forget the slot */
    }
  }
  pthread_mutex_unlock(&up->vc_lock);
}

bool up__vcache_stale(struct upstairs *up, uint64_t lba, uint64_t ver)
{
  bool stale = false;

  if (!up->vc)
    return false;
  pthread_mutex_lock(&up->vc_lock);
  struct up_vc_slot *s = &up->vc[lba % UP_VCACHE_SLOTS];
  if (s->ver && s->lba == lba && ver < s->ver)
    stale = true;
  pthread_mutex_unlock(&up->vc_lock);
  return stale;
}
