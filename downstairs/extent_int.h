/* crucible-c downstairs: helpers shared by extent.c and extent_util.c
 * (private to the extent module; region.c uses extent.h only).
 *
 * The IO helpers never tear silently: pread_full reads zeroes past EOF,
 * pwrite_full returns ENOSPC/EIO as they are (never retried), reserve
 * fallocates up front so a full disk fails before anything changes.
 * All return 0 or -errno.
 */
#ifndef CRUCIBLE_EXTENT_INT_H
#define CRUCIBLE_EXTENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/geom.h"
#include "../common/proto.h"
#include "extent.h"

struct sqlite3;
struct sqlite3_stmt;

/* The metadata rows (gen_number, flush_number, dirty; repair, which
 * regions made before EXTENT_MARK lack: a missing row is 0). */
#define EXT__GET_META_SQL "SELECT name, value FROM metadata"

/* Prepared statements, one set per open extent (indexes into e->st;
 * their SQL is in extent.c). */
enum {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_INSERT,
  ST_ADD_UNWRITTEN,
  ST_TRIM_ROWS,
  ST_TRIM_UNWRITTEN,
  ST_SELECT_RANGE,
  ST_DELETE_STALE,
  ST_DELETE_UNWRITTEN,
  ST_SET_META,
  ST_SYNC_FULL,
  ST_SYNC_NORMAL,
  ST_ALL_ROWS,
  ST_GET_META,
  ST_COUNT_
};

struct ext;
/* extent.c: are the last bytes written to block since the last flush
 * remembered as zeroes (a trim whose hole was punched, or a recovered
 * one)?  Then its disk holds zeroes, whatever older rows it keeps. */
bool ext__seen_zero(const struct ext *e, uint32_t block);
/* Is block remembered with the hash of its last bytes (*hash), which
 * the flush under way keeps? */
bool ext__seen_live(const struct ext *e, uint32_t block, uint64_t *hash);

/* Map a SQLite result code to a negative errno. */
int ext__sql_err(int rc);

/* Bitmaps of one bit per block (NULL: every bit reads clear, setting
 * does nothing). */
bool ext__bm_all(const uint8_t *bm, uint64_t blk, uint64_t n);
void ext__bm_set(uint8_t *bm, uint64_t blk, uint64_t n);
void ext__bm_clear(uint8_t *bm, uint64_t blk, uint64_t n);

int ext__pread_full(int fd, uint8_t *buf, size_t len, off_t off);
/* All of it from the page cache (preadv2 RWF_NOWAIT), else -EAGAIN
 * (nothing usable read: not cached, short, or unsupported). */
int ext__pread_cached(int fd, uint8_t *buf, size_t len, off_t off);
/* pwrite in pieces of at most EXT__PWRITE_PIECE: a big pwrite makes the
 * page cache hold big folios, and every later 4 KiB write into one then
 * walks all its buffer heads (ext4 on 6.x kernels: a 4 KiB pwrite after
 * 1 MiB writes costs 33 us of CPU, after 64 KiB writes 4 us; the pieces
 * cost sequential writes ~90 us per MB, measured). */
#define EXT__PWRITE_PIECE (64u * 1024)
int ext__pwrite_full(int fd, const uint8_t *buf, size_t len, off_t off);
/* Allocate [off, off+len) (fallocate; skipped where unsupported). */
int ext__reserve(int fd, off_t off, off_t len);
/* Zero [off, off+len): punch a hole, or write zeroes where unsupported. */
int ext__zero_range(int fd, off_t off, off_t len);

/* rel = "XX/YYY/ZZZ", reldb = rel + ".db", db = dir + "/" + reldb (db may
 * be NULL). */
void ext__paths(const char *dir, uint32_t eid, char rel[EXT_PATH_MAX],
                char reldb[EXT_PATH_MAX + 3], char *db, size_t dblen);

/* Step s (EXT__GET_META_SQL) into out and *repair (if not NULL); a
 * marked extent is reported dirty.  -EINVAL if gen_number, flush_number
 * or dirty is missing. */
int ext__read_meta_rows(struct sqlite3 *db, struct sqlite3_stmt *s,
                        struct proto_extent_state *out, bool *repair,
                        uint64_t *jepoch);

/* extent.c: run statement i (no rows expected) / upsert a metadata row
 * under the open transaction; 0 or -errno (logged). */
int ext__st_run(struct ext *e, int i);
int ext__set_meta(struct ext *e, const char *name, uint64_t v);
/* Roll the open transaction back and forget which blocks are known to
 * have rows (ext.has_rows). */
void ext__rollback(struct ext *e);

/* --- the context journal (extent_jnl.c, "THE JOURNAL RULE") ----------- */

#define EXT_JNL_REC 64u   /* bytes per record */
#define EXT_JNL_CAP 4096u /* records per journal: 256 KiB */

/* One record, decoded. */
struct ext_jrec {
  uint32_t block;
  uint64_t version, hash, odh;
  uint8_t nonce[PROTO_NONCE_LEN];
  uint8_t tag[PROTO_TAG_LEN];
};
void ext__jnl_encode(uint8_t *p, uint32_t block, const struct proto_ctx *c,
                     uint64_t odh, uint64_t epoch);
/* false: not a record of this epoch (or not one of this extent). */
bool ext__jnl_decode(const uint8_t *p, uint64_t epoch, uint64_t extent_size,
                     struct ext_jrec *r);
/* "XX/YYY/ZZZ.db-jnl" */
void ext__jnl_path(uint32_t eid, char out[EXT_PATH_MAX + 8]);
/* At open (e->jepoch read from the metadata): open the journal if it
 * exists and count its valid records into e->jn. */
int ext__jnl_open(struct ext *e, int dirfd);
/* Does extent eid's journal (under the region directory dir) hold a
 * valid record under epoch (J4)?  1, 0 or -errno; without opening the
 * extent. */
int ext__jnl_dirty(const char *dir, uint32_t eid, uint64_t epoch);
/* Append the records of every write of w without err (nrec in all; room
 * checked by the caller), one pwrite, before their data (J1). */
int ext__jnl_append(struct ext *e, const struct ext_wr *w, unsigned nw,
                    uint32_t nrec);
/* Under the caller's open transaction: every record into block_context
 * and a fresh epoch into the metadata (*epoch); after COMMIT the caller
 * calls ext__jnl_folded(e, *epoch) (J3).  for_flush: the flush's own
 * transaction, which then keeps only each remembered block's last row:
 * of such a block only the record of those bytes is moved. */
int ext__jnl_fold_rows(struct ext *e, uint64_t *epoch, bool for_flush);
void ext__jnl_folded(struct ext *e, uint64_t epoch);

/* extent_seen.c: the remembered table (struct ext_seen).  set records
 * block's newest state (-ENOMEM: a new block is not remembered, and a
 * flush leaves absent blocks alone); forget marks [blk, blk+n)
 * forgotten where remembered; reset empties it. */
int ext__seen_set(struct ext_seen *s, uint32_t block, uint32_t state,
                  uint64_t hash);
void ext__seen_forget(struct ext_seen *s, uint64_t blk, uint64_t n);
void ext__seen_reset(struct ext_seen *s);

/* extent.c: keep only block's row for the bytes hashing to keep (and not
 * even that one if it is the unwritten row), under an open transaction;
 * only for bytes known durable. */
int ext__keep_only(struct ext *e, uint64_t block, uint64_t keep);
/* extent_recover.c: recheck a dirty extent at open (one transaction). */
int ext__recover_dirty(struct ext *e);

#endif
