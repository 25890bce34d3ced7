/* crucible-c upstairs: the replicating, encrypting volume client.
 *
 * A library with no nbdkit types: crucible.c (nbdkit entry points), tests
 * and tools drive it directly.  One struct upstairs per volume, shared by
 * any number of caller threads.
 *
 * Threads: up_start() creates one libuv loop thread that owns every socket
 * (plugin/client.c).  Caller threads split requests into jobs (never
 * crossing an extent, at most PROTO_MAX_JOB_BYTES), encrypt and hash on
 * their own CPU, hand jobs to the loop through a locked queue +
 * uv_async_send, and wait on a per-request condvar with a deadline.  The
 * loop thread never touches caller buffers: write data is encrypted into a
 * job-owned frame buffer that is sent unchanged to all three downstairs;
 * read replies are handed back and verified/decrypted by the caller thread.
 *
 * Semantics (docs/DESIGN.md): a write returns once write_quorum downstairs
 * acked it; a flush once every non-faulted downstairs (at least 2) made it
 * durable; a read is served by one downstairs, verified (hash, GCM tag with
 * AAD uuid||LBA||version) and retried on another replica on any failure.
 * Unaligned requests are done by read-modify-write, serialized against
 * overlapping requests by a range lock.  Every call returns within about
 * timeout seconds: 0 or a negative errno (-EIO on any replica trouble the
 * quorum cannot absorb, -EROFS once fenced by a newer upstairs).
 */
#ifndef CRUCIBLE_UPSTAIRS_H
#define CRUCIBLE_UPSTAIRS_H

#include <stdbool.h>
#include <stdint.h>

#include "../common/auth.h"
#include "../common/crypt.h"
#include "../common/parse.h"
#include "../common/proto.h"

#define UP_DOWNSTAIRS 3
#define UP_DEFAULT_TIMEOUT 30
/* max-behind= bounds (bytes): at least a few of the largest jobs. */
#define UP_MIN_BEHIND (16ull * 1024 * 1024)
#define UP_MAX_BEHIND (64ull * 1024 * 1024 * 1024)

/* Reads: FRESH (default) reads the data from one replica and only the
 * block versions from the others, so no single replica can serve an old
 * version; ONE trusts the one replica read (weaker: a rolled-back replica
 * whose metadata was forged can serve old data); ALL reads every replica
 * and takes the newest authentic version. */
enum up_verify { UP_VERIFY_FRESH = 0, UP_VERIFY_ONE, UP_VERIFY_ALL };

struct up_config {
  char host[UP_DOWNSTAIRS][PARSE_HOST_MAX];
  uint16_t port[UP_DOWNSTAIRS];
  bool have_key;
  uint8_t key[CRYPT_KEY_LEN]; /* wiped by up_new after copying */
  uint64_t gen;               /* 0: one above the highest any reports */
  unsigned write_quorum;      /* 2 (default) or 3 */
  enum up_verify verify;      /* how reads are checked (UP_VERIFY_*) */
  unsigned timeout;           /* seconds, default UP_DEFAULT_TIMEOUT */
  char state_path[1024];      /* "": no rollback state file */
  bool accept_rollback;       /* start even if the state file says rollback */
  char stats_path[1024];      /* "": no stats file (stats.c) */
  char admin_path[108];       /* "": no admin socket (admin.c) */
  /* Debug log switches (nbdkit's -D crucible.io=1, .net=1, .repair=1):
   * every job sent; every connection event and frame; every repair
   * decision and live-repair progress.  Process-wide, set by up_new. */
  bool debug_io, debug_net, debug_repair;
  struct auth_key auth; /* len 0: downstairs must not ask for auth;
                                 wiped with the upstairs (up_free) */
  uint64_t max_behind;  /* bytes a downstairs may lag the others
                                 (jobs.c); 0: UP_MAX_BEHIND_BYTES */
  /* "": the live volume.  Else serve this snapshot read-only (docs/
   * DESIGN.md "Serving a snapshot"): no ACTIVATE (no generation, nobody
   * fenced), no reconcile, no repair, no heal; writes, trims, extends
   * and snapshot commands -EROFS; flush 0. */
  char snapshot[PROTO_SNAP_NAME_LEN];
};

struct upstairs;

/* Validate cfg and allocate; no threads, no sockets.  Wipes cfg->key. */
int up_new(struct up_config *cfg, struct upstairs **out);

/* Start the loop thread, connect to the downstairs, check they agree
 * (uuid, geometry, encrypted flag), check the key against the region's key
 * check value (setting it on first use), and activate.  Waits up to
 * timeout for all three; proceeds with two (logged loudly); fails with
 * fewer.  On failure up_error() says why in one line ("key does not match
 * this volume", "downstairs 127.0.0.1:3820: region uuid differs", ...). */
int up_start(struct upstairs *up);
const char *up_error(const struct upstairs *up);

/* Serving a snapshot (cfg.snapshot given)? */
bool up_snapshot_mode(const struct upstairs *up);

/* Did up_start succeed, and no up_stop or fence since? */
bool up_running(struct upstairs *up);
uint64_t up_size(const struct upstairs *up);       /* bytes */
uint32_t up_block_size(const struct upstairs *up); /* region block size */

int up_read(struct upstairs *up, void *buf, uint32_t count, uint64_t off);
int up_write(struct upstairs *up, const void *buf, uint32_t count, uint64_t off,
             bool fua);
/* Trim and zero: blocks become unwritten and read as zeroes; partial
 * blocks at the edges are zeroed by read-modify-write. */
int up_trim(struct upstairs *up, uint32_t count, uint64_t off, bool fua);
int up_flush(struct upstairs *up);
/* Block status of [off, off+count) (plugin/extents.c): add(arg, off,
 * len, zero) for consecutive runs in bytes, in order, from the block
 * holding off on (the first run may start before off; the last may end
 * past off + count; together they may also cover less than asked, at
 * least one block, and with req_one only the first extent).  zero: the
 * run reads as zeroes on every replica that answered (at least two, and
 * every active one was asked); otherwise it may hold data.  add returns
 * 0 or -errno (which ends the call).  0 or -errno (-EIO when no replica
 * could answer). */
int up_extents(struct upstairs *up, uint32_t count, uint64_t off, bool req_one,
               int (*add)(void *arg, uint64_t off, uint64_t len, bool zero),
               void *arg);

/* Grow the volume online to size bytes, rounded up to a whole extent
 * (plugin/extend.c, docs/DESIGN.md "Extend"): EXTEND to every active
 * downstairs, then the new size is what up_size returns, so new NBD
 * connections see it (an open one keeps the size it was given).  Any
 * thread but the loop; waits until it is committed or failed (bounded
 * by timeout).  0 (also when the volume already has that size), or
 * -EINVAL (shrinking, 0, past the maximum), -EBUSY (another extend, a
 * live repair runs), -EIO (fewer than two replicas could grow; those
 * that did keep their size and a retry completes it), -ETIMEDOUT;
 * res->msg says why in one line.  Sizes in res are bytes. */
struct up_extend_res {
  uint64_t requested, old_size, new_size, took_ms;
  char msg[300];
};
int up_extend(struct upstairs *up, uint64_t size, struct up_extend_res *res);

/* Stop the loop thread (failing anything still waiting), join it. */
void up_stop(struct upstairs *up);
/* Wipe the key and free; calls up_stop if needed.  NULL is fine. */
void up_free(struct upstairs *up);

#endif
