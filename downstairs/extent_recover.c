/* crucible-c downstairs: opening a dirty extent (extent.c "THE
 * INVARIANT", the "open of a dirty extent" case): reread every block
 * that has rows and keep the one matching the disk. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../common/hash.h"
#include "../common/log.h"
#include "extent.h"
#include "extent_int.h"

/* One (block, on_disk_hash) row; version and unwritten tell a trim's
 * unwritten row (version != 0) apart. */
struct row {
  uint64_t block, hash, version;
  bool unwritten;
};

/* The block's unflushed trim matched: keep its row (reconciliation needs
 * the trim's version to tell it from an older write elsewhere), drop the
 * others, and remember it so the next flush drops it as usual. */
static int keep_trim(struct ext *e, uint64_t block, size_t nrows)
{
  int r = 0;
  if (nrows > 1) {
    sqlite3_bind_int64(e->st[ST_DELETE_STALE], 1, (sqlite3_int64) block);
    sqlite3_bind_int64(e->st[ST_DELETE_STALE], 2, (sqlite3_int64) e->zero_hash);
    r = ext__st_run(e, ST_DELETE_STALE);
  }
  if (r == 0 && ext__seen_set(&e->seen, (uint32_t) block, EXT_SEEN_LIVE,
                              e->zero_hash) < 0)
    log_warn("extent %u: out of memory remembering block %" PRIu64, e->eid,
             block);
  return r;
}

/* Decide one block after a crash: keep the row matching the disk, or all
 * of them if none does (verify will report the block; *nbad counts it). */
static int recover_block(struct ext *e, const struct row *rows, size_t nrows,
                         uint8_t *buf, size_t *nbad)
{
  uint64_t blk = rows[0].block;
  int r =
      ext__pread_full(e->fd, buf, e->block_size, (off_t) (blk * e->block_size));
  if (r < 0)
    return r;
  uint64_t disk = crypt_hash_plain(buf, e->block_size);
  for (size_t i = 0; i < nrows; i++) {
    if (rows[i].hash != disk)
      continue;
    if (rows[i].unwritten && rows[i].version != 0)
      return keep_trim(e, blk, nrows);
    return nrows > 1 || disk == e->zero_hash ? ext__keep_only(e, blk, disk) : 0;
  }
  log_warn("extent %u block %" PRIu64 ": none of %zu contexts matches the "
           "data; keeping them all",
           e->eid, blk, nrows);
  (*nbad)++;
  return 0;
}

/* Every (block, on_disk_hash) row, in block order, into *out (malloc'd,
 * caller frees). */
static int collect_rows(struct ext *e, struct row **out, size_t *n)
{
  sqlite3_stmt *s = e->st[ST_ALL_ROWS];
  size_t cap = 0;
  int rc;
  *out = NULL;
  *n = 0;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      struct row *p = realloc(*out, cap * sizeof **out);
      if (p == NULL) {
        sqlite3_reset(s);
        return -ENOMEM;
      }
      *out = p;
    }
    (*out)[*n].block = (uint64_t) sqlite3_column_int64(s, 0);
    (*out)[*n].hash = (uint64_t) sqlite3_column_int64(s, 1);
    (*out)[*n].version = (uint64_t) sqlite3_column_int64(s, 2);
    (*out)[(*n)++].unwritten = sqlite3_column_int(s, 3) != 0;
  }
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? 0 : ext__sql_err(rc);
}

/* Opening a dirty extent: the last run may have died anywhere between a
 * commit and its pwrite or hole punch, so a block can hold several rows,
 * of which one matches (I1).  Make the bytes durable first (we are about
 * to trust them), then reread every block that has rows (single-row
 * blocks too: an unwritten-only block loses its row, and a block written
 * by an older version without the unwritten row is caught) and keep only
 * the matching row.  Blocks without rows are not read.  The extent stays
 * dirty: only region_flush sets flush numbers. */
int ext__recover_dirty(struct ext *e)
{
  struct row *rows = NULL;
  size_t n = 0, nblocks = 0, nbad = 0;
  uint8_t *buf = malloc(e->block_size);
  int r = buf ? 0 : -ENOMEM;
  if (r == 0 && fdatasync(e->fd) < 0)
    r = -errno;
  if (r == 0)
    r = collect_rows(e, &rows, &n);
  if (r == 0 && n > 0) {
    r = ext__st_run(e, ST_BEGIN);
    for (size_t i = 0, j; r == 0 && i < n; i = j, nblocks++) {
      for (j = i + 1; j < n && rows[j].block == rows[i].block; j++)
        ;
      r = recover_block(e, rows + i, j - i, buf, &nbad);
    }
    if (r == 0)
      r = ext__st_run(e, ST_COMMIT);
    if (r < 0)
      ext__rollback(e);
    else
      log_info("extent %u: dirty at open: %zu blocks (%zu contexts) "
               "rechecked, %zu match none",
               e->eid, nblocks, n, nbad);
  }
  free(rows);
  free(buf);
  return r;
}
