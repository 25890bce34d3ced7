/* crucible-c downstairs: the context journal of an extent (extent.h).
 *
 * A write's contexts must be where a restart after kill -9 finds them
 * before its bytes reach the data file (I1, extent.c).  A SQLite
 * transaction per write did that at about half of the downstairs' CPU per
 * 4 KiB write (B-tree, two WAL pwrites, checkpoints; docs/PERFORMANCE.md).
 * The journal does it with one pwrite: each written block's context is
 * appended, as a 64-byte record, to XX/YYY/ZZZ.db-jnl before the data is
 * written; later, in ONE transaction, a fold moves every record into
 * block_context exactly as the write's own transaction would have (the
 * unwritten row first for blocks that have no row, then the contexts, in
 * journal order), and in the same commit makes the journal empty.
 *
 * THE JOURNAL RULE.  A record counts only if its check matches under the
 * extent's journal epoch, a random 64-bit number kept in the metadata row
 * `journal`; every fold commits a fresh epoch with the rows it moved.  So:
 *  (J1) records are written from offset 0 up, one pwrite per write group,
 *       before that group's data pwrite; the valid records are a prefix;
 *  (J2) after kill -9 the valid prefix holds every record whose data
 *       pwrite began, and maybe a few whose data was never written (extra
 *       candidates: recovery keeps only the row matching the disk);
 *  (J3) a fold's commit and the epoch change are one transaction: after
 *       kill -9 the records are either still valid and not yet moved, or
 *       moved and void; never both lost, and moving twice is harmless
 *       (INSERT OR REPLACE of the same row);
 *  (J4) an extent whose journal holds a valid record is dirty, whatever
 *       its metadata says (ext_open, ext_read_meta): the first write
 *       after a flush needs no transaction to say so;
 *  (J5) everything that reads or changes block_context folds first
 *       (trim, flush, close, reads of a block with a record, versions,
 *       verify, the block map, a snapshot's copy), so outside this file
 *       the rows are as if every write had committed its own.
 * A journal file from another database (a copied or fetched .db) has
 * another epoch and counts for nothing.  The journal is not synced
 * between flushes, like the WAL (synchronous=NORMAL): power loss may
 * lose unflushed contexts, as DESIGN.md allows for unflushed blocks.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../common/hash.h"
#include "../common/log.h"
#include "../common/proto.h"
#include "extent.h"
#include "extent_int.h"

/* Record layout (little-endian): block u32, check u32, version u64, hash
 * u64, on_disk_hash u64, nonce[12], tag[16], zero[4].  check is the low
 * 32 bits of XXH3 over the record with check = 0, followed by the epoch. */
#define JR_CHECK 4
#define JR_VERSION 8
#define JR_HASH 16
#define JR_ODH 24
#define JR_NONCE 32
#define JR_TAG (JR_NONCE + PROTO_NONCE_LEN)

static uint32_t jr_check(const uint8_t *p, uint64_t epoch)
{
  uint8_t b[EXT_JNL_REC + 8];
  memcpy(b, p, EXT_JNL_REC);
  memset(b + JR_CHECK, 0, 4);
  proto_le64(b + EXT_JNL_REC, epoch);
  return (uint32_t) crypt_hash_plain(b, sizeof b);
}

void ext__jnl_encode(uint8_t *p, uint32_t block, const struct proto_ctx *c,
                     uint64_t odh, uint64_t epoch)
{
  memset(p, 0, EXT_JNL_REC);
  proto_le32(p, block);
  proto_le64(p + JR_VERSION, c->version);
  proto_le64(p + JR_HASH, c->hash);
  proto_le64(p + JR_ODH, odh);
  memcpy(p + JR_NONCE, c->nonce, PROTO_NONCE_LEN);
  memcpy(p + JR_TAG, c->tag, PROTO_TAG_LEN);
  proto_le32(p + JR_CHECK, jr_check(p, epoch));
}

bool ext__jnl_decode(const uint8_t *p, uint64_t epoch, uint64_t extent_size,
                     struct ext_jrec *r)
{
  if (proto_rd32(p + JR_CHECK) != jr_check(p, epoch))
    return false;
  r->block = proto_rd32(p);
  r->version = proto_rd64(p + JR_VERSION);
  r->hash = proto_rd64(p + JR_HASH);
  r->odh = proto_rd64(p + JR_ODH);
  memcpy(r->nonce, p + JR_NONCE, PROTO_NONCE_LEN);
  memcpy(r->tag, p + JR_TAG, PROTO_TAG_LEN);
  /* A check that matches by chance on garbage must still not name a
   * block outside the extent or the version no write may carry. */
  return r->block < extent_size && r->version != 0;
}

void ext__jnl_path(uint32_t eid, char out[EXT_PATH_MAX + 8])
{
  char rel[EXT_PATH_MAX];
  ext_path(eid, rel);
  snprintf(out, EXT_PATH_MAX + 8, "%s.db-jnl", rel);
}

/* Read the journal's records [0, max) into buf; *n = length of the
 * valid prefix (J1). */
static int jnl_scan(int fd, uint64_t epoch, uint64_t extent_size, uint8_t *buf,
                    uint32_t max, uint32_t *n)
{
  int r = ext__pread_full(fd, buf, (size_t) max * EXT_JNL_REC, 0);
  struct ext_jrec rec;
  *n = 0;
  if (r < 0)
    return r;
  while (*n < max && ext__jnl_decode(buf + (size_t) *n * EXT_JNL_REC, epoch,
                                     extent_size, &rec))
    (*n)++;
  return 0;
}

int ext__jnl_open(struct ext *e, int dirfd)
{
  char p[EXT_PATH_MAX + 8];
  ext__jnl_path(e->eid, p);
  e->jn = 0;
  e->jfd = openat(dirfd, p, O_RDWR | O_CLOEXEC);
  if (e->jfd < 0)
    return errno == ENOENT ? 0 : -errno;
  uint8_t *buf = malloc((size_t) EXT_JNL_CAP * EXT_JNL_REC);
  if (buf == NULL)
    return -ENOMEM;
  int r = jnl_scan(e->jfd, e->jepoch, e->extent_size, buf, EXT_JNL_CAP, &e->jn);
  free(buf);
  if (r < 0)
    log_error("extent %u: %s: %s", e->eid, p, log_strerror(-r));
  return r;
}

int ext__jnl_dirty(const char *dir, uint32_t eid, uint64_t epoch)
{
  char p[EXT_PATH_MAX + 8], path[PATH_MAX];
  uint8_t rec[EXT_JNL_REC];
  struct ext_jrec r;
  ext__jnl_path(eid, p);
  snprintf(path, sizeof path, "%s/%s", dir, p);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? 0 : -errno;
  int rc = ext__pread_full(fd, rec, sizeof rec, 0);
  close(fd);
  /* The block bound is checked where the records are used (ext_open). */
  return rc < 0 ? rc : ext__jnl_decode(rec, epoch, UINT32_MAX, &r);
}

/* The file, made on the first write since it was last absent, its whole
 * size reserved so appends never change its size (and a full disk fails
 * here, before anything was written). */
static int jnl_create(struct ext *e)
{
  char p[EXT_PATH_MAX + 8];
  ext__jnl_path(e->eid, p);
  int fd = openat(e->dirfd, p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  int r = ext__reserve(fd, 0, (off_t) EXT_JNL_CAP * EXT_JNL_REC);
  if (r < 0) {
    close(fd);
    return r;
  }
  e->jfd = fd;
  return 0;
}

int ext__jnl_append(struct ext *e, const struct ext_wr *w, unsigned nw,
                    uint32_t nrec)
{
  assert(e->jn + nrec <= EXT_JNL_CAP);
  int r = e->jfd >= 0 ? 0 : jnl_create(e);
  uint8_t one[EXT_JNL_REC];
  uint8_t *buf = nrec == 1 ? one : malloc((size_t) nrec * EXT_JNL_REC);
  if (r == 0 && buf == NULL)
    r = -ENOMEM;
  if (r < 0) {
    log_error("extent %u: journal: %s", e->eid, log_strerror(-r));
    if (buf != one)
      free(buf);
    return r;
  }
  uint8_t *p = buf;
  for (unsigned k = 0; k < nw; k++)
    for (uint32_t i = 0; !w[k].err && i < w[k].n; i++, p += EXT_JNL_REC) {
      assert(w[k].ctxs[i].version != 0);
      ext__jnl_encode(p, (uint32_t) (w[k].blk + i), &w[k].ctxs[i], w[k].odh[i],
                      e->jepoch);
    }
  assert(p == buf + (size_t) nrec * EXT_JNL_REC);
  r = ext__pwrite_full(e->jfd, buf, (size_t) nrec * EXT_JNL_REC,
                       (off_t) e->jn * EXT_JNL_REC);
  if (buf != one)
    free(buf);
  if (r < 0) { /* records past jn count for nothing once overwritten, and
                  until then they are only extra candidates (J2) */
    log_error("extent %u: journal: pwrite: %s", e->eid, log_strerror(-r));
    return r;
  }
  e->jn += nrec;
  for (unsigned k = 0; k < nw; k++)
    if (!w[k].err)
      ext__bm_set(e->jpending, w[k].blk, w[k].n);
  return 0;
}

bool ext_pending(const struct ext *e, uint64_t blk, uint32_t n)
{
  if (e->jn == 0)
    return false;
  if (e->jpending == NULL)
    return true;
  for (uint64_t b = blk; b < blk + n; b++)
    if (e->jpending[b / 8] & (1u << (b % 8)))
      return true;
  return false;
}

static int insert_one(struct ext *e, const struct ext_jrec *r)
{
  sqlite3_stmt *s = e->st[ST_INSERT];
  sqlite3_bind_int64(s, 1, (sqlite3_int64) r->block);
  sqlite3_bind_int64(s, 2, (sqlite3_int64) r->version);
  sqlite3_bind_int64(s, 3, (sqlite3_int64) r->hash);
  sqlite3_bind_blob(s, 4, r->nonce, PROTO_NONCE_LEN, SQLITE_STATIC);
  sqlite3_bind_blob(s, 5, r->tag, PROTO_TAG_LEN, SQLITE_STATIC);
  sqlite3_bind_int64(s, 6, (sqlite3_int64) r->odh);
  return ext__st_run(e, ST_INSERT);
}

/* One run of records for consecutive blocks: the unwritten row for its
 * blocks that have none, then each context (write_rows in extent.c). */
static int fold_run(struct ext *e, const struct ext_jrec *r, uint32_t n)
{
  int rc = 0;
  if (!ext__bm_all(e->has_rows, r[0].block, n)) {
    sqlite3_stmt *u = e->st[ST_ADD_UNWRITTEN];
    sqlite3_bind_int64(u, 1, (sqlite3_int64) r[0].block);
    sqlite3_bind_int64(u, 2, (sqlite3_int64) r[0].block + n);
    sqlite3_bind_int64(u, 3, (sqlite3_int64) e->zero_hash);
    rc = ext__st_run(e, ST_ADD_UNWRITTEN);
  }
  /* Known to have rows from here on; a rollback forgets every mark, and
   * a later delete in this transaction (a flush's) unmarks its block. */
  if (rc == 0)
    ext__bm_set(e->has_rows, r[0].block, n);
  for (uint32_t i = 0; rc == 0 && i < n; i++)
    rc = insert_one(e, &r[i]);
  return rc;
}

static int new_epoch(uint64_t *epoch)
{
  ssize_t n;
  do
    n = getrandom(epoch, sizeof *epoch, 0);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t) sizeof *epoch ? 0 : n < 0 ? -errno : -EIO;
}

/* The flush's fold.  A remembered block (its last bytes known and now
 * durable) keeps one row after the flush's cleanup, the one of those
 * bytes: move just its record, without the unwritten row the cleanup
 * would delete at once (a later record of the same bytes replaces an
 * earlier one, so the last context wins).  Any other block (forgotten
 * after a failed pwrite, or not remembered) keeps every candidate, as
 * in any fold. */
static int fold_for_flush(struct ext *e, const struct ext_jrec *rec, uint32_t n)
{
  int r = 0;
  for (uint32_t i = 0; r == 0 && i < n; i++) {
    uint64_t h;
    if (!ext__seen_live(e, rec[i].block, &h))
      r = fold_run(e, rec + i, 1);
    else if (h == rec[i].odh)
      r = insert_one(e, &rec[i]);
  }
  return r;
}

int ext__jnl_fold_rows(struct ext *e, uint64_t *epoch, bool for_flush)
{
  *epoch = e->jepoch;
  if (e->jn == 0)
    return 0;
  uint8_t *buf = malloc((size_t) e->jn * EXT_JNL_REC);
  struct ext_jrec *rec = malloc((size_t) e->jn * sizeof *rec);
  int r = buf && rec ? 0 : -ENOMEM;
  uint32_t n = 0;
  if (r == 0)
    r = jnl_scan(e->jfd, e->jepoch, e->extent_size, buf, e->jn, &n);
  if (r == 0 && n != e->jn) {
    log_error("extent %u: journal record %" PRIu32 " of %" PRIu32
              " no longer reads back: the file was changed under us",
              e->eid, n, e->jn);
    r = -EIO;
  }
  for (uint32_t i = 0; r == 0 && i < n; i++)
    ext__jnl_decode(buf + (size_t) i * EXT_JNL_REC, e->jepoch, e->extent_size,
                    &rec[i]);
  if (r == 0 && for_flush)
    r = fold_for_flush(e, rec, n);
  for (uint32_t i = 0, j; r == 0 && !for_flush && i < n; i = j) {
    for (j = i + 1; j < n && rec[j].block == rec[j - 1].block + 1; j++)
      ;
    r = fold_run(e, rec + i, j - i);
  }
  free(buf);
  free(rec);
  /* A new epoch, never the old one.  getrandom, not libcrypto: the fold
   * runs on the pool's threads, where OpenSSL's per-thread generator
   * state would never be freed.  Unique is all it must be. */
  while (r == 0 && (r = new_epoch(epoch)) == 0 && *epoch == e->jepoch)
    ;
  if (r == 0)
    r = ext__set_meta(e, "journal", *epoch);
  return r;
}

void ext__jnl_folded(struct ext *e, uint64_t epoch)
{
  e->jepoch = epoch;
  if (e->jn == 0)
    return;
  e->jn = 0;
  if (e->jpending != NULL)
    memset(e->jpending, 0, (size_t) (e->extent_size / 8 + 1));
}

int ext_settle(struct ext *e)
{
  uint64_t epoch;
  if (e->jn == 0)
    return 0;
  int r = ext__st_run(e, ST_BEGIN);
  if (r == 0)
    r = ext__jnl_fold_rows(e, &epoch, false);
  if (r == 0)
    r = ext__set_meta(e, "dirty", 1);
  if (r == 0)
    r = ext__st_run(e, ST_COMMIT);
  if (r < 0) {
    ext__rollback(e);
    log_error("extent %u: journal fold: %s", e->eid, log_strerror(-r));
    return r;
  }
  ext__jnl_folded(e, epoch);
  return 0;
}
