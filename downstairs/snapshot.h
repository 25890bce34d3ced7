/* crucible-c downstairs: snapshots of a region, on disk (private to the
 * downstairs; region.c is the only caller besides the tests).
 *
 * Layout (docs/DESIGN.md, "Snapshots"):
 *   snapshots/SEQ/snapshot.info   the record (name, seq, time, gen, flush,
 *                                 extents); its directory's rename from
 *                                 SEQ.tmp is the commit point of a create
 *   snapshots/SEQ/eXXXXXXXX/      extent eid's files as they were when the
 *                                 snapshot was taken (XX/YYY/ZZZ and .db,
 *                                 the region's own layout), copied before
 *                                 the first change after it; renamed from
 *                                 eXXXXXXXX.tmp when complete and synced
 *   snapshots/SEQ/deleting        a delete in progress (resumed at open)
 *
 * THE CHAIN RULE: snapshot S holds extent E as the first snapshot of seq
 * >= S's that has a copy of E, or else the live extent.  It holds because
 * every change of a live extent (write, trim, mark) first copies it into
 * the newest snapshot if that one has no copy yet (copy on first write),
 * so a live extent without a copy in any snapshot from S on has not
 * changed since S; and a delete hands each copy of S that the next older
 * snapshot P lacks over to P (P relied on it), dropping the rest.
 * Snapshots are processed one at a time (create and delete are barriers
 * on the downstairs: no other job runs), and seq numbers only grow.
 *
 * Crash rule: a create is a directory rename; a copy is a directory
 * rename made after its files and directories were synced, and the write
 * that needed it waits for it; a delete moves or removes whole copy
 * directories, so at any instant every copy is whole or absent.  Opening
 * removes SEQ.tmp and eXXXXXXXX.tmp leftovers and finishes deletes (the
 * oldest first).
 *
 * All functions return 0 or a negative errno.
 */
#ifndef CRUCIBLE_SNAPSHOT_H
#define CRUCIBLE_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/proto.h"

struct ext;

#define SNAP_DIR "snapshots"
/* A name: what proto_snap_stored_ok accepts (a snapshot's, or a
 * rollback marker's), 1..SNAP_NAME_MAX bytes. */
#define SNAP_NAME_MAX (PROTO_SNAP_NAME_LEN - 1)
/* Most snapshots of one region: bounds the chain every copy lookup and
 * the list reply walk. */
#define SNAP_MAX 64

struct snap {
  uint32_t seq; /* order of creation, from 1 */
  char name[SNAP_NAME_MAX + 1];
  uint64_t time;         /* seconds since the epoch, the caller's */
  uint64_t gen, flush;   /* the flush the snapshot was taken with */
  uint32_t extent_count; /* the region's count then */
};

/* The snapshots of a region, sorted by seq.  Owned by the region. */
struct snap_cat {
  struct snap v[SNAP_MAX];
  unsigned n;
  uint32_t seq_hi; /* highest seq seen this run (never reused) */
};

/* Read the catalog of the region directory dirfd (none: empty), after
 * recovering what a crash left (see the header). */
int snap_cat_open(int dirfd, struct snap_cat *cat);

/* The same without recovering anything (dump: a stopped region, read
 * only); snapshots being deleted are left out. */
int snap_cat_read(int dirfd, struct snap_cat *cat);

/* Record snapshot s (name, time, gen, flush, extent_count; seq is
 * assigned) durably.  -EEXIST if the name is taken, -ENOSPC past
 * SNAP_MAX, -EINVAL for a bad name.  The caller made the region durable
 * first (a flush) and runs it alone. */
int snap_create(int dirfd, struct snap_cat *cat, struct snap *s);

/* Delete the snapshot named name (-ENOENT if none), handing its copies
 * to the next older snapshot where it lacks them.  Run alone. */
int snap_delete(int dirfd, struct snap_cat *cat, const char *name);

/* The snapshot named name, or NULL. */
const struct snap *snap_find(const struct snap_cat *cat, const char *name);

/* 1 if snapshot seq has a copy of extent eid, 0 if not, or -errno. */
int snap_has_copy(int dirfd, uint32_t seq, uint32_t eid);

/* Copy the open live extent x (its caller holds its lock; no transaction
 * open) into snapshot seq: the data file by reflink (FICLONE) where the
 * filesystem has them, else sparse (only its allocated ranges), the
 * database by VACUUM INTO; all synced, then committed by one rename.
 * 1 if the data was reflinked, 0 if copied, or -errno (nothing left). */
int snap_copy_extent(int dirfd, uint32_t seq, struct ext *x);

/* Where snapshot s reads extent eid from: *seq = the snapshot holding
 * its copy (the chain rule), or 0 for the live extent.  The caller holds
 * the live extent's lock (no copy appears meanwhile). */
int snap_source(int dirfd, const struct snap_cat *cat, const struct snap *s,
                uint32_t eid, uint32_t *seq);

/* ext_open of the copy of x->eid in snapshot seq (x set up as for
 * ext_open: eid, geometry, fd -1).  Close with ext_close. */
int snap_open_copy(int dirfd, uint32_t seq, struct ext *x);

/* Space used by snapshot seq: allocated bytes of its copies, and how
 * many extents it holds copies of. */
int snap_usage(int dirfd, uint32_t seq, uint64_t *bytes, uint32_t *copies);

/* Test hook: when snap__crash_at equals a crash point (SNAP_CP_*), the
 * process kills itself with SIGKILL there (the unit test's crash
 * points).  0: never. */
enum {
  SNAP_CP_CREATE_INFO = 1, /* SEQ.tmp written, not renamed */
  SNAP_CP_CREATE_RENAMED,  /* renamed, the parent not yet synced */
  SNAP_CP_COPY_DATA,       /* copy's data written, no database yet */
  SNAP_CP_COPY_DB,         /* both written and synced, not renamed */
  SNAP_CP_COPY_RENAMED,    /* committed, the write not yet done */
  SNAP_CP_DELETE_MARKED,   /* deleting written, nothing moved */
  SNAP_CP_DELETE_HALF,     /* one copy moved or removed */
  SNAP_CP_DELETE_INFO,     /* copies gone, the directory not yet */
};
extern int snap__crash_at;

#endif
