/* crucible-c downstairs: one extent (data file + SQLite metadata).
 *
 * THE INVARIANT.  After kill -9 at any instant:
 *  (I1) every block that has rows holds bytes whose crypt_hash_plain is
 *       the on_disk_hash of at least one of its rows;
 *  (I2) every block without rows holds zeroes (sparse, never written, or
 *       its rows were dropped after an fdatasync made zeroes durable).
 * The UNWRITTEN ROW (version 0, hash 0, NULL nonce/tag, on_disk_hash =
 * e->zero_hash) is the candidate "this block is still zeroes": a read
 * whose matching row is it (or a block without rows) returns flags = 0
 * and zeroes.  Clients can never store version 0 (region_write refuses).
 * Why every path keeps I1 and I2 (rows only ever change inside a
 * committed transaction; the disk changes only after that commit).  A
 * journaled write (extent_jnl.c) counts as committed once its records
 * are appended: its fold is the same transaction, run later, and until
 * then nothing reads or changes the rows without folding first (J5):
 *  - write: the transaction first adds the unwritten row to every block
 *    that has none (by I2 its bytes are zeroes: that row matches them),
 *    then the new rows; old rows stay.  (The statement is skipped when
 *    every block is known to have rows, e->has_rows: a bit is set only
 *    after a COMMIT gave the block rows and cleared before anything may
 *    delete its last row, so "known" is never wrong.)  Only after COMMIT does pwrite
 *    turn old bytes into new ones, and either matches a row.  INSERT OR
 *    REPLACE on (block, on_disk_hash) only replaces a row by one for the
 *    very same bytes (rewriting identical bytes, or zeroes written over
 *    the unwritten row), so the match survives.  A failed pwrite (EIO,
 *    ENOSPC without fallocate) forgets the blocks: flush keeps all rows.
 *  - trim: the transaction adds (OR REPLACE) the unwritten row to every
 *    block in range that has rows and keeps the others; then the hole is
 *    punched (or zeroes are written where punching is unsupported: each
 *    block is then old bytes or zeroes, both candidates).  Blocks without
 *    rows are zeroes already (I2) and need no row.  A failed punch or
 *    zero-write forgets the blocks.  The remembered last state of a
 *    trimmed block is the unwritten row, so a write after the trim (before
 *    a flush) just adds its row: the disk is zeroes or the new bytes.
 *  - flush: fdatasync first, so the remembered last bytes are durable;
 *    then one transaction deletes every other row of each remembered
 *    block and, where that leaves only the unwritten row, that row too
 *    (I2: the durable bytes are zeroes).  A later first write re-adds it.
 *  - open of a dirty extent: fdatasync, then every block with rows is
 *    reread; when a row matches, the others go (and an unwritten-only
 *    block loses its row, as in flush, unless that row is an unflushed
 *    trim's: it stays, remembered, so reconciliation still sees the trim's
 *    version and the next flush drops it); when none matches, all rows
 *    stay and one line is logged (verify reports the block).
 *  - close and LRU eviction keep every row and forget the remembered
 *    table; the extent stays dirty, so the next open rechecks it.
 *  - ENOSPC from fallocate (reserved before the transaction) or from
 *    SQLite rolls back: nothing changed.
 * Power loss (not kill -9) between flushes may break I1 for unflushed
 * blocks: verify reports those and the upstairs heals them.
 *
 * THE MARK (live repair, EXTENT_MARK).  A replica that rejoins a running
 * volume gets every write and flush while its extents are repaired one
 * by one; a regular flush must not give an extent not yet repaired the
 * (gen, flush) of the good replicas, or after a crash of the upstairs
 * reconciliation would skip it and its stale blocks would survive.  So:
 *  (M1) ext_mark commits repair=1 with dirty=1 before the upstairs sends
 *       the first write to that extent; repair implies dirty.
 *  (M2) a regular flush (always false) does nothing to a marked extent:
 *       no fdatasync, no context cleanup, numbers unchanged, still dirty;
 *       region.c does not even select it (an evicted one stays closed).
 *  (M3) only ext_flush(always) (EXTENT_FLUSH, when its repair is done)
 *       clears repair, in the transaction that sets the numbers.
 * The mark's commit is not synced (synchronous=NORMAL): WAL commits reach
 * the disk in order, so any later commit of this database that is
 * durable carries it, and losing both leaves the extent's old (lower)
 * numbers, which reconciliation compares anyway.  The contexts are kept
 * as after any write (I1, I2 unchanged): a marked extent reopened after
 * a crash is rehashed like every dirty one.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../common/geom.h"
#include "../common/hash.h"
#include "../common/log.h"
#include "extent.h"
#include "extent_int.h"
#include "fsutil.h"

int ext__crash_at;

static const char *const st_sql[ST_COUNT_] = {
    [ST_BEGIN] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INSERT] = "INSERT OR REPLACE INTO block_context"
                  "(block, version, hash, nonce, tag, on_disk_hash)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* The unwritten row for each block of [?1, ?2) that has no row. */
    [ST_ADD_UNWRITTEN] =
        "WITH RECURSIVE b(x) AS (SELECT ?1 UNION ALL"
        " SELECT x + 1 FROM b WHERE x + 1 < ?2)"
        " INSERT OR IGNORE INTO block_context"
        "(block, version, hash, nonce, tag, on_disk_hash)"
        " SELECT x, 0, 0, NULL, NULL, ?3 FROM b WHERE NOT"
        " EXISTS (SELECT 1 FROM block_context WHERE block = x)",
    [ST_TRIM_ROWS] = "SELECT DISTINCT block FROM block_context"
                     " WHERE block >= ?1 AND block < ?2",
    /* ... and for each block of [?1, ?2) that has rows, carrying the
   * trim's version ?4. */
    [ST_TRIM_UNWRITTEN] =
        "INSERT OR REPLACE INTO block_context"
        "(block, version, hash, nonce, tag, on_disk_hash)"
        " SELECT DISTINCT block, ?4, 0, NULL, NULL, ?3"
        " FROM block_context WHERE block >= ?1 AND block < ?2",
    [ST_SELECT_RANGE] = "SELECT block, version, hash, nonce, tag, on_disk_hash"
                        " FROM block_context WHERE block >= ?1 AND block < ?2"
                        " ORDER BY block",
    [ST_DELETE_STALE] = "DELETE FROM block_context"
                        " WHERE block = ?1 AND on_disk_hash != ?2",
    [ST_DELETE_UNWRITTEN] = "DELETE FROM block_context"
                            " WHERE block = ?1 AND nonce IS NULL",
    [ST_SET_META] = "INSERT OR REPLACE INTO metadata(name, value)"
                    " VALUES (?1, ?2)",
    [ST_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [ST_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [ST_ALL_ROWS] = "SELECT block, on_disk_hash, version, nonce IS NULL"
                    " FROM block_context ORDER BY block",
    [ST_GET_META] = EXT__GET_META_SQL,
};

/* Run a statement that returns no rows; 0 or -errno (logged). */
static int st_run(struct ext *e, int i)
{
  sqlite3_stmt *s = e->st[i];
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW)
    return 0;
  log_error("extent %u: %s: %s", e->eid, st_sql[i], sqlite3_errmsg(e->db));
  return ext__sql_err(rc);
}

static int set_meta(struct ext *e, const char *name, uint64_t v)
{
  sqlite3_bind_text(e->st[ST_SET_META], 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(e->st[ST_SET_META], 2, (sqlite3_int64) v);
  return st_run(e, ST_SET_META);
}

int ext__st_run(struct ext *e, int i)
{
  return st_run(e, i);
}

int ext__set_meta(struct ext *e, const char *name, uint64_t v)
{
  return set_meta(e, name, v);
}

/* Roll back after a failed step inside a transaction (best effort: if
 * COMMIT itself failed, SQLite may already have rolled back).  A fold
 * marks blocks known to have rows before its commit (extent_jnl.c), so
 * every such mark is forgotten: "unknown" is always safe. */
static void rollback(struct ext *e)
{
  if (!sqlite3_get_autocommit(e->db))
    st_run(e, ST_ROLLBACK);
  if (e->has_rows != NULL)
    memset(e->has_rows, 0, (size_t) (e->extent_size / 8 + 1));
}

void ext__rollback(struct ext *e)
{
  rollback(e);
}

/* --- blocks known to have rows ----------------------------------------- */

/* Are all of [blk, blk+n) known to have rows? */
static bool rows_known(const struct ext *e, uint64_t blk, uint32_t n)
{
  return ext__bm_all(e->has_rows, blk, n);
}

/* Only after a COMMIT that gave each block of [blk, blk+n) a row. */
static void rows_mark(struct ext *e, uint64_t blk, uint32_t n)
{
  ext__bm_set(e->has_rows, blk, n);
}

/* Before (or instead of) anything that may delete rows of block b. */
static void rows_unknown(struct ext *e, uint64_t b)
{
  ext__bm_clear(e->has_rows, b, 1);
}

/* --- open / close ----------------------------------------------------- */

/* Keep only block's row for the bytes hashing to keep; if that is the
 * unwritten row, drop it too (the block is zeroes: no row, I2).  Only
 * for bytes known durable (after an fdatasync). */
int ext__keep_only(struct ext *e, uint64_t block, uint64_t keep)
{
  sqlite3_bind_int64(e->st[ST_DELETE_STALE], 1, (sqlite3_int64) block);
  sqlite3_bind_int64(e->st[ST_DELETE_STALE], 2, (sqlite3_int64) keep);
  if (keep == e->zero_hash) /* this may leave the block without rows */
    rows_unknown(e, block);
  int r = st_run(e, ST_DELETE_STALE);
  if (r == 0 && keep == e->zero_hash) {
    sqlite3_bind_int64(e->st[ST_DELETE_UNWRITTEN], 1, (sqlite3_int64) block);
    r = st_run(e, ST_DELETE_UNWRITTEN);
  }
  return r;
}

/* Pragmas, each for a reason:
 * - journal_mode=WAL: a commit is one sequential append to the -wal file.
 * - synchronous=NORMAL: commits do not fsync.  kill -9 cannot lose a
 *   committed transaction (it is in the kernel), which is all the crash
 *   rule needs; durability against power loss happens at flush, which
 *   commits with synchronous=FULL.  Per-write fsyncs are what capped
 *   Crucible's SQLite backend near 7.5k IOPS.
 * - cache_size=-512 (KiB): up to REGION_MAX_OPEN_EXTENTS connections are
 *   open at once; SQLite's 2 MB default would cost 128 MB on a Pi.
 * - locking_mode=EXCLUSIVE: take the file locks once and keep them until
 *   close.  Otherwise every transaction costs ~8 fcntl() lock calls (a
 *   third of the write path's syscalls, measured) and WAL needs a -shm
 *   file (one more descriptor and mmap per extent).  Only this process
 *   may use an open extent anyway; `dump` is for stopped regions.
 * - busy_timeout: `dump` or a leftover reader may hold a lock briefly. */
static const char PRAGMAS[] = "PRAGMA locking_mode=EXCLUSIVE;"
                              "PRAGMA journal_mode=WAL;"
                              "PRAGMA synchronous=NORMAL;"
                              "PRAGMA cache_size=-512;"
                              "PRAGMA busy_timeout=5000;";

/* After every commit (replaces SQLite's auto-checkpoint, same rule). */
static int wal_hook(void *arg, struct sqlite3 *db, const char *name, int pages)
{
  struct ext *e = arg;
  e->wal_pages = pages;
  if (pages >= EXT_WAL_CHECKPOINT) {
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    e->wal_pages = 0; /* the next commit restarts the file */
  }
  return SQLITE_OK;
}

/* Records a group appends to the journal (its live writes' blocks). */
static uint32_t group_records(const struct ext_wr *w, unsigned nw)
{
  uint64_t n = 0;
  for (unsigned k = 0; k < nw; k++)
    if (!w[k].err)
      n += w[k].n;
  return n > EXT_JNL_CAP ? EXT_JNL_CAP + 1 : (uint32_t) n;
}

/* Journaled, without a fold first, the write needs one append to an
 * existing journal; else a commit that must not checkpoint. */
bool ext_write_now_ok(const struct ext *e, const struct ext_wr *w, unsigned nw)
{
  uint32_t nrec = group_records(w, nw);
  if (e->db == NULL)
    return false;
  if (nrec <= EXT_JNL_CAP ? e->jfd < 0 || e->jn + nrec > EXT_JNL_CAP
                          : e->wal_pages >= EXT_WAL_CHECKPOINT - EXT_WAL_MARGIN)
    return false;
  for (unsigned k = 0; k < nw; k++)
    if (!w[k].err && !ext__bm_all(e->allocated, w[k].blk, w[k].n))
      return false;
  return true;
}

/* ONE SYNC (ext_flush) needs both: ext2/3/4 (one magic), where an
 * overwrite of an allocated, written block stays in place and changes no
 * metadata, and a device that reports its write cache as write-through,
 * where a completed write is durable.  On a write-back cache a completed
 * write is durable only after a cache flush, and the device may destage
 * the commit's later WAL write before the data: a power loss then leaves
 * a commit that claims bytes the disk lost. */
static bool fs_one_sync(int fd)
{
  struct statfs sf;
  struct stat st;
  return fstatfs(fd, &sf) == 0 && sf.f_type == EXT4_SUPER_MAGIC &&
         fstat(fd, &st) == 0 &&
         fs_write_cache(st.st_dev, "/sys") == FS_WC_THROUGH;
}

static int open_db(struct ext *e, const char *dbpath)
{
  int rc = sqlite3_open_v2(dbpath, &e->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    log_error("%s: %s", dbpath, e->db ? sqlite3_errmsg(e->db) : "open");
    return ext__sql_err(rc);
  }
  char *msg = NULL;
  rc = sqlite3_exec(e->db, PRAGMAS, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    log_error("%s: %s", dbpath, msg ? msg : "pragma");
    sqlite3_free(msg);
    return ext__sql_err(rc);
  }
  e->wal_pages = 0;
  sqlite3_wal_hook(e->db, wal_hook, e);
  for (int i = 0; i < ST_COUNT_; i++) {
    rc = sqlite3_prepare_v3(e->db, st_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                            &e->st[i], NULL);
    if (rc != SQLITE_OK) {
      log_error("%s: not an extent database: %s", dbpath,
                sqlite3_errmsg(e->db));
      return -EINVAL;
    }
  }
  return 0;
}

int ext_open(struct ext *e, int dirfd, const char *dir)
{
  char rel[EXT_PATH_MAX], reldb[EXT_PATH_MAX + 3];
  char dbpath[PATH_MAX];
  struct stat st;
  ext__paths(dir, e->eid, rel, reldb, dbpath, sizeof dbpath);
  assert(e->fd < 0 && e->db == NULL);
  e->jfd = -1;
  e->dirfd = dirfd;
  e->jn = 0;
  e->fd = openat(dirfd, rel, O_RDWR | O_CLOEXEC);
  if (e->fd < 0) {
    int r = -errno;
    log_error("%s/%s: %s", dir, rel, log_strerror(-r));
    return r;
  }
  int r = 0;
  if (fstat(e->fd, &st) < 0)
    r = -errno;
  else if ((uint64_t) st.st_size != e->extent_size * e->block_size) {
    log_error("%s/%s: size %lld, expected %" PRIu64, dir, rel,
              (long long) st.st_size, e->extent_size * e->block_size);
    r = -EINVAL;
  } else if (faccessat(dirfd, reldb, F_OK, 0) < 0) {
    r = -errno; /* sqlite would say "unable to open", less clearly */
    log_error("%s: %s", dbpath, log_strerror(-r));
  }
  if (r == 0)
    r = open_db(e, dbpath);
  if (r == 0)
    r = ext__read_meta_rows(e->db, e->st[ST_GET_META], &e->meta, &e->repair,
                            &e->jepoch);
  if (r == 0)
    r = ext__jnl_open(e, dirfd);
  if (r == 0 && e->jn > 0) { /* J4: dirty; its records are rows again */
    log_info("extent %u: %" PRIu32 " journal records at open", e->eid, e->jn);
    e->meta.dirty = 1;
    r = ext_settle(e);
  }
  if (r == 0 && e->meta.dirty)
    r = ext__recover_dirty(e);
  if (r < 0) {
    ext_close(e);
    return r;
  }
  assert(!e->repair || e->meta.dirty); /* M1 */
  e->meta_known = true;
  e->layout_dirty = true;
  e->one_sync = fs_one_sync(e->fd);
  e->flushes_one_sync = 0;
  /* All unknown; out of memory only costs the skip in ext_write. */
  e->has_rows = calloc((size_t) (e->extent_size / 8 + 1), 1);
  e->allocated = calloc((size_t) (e->extent_size / 8 + 1), 1);
  e->jpending = calloc((size_t) (e->extent_size / 8 + 1), 1);
  return 0;
}

void ext_close(struct ext *e)
{
  /* A fold that fails leaves the records valid: the next open moves them
   * (J3, J4). */
  if (e->db != NULL && e->jn > 0)
    ext_settle(e);
  if (e->fd >= 0 && e->jfd >= 0)
    close(e->jfd);
  e->jfd = -1;
  for (int i = 0; i < ST_COUNT_; i++) {
    sqlite3_finalize(e->st[i]);
    e->st[i] = NULL;
  }
  if (e->db != NULL && sqlite3_close(e->db) != SQLITE_OK)
    log_error("extent %u: close: %s", e->eid, sqlite3_errmsg(e->db));
  e->db = NULL;
  if (e->fd >= 0)
    close(e->fd);
  e->fd = -1;
  /* Forgetting the table is safe: contexts are only ever kept, and the
   * next open of this (dirty) extent rehashes. */
  ext__seen_reset(&e->seen);
  free(e->has_rows);
  e->has_rows = NULL;
  free(e->allocated);
  e->allocated = NULL;
  free(e->jpending);
  e->jpending = NULL;
}

/* --- IO --------------------------------------------------------------- */

static void bind_blob(sqlite3_stmt *s, int col, const void *p, int len)
{
  sqlite3_bind_blob(s, col, p, len, SQLITE_STATIC);
}

/* Under the open transaction: one write's rows.  First, before the new
 * rows ("has no row" means before this write), the unwritten row for
 * blocks without rows; skipped when every block is known to have rows
 * (has_rows).  A block an earlier write of the same group gave rows gets
 * none (the statement adds only where no row exists), as in sequence. */
static int write_rows(struct ext *e, const struct ext_wr *w)
{
  int r = 0;
  if (!rows_known(e, w->blk, w->n)) {
    sqlite3_stmt *u = e->st[ST_ADD_UNWRITTEN];
    sqlite3_bind_int64(u, 1, (sqlite3_int64) w->blk);
    sqlite3_bind_int64(u, 2, (sqlite3_int64) (w->blk + w->n));
    sqlite3_bind_int64(u, 3, (sqlite3_int64) e->zero_hash);
    r = st_run(e, ST_ADD_UNWRITTEN);
  }
  sqlite3_stmt *s = e->st[ST_INSERT];
  for (uint32_t i = 0; r == 0 && i < w->n; i++) {
    assert(w->ctxs[i].version != 0);
    sqlite3_bind_int64(s, 1, (sqlite3_int64) (w->blk + i));
    sqlite3_bind_int64(s, 2, (sqlite3_int64) w->ctxs[i].version);
    sqlite3_bind_int64(s, 3, (sqlite3_int64) w->ctxs[i].hash);
    bind_blob(s, 4, w->ctxs[i].nonce, PROTO_NONCE_LEN);
    bind_blob(s, 5, w->ctxs[i].tag, PROTO_TAG_LEN);
    sqlite3_bind_int64(s, 6, (sqlite3_int64) w->odh[i]);
    r = st_run(e, ST_INSERT);
  }
  return r;
}

/* After COMMIT (committed: every block now has rows) or the journal
 * append: one write's bytes. */
static int write_data(struct ext *e, const struct ext_wr *w, bool committed)
{
  size_t bs = e->block_size;
  if (committed)
    rows_mark(e, w->blk, w->n);
  int r = ext__pwrite_full(e->fd, w->data, (size_t) w->n * bs,
                           (off_t) (w->blk * bs));
  if (r < 0) {
    /* The disk may hold old, new or (EIO) torn bytes: forget the blocks
     * so the next flush keeps all their contexts. */
    log_error("extent %u: pwrite: %s", e->eid, log_strerror(-r));
    ext__seen_forget(&e->seen, w->blk, w->n);
    return r;
  }
  for (uint32_t i = 0; i < w->n; i++)
    if (ext__seen_set(&e->seen, (uint32_t) (w->blk + i), EXT_SEEN_LIVE,
                      w->odh[i]) < 0)
      log_warn("extent %u: out of memory remembering block %" PRIu64, e->eid,
               w->blk + i);
  return 0;
}

void ext_write_group(struct ext *e, struct ext_wr *w, unsigned nw)
{
  size_t bs = e->block_size;
  unsigned live = 0;
  for (unsigned k = 0; k < nw; k++) {
    if (w[k].err)
      continue;
    assert(w[k].n > 0 && w[k].blk + w[k].n <= e->extent_size);
    if (!ext__bm_all(e->allocated, w[k].blk, w[k].n)) {
      w[k].err = ext__reserve(e->fd, (off_t) (w[k].blk * bs),
                              (off_t) ((size_t) w[k].n * bs));
      if (w[k].err < 0) {
        log_error("extent %u: fallocate: %s", e->eid, log_strerror(-w[k].err));
        continue;
      }
      ext__bm_set(e->allocated, w[k].blk, w[k].n);
      e->layout_dirty = true;
    }
    live++;
  }
  if (live == 0)
    return;
  /* Block status, before any row exists (extent_map.c, B1). */
  for (unsigned k = 0; k < nw; k++)
    if (!w[k].err)
      ext_map_set(e, w[k].blk, w[k].n);
  uint32_t nrec = group_records(w, nw);
  int r = 0;
  if (nrec > EXT_JNL_CAP || e->jn + nrec > EXT_JNL_CAP)
    r = ext_settle(e); /* too big, or no room: the rows in order first */
  if (r == 0 && nrec <= EXT_JNL_CAP) {
    r = ext__jnl_append(e, w, nw, nrec);
    if (r == 0 && ext__crash_at == EXT_CP_JOURNALED)
      raise(SIGKILL);
    for (unsigned k = 0; k < nw; k++)
      if (!w[k].err)
        w[k].err = r < 0 ? r : write_data(e, &w[k], false);
    if (r == 0)
      e->meta.dirty = 1; /* J4 */
    return;
  }
  if (r == 0)
    r = st_run(e, ST_BEGIN);
  if (r == 0 && !e->meta.dirty)
    r = set_meta(e, "dirty", 1);
  for (unsigned k = 0; k < nw && r == 0; k++)
    if (!w[k].err)
      r = write_rows(e, &w[k]);
  if (r == 0)
    r = st_run(e, ST_COMMIT);
  if (r < 0) {
    rollback(e);
    for (unsigned k = 0; k < nw; k++)
      if (!w[k].err)
        w[k].err = r;
    return;
  }
  e->meta.dirty = 1;
  for (unsigned k = 0; k < nw; k++)
    if (!w[k].err)
      w[k].err = write_data(e, &w[k], true);
}

/* Order (I1): reserve space, then dirty=1, the unwritten row for blocks
 * without rows and the new contexts in ONE transaction, COMMIT, and only
 * then pwrite.  Old contexts stay: after a crash either the old or the
 * new bytes may be on disk. */
int ext_write(struct ext *e, uint64_t blk, uint32_t n,
              const struct proto_ctx *ctxs, const uint64_t *odh,
              const uint8_t *data)
{
  struct ext_wr w = {blk, n, ctxs, odh, data, 0};
  ext_write_group(e, &w, 1);
  return w.err;
}

/* Under an open transaction: the unwritten row added (OR REPLACE) to
 * every block of [blk, blk+n) that has rows; those blocks into *out
 * (malloc'd, caller frees; at most n). */
static int trim_rows(struct ext *e, uint64_t blk, uint32_t n, uint64_t version,
                     uint32_t **out, uint32_t *nout)
{
  sqlite3_stmt *s = e->st[ST_TRIM_ROWS];
  int rc;
  *nout = 0;
  *out = malloc((size_t) n * sizeof **out);
  if (*out == NULL)
    return -ENOMEM;
  sqlite3_bind_int64(s, 1, (sqlite3_int64) blk);
  sqlite3_bind_int64(s, 2, (sqlite3_int64) (blk + n));
  while ((rc = sqlite3_step(s)) == SQLITE_ROW && *nout < n)
    (*out)[(*nout)++] = (uint32_t) sqlite3_column_int64(s, 0);
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) {
    log_error("extent %u: select: %s", e->eid, sqlite3_errmsg(e->db));
    return ext__sql_err(rc);
  }
  if (*nout == 0)
    return 0;
  s = e->st[ST_TRIM_UNWRITTEN];
  sqlite3_bind_int64(s, 1, (sqlite3_int64) blk);
  sqlite3_bind_int64(s, 2, (sqlite3_int64) (blk + n));
  sqlite3_bind_int64(s, 3, (sqlite3_int64) e->zero_hash);
  sqlite3_bind_int64(s, 4, (sqlite3_int64) version);
  return st_run(e, ST_TRIM_UNWRITTEN);
}

/* The unwritten row first (old rows stay until a flush: the old bytes are
 * on disk until the hole is punched), then the hole.  The last state of
 * each such block is then the unwritten row. */
int ext_trim(struct ext *e, uint64_t blk, uint32_t n, uint64_t version)
{
  size_t bs = e->block_size;
  uint32_t *rows = NULL, nrows = 0;
  uint64_t epoch;
  assert(n > 0 && blk + n <= e->extent_size);
  int r = st_run(e, ST_BEGIN);
  if (r == 0) /* the journal's rows first (J5) */
    r = ext__jnl_fold_rows(e, &epoch, false);
  if (r == 0 && (!e->meta.dirty || e->jn > 0))
    r = set_meta(e, "dirty", 1);
  if (r == 0)
    r = trim_rows(e, blk, n, version, &rows, &nrows);
  if (r == 0)
    r = st_run(e, ST_COMMIT);
  if (r < 0) {
    rollback(e);
    free(rows);
    return r;
  }
  ext__jnl_folded(e, epoch);
  e->meta.dirty = 1;
  e->layout_dirty = true;
  ext__bm_clear(e->allocated, blk, n); /* punched (or unknown) */
  r = ext__zero_range(e->fd, (off_t) (blk * bs), (off_t) ((uint64_t) n * bs));
  if (r < 0) { /* old bytes or zeroes, or torn: keep every row */
    log_error("extent %u: punch hole: %s", e->eid, log_strerror(-r));
    ext__seen_forget(&e->seen, blk, n);
  } else {
    ext_map_clear(e, blk, n); /* reads zeroes from now on (B1) */
    for (uint32_t i = 0; i < nrows; i++)
      if (ext__seen_set(&e->seen, rows[i], EXT_SEEN_LIVE, e->zero_hash) < 0)
        log_warn("extent %u: out of memory remembering block %" PRIu32, e->eid,
                 rows[i]);
  }
  free(rows);
  return r;
}

/* The data out, then (one transaction, synchronous=FULL so the commit
 * itself is durable) drop every context of a remembered block but the
 * one whose bytes are now durable (and the block's last row if it is
 * the unwritten one), and record flush/gen, dirty=0 (and repair=0).
 * A clean extent is left alone unless always (reconciliation levels
 * every replica's numbers, clean or not), and so is a marked one (M2,
 * M3).
 *
 * ONE SYNC.  The data must be durable before the cleanup commit is.  An
 * fdatasync of the data file does it (a write IO, a device cache flush,
 * and the inode where the layout changed), then the commit's WAL sync
 * costs the same again.  Where only bytes in place changed (no
 * fallocate or punch since the last fdatasync, and ext2/3/4, which
 * overwrite allocated blocks in place: no copy-on-write, no metadata)
 * on a device whose write cache is write-through (fs_one_sync),
 * sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER) makes the data durable:
 * there a completed write is on stable media.  One device cache flush
 * (the WAL's) and no data-file inode write instead of two fdatasyncs.
 * On a write-back cache it would not be: both writes complete into the
 * volatile cache, the device may put the WAL's commit on media first,
 * and a power loss then keeps a commit that dropped the rows of the
 * bytes still on disk (found on reads, but the block is lost); so there
 * the data file takes its fdatasync (test_ext_sync).  A crash before the
 * WAL sync leaves the extent dirty with every row (recheck at open), as
 * before.  Not for data=journal mounts (data goes through the journal),
 * which crucible does not support. */
static int data_out(struct ext *e, bool *full)
{
  /* dirty: the commit below changes rows, so it writes and syncs the WAL. */
  *full = !e->one_sync || e->layout_dirty || !e->meta.dirty;
  if (*full ? fdatasync(e->fd) < 0
            : sync_file_range(e->fd, 0, 0,
                              SYNC_FILE_RANGE_WAIT_BEFORE |
                                  SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER) < 0) {
    int r = -errno;
    log_error("extent %u: %s: %s", e->eid,
              *full ? "fdatasync" : "sync_file_range", log_strerror(-r));
    return r;
  }
  return 0;
}

int ext_flush(struct ext *e, uint64_t flush_no, uint64_t gen, bool always)
{
  bool full;
  if (!always && (!e->meta.dirty || e->repair))
    return 0;
  int r = data_out(e, &full);
  if (r < 0)
    return r;
  uint64_t epoch;
  r = st_run(e, ST_SYNC_FULL);
  if (r == 0)
    r = st_run(e, ST_BEGIN);
  if (r == 0) /* the journal's rows first, then the cleanup (J5) */
    r = ext__jnl_fold_rows(e, &epoch, true);
  for (uint32_t i = 0; r == 0 && i < e->seen.cap; i++) {
    const struct ext_seen_slot *sl = &e->seen.slots[i];
    if (sl->state == EXT_SEEN_LIVE)
      r = ext__keep_only(e, sl->block, sl->hash);
  }
  if (r == 0)
    r = set_meta(e, "gen_number", gen);
  if (r == 0)
    r = set_meta(e, "flush_number", flush_no);
  if (r == 0)
    r = set_meta(e, "dirty", 0);
  if (r == 0 && e->repair) /* M3: only here, with the numbers */
    r = set_meta(e, "repair", 0);
  if (r == 0)
    r = st_run(e, ST_COMMIT);
  if (r < 0)
    rollback(e);
  st_run(e, ST_SYNC_NORMAL);
  if (r < 0)
    return r;
  ext__jnl_folded(e, epoch);
  e->meta.gen = gen;
  e->meta.flush = flush_no;
  e->meta.dirty = 0;
  e->repair = false;
  if (full)
    e->layout_dirty = false;
  else
    e->flushes_one_sync++;
  ext__seen_reset(&e->seen);
  return 0;
}

/* M1: repair=1 and dirty=1 in one transaction, before any write the
 * upstairs sends to the extent under live repair.  The contexts and the
 * remembered table are untouched: the mark changes what a flush may do,
 * not what the disk holds. */
int ext_mark(struct ext *e)
{
  if (e->repair)
    return 0;
  int r = st_run(e, ST_BEGIN);
  if (r == 0)
    r = set_meta(e, "repair", 1);
  if (r == 0 && !e->meta.dirty)
    r = set_meta(e, "dirty", 1);
  if (r == 0)
    r = st_run(e, ST_COMMIT);
  if (r < 0) {
    rollback(e);
    log_error("extent %u: mark: %s", e->eid, log_strerror(-r));
    return r;
  }
  e->repair = true;
  e->meta.dirty = 1;
  return 0;
}
