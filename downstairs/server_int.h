/* crucible-c downstairs: server internals shared by server.c,
 * server_conn.c, server_write.c, server_hello.c, server_job.c,
 * server_work.c, server_snap.c and status.c.
 *
 * Layers, each knowing only those below it:
 *   1. server_sched.c (job order) and common/framebuf.c (frames in):
 *      no connection, no libuv.
 *   2. server_conn.c + server_write.c: the connection (listener, socket,
 *      frames in through the frame reader and out, back-pressure,
 *      closing).  It reports up only through the struct ds_conn_events
 *      table in srv->ev: each whole frame, the largest frame the state
 *      allows, a closing connection.
 *   3. server_hello.c (HELLO, AUTH, ACTIVATE), status.c (STATUS_REQ),
 *      server_snap.c (the SNAPSHOT job, a snapshot reader's open), and
 *      server_work.c (a job's disk work, on a worker or the loop): each
 *      drives the connection layer downward (and the region).
 *   4. server_job.c: frames into jobs, their order, batches and replies
 *      (uses server_sched.c, server_work.c, server_snap.c).
 *   5. server.c: ds_server_run, signals, the idle sweep, and the frame
 *      event: decode, check against the state, hand to layers 3 and 4.
 *
 * Ownership: struct ds_server lives on ds_server_run()'s stack.  A
 * struct ds_conn is malloc'd on accept and freed in its close callback.
 * A struct ds_job is malloc'd when its frame arrives and freed when it
 * finished and its reply was handed to uv_write (or dropped); it points
 * at its connection only while that connection is open (conn == NULL
 * afterwards: the job still runs, its reply is dropped).  A struct
 * ds_wreq (one outgoing frame) is freed in its write callback.
 * Everything here belongs to the loop thread, except a job while it runs
 * on the thread pool (then only the worker touches it).
 */
#ifndef CRUCIBLE_SERVER_INT_H
#define CRUCIBLE_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../common/framebuf.h"
#include "../common/proto.h"
#include "region.h"
#include "server.h"
#include "server_sched.h"

/* Back-pressure on the active connection: past either bound we stop
 * reading from it until it is below half of both. */
#define DS_MAX_CONN_JOBS 512
#define DS_MAX_CONN_BYTES (256u * 1024 * 1024)

/* Initial read buffer of every connection; grown to one frame's length
 * when a bigger frame arrives. */
#define DS_READ_CHUNK (64u * 1024)
/* Least free space offered to a read (the read buffer's consumed head is
 * reclaimed, or it grows, below it). */
#define DS_READ_MIN (DS_READ_CHUNK / 2)
/* Largest frame legal before activation (HELLO is the biggest). */
#define DS_SMALL_FRAME_MAX 1024u
/* A closing connection gets this long to flush its last frame. */
#define DS_CLOSE_GRACE_MS 5000

enum ds_conn_state { DS_NEW, DS_NEGOTIATED, DS_ACTIVE };

struct ds_server;
struct ds_conn;

/* Name of a connection state, for log lines. */
static inline const char *ds_state_name(enum ds_conn_state s)
{
  return s == DS_NEW ? "NEW" : s == DS_NEGOTIATED ? "NEGOTIATED" : "ACTIVE";
}

/* What the connection layer (server_conn.c) reports up, set by the
 * layer above (server.c) in srv->ev before the first connection. */
struct ds_conn_events {
  /* A whole frame of at most frame_max(c) bytes (f valid during the
   * call; ds_conn_take_frame may keep it): 0, or -1 if c was closed. */
  int (*frame)(struct ds_conn *c, const uint8_t *f, size_t len);
  /* Largest frame legal in c's state: checked when its length arrives,
   * before the read buffer grows for it. */
  size_t (*frame_max)(const struct ds_conn *c);
  /* c is closing (once; no frame event follows). */
  void (*closing)(struct ds_conn *c);
};

struct ds_conn {
  uv_tcp_t tcp;
  struct ds_server *srv;
  struct ds_conn *prev, *next; /* srv->conns */
  char peer[64];               /* "addr:port" for log lines */
  enum ds_conn_state state;
  uint64_t session_id; /* from HELLO */
  bool read_only;
  bool repair_peer; /* HELLO role REPAIR_PEER: FILE_REQ only */
  bool status_peer; /* HELLO role STATUS: STATUS_REQ only (status.c) */
  /* HELLO role SNAPSHOT: a snapshot reader (server_snap.c): SNAPSHOT op
   * open, then READs of snap_name only; never srv->active, no
   * generation, every other job EROFS. */
  bool snap_reader;
  char snap_name[PROTO_SNAP_NAME_LEN];
  bool need_auth;         /* HELLO_OK asked for AUTH: nothing else yet */
  uint8_t auth_t[32];     /* handshake transcript hash (auth.h) */
  bool closing;           /* uv_shutdown or uv_close started */
  bool throttled;         /* reading stopped by back-pressure */
  bool reading;           /* uv_read_start in effect */
  bool feeding;           /* inside conn_feed (no re-entry) */
  uint64_t last_frame_ms; /* uv_now() of the last complete frame */
  uint64_t closing_ms;
  uv_shutdown_t shutdown;
  /* Frames in (owned); its current frame is the one conn_frame is
   * handling, which a job may take (ds_conn_take_frame). */
  struct framebuf rx;
  size_t jobs, bytes; /* accounted until the reply is written */
  /* Corked (ds_conn_cork): frames sent meanwhile wait here and leave in
   * one uv_write (one writev) at ds_conn_uncork. */
  bool corked;
  struct ds_wreq *cork_head, *cork_tail;
  unsigned ncork;
};

struct ds_server {
  uv_loop_t loop;
  uv_tcp_t listener;
  uv_signal_t sigint, sigterm;
  uv_timer_t sweep;
  const struct ds_server_opts *opts;
  struct region *region;
  struct proto_region def;
  uint8_t instance[PROTO_UUID_LEN]; /* region.json "instance", for HELLO_OK */
  const struct ds_conn_events *ev;  /* the connection layer's events */
  struct ds_conn *conns;
  unsigned nconns; /* in srv->conns, including closing ones */
  unsigned nlive;  /* not closing: what max_conns bounds */
  struct ds_conn *active;
  /* The session that activated highest_gen in this process (unknown
   * after a restart: have_session false). */
  bool have_session;
  uint64_t session_id;
  struct sched sched;
  /* Jobs the scheduler started and not yet handed to the thread pool,
   * in start order (server_job.c): once per loop turn (prepare and check
   * handles) they go out as at most DS_BATCHES work items. */
  struct ds_job *ready_head, *ready_tail;
  size_t nready;
  bool flushing; /* inside ready_flush */
  /* ready_flush's scratch: extent -> its batch (open addressing). */
  struct ds_batch_slot *bslot;
  size_t bslot_cap; /* power of two, >= 2 * nready when used */
  uv_prepare_t ready_prepare;
  uv_check_t ready_check;
  bool stopping;
};

/* One batch of ready_flush: its extent, first and last job. */
struct ds_batch_slot {
  uint32_t eid;
  struct ds_job *lead, *tail;
};

/* One outgoing frame; freed by the write callback. */
struct ds_wreq {
  uv_write_t req;
  struct ds_conn *conn;
  size_t acct_bytes;     /* released from conn->bytes when written */
  bool acct_job;         /* releases one conn->jobs when written */
  struct ds_wreq *cnext; /* written in one uv_write with these (cork) */
  size_t len;
  uint8_t data[];
};

enum ds_job_kind {
  DS_J_WRITE,
  DS_J_READ,
  DS_J_TRIM,
  DS_J_FLUSH,
  DS_J_STATES,
  /* one extent: EXTENT_FLUSH, EXTENT_MARK (JOB_DONE) */
  DS_J_XFLUSH,
  DS_J_XMARK,
  /* the region grows: EXTEND (JOB_DONE), a barrier */
  DS_J_EXTEND,
  /* a repair peer's (clone's) FILE_REQ (FILE_DATA) */
  DS_J_FILE,
  /* block status: EXTENT_MAP_REQ (EXTENT_MAP), ordered like a READ */
  DS_J_MAP,
  /* SNAPSHOT (server_snap.c): a barrier; JOB_DONE, or SNAPSHOTS */
  DS_J_SNAP
};

struct ds_job {
  struct sched_job s;   /* first: the scheduler hands it back */
  uv_work_t work;       /* of the batch this job leads */
  struct ds_job *rnext; /* srv's ready list, then the rest of its batch */
  bool done;            /* worker: done (a WRITE group did it) */
  struct ds_server *srv;
  struct ds_conn *conn; /* NULL once the connection closed */
  enum ds_job_kind kind;
  uint64_t job_id, lba, flush_no, gen;
  uint64_t version; /* TRIM: the trim's version */
  bool ctx_only;    /* READ: reply with contexts only */
  bool versions;    /* READ: ... from the metadata, no data read */
  uint32_t n;
  uint32_t nflushed;      /* FLUSH: extents it flushed (logged) */
  size_t acct;            /* bytes accounted to conn */
  int err;                /* result: 0 or positive errno */
  struct proto_ctx *ctxs; /* WRITE: n contexts (same allocation) */
  const uint8_t *data;    /* WRITE: n * block_size (same allocation, or
                           * inside frame) */
  uint8_t *frame;         /* WRITE: the read buffer it took, or NULL */
  struct ds_wreq *reply;  /* READ, STATES, FILE, MAP: built by the worker */
  /* Extent jobs and FILE_REQ: the extent; FILE_REQ's file and offset. */
  uint32_t eid;
  uint8_t file;
  uint64_t offset;
  struct proto_snapshot *snap; /* SNAPSHOT: the request (owned) */
  char *snap_read;             /* READ of a snapshot reader: the snapshot
                                * (owned copy of its name), else NULL */
};

/* server_conn.c: the connection layer. */
/* Listen on opts->listen_fd: 0 or a negative errno (logged). */
int ds_conn_listen(struct ds_server *srv);
/* Stop listening and close every connection now. */
void ds_conn_stop(struct ds_server *srv);
/* Close now, dropping unsent frames (peer gone, write error, shutdown);
 * why (may be NULL) is logged. */
void ds_conn_abort(struct ds_conn *c, const char *why);
/* Close gracefully: log why, send ERROR(err, why) first if err > 0. */
void ds_conn_close(struct ds_conn *c, int err, const char *why);
/* printf-style ds_conn_close. */
void ds_conn_fail(struct ds_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Frames at least this long are taken by their job, not copied. */
#define DS_TAKE_MIN (64 * 1024)
/* Give the buffer of the frame being handled (at least DS_TAKE_MIN
 * long; pointers into it stay valid) to the caller, to free; the
 * connection continues in a new buffer with the bytes that followed.
 * NULL if it cannot (the caller copies instead). */
uint8_t *ds_conn_take_frame(struct ds_conn *c);
/* Back-pressure accounting: charge one job (and its data bytes) when a
 * request arrives, release it when the reply has been written. */
void ds_conn_charge(struct ds_conn *c, size_t bytes);
void ds_conn_release(struct ds_conn *c, bool job, size_t bytes);
/* server_write.c: frames out (part of the connection layer). */
struct ds_wreq *ds_wreq_new(size_t len);
int ds_conn_send(struct ds_conn *c, struct ds_wreq *w);
/* Send a copy of a small frame; 0 or -errno (connection then closing). */
int ds_conn_send_copy(struct ds_conn *c, const uint8_t *frame, size_t len);
/* Hold frames sent to c until ds_conn_uncork, then write them at once
 * (closing the connection uncorks first). */
void ds_conn_cork(struct ds_conn *c);
void ds_conn_uncork(struct ds_conn *c);

/* server_hello.c: handle HELLO / ACTIVATE; 0, or -1 if c was closed. */
int ds_hello(struct ds_conn *c, const struct proto_hello *h);
int ds_activate(struct ds_conn *c, const struct proto_activate *a);
int ds_auth(struct ds_conn *c, const uint8_t mac[32]);
/* status.c: answer a status peer's STATUS_REQ (then it closes). */
int ds_status(struct ds_conn *c);

/* server_snap.c: SNAPSHOT.  ds_snap_refuse: answer at once (EROFS for a
 * create or delete of a read-only session, EINVAL for a create of a
 * generation not the region's highest) and return -1, else 0.
 * ds_snap_job: fill a new job from m (-ENOMEM).  ds_snap_work: its disk
 * work, on a worker (j->err, or j->reply for a list).  ds_snap_done: on
 * the loop, after it (the log line). */
int ds_snap_refuse(struct ds_conn *c, const struct proto_msg *m);
int ds_snap_job(struct ds_job *j, const struct proto_msg *m);
void ds_snap_work(struct ds_job *j);
void ds_snap_done(const struct ds_job *j);
/* A snapshot reader's SNAPSHOT op open (state NEGOTIATED): answered by
 * SNAPSHOTS with the snapshot's record, the connection then DS_ACTIVE
 * (but not srv->active), or with ENOENT and no entry (it stays
 * negotiated; the reader closes).  0, or -1 if the connection closed. */
int ds_snap_open(struct ds_conn *c, const struct proto_snapshot *s);

/* server_work.c: a job's disk work.  ds_work_one: any job but a WRITE
 * (j->err, or j->reply).  ds_work_write_group: j and the WRITEs of its
 * extent after it in its batch, up to one that is not a WRITE, in one
 * region call (marks them done).  ds_work_read: a READ (now: on the
 * loop thread, -EAGAIN with nothing done where it would wait), else 0. */
void ds_work_one(struct ds_job *j);
void ds_work_write_group(struct ds_job *j);
int ds_work_read(struct ds_job *j, bool now);

/* server_job.c */
/* Handle one decoded IO frame (WRITE, READ, TRIM, FLUSH, EXTENT_MAP_REQ,
 * and the extent frames EXTENT_FLUSH, EXTENT_MARK) from the active connection,
 * EXTENT_STATES_REQ from any negotiated one, or FILE_REQ from a repair
 * peer.  Returns 0, or -errno after which the connection has been
 * closed. */
int ds_job_submit(struct ds_conn *c, const struct proto_msg *m);
/* Connection c is closing: its jobs keep running, replies dropped. */
void ds_jobs_detach(struct ds_server *srv, const struct ds_conn *c);
/* Shutdown: forget jobs that never started. */
void ds_jobs_drop_waiting(struct ds_server *srv);
/* The ready list's handles (ds_server_run, before the loop runs). */
void ds_jobs_init(struct ds_server *srv);
/* Stop them (before the loop's last run). */
void ds_jobs_fini(struct ds_server *srv);

#endif
