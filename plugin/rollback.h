/* crucible-c upstairs: snapshot rollback (plugin/rollback.c; docs/DESIGN.md
 * "Snapshot rollback").  `snapshot rollback NAME` puts the running
 * volume back to snapshot NAME by rewriting, through the normal write
 * path, what differs from it; a marker snapshot ".NAME" makes it
 * survive kill -9 (up_start finishes an interrupted one).
 */
#ifndef CRUCIBLE_UP_ROLLBACK_H
#define CRUCIBLE_UP_ROLLBACK_H

#include <stdbool.h>
#include <stdint.h>

struct upstairs;

struct up_rollback_res {
  uint64_t bytes;    /* the volume's size (every block's versions) */
  uint64_t compared; /* blocks compared by their bytes (versions differ) */
  uint64_t written;  /* blocks rewritten with the snapshot's bytes */
  uint64_t trimmed;  /* blocks the snapshot holds as zeroes, now trimmed */
  uint64_t ms;       /* how long the volume was paused */
  char msg[300];     /* why it failed (one line), or "" */
};

/* Roll the running volume back to snapshot name (caller thread: the
 * admin thread; never the loop).  0, or -errno with res->msg: -EROFS
 * serving a snapshot, -EINVAL a bad name, -EBUSY one already running,
 * -ENOENT / -EIO NAME cannot be read (fewer than two replicas hold it
 * at one point), -EIO failed part-way (the volume then stops taking IO
 * until nbdkit restarts, which finishes the rollback). */
int up__rollback(struct upstairs *up, const char *name,
                 struct up_rollback_res *res);

/* up_start, once running: finish a rollback that a crash interrupted
 * (a marker snapshot on any replica), before the first guest request.
 * 0 (none, or finished), or -errno with up->err set. */
int up__rollback_resume(struct upstairs *up);

/* The holder rule (pure; tests/unit/test_rollback.c): which marker in a
 * snapshot list (ls) up_start must finish.  A marker's create needs two
 * replicas and a finished rollback's delete leaves it on at most one
 * (rollback.c refuses less), so a marker two replicas hold is pending
 * (*pick: the newest by flush); one that one replica holds while both
 * others answered without it belongs to a finished rollback (that
 * replica was away at the delete: *stale, to delete); one holder and a
 * replica silent cannot be told apart: -EAGAIN (*pick: that marker). */
struct up_snap_result;
struct proto_snap_entry;
int up__rollback_pending(const struct up_snap_result *ls,
                         const struct proto_snap_entry **pick,
                         const struct proto_snap_entry **stale);

/* The version one block holds on one side (pure; test_rollback.c): v[d]
 * from each downstairs d in mask (those that answered a READ
 * CTX_ONLY|VERSIONS); the one version if at least two answered and all
 * agree, else UP_RB_UNKNOWN (the block is then compared by its bytes:
 * one lying replica must never make a changed block look unchanged). */
#define UP_RB_UNKNOWN UINT64_MAX
uint64_t up__rollback_agree(const uint64_t v[], unsigned mask);

/* Is a rollback running now (the admin refuses other changes)? */
bool up__rollback_active(struct upstairs *up);

#endif
