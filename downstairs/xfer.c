/* crucible-c downstairs: raw image export and import (see xfer.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/geom.h"
#include "../common/hash.h"
#include "xfer.h"

/* One chunk's buffers; ownership: xfer_* allocate and free them. */
struct chunk {
  uint8_t *data;
  struct proto_ctx *ctxs;
  uint32_t bs;
};

static int chunk_alloc(struct chunk *c, uint32_t bs)
{
  c->bs = bs;
  c->data = malloc((size_t) XFER_CHUNK_BLOCKS * bs);
  c->ctxs = calloc(XFER_CHUNK_BLOCKS, sizeof *c->ctxs);
  return c->data && c->ctxs ? 0 : -ENOMEM;
}

static void chunk_free(struct chunk *c)
{
  free(c->data);
  free(c->ctxs);
}

static bool all_zero(const uint8_t *p, size_t len)
{
  return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* pwrite all of buf at off, retrying short writes. */
static int write_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
  while (len > 0) {
    ssize_t n = pwrite(fd, buf, len, (off_t) off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    buf += n, len -= (size_t) n, off += (uint64_t) n;
  }
  return 0;
}

/* pread up to len bytes at off; zero-fill past end of file. */
static int read_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
  while (len > 0) {
    ssize_t n = pread(fd, buf, len, (off_t) off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0) {
      memset(buf, 0, len);
      return 0;
    }
    buf += n, len -= (size_t) n, off += (uint64_t) n;
  }
  return 0;
}

/* Read n blocks at lba and check each written one against its hash, so a
 * corrupt replica is never exported as if it were good: -EBADMSG and
 * *bad = the first bad LBA. */
static int read_checked(struct region *r, const char *snap, struct chunk *c,
                        uint64_t lba, uint32_t n, uint64_t *bad)
{
  int ret = snap ? region_snapshot_read(r, snap, lba, n, c->ctxs, c->data)
                 : region_read(r, lba, n, c->ctxs, c->data);
  if (ret < 0)
    return ret;
  for (uint32_t i = 0; i < n; i++) {
    const uint8_t *b = c->data + (size_t) i * c->bs;
    if ((c->ctxs[i].flags & PROTO_CTX_PRESENT) &&
        c->ctxs[i].hash != crypt_hash_plain(b, c->bs)) {
      *bad = lba + i;
      return -EBADMSG;
    }
  }
  return 0;
}

/* The size of snapshot snap in blocks, or -ENOENT. */
static int64_t snap_blocks(struct region *r, const char *snap)
{
  static struct region_snap_info info[64];
  unsigned n;
  int ret = region_snapshot_list(r, info, 64, &n);
  for (unsigned i = 0; ret == 0 && i < n; i++)
    if (strcmp(info[i].name, snap) == 0)
      return (int64_t) (info[i].extent_count * region_def(r)->extent_size);
  return ret < 0 ? ret : -ENOENT;
}

int xfer_export(struct region *r, const char *snap, int fd, struct progress *p,
                uint64_t *bad)
{
  const struct proto_region *d = region_def(r);
  uint64_t blocks = geom_blocks(d), bs = d->block_size;
  if (snap) {
    int64_t sb = snap_blocks(r, snap);
    if (sb < 0)
      return (int) sb;
    blocks = (uint64_t) sb;
  }
  struct chunk c;
  struct stat st;
  bool sparse;
  int ret;

  if (d->encrypted)
    return -EPERM;
  if (fstat(fd, &st) < 0)
    return -errno;
  /* A regular file is emptied and extended, so zero chunks stay holes. */
  sparse = S_ISREG(st.st_mode);
  if (sparse &&
      (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t) (blocks * bs)) < 0))
    return -errno;
  if ((ret = chunk_alloc(&c, d->block_size)) < 0)
    goto out;
  for (uint64_t lba = 0; lba < blocks && ret == 0;) {
    uint64_t left = geom_left_in_extent(d, lba);
    uint32_t n = left < XFER_CHUNK_BLOCKS ? (uint32_t) left : XFER_CHUNK_BLOCKS;
    ret = read_checked(r, snap, &c, lba, n, bad);
    if (ret == 0 && !(sparse && all_zero(c.data, n * bs)))
      ret = write_all(fd, c.data, n * bs, lba * bs);
    lba += n;
    progress_update(p, lba * bs);
  }
  if (ret == 0 && fsync(fd) < 0 && errno != EINVAL)
    ret = -errno; /* EINVAL: a pipe or character device */
out:
  chunk_free(&c);
  return ret;
}

/* Write (or trim) the blocks of one chunk, runs of like blocks at a time. */
static int import_chunk(struct region *r, struct chunk *c, uint64_t lba,
                        uint32_t n, bool blank, uint64_t gen, uint64_t *seq)
{
  uint32_t i = 0;
  while (i < n) {
    bool zero = all_zero(c->data + (size_t) i * c->bs, c->bs);
    uint32_t j = i + 1;
    while (j < n && all_zero(c->data + (size_t) j * c->bs, c->bs) == zero)
      j++;
    int ret = 0;
    if (zero && !blank) {
      ret = region_trim(r, lba + i, j - i, 0);
    } else if (!zero) {
      if (*seq + (j - i) >= (1ull << 32))
        return -EFBIG;
      for (uint32_t k = i; k < j; k++) {
        memset(&c->ctxs[k], 0, sizeof c->ctxs[k]);
        c->ctxs[k].version = (gen << 32) | ++*seq;
        c->ctxs[k].hash = crypt_hash_plain(c->data + (size_t) k * c->bs, c->bs);
        c->ctxs[k].flags = PROTO_CTX_PRESENT;
      }
      ret = region_write(r, lba + i, j - i, c->ctxs + i,
                         c->data + (size_t) i * c->bs);
    }
    if (ret < 0)
      return ret;
    i = j;
  }
  return 0;
}

/* Record gen and flush everything with a number above every extent's. */
static int import_finish(struct region *r, uint64_t gen)
{
  const struct proto_region *d = region_def(r);
  struct proto_extent_state *st = calloc(d->extent_count, sizeof *st);
  uint64_t flush = 0;
  int ret;
  if (st == NULL)
    return -ENOMEM;
  ret = region_extent_states(r, st);
  for (uint32_t i = 0; ret == 0 && i < d->extent_count; i++)
    if (st[i].flush > flush)
      flush = st[i].flush;
  free(st);
  if (ret == 0)
    ret = region_set_highest_gen(r, gen);
  if (ret == 0)
    ret = region_flush(r, flush + 1, gen);
  return ret;
}

int xfer_import(struct region *r, int fd, uint64_t size, bool blank,
                struct progress *p)
{
  const struct proto_region *d = region_def(r);
  uint64_t blocks = geom_blocks(d), bs = d->block_size, seq = 0;
  uint64_t gen = region_highest_gen(r) + 1;
  struct chunk c;
  int ret;

  if (d->encrypted)
    return -EPERM;
  if (size > geom_size(d))
    return -EFBIG;
  if (gen >= (1ull << 32))
    return -EOVERFLOW;
  if ((ret = chunk_alloc(&c, d->block_size)) < 0)
    goto out;
  /* Past the image end everything is zero: a blank region is done there. */
  uint64_t end = blank ? (size + bs - 1) / bs : blocks;
  for (uint64_t lba = 0; lba < end && ret == 0;) {
    uint64_t left = geom_left_in_extent(d, lba);
    uint32_t n = left < XFER_CHUNK_BLOCKS ? (uint32_t) left : XFER_CHUNK_BLOCKS;
    if (lba + n > end)
      n = (uint32_t) (end - lba);
    uint64_t off = lba * bs, want = 0;
    if (off < size)
      want = size - off < n * bs ? size - off : n * bs;
    memset(c.data + want, 0, n * bs - want);
    ret = read_full(fd, c.data, want, off);
    if (ret == 0)
      ret = import_chunk(r, &c, lba, n, blank, gen, &seq);
    lba += n;
    progress_update(p, off + want);
  }
  if (ret == 0)
    ret = import_finish(r, gen);
out:
  chunk_free(&c);
  return ret;
}
