/* crucible-c upstairs: one downstairs connection (loop thread only).
 *
 * State machine:
 *   IDLE -> CONNECTING -> HELLO (HELLO sent) -> [AUTH (AUTH sent, with
 *   auth-key=: the downstairs must answer AUTH_OK with its own proof)] ->
 *   STATES (EXTENT_STATES_REQ sent; a snapshot reader: SNAPSHOT open
 *   sent, answered by SNAPSHOTS) -> READY (waiting for the upstairs to activate) -> ACTIVATING ->
 *   ACTIVE.  Any error closes the socket: CLOSING until the close callback,
 *   then IDLE (during start-up it may be retried) or, once `final` is set
 *   (faulted, not admitted, stopping), GONE.
 *
 * Frames are read into one receive buffer (common/framebuf.h) that grows
 * to hold a whole frame, so a READ_DONE frame is decoded in place and its
 * buffer handed to the job (zero copy; small ones are copied out).  Every frame is checked by proto_decode and against the
 * state (a frame the state does not expect faults the connection).
 *
 * Handshake results (hello, states) are kept here for activate.c; IO
 * replies go to jobs.c.  Every function runs on the loop thread.
 */
#ifndef CRUCIBLE_CLIENT_H
#define CRUCIBLE_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "../common/framebuf.h"
#include "../common/proto.h"

struct upstairs;
struct up_job;
struct cl_batch;
struct cl;
struct auth_key;

/* Debug switches (up_new copies them from struct up_config); net is this
 * layer's frame log. */
extern int up_debug_io, up_debug_net, up_debug_repair;
/* Set in the job id of every loop-sent control job (EXTENT_MARK and
 * the like): its answer is told apart from IO answers. */
#define UP_REPAIR_ID_BIT (1ull << 63)

/* The connection is the upstairs' bottom layer: it knows the layer above
 * only through what that layer gives it at cl_init, the loop it runs on,
 * what its HELLO says, and this table of the events it reports up (the
 * owner, the upstairs, is passed back untouched; client.c never looks
 * inside it). */
struct cl_events {
  /* c's state changed (status, start-up); handshake: start-up may step. */
  void (*changed)(struct upstairs *up, struct cl *c);
  void (*handshake)(struct upstairs *up);
  /* The volume serves IO (refusals are final only before). */
  bool (*running)(struct upstairs *up);
  /* Start-up fails with this message: false once running (printf). */
  bool (*start_fail)(struct upstairs *up, const char *fmt, ...)
      __attribute__((format(printf, 2, 3)));
  /* TCP connected (a reconnect, for the counters). */
  void (*connected)(struct upstairs *up, struct cl *c);
  /* HELLO_OK and auth done: 0 admit, > 0 not yet, < 0 refuse (c->why;
   * -ESTALE for good). */
  int (*hello)(struct upstairs *up, struct cl *c);
  /* ACTIVATE_OK for generation gen: false if it is not the one asked. */
  bool (*activated)(struct upstairs *up, struct cl *c, uint64_t gen);
  /* NO_LONGER_ACTIVE: a newer upstairs (gen) took the region. */
  void (*fenced)(struct upstairs *up, struct cl *c, uint64_t gen);
  /* An ACTIVE connection is closing: its jobs are lost there. */
  void (*lost)(struct upstairs *up, struct cl *c);
  /* JOB_DONE while ACTIVATING (true: taken, extend.c's), or ACTIVE. */
  bool (*held_done)(struct upstairs *up, struct cl *c,
                    const struct proto_job_done *d);
  void (*job_done)(struct upstairs *up, struct cl *c,
                   const struct proto_job_done *d);
  /* READ_DONE; buf (the receive buffer) is the callee's from now on. */
  void (*read_done)(struct upstairs *up, struct cl *c, uint8_t *buf,
                    const struct proto_read_done *r);
  void (*extent_map)(struct upstairs *up, struct cl *c,
                     const struct proto_extent_map *m);
  void (*snapshots)(struct upstairs *up, struct cl *c,
                    const struct proto_snapshots *s);
  /* A job frame left (or was cancelled): the batch's reference goes. */
  void (*job_put)(struct up_job *job);
};

/* Given by the owner at cl_init; outlives c. */
struct cl_env {
  const struct cl_events *ev;
  uv_loop_t *loop;
  const struct auth_key *auth; /* len 0: none */
  bool encrypted;              /* HELLO: we hold the data key */
  uint64_t session_id;
  const char *snap; /* NULL: live; else a snapshot reader of this name */
};

enum cl_state {
  CL_IDLE = 0,
  CL_CONNECTING,
  CL_HELLO,
  CL_AUTH,
  CL_STATES,
  CL_READY,
  CL_ACTIVATING,
  CL_ACTIVE,
  CL_CLOSING,
  CL_GONE
};

struct cl {
  struct upstairs *up;      /* the owner, opaque here */
  const struct cl_env *env; /* its loop, HELLO and events */
  int idx;
  char name[300]; /* "host:port" for log lines */
  struct sockaddr_storage addr;
  bool have_addr;
  enum cl_state state;
  bool final;       /* never reconnect */
  bool was_active;  /* reached ACTIVE at some point */
  bool logged_late; /* "not admitted" logged once */
  bool lr;          /* ACTIVE but being live-repaired (repair.c): every
                          write, trim and flush, no reads, no quorum */
  bool inst_known;  /* inst holds the region instance id last seen */
  uint8_t inst[PROTO_UUID_LEN];

  uint64_t conn_ms;     /* when the current connection attempt began */
  uint64_t next_try_ms; /* reconnect not before this */
  unsigned backoff_ms;  /* current reconnect delay */
  bool down_logged;     /* "reconnecting" logged for this outage */
  bool refused;         /* the last connect attempt was refused outright
                          (ECONNREFUSED): nothing listens there */
  char why[128];        /* last failure, for start-up messages */
  int dstate;           /* enum up_dstate last reported, -1: none yet */
  uint64_t prog_ms;     /* last live-repair progress line */
  uint32_t prog_done;   /* extents done at that line */

  uv_tcp_t tcp;
  uv_connect_t conn;

  /* Job frames sent since the last cl_flush (NULL: none), and spent
   * batches kept for reuse; both owned. */
  struct cl_batch *batch, *bpool;

  struct framebuf rx; /* frames in, owned */

  bool have_hello;
  struct proto_hello_ok hello;
  uint8_t hello_sent[PROTO_HELLO_LEN]; /* our HELLO, for the auth transcript */
  uint8_t auth_t[32]; /* transcript hash once HELLO_OK arrived (auth.h) */
  uint8_t *states;    /* EXTENT_STATES bulk copy, owned */
  uint32_t nstates;
  /* Snapshot reader (env->snap): the answer to SNAPSHOT open, kept for
   * the serve rule (upstairs.c): snap_err 0 and snap the record, or the
   * positive errno (ENOENT: no such snapshot).  have_snap: answered. */
  bool have_snap;
  int snap_err;
  struct proto_snap_entry snap;

  unsigned inflight;       /* jobs SENT and not answered */
  uint64_t inflight_bytes; /* their frame bytes */
  bool behind;             /* lagging past max-behind since behind_ms */
  uint64_t behind_ms;
  uint64_t last_rx_ms, last_tx_ms;
  bool ping_out;
  uint64_t ping_ms; /* when the outstanding PING was sent */
};

void cl_init(struct cl *c, struct upstairs *up, const struct cl_env *env,
             int idx, const char *host, uint16_t port);
/* Resolve (blocking getaddrinfo; call before the loop thread runs). */
int cl_resolve(struct cl *c, const char *host, uint16_t port);
/* Start connecting (from IDLE).  0 or -errno (also recorded in why). */
int cl_connect(struct cl *c);
/* Queue frame (owned by job, alive until written) for c.  On success
 * the batch holds a reference to job the caller took for it: the
 * job_put event drops it once the frame is written or cancelled.  Frames
 * queued this way leave at the next cl_flush, all in one uv_write
 * (jobs.c flushes at the end of each drain pass). */
int cl_send_job_frame(struct cl *c, struct up_job *job, const uint8_t *frame,
                      size_t len);
/* Write the queued job frames now (a failure faults c). */
void cl_flush(struct cl *c);
/* The same from the top of a loop callback, where no caller holds a job
 * pointer: with nothing queued in libuv, the frames go out at once
 * (uv_try_write: no write request, no epoll_ctl to watch for POLLOUT and
 * back) and their jobs' loop references drop now; what the socket does
 * not take goes to uv_write as cl_flush does. */
void cl_flush_now(struct cl *c);
/* Send a control frame (copied, so buf may be on the stack), after the
 * job frames queued before it. */
int cl_send_copy(struct cl *c, const uint8_t *buf, size_t len);
/* Close the connection; reason is logged when log is set.  final: never
 * reconnect.  Jobs outstanding on it are skipped (jobs.c). */
void cl_close(struct cl *c, bool final, const char *why);
/* Fault c (close, reconnect later): the printf-style reason, with the job
 * id where one is to blame, becomes its status line "downstairs H:P:
 * faulted: REASON" (stats.c), the one warning for the event. */
void cl_fault(struct cl *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Release buffers (after the handle is closed). */
void cl_free(struct cl *c);

#endif
