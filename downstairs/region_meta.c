/* crucible-c downstairs: the region-level values of region.json that
 * change while it runs (highest generation, key check value, uuid,
 * extent count): each change goes to a copy, is persisted atomically
 * (region_meta_write), and only then adopted.  Under r->meta_mu. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "../common/geom.h"
#include "region.h"
#include "region_int.h"

const struct proto_region *region_def(const struct region *r)
{
  return &r->meta.def;
}

uint64_t region_highest_gen(const struct region *r)
{
  struct region *w = (struct region *) r;
  pthread_mutex_lock(&w->meta_mu);
  uint64_t g = r->meta.highest_gen;
  pthread_mutex_unlock(&w->meta_mu);
  return g;
}

/* Apply one change to a copy, persist it, and only then adopt it. */
int region__meta_update(struct region *r, const uint64_t *gen,
                        const struct proto_kcv *kcv, const uint8_t *uuid,
                        const uint32_t *count)
{
  pthread_mutex_lock(&r->meta_mu);
  struct region_meta m = r->meta;
  if (count)
    m.def.extent_count = *count;
  if (gen)
    m.highest_gen = *gen;
  if (kcv) {
    m.kcv = *kcv;
    m.has_kcv = true;
  }
  if (uuid) {
    if (!geom_uuid_is_zero(m.def.uuid)) {
      int same = memcmp(m.def.uuid, uuid, PROTO_UUID_LEN) == 0;
      pthread_mutex_unlock(&r->meta_mu);
      return same ? 0 : -EEXIST;
    }
    memcpy(m.def.uuid, uuid, PROTO_UUID_LEN);
  }
  int ret = region_meta_write(r->dirfd, &m);
  if (ret == 0)
    r->meta = m;
  pthread_mutex_unlock(&r->meta_mu);
  return ret;
}

int region_set_highest_gen(struct region *r, uint64_t gen)
{
  return region__meta_update(r, &gen, NULL, NULL, NULL);
}

int region_get_kcv(const struct region *r, struct proto_kcv *kcv)
{
  struct region *w = (struct region *) r;
  pthread_mutex_lock(&w->meta_mu);
  int has = r->meta.has_kcv;
  if (has)
    *kcv = r->meta.kcv;
  pthread_mutex_unlock(&w->meta_mu);
  return has;
}

int region_set_kcv(struct region *r, const struct proto_kcv *kcv)
{
  return region__meta_update(r, NULL, kcv, NULL, NULL);
}

int region_set_uuid(struct region *r, const uint8_t uuid[PROTO_UUID_LEN])
{
  if (geom_uuid_is_zero(uuid))
    return -EINVAL;
  return region__meta_update(r, NULL, NULL, uuid, NULL);
}
