/* crucible-c downstairs: a region (one replica), its region.json and the
 * bounded set of open extents.
 *
 * THE INVARIANT (crash rule): after kill -9 at any instant, every block
 * that has contexts matches (crypt_hash_plain of its bytes on disk equals
 * the on_disk_hash of) at least one of them, and a block without contexts
 * holds zeroes.  The state "unwritten" is itself a context (version 0,
 * on_disk_hash = hash of a zero block), added by a block's first write
 * and by trim, so a crash before the data lands still matches.  How each
 * path keeps it is in extent.c's header.  Closing an extent (LRU
 * eviction, region_close) keeps every context.  Power loss (not kill -9)
 * between flushes may break the rule for unflushed blocks; verify reports
 * those and the upstairs heals them from another replica.
 *
 * Creation is eager: region_create writes seed.db and, for every extent,
 * the sparse data file and a copy of seed.db (about 12 KB), then one
 * syncfs(), then region.json last, atomically: a directory with a
 * region.json is always a complete region.  8192 extents (1 TiB) take
 * about a second.
 *
 * Open extents: at most REGION_MAX_OPEN_EXTENTS (LRU, clean ones evicted
 * first; a pinned extent is never evicted, so the bound may be exceeded
 * briefly by the number of worker threads).  Eviction only closes: flush
 * numbers are set by region_flush alone, and the next open of a dirty
 * extent rehashes it.  Each extent keeps its cached (gen, flush, dirty)
 * across close, so region_flush also reaches evicted dirty extents;
 * extents never touched since region_open are assumed clean until
 * region_extent_states (which the upstairs always calls before
 * activating) has read them.  The repair mark (region_extent_mark) is
 * cached the same way; region_flush passes over a marked extent, open or
 * not (extent.c, "THE MARK").
 *
 * region.json is read and written by region_json.c; extent.c does the
 * per-extent work.
 *
 * Locks: r->mu guards the extent table, pin counts and the LRU list;
 * each extent's own mutex guards its files (held across ext_* calls);
 * r->meta_mu guards highest_gen/kcv and region.json.  Order: never hold
 * r->mu while taking an extent mutex.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/geom.h"
#include "../common/hash.h"
#include "../common/list.h"
#include "../common/log.h"
#include "extent.h"
#include "fsutil.h"
#include "region.h"
#include "region_int.h"
#include "region_json.h"
#include "repair.h"
#include "snapshot.h"

#define REGION_JSON "region.json"

/* --- create / open / close -------------------------------------------- */

static int not_empty(int dirfd, const char *name, void *arg)
{
  (void) dirfd, (void) name, (void) arg;
  return -ENOTEMPTY;
}

int region_dir_empty(int dirfd)
{
  return fs_dir_each(dirfd, ".", false, not_empty, NULL);
}

static int read_whole(const char *path, uint8_t **out, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0)
    return -errno;
  int r = fstat(fd, &st) < 0 ? -errno : 0;
  *out = r == 0 ? malloc((size_t) st.st_size + 1) : NULL;
  if (r == 0 && *out == NULL)
    r = -ENOMEM;
  if (r == 0) {
    ssize_t n = pread(fd, *out, (size_t) st.st_size, 0);
    if (n != st.st_size)
      r = n < 0 ? -errno : -EIO;
    *len = (size_t) st.st_size;
  }
  close(fd);
  if (r < 0) {
    free(*out);
    *out = NULL;
  }
  return r;
}

/* seed.db, then every extent from it, then one syncfs (one flush of the
 * whole filesystem instead of two fsyncs per extent). */
static int create_extents(const char *dir, int dirfd,
                          const struct proto_region *def)
{
  char path[PATH_MAX];
  uint8_t *seed = NULL;
  size_t seed_len = 0;
  snprintf(path, sizeof path, "%s/seed.db", dir);
  int r = ext_seed_create(path);
  if (r == 0)
    r = read_whole(path, &seed, &seed_len);
  for (uint32_t eid = 0; r == 0 && eid < def->extent_count; eid++) {
    r = ext_create(dirfd, eid, def->extent_size * def->block_size, seed,
                   seed_len);
    if (r < 0)
      log_error("%s: extent %u: %s", dir, eid, log_strerror(-r));
  }
  free(seed);
  if (r == 0 && syncfs(dirfd) < 0)
    r = -errno;
  return r;
}

int region_create(const char *dir, struct proto_region *def)
{
  struct region_meta m = {.def = *def};
  if (geom_check(def) < 0)
    return -EINVAL;
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return -errno;
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return -errno;
  int r = 0;
  if (faccessat(dirfd, REGION_JSON, F_OK, 0) == 0)
    r = -EEXIST;
  if (r == 0)
    r = region_dir_empty(dirfd);
  if (r == 0)
    r = create_extents(dir, dirfd, &m.def);
  /* region.json last: a directory holding one is a complete region. */
  if (r == 0)
    r = region_meta_write(dirfd, &m);
  close(dirfd);
  if (r == 0)
    *def = m.def;
  return r;
}

/* Each open extent holds ~4 descriptors (data, db, -wal, -shm) and each
 * connection one more; the soft limit (often 1024) is an arbitrary
 * default while the hard limit is what the admin allows: use it all. */
static void raise_nofile(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
      log_debug("setrlimit(RLIMIT_NOFILE): %m");
  }
}

int region_open(const char *dir, struct region **out)
{
  struct region *r = calloc(1, sizeof *r);
  int ret = r ? 0 : -ENOMEM;
  *out = NULL;
  if (ret < 0)
    return ret;
  r->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  r->dir = strdup(dir);
  if (r->dirfd < 0)
    ret = -errno;
  else if (r->dir == NULL)
    ret = -ENOMEM;
  /* Two daemons on one region would interleave writes and contexts. */
  else if (flock(r->dirfd, LOCK_EX | LOCK_NB) < 0)
    ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
  if (ret == 0)
    ret = region_meta_read(r->dirfd, &r->meta);
  if (ret == 0) /* finish or discard interrupted repair copies */
    ret = ds_repair_recover(r->dirfd, &r->meta.def);
  if (ret == 0) /* snapshots: finish deletes, drop partial copies */
    ret = region__snap_open(r);
  if (ret == 0) {
    r->ext = calloc(r->meta.def.extent_count, sizeof *r->ext);
    uint8_t *zero = calloc(1, r->meta.def.block_size);
    if (r->ext == NULL || zero == NULL)
      ret = -ENOMEM;
    else
      r->zero_hash = crypt_hash_plain(zero, r->meta.def.block_size);
    free(zero);
  }
  if (ret < 0) {
    if (r->dirfd >= 0)
      close(r->dirfd);
    free(r->dir);
    free(r->ext);
    free(r);
    return ret;
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_mutex_init(&r->meta_mu, NULL);
  pthread_mutex_init(&r->extend_mu, NULL);
  pthread_mutex_init(&r->snap_mu, NULL);
  raise_nofile();
  *out = r;
  return 0;
}

void region_close(struct region *r)
{
  if (r == NULL)
    return;
  for (uint32_t eid = 0; eid < r->meta.def.extent_count; eid++) {
    struct rext *re = r->ext[eid];
    if (re == NULL)
      continue;
    assert(re->users == 0);
    ext_close(&re->x);
    ext_map_forget(&re->x);
    pthread_mutex_destroy(&re->mu);
    free(re);
  }
  free(r->ext);
  close(r->dirfd); /* releases the flock */
  pthread_mutex_destroy(&r->mu);
  pthread_mutex_destroy(&r->meta_mu);
  pthread_mutex_destroy(&r->extend_mu);
  pthread_mutex_destroy(&r->snap_mu);
  free(r->dir);
  free(r);
}

int region_extend(struct region *r, uint32_t count)
{
  pthread_mutex_lock(&r->extend_mu);
  pthread_mutex_lock(&r->meta_mu);
  struct proto_region def = r->meta.def;
  pthread_mutex_unlock(&r->meta_mu);
  uint32_t old = def.extent_count;
  int ret = 0;
  def.extent_count = count;
  if (count < old || geom_check(&def) < 0)
    ret = -EINVAL;
  if (ret < 0 || count == old) {
    pthread_mutex_unlock(&r->extend_mu);
    return ret;
  }
  char path[PATH_MAX];
  uint8_t *seed = NULL;
  size_t seed_len = 0;
  snprintf(path, sizeof path, "%s/seed.db", r->dir);
  ret = read_whole(path, &seed, &seed_len);
  for (uint32_t eid = old; ret == 0 && eid < count; eid++) {
    ret = ext_remove(r->dirfd, eid);
    if (ret == 0)
      ret = ext_create(r->dirfd, eid, def.extent_size * def.block_size, seed,
                       seed_len);
    if (ret < 0)
      log_error("%s: extend: extent %u: %s", r->dir, eid, log_strerror(-ret));
  }
  free(seed);
  if (ret == 0 && syncfs(r->dirfd) < 0)
    ret = -errno;
  /* The table first (its new slots stay unused until the count says
   * they exist), then the count, persisted. */
  if (ret == 0) {
    pthread_mutex_lock(&r->mu);
    struct rext **t = realloc(r->ext, count * sizeof *t);
    if (t) {
      memset(t + old, 0, (count - old) * sizeof *t);
      r->ext = t;
    }
    pthread_mutex_unlock(&r->mu);
    ret = t ? 0 : -ENOMEM;
  }
  if (ret == 0)
    ret = region__meta_update(r, NULL, NULL, NULL, &count);
  if (ret == 0)
    log_info("%s: extended from %u to %u extents", r->dir, old, count);
  pthread_mutex_unlock(&r->extend_mu);
  return ret;
}

/* --- the extent table and LRU ----------------------------------------- */

static void lru_unlink(struct region *r, struct rext *re)
{
  DLIST_UNLINK(r->head, r->tail, re);
}

static void lru_push(struct region *r, struct rext *re)
{
  re->prev = NULL;
  re->next = r->head;
  if (r->head)
    r->head->prev = re;
  r->head = re;
  if (r->tail == NULL)
    r->tail = re;
}

/* Under r->mu: the least recently used idle open extent, clean ones
 * first (closing a dirty one costs a rehash at its next open). */
static struct rext *lru_victim(struct region *r)
{
  struct rext *dirty = NULL;
  for (struct rext *re = r->tail; re; re = re->prev)
    if (re->users == 0) {
      if (!re->x.meta.dirty)
        return re;
      if (dirty == NULL)
        dirty = re;
    }
  return dirty;
}

/* Make room for one more open extent.  Called with no lock held. */
static void lru_evict(struct region *r)
{
  for (;;) {
    pthread_mutex_lock(&r->mu);
    struct rext *v = r->nopen >= REGION_MAX_OPEN_EXTENTS ? lru_victim(r) : NULL;
    if (v == NULL) {
      pthread_mutex_unlock(&r->mu);
      return;
    }
    lru_unlink(r, v);
    v->in_lru = false;
    r->nopen--;
    v->users++;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&v->mu);
    ext_close(&v->x); /* keeps every context: see the header comment */
    pthread_mutex_unlock(&v->mu);
    pthread_mutex_lock(&r->mu);
    v->users--;
    pthread_mutex_unlock(&r->mu);
  }
}

/* Pin extent eid and lock it; if want_open, open its files too.  On
 * success the caller owns the extent's mutex until region__ext_put.
 * -EINVAL for an extent beyond the region. */
int region__ext_get(struct region *r, uint32_t eid, bool want_open,
                    struct rext **out)
{
  if (eid >= r->meta.def.extent_count)
    return -EINVAL;
  pthread_mutex_lock(&r->mu);
  struct rext *re = r->ext[eid];
  if (re == NULL) {
    re = calloc(1, sizeof *re);
    if (re == NULL) {
      pthread_mutex_unlock(&r->mu);
      return -ENOMEM;
    }
    re->x.eid = eid;
    re->x.block_size = r->meta.def.block_size;
    re->x.extent_size = r->meta.def.extent_size;
    re->x.zero_hash = r->zero_hash;
    re->x.fd = -1;
    pthread_mutex_init(&re->mu, NULL);
    r->ext[eid] = re;
  }
  re->users++;
  bool need_open = want_open && !re->in_lru;
  if (re->in_lru && re != r->head) {
    lru_unlink(r, re);
    lru_push(r, re);
  }
  pthread_mutex_unlock(&r->mu);
  if (need_open)
    lru_evict(r);
  pthread_mutex_lock(&re->mu);
  if (want_open && re->x.db == NULL) {
    int ret = ext_open(&re->x, r->dirfd, r->dir);
    if (ret < 0) {
      pthread_mutex_unlock(&re->mu);
      pthread_mutex_lock(&r->mu);
      re->users--;
      pthread_mutex_unlock(&r->mu);
      return ret;
    }
    pthread_mutex_lock(&r->mu);
    lru_push(r, re);
    re->in_lru = true;
    r->nopen++;
    pthread_mutex_unlock(&r->mu);
  }
  *out = re;
  return 0;
}

void region__ext_put(struct region *r, struct rext *re)
{
  pthread_mutex_unlock(&re->mu);
  pthread_mutex_lock(&r->mu);
  re->users--;
  pthread_mutex_unlock(&r->mu);
}

/* --- IO --------------------------------------------------------------- */

/* -EINVAL unless [lba, lba+n) is non-empty and inside one extent. */
static int check_range(const struct region *r, uint64_t lba, uint64_t n)
{
  const struct proto_region *d = &r->meta.def;
  if (n == 0 || lba >= geom_blocks(d) || n > geom_left_in_extent(d, lba))
    return -EINVAL;
  return 0;
}

/* One write's checks, before anything is touched (all or nothing): in
 * range, no version 0 (the unwritten row's, extent.c), every block's hash.
 * Fills x (odh malloc'd into *odh).  0 or -errno. */
static int write_check(struct region *r, const struct region_wr *w,
                       uint64_t **odh, struct ext_wr *x)
{
  const struct proto_region *d = &r->meta.def;
  size_t bs = d->block_size;
  int ret = check_range(r, w->lba, w->n);
  if (ret < 0)
    return ret;
  *odh = malloc((size_t) w->n * sizeof **odh);
  if (*odh == NULL)
    return -ENOMEM;
  for (uint32_t i = 0; i < w->n; i++) {
    const uint8_t *b = w->data + i * bs;
    const struct proto_ctx *c = &w->ctxs[i];
    if (c->version == 0)
      return -EINVAL;
    (*odh)[i] = crypt_hash_plain(b, bs);
    uint64_t h =
        d->encrypted ? crypt_hash_cipher(c->nonce, c->tag, b, bs) : (*odh)[i];
    if (h != c->hash)
      return -EBADMSG;
  }
  *x = (struct ext_wr){.blk = w->lba % d->extent_size,
                       .n = w->n,
                       .ctxs = w->ctxs,
                       .odh = *odh,
                       .data = w->data};
  return 0;
}

static int rext_get_now(struct region *r, uint32_t eid, struct rext **out);

/* now: only without waiting (region_write_group_now), else -EAGAIN. */
static int write_group(struct region *r, struct region_wr *w, unsigned nw,
                       bool now)
{
  const struct proto_region *d = &r->meta.def;
  struct ext_wr *x = calloc(nw, sizeof *x);
  uint64_t **odh = calloc(nw, sizeof *odh);
  unsigned live = 0;
  for (unsigned k = 0; k < nw; k++) {
    w[k].err = !x || !odh ? -ENOMEM : write_check(r, &w[k], &odh[k], &x[k]);
    if (!w[k].err && geom_extent_of(d, w[k].lba) != geom_extent_of(d, w[0].lba))
      w[k].err = -EINVAL; /* the caller groups by extent */
    if (x)
      x[k].err = w[k].err ? w[k].err : 0;
    live += !w[k].err;
  }
  struct rext *re;
  uint32_t eid = geom_extent_of(d, w[0].lba);
  int ret = !live ? 0
            : now ? rext_get_now(r, eid, &re)
                  : region__ext_get(r, eid, true, &re);
  if (live && ret == 0 && now &&
      (!ext_write_now_ok(&re->x, x, nw) || region__snap_pending(r, re))) {
    region__ext_put(r, re);
    ret = -EAGAIN;
  }
  if (live && ret == 0 && (ret = region__snap_preserve(r, re)) < 0)
    region__ext_put(r, re);
  if (live && ret == 0) {
    ext_write_group(&re->x, x, nw);
    region__ext_put(r, re);
  }
  bool again = now && (!x || !odh || ret == -EAGAIN);
  for (unsigned k = 0; k < nw; k++) {
    if (!w[k].err)
      w[k].err = ret < 0 ? ret : x[k].err;
    if (odh)
      free(odh[k]);
  }
  free(odh);
  free(x);
  return again ? -EAGAIN : 0;
}

void region_write_group(struct region *r, struct region_wr *w, unsigned nw)
{
  write_group(r, w, nw, false);
}

int region_write_group_now(struct region *r, struct region_wr *w, unsigned nw)
{
  return write_group(r, w, nw, true);
}

int region_write(struct region *r, uint64_t lba, uint32_t n,
                 const struct proto_ctx *ctxs, const uint8_t *data)
{
  struct region_wr w = {lba, n, ctxs, data, 0};
  region_write_group(r, &w, 1);
  return w.err;
}

/* Check that [lba, lba+n) lies inside one extent and take that extent
 * (release with region__ext_put).  0 or -errno. */
static int io_extent(struct region *r, uint64_t lba, uint32_t n,
                     struct rext **re)
{
  int ret = check_range(r, lba, n);
  if (ret == 0)
    ret = region__ext_get(r, geom_extent_of(&r->meta.def, lba), true, re);
  return ret;
}

/* region__ext_get of an extent already open whose lock is free, else -EAGAIN
 * (never waits, never opens). */
static int rext_get_now(struct region *r, uint32_t eid, struct rext **out)
{
  pthread_mutex_lock(&r->mu);
  struct rext *re = r->ext[eid];
  if (re == NULL || !re->in_lru || pthread_mutex_trylock(&re->mu) != 0) {
    pthread_mutex_unlock(&r->mu);
    return -EAGAIN;
  }
  re->users++;
  if (re != r->head) {
    lru_unlink(r, re);
    lru_push(r, re);
  }
  pthread_mutex_unlock(&r->mu);
  *out = re;
  return 0;
}

int region_read_now(struct region *r, uint64_t lba, uint32_t n,
                    struct proto_ctx *ctxs, uint8_t *data)
{
  struct rext *re;
  int ret = check_range(r, lba, n);
  if (ret == 0)
    ret = rext_get_now(r, geom_extent_of(&r->meta.def, lba), &re);
  if (ret < 0)
    return ret;
  uint64_t blk = lba % r->meta.def.extent_size;
  if (ext_pending(&re->x, blk, n))
    ret = -EAGAIN; /* its journal must fold first: a transaction */
  else
    ret = data ? ext_read_cached(&re->x, blk, n, ctxs, data)
               : ext_versions(&re->x, blk, n, ctxs);
  region__ext_put(r, re);
  return ret;
}

int region_read(struct region *r, uint64_t lba, uint32_t n,
                struct proto_ctx *ctxs, uint8_t *data)
{
  struct rext *re;
  int ret = io_extent(r, lba, n, &re);
  if (ret < 0)
    return ret;
  ret = data ? ext_read(&re->x, lba % r->meta.def.extent_size, n, ctxs, data)
             : ext_versions(&re->x, lba % r->meta.def.extent_size, n, ctxs);
  region__ext_put(r, re);
  return ret;
}

int region_trim(struct region *r, uint64_t lba, uint32_t n, uint64_t version)
{
  struct rext *re;
  int ret = io_extent(r, lba, n, &re);
  if (ret < 0)
    return ret;
  ret = region__snap_preserve(r, re);
  if (ret == 0)
    ret = ext_trim(&re->x, lba % r->meta.def.extent_size, n, version);
  region__ext_put(r, re);
  return ret;
}

int region_extent_map(struct region *r, uint64_t lba, uint32_t n, uint8_t *bits)
{
  struct rext *re;
  uint32_t eid = geom_extent_of(&r->meta.def, lba);
  int ret = check_range(r, lba, n);
  if (ret == 0)
    ret = region__ext_get(r, eid, false, &re);
  if (ret < 0)
    return ret;
  /* Known (kept across eviction), or an unopened extent with nothing
   * allocated: no SQLite. */
  if (!re->x.map_known && re->x.db == NULL)
    ret = ext_map_probe(&re->x, r->dirfd);
  if (ret == 0 && !re->x.map_known) {
    region__ext_put(r, re);
    ret = region__ext_get(r, eid, true, &re);
    if (ret < 0)
      return ret;
    ret = ext_map_load(&re->x);
  }
  if (ret == 0)
    ext_map_get(&re->x, lba % r->meta.def.extent_size, n, bits);
  region__ext_put(r, re);
  return ret;
}

int region_extent_flush(struct region *r, uint32_t eid, uint64_t flush_no,
                        uint64_t gen)
{
  struct rext *re;
  int ret = region__ext_get(r, eid, true, &re);
  if (ret < 0)
    return ret;
  ret = ext_flush(&re->x, flush_no, gen, true);
  region__ext_put(r, re);
  return ret;
}

int region_extent_mark(struct region *r, uint32_t eid)
{
  struct rext *re;
  int ret = region__ext_get(r, eid, true, &re);
  if (ret < 0)
    return ret;
  ret = region__snap_preserve(r, re);
  if (ret == 0)
    ret = ext_mark(&re->x);
  region__ext_put(r, re);
  return ret;
}

bool region_extent_is_open(struct region *r, uint32_t eid)
{
  pthread_mutex_lock(&r->mu);
  bool open =
      eid < r->meta.def.extent_count && r->ext[eid] && r->ext[eid]->in_lru;
  pthread_mutex_unlock(&r->mu);
  return open;
}

int region_extent_close(struct region *r, uint32_t eid, bool forget)
{
  struct rext *re;
  int ret = region__ext_get(r, eid, false, &re);
  if (ret < 0)
    return ret;
  pthread_mutex_lock(&r->mu);
  bool was_open = re->in_lru;
  if (was_open) {
    lru_unlink(r, re);
    re->in_lru = false;
    r->nopen--;
  }
  pthread_mutex_unlock(&r->mu);
  if (was_open)
    ext_close(&re->x);
  if (forget) {
    re->x.meta_known = false;
    ext_map_forget(&re->x);
  }
  region__ext_put(r, re);
  return 0;
}

int region_dirfd(const struct region *r)
{
  return r->dirfd;
}

int region_extent_states(struct region *r, struct proto_extent_state *states)
{
  for (uint32_t eid = 0; eid < r->meta.def.extent_count; eid++) {
    struct rext *re;
    int ret = region__ext_get(r, eid, false, &re);
    if (ret < 0)
      return ret;
    if (!re->x.meta_known) {
      ret = ext_read_meta(r->dir, eid, false, &re->x.meta, &re->x.repair);
      re->x.meta_known = ret == 0;
    }
    states[eid] = re->x.meta;
    region__ext_put(r, re);
    if (ret < 0) {
      log_error("%s: extent %u: %s", r->dir, eid, log_strerror(-ret));
      return ret;
    }
  }
  return 0;
}

int region_verify_extent(struct region *r, uint32_t eid,
                         void (*bad)(uint32_t eid, uint64_t block, void *arg),
                         void *arg, uint64_t *checked)
{
  struct rext *re;
  *checked = 0;
  int ret = region__ext_get(r, eid, true, &re);
  if (ret < 0)
    return ret;
  ret = ext_verify(&re->x, bad, arg, checked);
  region__ext_put(r, re);
  return ret;
}
