/* crucible-c downstairs: extent helpers that do not need an open extent.
 *
 * File IO that never tears silently (full pread/pwrite, space reservation,
 * hole punching), the extent file names, SQLite error mapping and the
 * metadata rows, plus creation (ext_create, ext_seed_create) and
 * inspection without opening for IO (ext_read_meta).  The write ordering
 * that keeps the crash rule lives in extent.c and nowhere else: nothing
 * here changes the rows of an extent that is in use.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "extent.h"
#include "extent_int.h"

static const char SCHEMA[] =
    "CREATE TABLE metadata(name TEXT PRIMARY KEY, value INTEGER);"
    "INSERT INTO metadata VALUES('gen_number', 0), ('flush_number', 0),"
    " ('dirty', 0);"
    "CREATE TABLE block_context(block INTEGER, version INTEGER,"
    " hash INTEGER, nonce BLOB, tag BLOB, on_disk_hash INTEGER,"
    " PRIMARY KEY(block, on_disk_hash)) WITHOUT ROWID;";

/* Map a SQLite result code to a negative errno. */
int ext__sql_err(int rc)
{
  switch (rc & 0xff) {
  case SQLITE_FULL: return -ENOSPC;
  case SQLITE_NOMEM: return -ENOMEM;
  case SQLITE_CANTOPEN: return -ENOENT;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
  case SQLITE_SCHEMA:
  case SQLITE_ERROR: return -EINVAL;
  case SQLITE_BUSY:
  case SQLITE_LOCKED: return -EBUSY;
  default: return -EIO;
  }
}

/* --- file IO ---------------------------------------------------------- */

int ext__pread_full(int fd, uint8_t *buf, size_t len, off_t off)
{
  while (len > 0) {
    ssize_t r = pread(fd, buf, len, off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0) { /* past EOF: never written, reads as zeroes */
      memset(buf, 0, len);
      return 0;
    }
    buf += r, len -= (size_t) r, off += r;
  }
  return 0;
}

/* ENOSPC and EIO come back as they are: never retried. */
int ext__pread_cached(int fd, uint8_t *buf, size_t len, off_t off)
{
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  ssize_t r;
  do
    r = preadv2(fd, &iov, 1, off, RWF_NOWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno != EAGAIN && errno != EOPNOTSUPP && errno != EINVAL)
    return -errno;
  return r == (ssize_t) len ? 0 : -EAGAIN;
}

bool ext__bm_all(const uint8_t *bm, uint64_t blk, uint64_t n)
{
  if (bm == NULL)
    return false;
  for (uint64_t b = blk; b < blk + n; b++)
    if (!(bm[b / 8] & (1u << (b % 8))))
      return false;
  return true;
}

void ext__bm_set(uint8_t *bm, uint64_t blk, uint64_t n)
{
  if (bm != NULL)
    for (uint64_t b = blk; b < blk + n; b++)
      bm[b / 8] |= (uint8_t) (1u << (b % 8));
}

void ext__bm_clear(uint8_t *bm, uint64_t blk, uint64_t n)
{
  if (bm != NULL)
    for (uint64_t b = blk; b < blk + n; b++)
      bm[b / 8] &= (uint8_t) ~(1u << (b % 8));
}

int ext__pwrite_full(int fd, const uint8_t *buf, size_t len, off_t off)
{
  while (len > 0) {
    ssize_t r =
        pwrite(fd, buf, len < EXT__PWRITE_PIECE ? len : EXT__PWRITE_PIECE, off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0)
      return -EIO;
    buf += r, len -= (size_t) r, off += r;
  }
  return 0;
}

/* Reserve the blocks before anything is written, so a full disk fails the
 * write up front (-ENOSPC, nothing changed) instead of tearing a block
 * half-way through pwrite.  Filesystems without fallocate just skip it. */
int ext__reserve(int fd, off_t off, off_t len)
{
  if (fallocate(fd, 0, off, len) == 0)
    return 0;
  if (errno == EOPNOTSUPP || errno == ENOSYS)
    return 0;
  return -errno;
}

/* Zero [off, off+len): punch a hole, or write zeroes where unsupported. */
int ext__zero_range(int fd, off_t off, off_t len)
{
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
    return 0;
  if (errno != EOPNOTSUPP && errno != ENOSYS)
    return -errno;
  static const uint8_t zero[65536];
  while (len > 0) {
    size_t chunk = len < (off_t) sizeof zero ? (size_t) len : sizeof zero;
    int r = ext__pwrite_full(fd, zero, chunk, off);
    if (r < 0)
      return r;
    off += (off_t) chunk, len -= (off_t) chunk;
  }
  return 0;
}

/* rel = "XX/YYY/ZZZ", reldb = rel + ".db", db = dir + "/" + reldb. */
void ext__paths(const char *dir, uint32_t eid, char rel[EXT_PATH_MAX],
                char reldb[EXT_PATH_MAX + 3], char *db, size_t dblen)
{
  ext_path(eid, rel);
  snprintf(reldb, EXT_PATH_MAX + 3, "%s.db", rel);
  if (db != NULL)
    snprintf(db, dblen, "%s/%s", dir, reldb);
}

/* --- metadata and creation --------------------------------------------- */

int ext__read_meta_rows(sqlite3 *db, sqlite3_stmt *s,
                        struct proto_extent_state *out, bool *repair,
                        uint64_t *jepoch)
{
  int found = 0, rc;
  if (jepoch)
    *jepoch = 0;       /* no row: no journal was ever folded */
  bool marked = false; /* no row: never marked (or made before the mark) */
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    const char *name = (const char *) sqlite3_column_text(s, 0);
    uint64_t v = (uint64_t) sqlite3_column_int64(s, 1);
    if (name == NULL)
      continue;
    if (strcmp(name, "gen_number") == 0)
      out->gen = v, found |= 1;
    else if (strcmp(name, "flush_number") == 0)
      out->flush = v, found |= 2;
    else if (strcmp(name, "dirty") == 0)
      out->dirty = v != 0, found |= 4;
    else if (strcmp(name, "repair") == 0)
      marked = v != 0;
    else if (strcmp(name, "journal") == 0 && jepoch)
      *jepoch = v;
  }
  sqlite3_reset(s);
  /* A marked extent is dirty (extent.c, M1), whatever a database that
   * was edited by hand says: it must be rehashed at open and reported
   * dirty. */
  if (marked)
    out->dirty = 1;
  if (repair)
    *repair = marked;
  if (rc != SQLITE_DONE) {
    log_error("metadata: %s", sqlite3_errmsg(db));
    return ext__sql_err(rc);
  }
  return found == 7 ? 0 : -EINVAL;
}

/* --- creation and inspection ------------------------------------------ */

int ext_read_meta(const char *dir, uint32_t eid, bool read_only,
                  struct proto_extent_state *out, bool *repair)
{
  char rel[EXT_PATH_MAX], reldb[EXT_PATH_MAX + 3];
  char path[PATH_MAX];
  sqlite3 *db = NULL;
  sqlite3_stmt *s = NULL;
  ext__paths(dir, eid, rel, reldb, path, sizeof path);
  if (access(path, F_OK) < 0)
    return -errno;
  int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK)
    sqlite3_busy_timeout(db, 5000);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db, EXT__GET_META_SQL, -1, &s, NULL);
  uint64_t jepoch = 0;
  int r = rc == SQLITE_OK ? ext__read_meta_rows(db, s, out, repair, &jepoch)
                          : ext__sql_err(rc);
  if (rc != SQLITE_OK)
    log_error("%s: %s", path, db ? sqlite3_errmsg(db) : "open");
  sqlite3_finalize(s);
  sqlite3_close(db);
  if (r == 0) { /* J4: a valid journal record makes it dirty */
    int j = ext__jnl_dirty(dir, eid, jepoch);
    if (j < 0)
      log_error("%s/%s.db-jnl: %s", dir, rel, log_strerror(-j));
    if (j != 0)
      out->dirty = 1;
  }
  return r;
}

static int write_file(int dirfd, const char *rel, const uint8_t *p, size_t len,
                      uint64_t size)
{
  int fd = openat(dirfd, rel, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  int r = len ? ext__pwrite_full(fd, p, len, 0) : 0;
  if (r == 0 && size && ftruncate(fd, (off_t) size) < 0)
    r = -errno;
  if (close(fd) < 0 && r == 0)
    r = -errno;
  return r;
}

int ext_remove(int dirfd, uint32_t eid)
{
  char rel[EXT_PATH_MAX], reldb[EXT_PATH_MAX + 3];
  char side[EXT_PATH_MAX + 8];
  ext__paths(NULL, eid, rel, reldb, NULL, 0);
  const char *paths[] = {rel, reldb, side, side, side};
  static const char *const sfx[] = {"-wal", "-shm", "-jnl"};
  for (int i = 0; i < 5; i++) {
    if (i >= 2)
      snprintf(side, sizeof side, "%s%s", reldb, sfx[i - 2]);
    if (unlinkat(dirfd, paths[i], 0) < 0 && errno != ENOENT)
      return -errno;
  }
  return 0;
}

int ext_create(int dirfd, uint32_t eid, uint64_t data_bytes,
               const uint8_t *seed, size_t seed_len)
{
  char rel[EXT_PATH_MAX], reldb[EXT_PATH_MAX + 3];
  ext__paths(NULL, eid, rel, reldb, NULL, 0);
  char d[EXT_PATH_MAX];
  /* "XX" then "XX/YYY"; EEXIST is the common case after the first. */
  for (size_t cut = 2; cut <= 6; cut += 4) {
    memcpy(d, rel, cut);
    d[cut] = '\0';
    if (mkdirat(dirfd, d, 0755) < 0 && errno != EEXIST)
      return -errno;
  }
  int r = write_file(dirfd, rel, NULL, 0, data_bytes); /* sparse */
  if (r == 0)
    r = write_file(dirfd, reldb, seed, seed_len, 0);
  return r;
}

int ext_seed_create(const char *path)
{
  sqlite3 *db = NULL;
  char *msg = NULL;
  int rc = sqlite3_open_v2(
      path, &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL;", NULL, NULL, &msg);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, SCHEMA, NULL, NULL, &msg);
  if (rc != SQLITE_OK)
    log_error("%s: %s", path, msg ? msg : db ? sqlite3_errmsg(db) : "open");
  sqlite3_free(msg);
  /* The last close checkpoints the WAL into the file and deletes it, so
   * the file alone is a complete (WAL-mode) seed. */
  if (sqlite3_close(db) != SQLITE_OK && rc == SQLITE_OK)
    rc = SQLITE_IOERR;
  return rc == SQLITE_OK ? 0 : ext__sql_err(rc);
}
