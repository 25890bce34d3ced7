/* crucible-c upstairs internals, shared by upstairs.c (life cycle),
 * activate.c (activation), jobs.c (the loop-side job tracker), io.c (the
 * caller-side IO path), client.c (one downstairs connection), repair.c,
 * heal.c, state.c, vcache.c and stats.c (stats file, status lines).  Not
 * a public API.
 *
 * Layers, each knowing only those below it:
 *   1. client.{c,h}: one downstairs connection's state machine (TCP,
 *      HELLO, auth, frames in and out, batching).  It includes no
 *      upstairs header: it reports up through the struct cl_events table
 *      and reads the struct cl_env the upstairs gives it at cl_init
 *      (upstairs.c: up_cl_events).
 *   2. jobs.c: the job tracker on those connections (ids, fan-out,
 *      replies, the decision rule, deadlines); it drives client.h
 *      downward and names nothing above it: it calls up through the
 *      struct up_job_hooks table the upstairs sets at up_new
 *      (upstairs.c: up_job_hooks).
 *   3. io.c (caller requests), heal.c, repair.c, reconcile.c, scrub.c,
 *      snapshot.c, extend.c, extents.c: built from jobs.
 *   4. upstairs.c (the volume's life cycle, fencing), activate.c, with
 *      state.c, vcache.c and stats.c beside them; crucible.c (nbdkit)
 *      sees only upstairs.h.
 *   The downstairs is layered the same way (downstairs/server_int.h).
 *
 * Threads and locks:
 *   - The loop thread owns the uv loop, every handle, struct cl and the
 *     in-flight job list.  Nothing else touches them.
 *   - up->lock protects the submit queue, every job's outcome fields
 *     (decided, result, req) and up->fenced / up->stopping.
 *   - up->rl_lock protects the range lock list.
 *
 * Job life (struct up_job), the job-tracker invariants:
 *   - A job is created by a caller thread with refs = 2 (caller + loop),
 *     queued, and drained by the loop thread in queue order.  The loop
 *     assigns ids strictly increasing in drain order and sends every
 *     WRITE/TRIM/FLUSH frame to all active downstairs in that same order,
 *     so each downstairs sees overlapping jobs in send order.
 *   - ds[i] goes JS_NONE -> JS_SENT -> JS_DONE | JS_ERR | JS_SKIP exactly once
 *     (asserted by job_step in jobs.c).
 *   - The job is "decided" once (result set; req signalled at the end of
 *     that loop turn, up__wake_flush): a write or
 *     trim when quorum acks arrived or can no longer arrive, a flush or
 *     read when nothing is SENT any more.  It stays on the in-flight list
 *     until nothing is SENT, then the loop drops its ref once its pending
 *     uv_writes (loop_refs) are finished too.
 *   - The loop never touches caller buffers: write data lives in the
 *     job-owned frame; read replies are handed over in reply_buf[].
 */
#ifndef CRUCIBLE_UPSTAIRS_INT_H
#define CRUCIBLE_UPSTAIRS_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "../common/proto.h"
#include "client.h"
#include "observe.h"
#include "rollback.h"
#include "snapshot.h"
#include "upstairs.h"

/* Send a PING after this much idleness on a connection. */
#define UP_PING_IDLE_MS 5000
/* Extra time a caller waits beyond timeout before giving up on the loop
 * (a backstop: the loop's own timer faults downstairs at timeout). */
#define UP_WAIT_SLACK_S 3
/* A downstairs with more than this in flight, or this many bytes more
 * than the most loaded other full replica (max-behind=, default), for
 * UP_BEHIND_GRACE_MS, or twice either at once, is faulted: too far
 * behind the others, which acked the same writes long ago, and the
 * upstairs holds those frames for it alone.  The grace keeps a replica
 * descheduled for a moment on a busy host (one 32 MiB request it has
 * not started while the others finished it) from a whole live repair. */
#define UP_MAX_BEHIND_JOBS 4096
#define UP_MAX_BEHIND_BYTES (512ull * 1024 * 1024)
#define UP_BEHIND_GRACE_MS 1000
/* Start-up: a downstairs whose port refuses connections (nothing
 * listens: the host is up, the daemon is not) is given this long, then
 * the volume activates with the two others instead of waiting out
 * timeout (a silent or slow one still gets the whole timeout). */
#define UP_REFUSED_GRACE_MS 2000
/* Fresh reads wait for the versions reply of a downstairs that answered
 * anything this recently (jobs.c read_ready). */
#define UP_FRESH_LIVE_MS 200
/* Reconnect delay doubles from 1 s up to this. */
#define UP_BACKOFF_MAX_MS 8000

enum up_phase {
  UP_PH_NEW = 0,    /* up_new done, no loop */
  UP_PH_CONNECT,    /* connecting, HELLO, EXTENT_STATES */
  UP_PH_ACTIVATING, /* ACTIVATE sent */
  UP_PH_RECONCILE,  /* activated; repairing extents that differ */
  UP_PH_RUNNING,    /* IO allowed */
  UP_PH_FAILED,     /* start failed, see up->err */
  UP_PH_STOPPED
};

/* A job's state at one downstairs (JS_: job state; DS_ is the daemon's). */
enum up_job_state { JS_NONE = 0, JS_SENT, JS_DONE, JS_ERR, JS_SKIP };

/* One caller request: its one caller thread waits on cond until pending
 * == 0; the loop lowers pending for the jobs decided in one loop turn at
 * its end (up__wake_flush) and signals cond only when it reaches 0. */
struct up_req {
  pthread_cond_t cond;
  unsigned pending; /* jobs whose outcome the caller was not given yet
                     * (under up->lock) */
};

struct up_job {
  struct up_job *next, *prev; /* submit queue, then in-flight list */
  uint16_t type;              /* PROTO_T_WRITE, READ, TRIM, FLUSH,
                               * EXTENT_FLUSH (reconcile.c),
                               * EXTENT_MAP_REQ (extents.c) */
  uint64_t id;                /* assigned by the loop */
  uint64_t lba;               /* EXTENT_FLUSH: the extent */
  uint32_t n;
  uint64_t flush_no; /* FLUSH, EXTENT_FLUSH */
  bool flush_dirty;  /* FLUSH: writes or trims were sent before it */
  uint64_t version;  /* TRIM: the trim's version */
  bool ctx_only;     /* READ: contexts only (PROTO_F_CTX_ONLY) */
  bool versions;     /* ... from the metadata alone (PROTO_F_VERSIONS) */
  bool sys;          /* reconciliation's own: may run before RUNNING */
  unsigned lr_mask;  /* loop only: targets that were live-repair targets
                      * when it was sent (their acks are not quorum) */
  /* READ with verify=fresh (jobs.c): dmask gets the data, vmask only the
   * versions (vframe: the same READ with CTX_ONLY|VERSIONS). */
  unsigned dmask, vmask;
  uint8_t vframe[PROTO_IO_HDR_LEN];
  /* Only to these downstairs (heal, reconciliation): decided when every
   * one answered, and never noted in the version cache. */
  unsigned only;
  unsigned tried;            /* READ: downstairs bitmask not to use */
  unsigned refs;             /* atomic; caller + loop */
  unsigned loop_refs;        /* loop only: tracked flag + pending writes */
  bool tracked;              /* loop only: on the in-flight list */
  uint64_t sent_ms;          /* loop only: uv_now at send */
  uint64_t sent_us;          /* loop only: uv_hrtime at send, in µs */
  uint8_t ds[UP_DOWNSTAIRS]; /* enum up_job_state, loop only */
  int ds_err[UP_DOWNSTAIRS]; /* positive errno from a reply */

  /* Outcome, under up->lock. */
  bool decided;
  int result; /* 0 or -errno */
  /* At the decision: downstairs that answered (reply[] valid) and that
   * failed.  A READ may be decided before every reply is in (freshness
   * needs one versions reply): the caller uses these, never ds[]. */
  unsigned seen, failed, sent;
  struct up_req *req;                /* NULL once the caller gave up */
  uint8_t *reply_buf[UP_DOWNSTAIRS]; /* READ_DONE frames (EXTENT_MAP:
                                      * the bitmap, also in reply[].data),
                                      * owned */
  struct proto_read_done reply[UP_DOWNSTAIRS];

  uint8_t *frame; /* owned; sent unchanged to every downstairs */
  size_t frame_len;
};

/* The decision rule of one job (jobs.c; pure: reads job->type, only,
 * lr_mask, ds[], ds_err[], vmask): true and *result (0 or -errno) once
 * its outcome is known, false while it must wait.  WRITE/TRIM: success
 * once 2 full replicas (not live-repair targets) and write_quorum in all
 * acked, failure once that cannot happen (the downstairs' errno if every
 * one that failed says the same, else EIO); with `only`, when every
 * target answered, success if one did.  FLUSH: when every full replica
 * answered, success if 2 did.  READ: when nothing is SENT, or at once if
 * fresh_ready (verify=fresh: read_ready), success if a data reply came.
 * Others: when nothing is SENT, success if one answered.  Once true, the
 * same outcome holds whatever replies follow (tests/unit/test_jobs.c
 * checks it against a model). */
bool up__job_rule(const struct up_job *job, unsigned write_quorum,
                  bool fresh_ready, int *result);

/* Live-repair worker threads (repair.c): extents repaired at once. */
#define UP_LR_WORKERS 3
/* Under guest IO one chunk is compared at a time, followed by a rest
 * this many times as long as it took (docs/PERFORMANCE.md: the guest
 * keeps >= 70 % of its write rate). */
#define UP_LR_REST 2

/* What an up-to-date replica holds for one extent (repair.c). */

struct up_xstate {
  uint64_t gen, flush;
};

/* Resync and live repair (repair.c; docs/DESIGN.md "Live repair").
 *
 * The loop keeps, per extent, the (gen, flush) an up-to-date replica has
 * (xs) and which extents were written since the last FLUSH (wsf), both
 * updated as jobs get their ids.  A downstairs that returns is compared
 * with them: the extents where it differs or is dirty are its pending set
 * (pend), repaired block by block by the worker thread through ordinary
 * jobs while guest IO goes on; each pending extent is marked (EXTENT_MARK)
 * on it before anything could level it, and EXTENT_FLUSH ends its repair.
 *
 * Loop-only fields unless noted; mu guards the work hand-off. */
struct up_repair {
  struct up_xstate *xs;          /* [extent_count] */
  uint64_t *wsf;                 /* bitmap: written since last FLUSH */
  uint64_t *pend[UP_DOWNSTAIRS]; /* bitmap: still to repair there
                                     * (the worker reads it, atomically) */
  uint64_t *mark[UP_DOWNSTAIRS]; /* bitmap: EXTENT_MARK sent */
  size_t words;                  /* of each bitmap */
  int lr;                        /* target being worked on, or -1 */
  unsigned src;                  /* its sources (mask) */
  uint64_t lr_start_ms;
  uint64_t mark_id; /* ids of loop-sent EXTENT_MARKs */
  /* Hand-off to the worker (under mu). */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool mu_init, quit;
  pthread_t thr[UP_LR_WORKERS];
  unsigned nthr;        /* started */
  pthread_mutex_t gate; /* one chunk at a time under guest IO */
  unsigned epoch;       /* bumped whenever work is (re)issued
                                     * or abandoned (atomic reads) */
  int want;             /* target the workers should repair */
  unsigned want_src;
  unsigned left;    /* workers yet to finish this epoch */
  unsigned running; /* under mu: workers inside lr_run
                                     * (extend waits for none) */
  bool fin_fail;    /* one of them failed */
  uint32_t cursor;  /* atomic: next extent to claim */
  /* Worker -> loop (atomic). */
  unsigned fin_epoch; /* epoch whose work ended */
  bool fin_ok;        /* ... and whether it succeeded */

  int poke; /* the loop should look (async) */
  uint32_t ext_done, ext_total;
  uint64_t bytes_done, bytes_total, copied_bytes;
  uint64_t blocks_copied, blocks_trimmed, unresolved;
  /* Reconciliation (reconcile.c): set by the loop on entering
   * RECONCILE, then read by the reconciling caller thread.  rec_cand[e]
   * is the mask of replicas whose (gen, flush) of extent e is the
   * highest, 0 where no replica is dirty and all agree. */
  uint8_t *rec_cand;
  unsigned rec_total; /* extents to reconcile */
  unsigned rec_done;  /* atomic: extents done */
  int rec_result;     /* atomic: 1 ok, -1 failed, 0 running
                                     * or already handled by the loop */
};

/* Extend (extend.c; docs/DESIGN.md "Extend"): one operation at a time,
 * driven by the loop: EXTEND(count) sent as a control frame (job id
 * UP_REPAIR_ID_BIT | UP_EXTEND_ID_BIT | n, answered by JOB_DONE) to the
 * replicas that have fewer extents, then, online, the new count
 * published (tables first).  START levels the replicas at start-up
 * before reconciliation; ADMIT one that returns smaller, before its
 * live repair; ONLINE is up_extend.  A downstairs activated while one
 * runs is held (CL_ACTIVATING, no IO) and admitted after it. */
#define UP_EXTEND_ID_BIT (1ull << 62)
/* At most this many extents added by one extend (1 TiB at the default
 * geometry): the downstairs creates them behind a barrier, so guest IO
 * waits that long (docs/PERFORMANCE.md). */
#define UP_EXTEND_MAX_ADD 8192u
enum up_ex_kind { UP_EX_NONE = 0, UP_EX_START, UP_EX_ADMIT, UP_EX_ONLINE };
struct up_extend {
  pthread_mutex_t mu; /* the request and its answer */
  pthread_cond_t cv;
  bool req, done;           /* under mu: asked / answered */
  bool waiting;             /* under mu: an up_extend waits */
  bool abort;               /* under mu: up_stop: stop waiting */
  uint64_t req_seq, op_seq; /* under mu: the request asked, answered */
  uint32_t req_count;
  int result; /* 0 or -errno */
  char msg[300];
  uint64_t old_size, new_size, took_ms;
  /* Loop thread only. */
  enum up_ex_kind kind;
  bool sending;         /* frames being sent: no step yet */
  bool start_done;      /* START levelling ran (once) */
  uint32_t count, from; /* target extent count, the volume's before */
  int who;              /* ADMIT: the downstairs */
  unsigned out;         /* EXTEND outstanding there */
  unsigned failed;      /* EXTEND failed or lost there */
  unsigned hold;        /* activated meanwhile: admitted after it */
  uint64_t conn_ms[UP_DOWNSTAIRS]; /* the connection sent (or held) on */
  uint64_t seq;                    /* frame ids */
  uint64_t start_ms, deadline_ms;
  bool commit_wait; /* answered; waiting for idle repair workers */
  uint64_t extends; /* online extends committed since up_start */
};

struct up_admin;

/* What the job tracker (jobs.c, layer 2) calls in the layers above it
 * without naming them, as client.c reports through struct cl_events: one
 * table, upstairs.c's up_job_hooks, every field set.  Loop thread. */
struct up_job_hooks {
  /* job has its id and its frame is patched: the version cache notes a
   * WRITE or TRIM to all (up__vcache_note), repair.c keeps the expected
   * extent states exact (up__xs_note). */
  void (*tracked)(struct upstairs *up, struct up_job *job);
  /* Patch a SNAPSHOT job's frame with its id (and a create's flush
   * number, like FLUSH): up__snap_patch. */
  void (*patch_snapshot)(struct upstairs *up, struct up_job *job);
  /* Is this job, not a FLUSH, one all the same (a snapshot create:
   * up__snap_is_flush)?  Called under up->lock. */
  bool (*is_flush)(const struct up_job *job);
  /* Before WRITE/TRIM job goes to c, a live-repair target (repair.c
   * marks the extent there first: up__lr_before_send); -1 if c was
   * faulted instead, and the job is not sent to it. */
  int (*before_send)(struct upstairs *up, struct cl *c,
                     const struct up_job *job);
  /* A reply from c for job (ok: no error), and the job decided with
   * result: the counters (up__stats_reply, up__stats_decided). */
  void (*replied)(struct upstairs *up, struct cl *c, const struct up_job *job,
                  bool ok);
  void (*decided)(struct upstairs *up, const struct up_job *job, int result);
  /* After each pass over the submit queue: reconcile.c's thread or
   * repair.c's worker may have finished (their polls). */
  void (*drained)(struct upstairs *up);
  /* The queue was drained for a stop: fail everything and close every
   * handle (up__shutdown). */
  void (*stopping)(struct upstairs *up);
};

struct upstairs {
  struct up_config cfg; /* key wiped */
  struct crypt_key *key;
  uint64_t session_id;
  struct cl_env clenv;           /* what every connection is given (client.h) */
  const struct up_job_hooks *jh; /* jobs.c's calls up (upstairs.c) */
  char err[512];

  /* Set at activation, read-only afterwards. */
  struct proto_region region;
  uint64_t gen;
  uint64_t block_count;
  /* Serving a snapshot (cfg.snapshot): the record the replicas served
   * from agreed on (up__snap_serve_rule); a returner must hold the same. */
  struct proto_snap_entry snap;

  /* Write versions and flush numbers (atomic). */
  uint64_t seq;
  uint64_t flush_no;
  bool wr_since_flush;  /* loop only: a WRITE/TRIM drained since a FLUSH */
  uint64_t acked_flush; /* under lock: newest dirty flush acknowledged */

  /* Newest version written per LBA in this activation (vcache.c): a
   * direct-mapped table of UP_VCACHE_SLOTS {lba, version}, under
   * vc_lock; NULL if it could not be allocated. */
  pthread_mutex_t vc_lock;
  struct up_vc_slot *vc;

  /* Rollback state file (state.c); st_* under state_lock once running. */
  pthread_mutex_t state_lock;
  bool st_loaded;
  uint64_t st_gen, st_flush;

  pthread_mutex_t lock;
  pthread_cond_t start_cond;
  enum up_phase phase; /* under lock */
  bool stopping;       /* under lock */
  bool fenced;         /* under lock */
  bool halted;   /* under lock: a rollback stopped part-way (rollback.c) */
  int rb_active; /* atomic: a rollback runs (rollback.c) */
  /* A caller found downstairs i lying (io.c): the loop faults it. */
  bool fault_req[UP_DOWNSTAIRS]; /* under lock */
  char fault_why[UP_DOWNSTAIRS][160];
  unsigned n_active;   /* atomic; downstairs taking IO */
  uint64_t guest_jobs; /* atomic; guest jobs submitted (repair yields) */

  struct up_job *q_head, *q_tail; /* submit queue */
  /* The loop found the queue empty on its way to poll (set under lock in
   * up__before_poll): a new job must wake it (uv_async_send).  Cleared
   * (atomic, no lock) whenever the loop is busy again: then it passes
   * up__before_poll, which drains the queue, before it can sleep. */
  bool loop_idle;

  pthread_mutex_t rl_lock;
  pthread_cond_t rl_cond;
  struct up_range *ranges;

  /* Loop thread only. */
  bool thread_started;
  pthread_t thread;
  uv_loop_t loop;
  bool loop_init;
  bool shut; /* up__shutdown ran */
  uv_async_t async;
  uv_timer_t tick;
  uv_prepare_t prep; /* before each poll: up__before_poll */
  bool prep_init;
  struct up_job **wake;     /* decided, caller not woken yet */
  unsigned nwake, wake_cap; /* (each holds a loop ref) */
  uint64_t start_ms, activate_ms;
  uint64_t next_id;
  unsigned read_rr;
  struct up_job *if_head, *if_tail; /* in flight, id order */
  struct up_repair rep;
  struct cl cl[UP_DOWNSTAIRS];
  struct up_ds_stats dst[UP_DOWNSTAIRS];
  struct up_vol_stats vst;
  bool stats_failing;    /* stats file write failed: warned */
  enum up_health health; /* last one logged */

  /* Admin socket (admin.c): NULL without admin=; its thread asks the
   * loop to render status through adm_async (loop side: admin.c). */
  struct up_admin *adm;
  uv_async_t adm_async;
  bool adm_async_init;
  pthread_mutex_t adm_err_lock; /* the error ring */
  char adm_err[UP_ERR_RING][UP_ERR_LEN];
  uint64_t adm_nerr; /* errors ever noted */
  struct up_scrub sc;
  struct up_extend ex;
};

/* activate.c: handshake steps driven by client events (loop thread). */
void up__handshake_step(struct upstairs *up);
/* 0: go on; 1: not now (closed, retried later); -1: refused (for good
 * during start-up, retried with backoff while running); -ESTALE: a newer
 * generation took the downstairs (for good). */
int up__on_hello(struct upstairs *up, struct cl *c);
/* ACTIVATE_OK from c. */
void up__on_activated(struct upstairs *up, struct cl *c);
/* Running: c (activated) takes IO from now on and is live-repaired. */
void up__admit(struct upstairs *up, struct cl *c);
/* Serving a snapshot (snapserve.c): c's answer to SNAPSHOT open as the
 * serve rule sees it; one line saying why c is not used (ref: the
 * agreed record, or NULL) into buf; leave CONNECT serving it (or fail
 * the start); while running, serve with a READY returner that holds the
 * agreed record, refuse any other.  activate.c lends the checks: all
 * READY replicas serve one region (up__check_agree: 0, or -1 after
 * failing the start; *named the first with a uuid) and a refusal of a
 * rejoin logged once per reason (up__refuse_rejoin, returns err). */
struct up_snap_have;
void up__snap_have_of(const struct cl *c, struct up_snap_have *h);
void up__snap_why_not(const struct upstairs *up, const struct cl *c,
                      const struct proto_snap_entry *ref, char *buf,
                      size_t len);
void up__snap_go_serve(struct upstairs *up);
void up__snap_readmit(struct upstairs *up);
int up__check_agree(struct upstairs *up, struct cl *ref, struct cl **named);
int up__refuse_rejoin(struct cl *c, int err, const char *why);

/* upstairs.c: the life cycle. */
/* Fail the start with one line (up_error; the first failure wins).
 * true if the start is failing (now or before): the caller then logs
 * nothing itself, or the user would read the reason twice; false once
 * running (log it). */
bool up__start_fail(struct upstairs *up, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void up__fence(struct upstairs *up, struct cl *c, uint64_t gen);
int up__deadline(struct upstairs *up, struct timespec *ts, unsigned secs);
void up__shutdown(struct upstairs *up);

/* repair.c: expected extent states, resync and live repair. */
/* UP_REPAIR_ID_BIT (client.h) marks their job ids. */
/* Allocate the tables (after activation: extent_count known). */
int up__xs_init(struct upstairs *up);
/* Free them and stop the worker (up_stop, after the loop is gone). */
void up__repair_stop(struct upstairs *up);
void up__repair_free(struct upstairs *up);
/* Loop thread, as a job gets its id: keep xs/wsf/pend exact. */
void up__xs_note(struct upstairs *up, struct up_job *job);
/* Loop thread, before sending WRITE/TRIM job to live-repair target c:
 * mark its extent there first if it is pending.  -1 if that failed. */
int up__lr_before_send(struct upstairs *up, struct cl *c,
                       const struct up_job *job);
/* Loop thread: the worker poked (async). */
void up__lr_poll(struct upstairs *up);
/* Loop thread: grow the tables to count extents (new ones (0, 0), not
 * written, pending nowhere).  -EBUSY while a live repair (or a worker
 * still leaving an abandoned one) may read them, -ENOMEM. */
int up__xs_grow(struct upstairs *up, uint32_t count);

/* reconcile.c: block-level reconciliation at start (docs/DESIGN.md). */
/* Loop thread, activated with >= 2: plan (rep.rec_cand), enter RECONCILE
 * and let up_start's thread run up__reconcile. */
void up__reconcile_start(struct upstairs *up);
/* Caller thread (up_start): reconcile every planned extent through sys
 * jobs; 0, or -EIO (the reason logged).  Then asks the loop to finish. */
int up__reconcile(struct upstairs *up);
/* Loop thread (async, tick): reconciliation progress and its end. */
void up__reconcile_poll(struct upstairs *up);
/* The rule for one block (unit-tested): what replica i said of it. */
struct up_rec_blk {
  bool ok;        /* answered */
  bool cand;      /* its extent state is the highest */
  uint32_t flags; /* PROTO_CTX_PRESENT, PROTO_CTX_BAD */
  uint64_t version, hash;
};
/* The winner (newest version among the replicas that answered, are not
 * BAD and not in excluded, candidate or not; a candidate, then the lowest
 * index, on ties), or -1 if none; *targets gets every other replica that
 * answered and holds something else (and every excluded one).  Except: a
 * written winner against zeroes of version 0 (a flushed trim, or never
 * written) held by more eligible replicas loses to them; by as many, the
 * side that holds candidates while the other holds none wins, else -2
 * (undecided, nothing moves). */
int up__rec_decide(const struct up_rec_blk b[UP_DOWNSTAIRS], unsigned excluded,
                   unsigned *targets);
/* Counters of one reconciliation or repair. */
struct up_rec_sum {
  uint64_t copied, trimmed, unresolved;
};
/* Compare blocks [lba, lba + n) of extent eid on the replicas in part,
 * with candidates cand (a subset), and bring every one level with the
 * newest authentic version (reconcile.c, any thread but the loop).  The
 * replicas in vers are asked for versions only (metadata, no data read,
 * no BAD: a bad winner then fails the upstairs' check and is excluded).
 * what prefixes log lines.  0, or -ENOMEM. */
int up__rec_range(struct upstairs *up, const char *what, uint32_t eid,
                  uint64_t lba, uint32_t n, unsigned cand, unsigned part,
                  unsigned vers, struct up_rec_sum *sum);
/* A downstairs (re)joined a running volume: live-repair it. */
void up__lr_admit(struct upstairs *up, struct cl *c);
/* JOB_DONE for a loop-sent EXTENT_MARK?  true if it was one (consumed). */
bool up__repair_on_done(struct upstairs *up, struct cl *c,
                        const struct proto_job_done *d);
/* c is closing: abandon repair work it takes part in. */
void up__repair_lost(struct upstairs *up, struct cl *c);
/* Tick: progress, and start work a returning source made possible. */
void up__repair_tick(struct upstairs *up);
/* io.c: range locks (blocks [start, end)); every request holds one, and
 * live repair holds one per chunk it compares. */
struct up_range {
  struct up_range *next;
  uint64_t start, end;
};
int up__range_lock(struct upstairs *up, struct up_range *r);
void up__range_unlock(struct upstairs *up, struct up_range *r);
/* Run nblk blocks at lba as jobs of one type (WRITE reads src, READ
 * fills dst, TRIM and FLUSH use neither), with no range lock: for a
 * caller holding the range itself (rollback.c). */
int up__io_blocks(struct upstairs *up, uint16_t type, uint64_t lba,
                  uint64_t nblk, const uint8_t *src, uint8_t *dst);

/* io.c: the caller side of the job API, also for heal.c and
 * reconcile.c.  A job from up__job_new has refs for the caller and the
 * loop and an uninitialised frame of frame_len bytes; up__job_discard
 * drops both refs of one never submitted. */
struct up_job *up__job_new(uint16_t type, uint64_t lba, uint32_t n,
                           size_t frame_len);
void up__job_discard(struct up_job *job);
void up__req_init(struct up_req *req);
/* Wait for jobs[0..nj) of req (deadline: timeout); res[i] = each outcome,
 * -EIO for a job abandoned undecided (the loop finishes it alone). */
void up__req_wait(struct upstairs *up, struct up_req *req, struct up_job **jobs,
                  unsigned nj, int *res);
/* Submit jobs[0..nj) for one req and wait for all; res as above.  On
 * return the caller owns (must up__job_put) every jobs[i] still set; a
 * job that could not be submitted was discarded and set to NULL. */
int up__run_jobs(struct upstairs *up, struct up_job **jobs, unsigned nj,
                 int *res);
/* Check block i of a reply (lba) into out: NULL if authentic (*ver its
 * version, 0 for a zero block), else why not. */
const char *up__blk_check(struct upstairs *up, const struct proto_read_done *r,
                          uint32_t i, uint64_t lba, uint8_t *out,
                          uint64_t *ver);

/* readcheck.c: check decided READ job into dst by cfg.verify (heals what
 * it finds stale or bad): 0, -EBADMSG (the data failed: read another
 * replica), or -EIO. */
int up__read_check(struct upstairs *up, struct up_job *job, uint8_t *dst);
/* jobs.c: start one drained job. */
void up__job_start(struct upstairs *up, struct up_job *job);
/* upstairs.c */
void up__set_phase(struct upstairs *up, enum up_phase ph);
enum up_phase up__phase(struct upstairs *up);

/* Debug switches: client.h. */

/* heal.c: after good is verified (reading caller, range lock held),
 * rewrite its blocks to the downstairs whose replies in bad[] failed
 * verification or were older.  Waits for the heal writes. */
void up__heal_read(struct upstairs *up, struct up_job *good,
                   struct up_job **bad, unsigned nbad);
/* heal.c: write block i of reply g (as stored) to downstairs d alone and
 * wait for it (same rules: the caller holds the range lock).  0 or the
 * heal write's -errno (also for up__heal_zero). */
int up__heal_block(struct upstairs *up, const struct proto_read_done *g,
                   uint32_t i, uint64_t lba, int d);
/* heal.c: the same for zeroes: a TRIM of lba with that version. */
int up__heal_zero(struct upstairs *up, uint64_t lba, uint64_t version, int d);

/* admin.c: bind the admin socket (before the loop thread: one error
 * line in up->err), start its thread (once running), stop it (before
 * the loop stops), and the loop side of a status request. */
int up__admin_open(struct upstairs *up);
int up__admin_start(struct upstairs *up);
void up__admin_stop(struct upstairs *up);
/* Free it (up_free, once the loop thread is gone). */
void up__admin_free(struct upstairs *up);
void up__admin_on_async(uv_async_t *a);
/* Note an error for `status` (any thread): one line, newest kept. */
void up__admin_note(struct upstairs *up, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* extend.c: init/free; loop side: the request (adm_async), JOB_DONE of
 * an EXTEND (true if it was one), a downstairs lost, the tick; start-up
 * levelling (true while it runs: reconciliation waits); admission (true:
 * extend.c admits c later, levelled). */
struct up_jbuf;
void up__extend_init(struct upstairs *up);
void up__extend_free(struct upstairs *up);
void up__extend_on_async(struct upstairs *up);
bool up__extend_on_done(struct upstairs *up, struct cl *c,
                        const struct proto_job_done *d);
void up__extend_lost(struct upstairs *up, struct cl *c);
void up__extend_tick(struct upstairs *up);
/* up_stop: wake a waiting up_extend (before the admin thread is joined). */
void up__extend_abort(struct upstairs *up);
bool up__extend_level_start(struct upstairs *up);
bool up__extend_admit(struct upstairs *up, struct cl *c);
/* The status object (loop thread) and text line. */
void up__extend_json(struct upstairs *up, struct up_jbuf *j);

/* scrub.c: start (rate in bytes/s; 0 or -EBUSY if one runs, -EIO if the
 * volume does not run), stop and join at unload, and init/free. */
void up__scrub_init(struct upstairs *up);
int up__scrub_start(struct upstairs *up, uint64_t rate);
void up__scrub_stop(struct upstairs *up);
void up__scrub_free(struct upstairs *up);

/* stats.c: a bounded text buffer (the stats file, admin replies). */
struct up_jbuf {
  char *b;
  size_t len, cap;
  bool over;
};
void up__jb_printf(struct up_jbuf *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void up__jb_str(struct up_jbuf *j, const char *s);
/* Loop thread: the stats document (no trailing newline) and the human
 * status text of `crucible-admin status`. */
void up__stats_render(struct upstairs *up, struct up_jbuf *j);
void up__status_text(struct upstairs *up, struct up_jbuf *j);
/* Any thread: the scrub object (JSON) and its text lines. */
void up__scrub_json(struct upstairs *up, struct up_jbuf *j, bool findings);
void up__scrub_text(struct upstairs *up, struct up_jbuf *j);

/* vcache.c: newest version written per LBA (bounded, lossy). */
#define UP_VCACHE_SLOTS 65536u /* 1 MiB */
struct up_vc_slot {
  uint64_t lba, ver; /* ver 0: empty */
};
int up__vcache_init(struct upstairs *up);
void up__vcache_free(struct upstairs *up);
/* Loop thread, as a WRITE or TRIM gets its id. */
void up__vcache_note(struct upstairs *up, const struct up_job *job);
/* Caller: is version ver of lba older than one we wrote?  (rollback) */
bool up__vcache_stale(struct upstairs *up, uint64_t lba, uint64_t ver);

/* state.c: the rollback state file. */
int up__state_load(struct upstairs *up);
int up__state_save(struct upstairs *up, uint64_t gen, uint64_t flush);
int up__state_check(struct upstairs *up);
int up__state_commit(struct upstairs *up);

/* stats.c: the stats file (stats=FILE) and the per-downstairs status
 * lines.  Loop thread only (or the caller thread once the loop is gone). */
enum up_dstate up__ds_state(struct upstairs *up, const struct cl *c);
/* Recompute c's state; on a change log one status line and rewrite the
 * stats file.  Cheap and idempotent: call after anything that may have
 * changed it. */
void up__ds_update(struct upstairs *up, struct cl *c);
void up__ds_update_all(struct upstairs *up);
/* Repair progress of c (done of total extents); logs a live-repair
 * progress line once 10 % more is done or UP_PROGRESS_MS passed since
 * the last one, and at the end. */
void up__ds_progress(struct upstairs *up, struct cl *c, uint32_t done,
                     uint32_t total);
#define UP_PROGRESS_MS 2000
/* A reply from c for job (ok: no error): counters and latency. */
void up__stats_reply(struct upstairs *up, struct cl *c,
                     const struct up_job *job, bool ok);
/* Job decided with result (volume counters). */
void up__stats_decided(struct upstairs *up, const struct up_job *job,
                       int result);
/* 1 s tick: close the latency window, refresh states, write the file. */
void up__stats_tick(struct upstairs *up);
/* Write the stats file now (no-op without stats=). */
void up__stats_write(struct upstairs *up);

/* jobs.c: loop side of the job tracker. */
void up__drain(uv_async_t *a);
/* Wake the callers of the jobs decided since the last call. */
void up__wake_flush(struct upstairs *up);
/* Prepare callback, once per loop turn before it polls: write every
 * downstairs' batched frames (cl_flush), up__wake_flush, and start what
 * the submit queue holds, until it is empty; then mark the loop idle. */
void up__before_poll(uv_prepare_t *p);
void up__on_job_done(struct upstairs *up, struct cl *c,
                     const struct proto_job_done *d);
void up__on_read_done(struct upstairs *up, struct cl *c, uint8_t *buf,
                      const struct proto_read_done *d);
/* A reply frame of its own for job id of this type (snapshot.c's
 * SNAPSHOTS): buf (owned by the job from here; NULL with err) becomes
 * reply_buf[c->idx], n its count; err 0 or a positive errno, the
 * command's (no fault). */
void up__on_reply_buf(struct upstairs *up, struct cl *c, uint64_t id,
                      uint16_t type, int err, uint8_t *buf, uint32_t n);
void up__on_extent_map(struct upstairs *up, struct cl *c,
                       const struct proto_extent_map *d);
void up__ds_lost(struct upstairs *up, struct cl *c);
void up__check_timeouts(struct upstairs *up);
void up__fail_all(struct upstairs *up, int err);
void up__job_put(struct up_job *job);
void up__job_loop_put(struct up_job *job);
/* Queue a job for req (caller thread).  0, or -EIO if not running. */
int up__submit(struct upstairs *up, struct up_req *req, struct up_job *job);

#endif
