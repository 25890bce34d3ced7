/* crucible-c downstairs: one extent on disk (private to the downstairs).
 *
 * An extent is a data file (extent_size * block_size bytes, sparse), a
 * SQLite database beside it (see region.h for the layout and docs/DESIGN.md
 * for the schema) and the database's context journal (extent_jnl.c: a
 * write's contexts are appended there, and moved into the database in
 * one transaction later; "THE JOURNAL RULE").  This module owns the SQLite handle, the prepared
 * statements and the write ordering that keeps the crash rule (region.h):
 *
 *   write:  the new contexts appended to the journal (or, for a write
 *           too big for it: dirty=1 + new contexts + the unwritten row
 *           for a block that had no row COMMITTED) -> then pwrite the data
 *   trim:   dirty=1 + the unwritten row added to each block that has rows,
 *           COMMITTED                    ->  then punch the hole
 *   flush:  fdatasync the data           ->  then delete stale contexts
 *           (and unwritten-only blocks) and set gen/flush/dirty=0 in one
 *           synchronous=FULL transaction
 *   open of a dirty extent: fdatasync, rehash every block that has rows,
 *           keep only the matching row (if one matches)
 *   mark:   repair=1, dirty=1 COMMITTED (live repair, EXTENT_MARK): a
 *           regular flush then leaves the extent alone (dirty, numbers
 *           unchanged) until ext_flush(always) levels it and clears repair
 *
 * The "unwritten row" (no nonce/tag, hash 0, on_disk_hash = zero_hash;
 * version 0, or that of the trim that added it) is the candidate for a
 * block whose bytes are still zeroes;
 * the full invariant and why each path keeps it is in extent.c.
 *
 * Between flushes the extent remembers in memory, per block written or
 * trimmed, the on_disk_hash of the last bytes written (struct ext_seen);
 * that is the context a flush keeps.  Nothing else may delete contexts.
 * It also remembers which blocks are known to have rows (ext.has_rows),
 * so a write to such a block skips the unwritten-row statement.
 *
 * Locking: the caller (region.c) holds the extent's mutex around every
 * ext_* call on an open extent; this module has no locks of its own.
 * Blocks are extent-relative here.  All functions return 0 or -errno.
 */
#ifndef CRUCIBLE_EXTENT_H
#define CRUCIBLE_EXTENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/proto.h"

/* Extent eid's files in the region directory: "XX/YYY/ZZZ" (the data) and
 * "XX/YYY/ZZZ.db" (its SQLite metadata), XX/YYY/ZZZ the hex of eid's
 * bits 31-24, 23-12 and 11-0.  Inline so the test tools that handle
 * region files need no downstairs object. */
#define EXT_PATH_MAX 16 /* "XX/YYY/ZZZ" + NUL, rounded */
static inline void ext_path(uint32_t eid, char buf[EXT_PATH_MAX])
{
  snprintf(buf, EXT_PATH_MAX, "%02X/%03X/%03X", (unsigned) (eid >> 24) & 0xff,
           (unsigned) (eid >> 12) & 0xfff, (unsigned) eid & 0xfff);
}

struct sqlite3;
struct sqlite3_stmt;

/* Remembered "last bytes written since the last flush", per block: an
 * open-addressing table (block -> on_disk_hash).  FORGOTTEN entries mark
 * blocks whose contexts a flush must not touch (trimmed, or a failed
 * pwrite left the disk contents unknown). */
enum { EXT_SEEN_EMPTY = 0, EXT_SEEN_LIVE = 1, EXT_SEEN_FORGOTTEN = 2 };
struct ext_seen_slot {
  uint32_t block;
  uint32_t state;
  uint64_t hash;
};
struct ext_seen {
  struct ext_seen_slot *slots; /* owned; NULL when empty */
  uint32_t cap;                /* power of two, or 0 */
  uint32_t used;
};

struct ext {
  uint32_t eid;
  uint32_t block_size;
  uint64_t extent_size;        /* blocks */
  uint64_t zero_hash;          /* crypt_hash_plain of a zero block */
  int fd;                      /* data file, -1 when closed */
  struct sqlite3 *db;          /* NULL when closed */
  struct sqlite3_stmt *st[16]; /* prepared statements, see extent.c */
  struct ext_seen seen;
  /* Bit per block: set only for a block KNOWN to have rows (a committed
   * write or trim since open gave it one, and no flush removed it).  A
   * clear bit means "unknown": the write then adds the unwritten row as
   * usual.  NULL when closed (or out of memory: everything unknown). */
  uint8_t *has_rows;
  /* Bit per block: set once fallocate (ext_write's reservation) covered
   * it since open, cleared before a trim punches it; a write to blocks
   * all set skips fallocate (~7 us per 4 KiB write here).  NULL when
   * closed or out of memory. */
  uint8_t *allocated;
  int wal_pages; /* frames in the -wal file after the last commit */
  /* The data file's block layout (allocation, holes, unwritten extents)
   * may have changed since its last fdatasync: fallocate or a punch ran,
   * or the extent was opened since.  Clear, on an in-place filesystem,
   * a flush writes the data out without an fdatasync of its own and the
   * commit's WAL sync makes it durable (ext_flush, "ONE SYNC"). */
  bool layout_dirty;
  bool one_sync;             /* ONE SYNC allowed (ext_flush): ext2/3/4 on a
                                write-through device */
  uint32_t flushes_one_sync; /* flushes since open that took ONE SYNC */
  /* Cached metadata, valid when meta_known (kept across close).  repair
   * is the `repair` row (EXTENT_MARK; a missing row is 0); repair
   * implies meta.dirty. */
  bool meta_known;
  struct proto_extent_state meta;
  bool repair;
  /* Block status (extent_map.c, "THE MAP"): bit per block, set where it
   * may hold data, valid when map_known (NULL: none does).  Kept across
   * close, like meta. */
  bool map_known;
  uint8_t *map;
  /* The context journal (extent_jnl.c): its file (-1: none yet; only
   * meaningful while fd >= 0), the region directory it is made in, its
   * epoch (metadata row `journal`), its valid records, and a bit per
   * block that has one (NULL: out of memory, every block may). */
  int jfd;
  int dirfd;
  uint64_t jepoch;
  uint32_t jn;
  uint8_t *jpending;
};

/* Open the files of extent e->eid under the region directory dirfd
 * (e->eid, block_size, extent_size, zero_hash set by the caller).  A dirty extent is
 * recovered (see the header comment).  -ENOENT if the files are missing,
 * -EINVAL if they are not an extent of this geometry, -EIO. */
int ext_open(struct ext *e, int dirfd, const char *dir);
/* Finalize and close; keeps every context (crash rule) and the cached
 * metadata.  Safe on a closed extent. */
void ext_close(struct ext *e);

/* Blocks [blk, blk+n) of the extent.  ctxs/data as in region.h; odh[i] is
 * crypt_hash_plain of block i's bytes, computed by the caller; no
 * ctxs[i].version may be 0 (that marks the unwritten row). */
int ext_write(struct ext *e, uint64_t blk, uint32_t n,
              const struct proto_ctx *ctxs, const uint64_t *odh,
              const uint8_t *data);
/* Checkpoint the WAL (which syncs) once a commit leaves this many pages
 * in it: SQLite's own default, done by our WAL hook so that the loop
 * thread can tell when a commit would checkpoint (ext_write_now_ok). */
#define EXT_WAL_CHECKPOINT 1000
/* Up to this many pages below it a commit cannot reach it (a group of up
 * to 64 writes of a few rows each). */
#define EXT_WAL_MARGIN 256

/* One write of a group. */
struct ext_wr {
  uint64_t blk;
  uint32_t n;
  const struct proto_ctx *ctxs;
  const uint64_t *odh;
  const uint8_t *data;
  int err; /* in: nonzero skips it; out: 0 or -errno */
};
/* Writes in order, as ext_write each, but their rows in ONE transaction
 * (group commit); each gets its own result. */
void ext_write_group(struct ext *e, struct ext_wr *w, unsigned nw);
/* Would ext_write_group need no wait for w: every block already reserved
 * (no fallocate) and no checkpoint due (no sync)? */
bool ext_write_now_ok(const struct ext *e, const struct ext_wr *w, unsigned nw);
/* Per block of [blk, blk+n) its newest context (written or the unwritten
 * row; zero if none) from the metadata alone: no data read. */
int ext_versions(struct ext *e, uint64_t blk, uint32_t n,
                 struct proto_ctx *ctxs);
int ext_read(struct ext *e, uint64_t blk, uint32_t n, struct proto_ctx *ctxs,
             uint8_t *data);
/* ext_read from the page cache only: -EAGAIN (nothing changed) if any of
 * the bytes would need the disk. */
int ext_read_cached(struct ext *e, uint64_t blk, uint32_t n,
                    struct proto_ctx *ctxs, uint8_t *data);
/* version: the trim's, kept in the unwritten row until the next flush
 * (reconciliation tells a newer trim from an older write by it). */
int ext_trim(struct ext *e, uint64_t blk, uint32_t n, uint64_t version);
/* Durable + cleanup + metadata; no-op (0) if the extent is clean or
 * marked (repair), unless always (then a clean extent just takes
 * flush_no and gen, and a marked one loses its mark in the same
 * transaction). */
int ext_flush(struct ext *e, uint64_t flush_no, uint64_t gen, bool always);
/* EXTENT_MARK: set repair=1 and dirty=1 in one transaction (no fsync:
 * SQLite commits in order, so no later commit of this extent is durable
 * without it).  Until ext_flush(always) the extent stays dirty with its
 * numbers.  Marking a marked extent does nothing. */
int ext_mark(struct ext *e);
/* Test hook (test_region_jnl): when ext__crash_at equals a crash point,
 * the process kills itself with SIGKILL there. */
extern int ext__crash_at;
enum {
  EXT_CP_JOURNALED = 1, /* a group's records appended, no data written */
};
/* Move every journal record into the metadata now (one transaction;
 * extent_jnl.c, J5): before anything reads the database itself. */
int ext_settle(struct ext *e);
/* Has a block of [blk, blk+n) a journal record (then reading it folds
 * first, which the loop thread must not wait for)? */
bool ext_pending(const struct ext *e, uint64_t blk, uint32_t n);
/* Scrub: bad() for every block with contexts none of which matches. */
int ext_verify(struct ext *e, void (*bad)(uint32_t, uint64_t, void *),
               void *arg, uint64_t *checked);

/* Block status (extent_map.c).  ext_map_probe: an extent not open whose
 * data file has no allocated block becomes known empty (no SQLite);
 * ext_map_load: from the rows of the open (recovered) extent, unless
 * known; ext_map_get: n bits for [blk, blk+n) into bits ((n+7)/8 bytes,
 * bit i = block blk+i may hold data; all set if the map is not known);
 * ext_map_set/clear: a write is about to commit / a trim punched its
 * hole; ext_map_forget: drop it (files replaced, region closed). */
int ext_map_probe(struct ext *e, int dirfd);
int ext_map_load(struct ext *e);
void ext_map_get(const struct ext *e, uint64_t blk, uint32_t n, uint8_t *bits);
void ext_map_set(struct ext *e, uint64_t blk, uint32_t n);
void ext_map_clear(struct ext *e, uint64_t blk, uint32_t n);
void ext_map_forget(struct ext *e);

/* Read (gen, flush, dirty) and, if repair is not NULL, the repair mark
 * of extent eid without opening it for IO; read_only opens the database
 * with SQLITE_OPEN_READONLY (dump). */
int ext_read_meta(const char *dir, uint32_t eid, bool read_only,
                  struct proto_extent_state *out, bool *repair);

/* Remove whatever files of extent eid exist (data, database, its WAL and
 * shared memory): the leftovers of an extend that crashed before its
 * region.json.  0 (also when none existed) or -errno. */
int ext_remove(int dirfd, uint32_t eid);

/* Create the files of extent eid from the seed database image (creation
 * of a region).  Creates the XX/YYY directories as needed. */
int ext_create(int dirfd, uint32_t eid, uint64_t data_bytes,
               const uint8_t *seed, size_t seed_len);
/* Create the seed database at path (schema, WAL, metadata rows = 0). */
int ext_seed_create(const char *path);

#endif
