/* crucible-c downstairs: the region's snapshots (region.h's
 * region_snapshot_*, on top of snapshot.c's files).
 *
 * Locks: snap_mu guards the catalog and is held across a snapshot read of
 * a copy (so a delete cannot move it away meanwhile); order: an extent's
 * mutex, then snap_mu, never the other way (create flushes before it
 * takes snap_mu; delete takes no extent lock).  snap_newest and
 * snap_newest_count are written under snap_mu, read __atomic by the write
 * paths; create and delete are barriers, so no write runs while they
 * change.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "region_int.h"

static void set_newest(struct region *r)
{
  const struct snap_cat *c = &r->snaps;
  uint32_t seq = c->n ? c->v[c->n - 1].seq : 0;
  uint32_t count = c->n ? c->v[c->n - 1].extent_count : 0;
  __atomic_store_n(&r->snap_newest_count, count, __ATOMIC_RELEASE);
  __atomic_store_n(&r->snap_newest, seq, __ATOMIC_RELEASE);
}

int region__snap_open(struct region *r)
{
  int ret = snap_cat_open(r->dirfd, &r->snaps);
  if (ret < 0)
    log_error("%s: snapshots: %s", r->dir, log_strerror(-ret));
  set_newest(r);
  return ret;
}

bool region__snap_pending(struct region *r, const struct rext *re)
{
  uint32_t newest = __atomic_load_n(&r->snap_newest, __ATOMIC_ACQUIRE);
  return newest != 0 && re->snap_seq != newest;
}

int region__snap_preserve(struct region *r, struct rext *re)
{
  uint32_t newest = __atomic_load_n(&r->snap_newest, __ATOMIC_ACQUIRE);
  uint32_t count = __atomic_load_n(&r->snap_newest_count, __ATOMIC_ACQUIRE);
  if (newest == 0 || re->snap_seq == newest)
    return 0;
  int ret = 0;
  if (re->x.eid < count) { /* an extent added later: not in it */
    ret = snap_has_copy(r->dirfd, newest, re->x.eid);
    if (ret == 0) {
      ret = snap_copy_extent(r->dirfd, newest, &re->x);
      if (ret >= 0)
        log_debug("extent %" PRIu32 " %s into snapshot %" PRIu32, re->x.eid,
                  ret ? "reflinked" : "copied", newest);
    }
  }
  if (ret < 0)
    return ret;
  re->snap_seq = newest;
  return 0;
}

int region_snapshot_create(struct region *r, const char *name,
                           uint64_t flush_no, uint64_t gen, uint64_t time)
{
  if (!proto_snap_stored_ok(name))
    return -EINVAL;
  pthread_mutex_lock(&r->snap_mu);
  int ret = snap_find(&r->snaps, name) ? -EEXIST
            : r->snaps.n == SNAP_MAX   ? -ENOSPC
                                       : 0;
  pthread_mutex_unlock(&r->snap_mu);
  if (ret == 0) /* everything acknowledged so far is in it, durably */
    ret = region_flush(r, flush_no, gen);
  if (ret < 0)
    return ret;
  struct snap s = {.time = time, .gen = gen, .flush = flush_no};
  memcpy(s.name, name, strlen(name) + 1);
  pthread_mutex_lock(&r->snap_mu);
  s.extent_count = region_def(r)->extent_count;
  ret = snap_create(r->dirfd, &r->snaps, &s);
  if (ret == 0)
    set_newest(r);
  pthread_mutex_unlock(&r->snap_mu);
  if (ret == 0)
    log_info("%s: snapshot %s (seq %" PRIu32 ") at flush %" PRIu64
             " gen %" PRIu64,
             r->dir, name, s.seq, flush_no, gen);
  return ret;
}

int region_snapshot_delete(struct region *r, const char *name)
{
  pthread_mutex_lock(&r->snap_mu);
  int ret = snap_delete(r->dirfd, &r->snaps, name);
  /* Even on an error past the marker the snapshot is gone (its delete
   * resumes at the next open). */
  set_newest(r);
  pthread_mutex_unlock(&r->snap_mu);
  if (ret == 0)
    log_info("%s: snapshot %s deleted", r->dir, name);
  return ret;
}

/* What list and find report of s (space used aside). */
static void snap_info_fill(struct region_snap_info *o, const struct snap *s)
{
  memset(o, 0, sizeof *o);
  memcpy(o->name, s->name, sizeof s->name);
  o->seq = s->seq;
  o->time = s->time;
  o->gen = s->gen;
  o->flush = s->flush;
  o->extent_count = s->extent_count;
}

int region_snapshot_list(struct region *r, struct region_snap_info *out,
                         unsigned max, unsigned *n)
{
  int ret = 0;
  *n = 0;
  pthread_mutex_lock(&r->snap_mu);
  for (unsigned i = 0; ret == 0 && i < r->snaps.n && i < max; i++) {
    const struct snap *s = &r->snaps.v[i];
    struct region_snap_info *o = &out[i];
    snap_info_fill(o, s);
    ret = snap_usage(r->dirfd, s->seq, &o->bytes, &o->copies);
    *n = i + 1;
  }
  pthread_mutex_unlock(&r->snap_mu);
  return ret;
}

int region_snapshot_find(struct region *r, const char *name,
                         struct region_snap_info *out)
{
  int ret = -ENOENT;
  pthread_mutex_lock(&r->snap_mu);
  const struct snap *s = snap_find(&r->snaps, name);
  if (s) {
    snap_info_fill(out, s);
    ret = 0;
  }
  pthread_mutex_unlock(&r->snap_mu);
  return ret;
}

/* Read from the copy of extent eid in snapshot seq (under snap_mu). */
static int read_copy(struct region *r, uint32_t seq, uint32_t eid, uint64_t blk,
                     uint32_t n, struct proto_ctx *ctxs, uint8_t *data)
{
  const struct proto_region *d = region_def(r);
  struct ext x = {.eid = eid,
                  .block_size = d->block_size,
                  .extent_size = d->extent_size,
                  .zero_hash = r->zero_hash,
                  .fd = -1};
  int ret = snap_open_copy(r->dirfd, seq, &x);
  if (ret == 0)
    ret = data ? ext_read(&x, blk, n, ctxs, data)
               : ext_versions(&x, blk, n, ctxs);
  ext_close(&x);
  ext_map_forget(&x);
  return ret;
}

int region_snapshot_read(struct region *r, const char *name, uint64_t lba,
                         uint32_t n, struct proto_ctx *ctxs, uint8_t *data)
{
  const struct proto_region *d = region_def(r);
  if (n == 0 || lba >= geom_blocks(d) || n > geom_left_in_extent(d, lba))
    return -EINVAL;
  uint32_t eid = geom_extent_of(d, lba);
  uint64_t blk = lba % d->extent_size;
  struct rext *re;
  int ret = region__ext_get(r, eid, true, &re);
  if (ret < 0)
    return ret;
  pthread_mutex_lock(&r->snap_mu);
  const struct snap *s = snap_find(&r->snaps, name);
  uint32_t seq = 0;
  if (s == NULL)
    ret = -ENOENT;
  else if (eid >= s->extent_count)
    ret = -EINVAL;
  else
    ret = snap_source(r->dirfd, &r->snaps, s, eid, &seq);
  if (ret == 0 && seq)
    ret = read_copy(r, seq, eid, blk, n, ctxs, data);
  else if (ret == 0) /* unchanged since the snapshot: the live extent */
    ret = data ? ext_read(&re->x, blk, n, ctxs, data)
               : ext_versions(&re->x, blk, n, ctxs);
  pthread_mutex_unlock(&r->snap_mu);
  region__ext_put(r, re);
  return ret;
}

struct verify_arg {
  void (*bad)(const char *, uint32_t, uint64_t, void *);
  void *arg;
  const char *name;
};

static void verify_bad(uint32_t eid, uint64_t block, void *arg)
{
  struct verify_arg *va = arg;
  va->bad(va->name, eid, block, va->arg);
}

int region_snapshot_verify(struct region *r,
                           void (*bad)(const char *snap, uint32_t eid,
                                       uint64_t block, void *arg),
                           void *arg, uint64_t *checked)
{
  const struct proto_region *d = region_def(r);
  int ret = 0;
  *checked = 0;
  pthread_mutex_lock(&r->snap_mu);
  for (unsigned i = 0; ret == 0 && i < r->snaps.n; i++) {
    const struct snap *s = &r->snaps.v[i];
    struct verify_arg va = {bad, arg, s->name};
    for (uint32_t eid = 0; ret == 0 && eid < s->extent_count; eid++) {
      int has = snap_has_copy(r->dirfd, s->seq, eid);
      if (has <= 0) {
        ret = has;
        continue;
      }
      struct ext x = {.eid = eid,
                      .block_size = d->block_size,
                      .extent_size = d->extent_size,
                      .zero_hash = r->zero_hash,
                      .fd = -1};
      uint64_t c = 0;
      ret = snap_open_copy(r->dirfd, s->seq, &x);
      if (ret == 0)
        ret = ext_verify(&x, verify_bad, &va, &c);
      ext_close(&x);
      ext_map_forget(&x);
      *checked += c;
    }
  }
  pthread_mutex_unlock(&r->snap_mu);
  return ret;
}
