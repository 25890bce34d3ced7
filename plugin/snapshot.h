/* crucible-c upstairs: volume snapshots (plugin/snapshot.c; docs/DESIGN.md
 * "Snapshots").  The admin thread (admin.c) runs them; each is ONE
 * SNAPSHOT job in the job stream, so a create is a barrier exactly where
 * a FLUSH would be: every write acknowledged before it is in the
 * snapshot, none submitted after it.  It flushes (a new flush number),
 * and the downstairs records the snapshot durably before it answers.
 */
#ifndef CRUCIBLE_UP_SNAPSHOT_H
#define CRUCIBLE_UP_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/proto.h"
#include "upstairs.h"

struct upstairs;

/* One downstairs' part of a snapshot command. */
struct up_snap_ds {
  bool sent;      /* it got the job */
  bool ok;        /* it answered success */
  bool repairing; /* it was a live-repair target: a create there is
                   * deleted again (it holds part of the volume) */
  int err;        /* positive errno of its refusal, else 0 */
  unsigned n;     /* list: its snapshots (oldest first) */
  struct proto_snap_entry e[PROTO_MAX_SNAPS];
};

struct up_snap_result {
  int result;                   /* the command: 0, or -errno */
  uint64_t flush_no, gen, time; /* create: the flush it was taken at */
  struct up_snap_ds ds[UP_DOWNSTAIRS];
};

/* Run op (PROTO_SNAP_CREATE, _DELETE, _LIST) on the running volume; wait
 * for it.  0 or -errno in res->result and as the return: -EIO not
 * running (or fewer than two replicas answered), -EEXIST a create of a
 * name some replica has, -ENOENT a delete of a name none has, -EINVAL a
 * bad name (proto_snap_stored_ok: rollback.c's markers pass; a user's
 * name is checked by the admin, proto_snap_name_ok), -ENOSPC too many.
 * Caller thread only (never the loop). */
int up__snapshot_run(struct upstairs *up, uint8_t op, const char *name,
                     struct up_snap_result *res);

/* Append the result of a successful op to j: json fields and the closing
 * "}\n" (the caller opened the object), or text lines. */
struct up_jbuf;
void up__snap_render(struct upstairs *up, const struct up_snap_result *res,
                     uint8_t op, const char *name, bool json,
                     struct up_jbuf *j);

/* Loop thread.  up__snap_patch: job_patch of a SNAPSHOT job (its id; a
 * create also takes the next flush number, like FLUSH).  up__snap_is_flush:
 * is job a create (a FLUSH for every rule that tracks flushes)?
 * up__on_snapshots: a SNAPSHOTS reply. */
struct up_job;
struct cl;
void up__snap_patch(struct upstairs *up, struct up_job *job);
bool up__snap_is_flush(const struct up_job *job);
void up__on_snapshots(struct upstairs *up, struct cl *c,
                      const struct proto_snapshots *s);

/* Serving a snapshot (`snapshot=NAME`, docs/DESIGN.md "Serving a
 * snapshot"): what each replica answered to SNAPSHOT open. */
enum up_snap_have_kind {
  UP_SNAP_UNKNOWN = 0, /* no answer (not connected, refused, another error) */
  UP_SNAP_LACKS,       /* ENOENT: it has no snapshot of that name */
  UP_SNAP_HAS          /* its record (gen, flush, extent count) */
};
struct up_snap_have {
  enum up_snap_have_kind kind;
  uint64_t gen, flush;
  uint32_t extent_count;
};
/* The decision rule (pure; tests/unit/test_snapserve.c): the replicas
 * to serve from are those that hold the snapshot with the (gen, flush,
 * extent count) most of them hold, if at least two hold it; else none
 * (0: the start fails).  One snapshot name is one point of the job
 * stream (a create refuses a name any replica has), so replicas that
 * hold it at that point hold the same contents; one that lacks it, or
 * holds another (a stale or foreign record), is never read.  *pick gets
 * the agreed record's index. */
unsigned up__snap_serve_rule(const struct up_snap_have have[UP_DOWNSTAIRS],
                             int *pick);

#endif
