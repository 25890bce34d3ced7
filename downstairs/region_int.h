/* crucible-c downstairs: the region's private structures, shared by
 * region.c (the extent table, IO), region_meta.c (region.json's changing
 * values), region_flush.c (FLUSH) and region_snap.c (snapshots).  Nobody
 * else includes this.
 */
#ifndef CRUCIBLE_REGION_INT_H
#define CRUCIBLE_REGION_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "extent.h"
#include "region.h"
#include "region_json.h"
#include "snapshot.h"

/* One extent slot: allocated on first use, freed by region_close. */
struct rext {
  struct ext x;
  pthread_mutex_t mu;
  unsigned users; /* pins, under r->mu */
  bool in_lru;    /* open and on the list, under r->mu */
  struct rext *prev, *next;
  /* The newest snapshot seq this extent is known preserved for (copied
   * into it, or found copied): a change needs no copy while it equals
   * region.snap_newest.  Under mu. */
  uint32_t snap_seq;
};

struct region {
  char *dir;
  int dirfd; /* holds the flock that keeps a second daemon out */
  pthread_mutex_t meta_mu;
  struct region_meta meta;
  uint64_t zero_hash;        /* crypt_hash_plain of a zero block */
  pthread_mutex_t extend_mu; /* one region_extend at a time */
  pthread_mutex_t mu;
  struct rext **ext;        /* extent_count slots, NULL until first use */
  struct rext *head, *tail; /* LRU of open extents, most recent at head */
  unsigned nopen;
  /* Snapshots (region_snap.c): the catalog under snap_mu; snap_newest
   * (the newest seq, 0 for none, and its extent count) also read without
   * it, __atomic, by the write paths: create and delete change them only
   * as barriers, with no IO running. */
  pthread_mutex_t snap_mu;
  struct snap_cat snaps;
  uint32_t snap_newest;
  uint32_t snap_newest_count;
};

/* Pin and lock extent eid (opening its files if want_open; -EINVAL
 * beyond the region), and release it. */
int region__ext_get(struct region *r, uint32_t eid, bool want_open,
                    struct rext **out);
void region__ext_put(struct region *r, struct rext *re);

/* Open: read the catalog (snap_cat_open).  Close: nothing to free. */
int region__snap_open(struct region *r);
/* Before a change to the open, locked extent re: copy it into the newest
 * snapshot unless it is preserved there already (the chain rule,
 * snapshot.h).  0 or -errno (then the change must not happen). */
int region__snap_preserve(struct region *r, struct rext *re);
/* Would region__snap_preserve have work to do (a copy or a look)? */
bool region__snap_pending(struct region *r, const struct rext *re);

/* region_meta.c: apply the non-NULL changes to a copy of r->meta,
 * persist it (region.json, atomically), then adopt it.  uuid: -EEXIST if
 * the region has another one already. */
int region__meta_update(struct region *r, const uint64_t *gen,
                        const struct proto_kcv *kcv, const uint8_t *uuid,
                        const uint32_t *count);
#endif
