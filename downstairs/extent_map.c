/* crucible-c downstairs: block status of one extent (EXTENT_MAP_REQ).
 *
 * THE MAP.  When e->map_known, e->map holds one bit per block, set where
 * the block MAY hold data; NULL means no bit is set (an extent with no
 * data costs no memory).  The one property the upstairs relies on:
 *  (B1) a block whose bit is clear reads as zeroes.
 * A false "data" only costs a client a read; a false "zeroes" is silent
 * data loss (nbdcopy and qemu-img skip the block), so every path errs
 * towards "data":
 *  - load (the first EXTENT_MAP_REQ of the extent since region_open, on
 *    the open extent, so a dirty one was recovered first): a bit for
 *    every block that has a WRITTEN row (nonce not NULL), except one
 *    whose last bytes since the last flush are remembered as zeroes
 *    (ext__seen_zero: a trim punched its hole after its rows committed,
 *    or recovery found the trim's zeroes; the older written rows stay
 *    until a flush, the bytes are zeroes).  A block with no row holds
 *    zeroes (I2); one whose only rows are unwritten rows has only
 *    "zeroes" as a candidate, which matches its bytes (I1): it reads
 *    zeroes either way.
 *  - write: the bits are set BEFORE its transaction, so no reader (they
 *    run under the same extent lock, after the write) and no crash can
 *    see its rows without them; a failed write leaves them set.
 *  - trim: the bits are cleared only AFTER the hole was punched (or the
 *    zeroes written) successfully: from then on the block reads zeroes
 *    (its last row is the trim's unwritten row, and a reopen after a
 *    crash keeps that row, the one matching the zeroes).  A failed trim
 *    leaves them set.
 *  - flush and the recovery of a dirty extent only ever delete rows:
 *    the bits stay (at worst "data" for a block that became zeroes).
 *  - close and LRU eviction keep the map with the extent's slot, so a
 *    map request never reopens an extent only to answer it; region.c
 *    drops it (ext_map_forget) when the files are replaced (clone).
 *  - a crash or a restart loses the map; it is rebuilt from the rows
 *    that recovery kept, each of which matches the disk (I1).
 * Extents never opened since region_open: a data file with no allocated
 * blocks (st_blocks == 0) reads as zeroes throughout — every write
 * reserves (fallocate) and writes its blocks before it is acknowledged,
 * so rows without bytes are only those of writes that never finished,
 * whose recovery keeps the unwritten row — and is known empty without
 * opening its database.  Otherwise the extent is opened (and recovered,
 * if dirty) once and its rows are scanned once: the cost of a map is
 * one bit per block (4 KiB per 128 MiB extent) and at most one scan of
 * each extent per run, never a row scan per request.
 *
 * Locking: as the rest of the extent module (the caller holds the
 * extent's mutex).  All functions return 0 or -errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "extent.h"
#include "extent_int.h"

static size_t map_bytes(const struct ext *e)
{
  return (size_t) (e->extent_size / 8 + 1);
}

void ext_map_forget(struct ext *e)
{
  free(e->map);
  e->map = NULL;
  e->map_known = false;
}

/* Before a write's transaction.  Out of memory makes the map unknown:
 * the next request rescans the rows (which then include this write's). */
void ext_map_set(struct ext *e, uint64_t blk, uint32_t n)
{
  if (!e->map_known)
    return;
  if (e->map == NULL && (e->map = calloc(map_bytes(e), 1)) == NULL) {
    e->map_known = false;
    return;
  }
  ext__bm_set(e->map, blk, n);
}

/* After a trim's hole punch succeeded. */
void ext_map_clear(struct ext *e, uint64_t blk, uint32_t n)
{
  if (e->map_known)
    ext__bm_clear(e->map, blk, n);
}

int ext_map_probe(struct ext *e, int dirfd)
{
  char rel[EXT_PATH_MAX], reldb[EXT_PATH_MAX + 3];
  struct stat st;

  if (e->map_known)
    return 0;
  ext__paths("", e->eid, rel, reldb, NULL, 0);
  if (fstatat(dirfd, rel, &st, 0) < 0)
    return -errno;
  if (st.st_blocks == 0 &&
      (uint64_t) st.st_size == e->extent_size * e->block_size) {
    free(e->map);
    e->map = NULL;
    e->map_known = true;
  }
  return 0;
}

int ext_map_load(struct ext *e)
{
  static const char sql[] = "SELECT DISTINCT block FROM block_context"
                            " WHERE nonce IS NOT NULL";
  sqlite3_stmt *s = NULL;
  uint8_t *map = NULL;
  int rc;

  if (e->map_known)
    return 0;
  if (e->db == NULL)
    return -EINVAL;
  if ((rc = ext_settle(e)) < 0) /* J5: the journal's blocks are rows */
    return rc;
  rc = sqlite3_prepare_v2(e->db, sql, -1, &s, NULL);
  if (rc != SQLITE_OK) {
    log_error("extent %u: %s: %s", e->eid, sql, sqlite3_errmsg(e->db));
    return ext__sql_err(rc);
  }
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    sqlite3_int64 b = sqlite3_column_int64(s, 0);
    if (b < 0 || (uint64_t) b >= e->extent_size) {
      rc = SQLITE_CORRUPT; /* not a block of this extent */
      break;
    }
    if (ext__seen_zero(e, (uint32_t) b))
      continue; /* trimmed since the last flush: the hole is punched */
    if (map == NULL && (map = calloc(map_bytes(e), 1)) == NULL) {
      rc = SQLITE_NOMEM;
      break;
    }
    ext__bm_set(map, (uint64_t) b, 1);
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    free(map);
    log_error("extent %u: block map: %s", e->eid,
              rc == SQLITE_CORRUPT ? "block out of range" : sqlite3_errstr(rc));
    return ext__sql_err(rc);
  }
  free(e->map);
  e->map = map;
  e->map_known = true;
  return 0;
}

void ext_map_get(const struct ext *e, uint64_t blk, uint32_t n, uint8_t *bits)
{
  memset(bits, 0, ((size_t) n + 7) / 8);
  if (!e->map_known) { /* not loaded: all of it may hold data */
    for (uint32_t i = 0; i < n; i++)
      bits[i / 8] |= (uint8_t) (1u << (i % 8));
    return;
  }
  if (e->map == NULL)
    return;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t b = blk + i;
    if (e->map[b / 8] & (1u << (b % 8)))
      bits[i / 8] |= (uint8_t) (1u << (i % 8));
  }
}
