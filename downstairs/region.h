/* crucible-c downstairs: one replica on disk (a region directory).
 *
 * Layout (docs/DESIGN.md, "Region on disk"):
 *   region.json   geometry, uuid, encrypted flag; plus the mutable
 *                 "highest_gen" and "kcv" (key check value), rewritten
 *                 atomically (temp file, fsync, rename, fsync dir)
 *   seed.db       empty extent database, copied to create each extent db
 *   XX/YYY/ZZZ    extent data, extent_size * block_size bytes, sparse
 *   XX/YYY/ZZZ.db extent metadata, SQLite in WAL mode
 *
 * Crash rule (the invariant this module keeps): after kill -9 at any
 * instant, every written block's bytes on disk match the on_disk_hash of
 * at least one of its stored contexts.  It holds because a write commits
 * the new contexts (keeping the old ones) BEFORE pwrite()ing the data, and
 * stale contexts are deleted only after an fsync made the newest bytes
 * durable (flush), or after opening a dirty extent rehashed the disk.
 *
 * Threading: region_write/read/trim may be called concurrently from worker
 * threads; each extent has a mutex, so calls on the same extent serialize.
 * The caller (server.c) guarantees ORDER: it never runs two jobs that
 * overlap at the same time, and runs region_flush with no other job in
 * flight.  Every IO call stays inside one extent (-EINVAL otherwise).
 *
 * Open extents are bounded (REGION_MAX_OPEN_EXTENTS, LRU) so a 1 TiB
 * region works within the default RLIMIT_NOFILE (raised to the hard limit
 * at open anyway).  Eviction only closes, keeping every context (flush
 * numbers are set by region_flush alone); reopening a dirty extent
 * rehashes it.  region_create makes every extent's files eagerly.
 *
 * All functions return 0 or a negative errno (-EIO, -ENOSPC, -EINVAL...).
 */
#ifndef CRUCIBLE_REGION_H
#define CRUCIBLE_REGION_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/proto.h"

#define REGION_MAX_OPEN_EXTENTS 64

struct region;

/* Create a new region in dir (created if missing; must be empty or
 * absent: -EEXIST if it holds a region.json).  def->uuid all zero makes a
 * region of no volume yet: it adopts the uuid its first ACTIVATE names
 * (region_set_uuid).  Extent files are created sparse. */
int region_create(const char *dir, struct proto_region *def);
/* 0 if the directory dirfd has no entries but "." and "..", -ENOTEMPTY
 * if it has, or -errno. */
int region_dir_empty(int dirfd);

/* Open an existing region.  -ENOENT if dir has no region.json, -EINVAL if
 * it is not a valid region, -EBUSY if another open region (any process)
 * holds it: an exclusive flock on the directory until region_close.  Dirty extents are recovered lazily on first
 * open of each extent (rehash, drop stale contexts). */
int region_open(const char *dir, struct region **out);
/* Closes every extent (consistent on disk) and frees.  NULL is fine. */
void region_close(struct region *r);

const struct proto_region *region_def(const struct region *r);

/* Mutable region-level metadata (persisted in region.json atomically). */
uint64_t region_highest_gen(const struct region *r);
int region_set_highest_gen(struct region *r, uint64_t gen);
/* 1 and *kcv filled if the region stores one, else 0. */
int region_get_kcv(const struct region *r, struct proto_kcv *kcv);
int region_set_kcv(struct region *r, const struct proto_kcv *kcv);
/* Give a region made without a uuid its volume's (persisted before it
 * returns; region_def shows it after).  0 if it has none yet or already
 * this one, -EEXIST if it has another, -EINVAL for an all-zero uuid. */
int region_set_uuid(struct region *r, const uint8_t uuid[PROTO_UUID_LEN]);
/* Grow the region to count extents (online: the new extents are used only
 * once the upstairs knows of them).  Their files are created (after
 * removing any a crashed extend left) and synced, then region.json is
 * rewritten with the new count, the commit point: a crash before it
 * leaves the old region, after it the new one.  0 (also when it already
 * has count), -EINVAL to shrink or for a geometry geom_check refuses,
 * -errno.  Extends are serialized; IO to the old extents goes on. */
int region_extend(struct region *r, uint32_t count);

/* Write n blocks at lba (inside one extent).  ctxs[i] describes block i;
 * the region checks that ctxs[i].hash matches the data (crypt_hash_cipher
 * on encrypted regions, crypt_hash_plain otherwise) and returns -EBADMSG
 * without changing anything if any block fails.  One SQLite transaction
 * for the whole call. */
int region_write(struct region *r, uint64_t lba, uint32_t n,
                 const struct proto_ctx *ctxs, const uint8_t *data);
/* Several writes into one extent, in order, each as region_write (its own
 * checks and result in err), their rows in one transaction (group
 * commit: the downstairs joins the queued writes of an extent). */
struct region_wr {
  uint64_t lba;
  uint32_t n;
  const struct proto_ctx *ctxs;
  const uint8_t *data;
  int err; /* out: 0 or -errno */
};
void region_write_group(struct region *r, struct region_wr *w, unsigned nw);
/* region_write_group without waiting, for the loop thread: -EAGAIN with
 * nothing written (the err fields then mean nothing) unless the extent is
 * open, its lock free, every block reserved and no checkpoint due. */
int region_write_group_now(struct region *r, struct region_wr *w, unsigned nw);

/* Read n blocks at lba into data (n * block_size) and ctxs.  A block never
 * written (or trimmed) gets ctxs[i].flags = 0 and zero data (version: its
 * unflushed trim's, else 0).  A written block gets the stored context
 * whose on_disk_hash matches the bytes read; if none matches (corruption,
 * or a crash between flushes), the newest context with PROTO_CTX_BAD and
 * the bytes as they are.  data NULL: the newest context of each block
 * from the metadata only (no data read, never PROTO_CTX_BAD), what the
 * replica claims to hold (PROTO_F_VERSIONS). */
int region_read(struct region *r, uint64_t lba, uint32_t n,
                struct proto_ctx *ctxs, uint8_t *data);
/* region_read without waiting: -EAGAIN (nothing done) unless the extent
 * is open, its lock free and every byte in the page cache, so the loop
 * thread may serve it without a hand-off to a worker. */
int region_read_now(struct region *r, uint64_t lba, uint32_t n,
                    struct proto_ctx *ctxs, uint8_t *data);

/* Block status of n blocks at lba (inside one extent) into bits
 * ((n + 7) / 8 bytes, bit i = block lba + i may hold data; a clear bit
 * reads as zeroes).  From the in-memory map of the extent (extent_map.c,
 * "THE MAP"), loaded at most once per region_open: an extent that was
 * never opened and has nothing allocated needs no SQLite at all. */
int region_extent_map(struct region *r, uint64_t lba, uint32_t n,
                      uint8_t *bits);

/* Blocks become unwritten: data zeroed (hole punched); until the next
 * flush they report the trim's version (0 allowed). */
int region_trim(struct region *r, uint64_t lba, uint32_t n, uint64_t version);

/* Make everything written so far durable: fsync data of every dirty
 * extent, then per dirty extent in one transaction drop stale contexts,
 * set flush_number = flush_no, gen_number = gen, dirty = 0.  Extents
 * marked by region_extent_mark are left as they are (see below). */
int region_flush(struct region *r, uint64_t flush_no, uint64_t gen);
/* The same; *nflushed = how many extents it flushed (for the log). */
int region_flush_n(struct region *r, uint64_t flush_no, uint64_t gen,
                   uint32_t *nflushed);

/* One extent at a time (server_job.c, clone.c); the caller keeps every
 * other job off extent eid meanwhile.  -EINVAL for an eid outside the
 * region.
 * region_extent_flush (EXTENT_FLUSH): ext_flush of one extent, clean or
 * not (it always takes flush_no and gen) and marked or not (it clears
 * the mark).
 * region_extent_mark (EXTENT_MARK, live repair): the extent becomes
 * dirty and marked, persistently: region_flush leaves it alone (no
 * fsync, numbers unchanged, still dirty, an evicted one is not
 * reopened) until region_extent_flush; region_extent_states reports it
 * dirty.  Marking a marked extent succeeds and changes nothing.
 * region_extent_close: close its files (database whole, WAL
 * checkpointed; the FILE_REQ source side, clone); forget also drops the
 * cached (gen, flush, dirty, mark), for files that were replaced.
 * region_extent_is_open: are its files open (in the LRU)?  For tests.
 * region_dirfd: the region directory. */
int region_extent_flush(struct region *r, uint32_t eid, uint64_t flush_no,
                        uint64_t gen);
int region_extent_mark(struct region *r, uint32_t eid);
int region_extent_close(struct region *r, uint32_t eid, bool forget);
bool region_extent_is_open(struct region *r, uint32_t eid);
int region_dirfd(const struct region *r);

/* Per-extent (gen, flush, dirty), states[extent_count]. */
int region_extent_states(struct region *r, struct proto_extent_state *states);

/* Scrub helper for `verify`: checks every written block of extent eid
 * against its contexts; calls bad(eid, block, arg) for each block that
 * matches none (block counted from the start of the extent).  *checked gets the number of written blocks examined. */
int region_verify_extent(struct region *r, uint32_t eid,
                         void (*bad)(uint32_t eid, uint64_t block, void *arg),
                         void *arg, uint64_t *checked);

/* Snapshots (region_snap.c, downstairs/snapshot.h for the layout and the
 * rules).  A snapshot is recorded at once and copies nothing: each
 * extent is copied into the newest snapshot before its first change after
 * it (reflinked where the filesystem can).
 * region_snapshot_create: region_flush(flush_no, gen), then the record,
 * durably; the caller runs it alone (a barrier).  -EINVAL for a bad name,
 * -EEXIST for a name taken, -ENOSPC past SNAP_MAX (nothing changed).
 * region_snapshot_delete: -ENOENT for no such name; run alone.
 * region_snapshot_list: up to max, oldest first, with the space each
 * uses; *n how many.
 * region_snapshot_find: the record of one snapshot (copies and bytes
 * not counted: no file is looked at), -ENOENT for no such name.
 * region_snapshot_read: region_read of the snapshot's contents (the live
 * extent where it has not changed since); -ENOENT no such snapshot,
 * -EINVAL outside the region it was taken of.
 * region_snapshot_verify: region_verify_extent over every copy every
 * snapshot holds (bad gets the snapshot's name). */
struct region_snap_info {
  char name[64];
  uint32_t seq;
  uint64_t time, gen, flush;
  uint32_t extent_count; /* the region's then */
  uint32_t copies;       /* extents copied into it */
  uint64_t bytes;        /* allocated bytes of those copies */
};
int region_snapshot_create(struct region *r, const char *name,
                           uint64_t flush_no, uint64_t gen, uint64_t time);
int region_snapshot_delete(struct region *r, const char *name);
int region_snapshot_list(struct region *r, struct region_snap_info *out,
                         unsigned max, unsigned *n);
int region_snapshot_find(struct region *r, const char *name,
                         struct region_snap_info *out);
int region_snapshot_read(struct region *r, const char *name, uint64_t lba,
                         uint32_t n, struct proto_ctx *ctxs, uint8_t *data);
int region_snapshot_verify(struct region *r,
                           void (*bad)(const char *snap, uint32_t eid,
                                       uint64_t block, void *arg),
                           void *arg, uint64_t *checked);

#endif
