/* crucible-c downstairs: the libuv TCP server (contract in server.h).
 *
 * THE INVARIANT: IO jobs from the active connection go into one
 * region-wide list in arrival order (server_sched.c).  A job starts on
 * the thread pool only when no earlier unfinished job conflicts with it:
 * WRITE/READ/TRIM conflict when they touch the same extent (a job never
 * spans two extents: one that would is answered EINVAL without running),
 * FLUSH conflicts with everything in both directions; the extent jobs
 * EXTENT_FLUSH and EXTENT_MARK are ordered like a WRITE to their extent.  Jobs of a
 * connection that lost activation stay in the list and still finish
 * before later conflicting jobs; only their replies are dropped.  Replies
 * go out as jobs complete, in any order.  The region relies on this
 * (region.h: it never sees two overlapping calls at once, and flush runs
 * alone); tests/unit/test_server_sched.c checks the scheduler against a
 * model and tests/e2e/test-downstairs-protocol.sh checks pipelined random
 * jobs against a flat-array model over the wire.
 *
 * Connection states: NEW (only HELLO) -> NEGOTIATED (HELLO_OK sent;
 * EXTENT_STATES_REQ, ACTIVATE, PING) -> ACTIVE (IO jobs, EXTENT_FLUSH,
 * EXTENT_MARK, EXTENT_STATES_REQ, PING).  A repair peer (`clone`
 * copying the region from us) stays NEGOTIATED and may send only
 * FILE_REQ and PING.  The retired EXTENT_CLOSE/REPAIR/REOPEN (21-23) are
 * unknown types: a malformed frame.  With an auth key, HELLO_OK asks for AUTH and
 * nothing but AUTH is accepted until it proved the key (server_hello.c).
 * Anything else, or any malformed frame, gets
 * one log line, an ERROR frame, and the connection closed.
 *
 * This file is the top layer (server_int.h): ds_server_run, signals,
 * the idle sweep, and the frame event of the connection layer
 * (server_conn.c): each whole frame checked against the connection's
 * state and handed to server_hello.c (HELLO, AUTH, ACTIVATE), status.c,
 * server_snap.c (a snapshot reader's open) or server_job.c (jobs).
 */
#include "server.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "extent.h"
#include "region_json.h"
#include "server_int.h"

#define DS_DEFAULT_MAX_CONNS 64
#define DS_DEFAULT_IDLE 120
#define DS_DEFAULT_HANDSHAKE 10
#define DS_SWEEP_MS 1000

/* The region's instance id (HELLO_OK).  A region created before the id
 * existed got one in memory at open: rewrite region.json (atomically,
 * through the region, which holds the open copy) so it stays the same
 * across restarts, then read back what is on disk. */
static int ds_region_instance(struct region *region, uint8_t id[PROTO_UUID_LEN])
{
  struct region_meta m;
  int r = region_meta_read(region_dirfd(region), &m);
  if (r == 0 && m.instance_new) {
    r = region_set_highest_gen(region, region_highest_gen(region));
    if (r == 0)
      r = region_meta_read(region_dirfd(region), &m);
    if (r == 0 && m.instance_new)
      r = -EIO;
    if (r == 0)
      log_info("region.json: instance id added");
  }
  if (r == 0)
    memcpy(id, m.instance, PROTO_UUID_LEN);
  return r;
}

/* ---- frames by state ---- */

/* Largest frame legal in c's state: bounds the read buffer before the
 * frame is even read. */
static size_t frame_max(const struct ds_conn *c)
{
  if (c->state != DS_ACTIVE)
    return DS_SMALL_FRAME_MAX;
  uint32_t bs = c->srv->def.block_size;
  size_t n = proto_max_job_blocks(PROTO_T_WRITE, bs);
  size_t m = PROTO_IO_HDR_LEN + n * (PROTO_CTX_LEN + bs);
  return m < DS_SMALL_FRAME_MAX ? DS_SMALL_FRAME_MAX : m;
}

/* Is a frame of this type legal in this state?  A repair peer may send
 * only FILE_REQ (and PING) once negotiated. */
static bool frame_allowed(const struct ds_conn *c, uint16_t type)
{
  enum ds_conn_state st = c->state;
  if (c->need_auth)
    return type == PROTO_T_AUTH;
  if (c->repair_peer)
    return st == DS_NEGOTIATED &&
           (type == PROTO_T_FILE_REQ || type == PROTO_T_PING);
  if (c->status_peer) /* status.c: one question, nothing else */
    return st == DS_NEGOTIATED && type == PROTO_T_STATUS_REQ;
  /* A snapshot reader: SNAPSHOT open, then jobs (all but READ refused
   * EROFS, server_job.c); never ACTIVATE or EXTENT_STATES_REQ. */
  if (c->snap_reader && st != DS_ACTIVE)
    return st == DS_NEGOTIATED &&
           (type == PROTO_T_SNAPSHOT || type == PROTO_T_PING);
  if (c->snap_reader &&
      (type == PROTO_T_ACTIVATE || type == PROTO_T_EXTENT_STATES_REQ))
    return false;
  switch (type) {
  case PROTO_T_HELLO: return st == DS_NEW;
  case PROTO_T_ACTIVATE: return st == DS_NEGOTIATED;
  case PROTO_T_EXTENT_STATES_REQ:
  case PROTO_T_PING: return st != DS_NEW;
  case PROTO_T_WRITE:
  case PROTO_T_READ:
  case PROTO_T_EXTENT_MAP_REQ:
  case PROTO_T_TRIM:
  case PROTO_T_FLUSH:
  case PROTO_T_EXTENT_FLUSH:
  case PROTO_T_EXTENT_MARK:
  case PROTO_T_EXTEND:
  case PROTO_T_SNAPSHOT: return st == DS_ACTIVE;
  default: return false;
  }
}

/* The connection layer's frame event: one whole frame, decoded, checked
 * against the state and handed to its handler.  0, or -1 if the
 * connection closed. */
static int conn_frame(struct ds_conn *c, const uint8_t *f, size_t len)
{
  struct proto_msg m;
  uint32_t bs = c->state == DS_NEW ? 0 : c->srv->def.block_size;
  int r = proto_decode(f, len, bs, &m);
  if (r < 0) {
    unsigned t = proto_rd16(f + 4);
    ds_conn_fail(c, EPROTO, "malformed %s frame (type %u, %zu bytes): %s",
                 proto_type_name(t), t, len, log_strerror(-r));
    return -1;
  }
  if (c->need_auth && m.type != PROTO_T_AUTH) {
    ds_conn_fail(c, EACCES,
                 "authentication required (this downstairs runs "
                 "with --auth-key), got %s",
                 proto_type_name(m.type));
    return -1;
  }
  if (!frame_allowed(c, m.type)) {
    ds_conn_fail(c, EPROTO, "%s not allowed in state %s",
                 proto_type_name(m.type), ds_state_name(c->state));
    return -1;
  }
  switch (m.type) {
  case PROTO_T_HELLO: return ds_hello(c, &m.u.hello);
  case PROTO_T_ACTIVATE: return ds_activate(c, &m.u.activate);
  case PROTO_T_AUTH: return ds_auth(c, m.u.auth_mac);
  case PROTO_T_STATUS_REQ: return ds_status(c);
  case PROTO_T_SNAPSHOT:
    if (c->snap_reader && c->state == DS_NEGOTIATED)
      return ds_snap_open(c, &m.u.snap);
    return ds_job_submit(c, &m) < 0 ? -1 : 0;
  case PROTO_T_PING: {
    struct ds_wreq *w = ds_wreq_new(PROTO_PING_LEN);
    if (!w) {
      ds_conn_close(c, 0, "out of memory");
      return -1;
    }
    proto_put_ping(w->data, PROTO_T_PONG, m.u.ping);
    ds_conn_charge(c, 0); /* a peer that never reads PONGs is bounded too */
    w->acct_job = true;
    return ds_conn_send(c, w) < 0 ? -1 : 0;
  }
  default: return ds_job_submit(c, &m) < 0 ? -1 : 0;
  }
}

/* The connection layer's closing event: c is no longer the active
 * connection, and its jobs keep running with their replies dropped. */
static void conn_on_closing(struct ds_conn *c)
{
  if (c->srv->active == c)
    c->srv->active = NULL;
  ds_jobs_detach(c->srv, c);
}

static const struct ds_conn_events conn_events = {
    .frame = conn_frame,
    .frame_max = frame_max,
    .closing = conn_on_closing,
};

/* ---- idle sweep, signals, lifecycle ---- */

/* Once a second: close connections silent for idle_timeout, and force
 * closing ones that could not drain within DS_CLOSE_GRACE_MS. */
static void on_sweep(uv_timer_t *t)
{
  struct ds_server *srv = t->data;
  uint64_t now = uv_now(&srv->loop);
  uint64_t idle_ms = (uint64_t) srv->opts->idle_timeout * 1000;
  uint64_t hs_ms = (uint64_t) srv->opts->handshake_timeout * 1000;
  struct ds_conn *c, *next;
  for (c = srv->conns; c; c = next) {
    next = c->next;
    if (c->closing) {
      if (now - c->closing_ms > DS_CLOSE_GRACE_MS)
        ds_conn_abort(c, NULL);
    } else if (!c->throttled && now - c->last_frame_ms > idle_ms) {
      ds_conn_fail(c, ETIMEDOUT, "idle for %u s", srv->opts->idle_timeout);
    } else if (c->state != DS_ACTIVE && !c->repair_peer && hs_ms < idle_ms &&
               now - c->last_frame_ms > hs_ms) {
      /* Not activated: such connections count against max_conns, so
       * idle ones must not lock a new upstairs out for idle_timeout. */
      ds_conn_fail(c, ETIMEDOUT,
                   "not activated and idle for %u s "
                   "(handshake timeout)",
                   srv->opts->handshake_timeout);
    }
  }
}

/* Stop accepting, close every connection (replies still queued are
 * dropped), forget jobs that never started; jobs already running on the
 * thread pool finish, then uv_run returns.  The region stays open. */
static void server_stop(struct ds_server *srv, const char *why)
{
  if (srv->stopping)
    return;
  srv->stopping = true;
  log_info("%s: stopping (%u connections)", why, srv->nlive);
  uv_close((uv_handle_t *) &srv->sigint, NULL);
  uv_close((uv_handle_t *) &srv->sigterm, NULL);
  uv_close((uv_handle_t *) &srv->sweep, NULL);
  ds_jobs_drop_waiting(srv);
  ds_jobs_fini(srv);
  ds_conn_stop(srv);
}

/* SIGINT or SIGTERM: stop gracefully. */
static void on_signal(uv_signal_t *s, int signum)
{
  server_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* Close whatever handles remain and release the loop. */
static void loop_teardown(struct ds_server *srv)
{
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&srv->loop) == UV_EBUSY) {
    log_error("server: loop still busy at exit");
  }
  sched_free(&srv->sched);
}

int ds_server_run(const struct ds_server_opts *opts_in)
{
  struct ds_server_opts opts = *opts_in;
  struct ds_server srv;
  /* Job buffers of up to ~4.2 MiB come and go on every WRITE: keep them
   * on the heap (glibc's default would mmap and unmap each one, faulting
   * its pages in again) and keep freed memory around up to 64 MiB
   * instead of trimming after every burst (docs/PERFORMANCE.md). */
  mallopt(M_MMAP_THRESHOLD, 8 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  if (!opts.addr)
    opts.addr = "0.0.0.0";
  if (!opts.max_conns)
    opts.max_conns = DS_DEFAULT_MAX_CONNS;
  if (!opts.idle_timeout)
    opts.idle_timeout = DS_DEFAULT_IDLE;
  if (!opts.handshake_timeout)
    opts.handshake_timeout = DS_DEFAULT_HANDSHAKE;
  /* The thread pool is sized once, at the first uv_queue_work of the
   * process, from this variable (default 4).  Jobs block in pread,
   * fsync and SQLite commits, so 4 threads would let one slow flush plus
   * three reads stall every other extent; 8 keeps independent extents
   * moving on a small machine.  A user's setting wins. */
  setenv("UV_THREADPOOL_SIZE", "8", 0);
  /* A peer closing while we write must give us EPIPE, not kill us. */
  signal(SIGPIPE, SIG_IGN);

  if (!opts.have_listen_fd) {
    log_error("server: no listening socket given");
    return -EINVAL;
  }
  memset(&srv, 0, sizeof srv);
  srv.opts = &opts;
  srv.region = opts.region;
  srv.def = *region_def(opts.region);
  srv.ev = &conn_events;
  int r = ds_region_instance(srv.region, srv.instance);
  if (r < 0) {
    log_error("region.json: instance id: %s", log_strerror(-r));
    return r;
  }
  sched_init(&srv.sched);
  r = uv_loop_init(&srv.loop);
  if (r != 0) {
    log_error("uv_loop_init: %s", uv_strerror(r));
    return r;
  }
  r = ds_conn_listen(&srv);
  if (r != 0) {
    loop_teardown(&srv);
    return r;
  }
  ds_jobs_init(&srv);
  uv_signal_init(&srv.loop, &srv.sigint);
  uv_signal_init(&srv.loop, &srv.sigterm);
  srv.sigint.data = srv.sigterm.data = &srv;
  uv_signal_start(&srv.sigint, on_signal, SIGINT);
  uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
  uv_timer_init(&srv.loop, &srv.sweep);
  srv.sweep.data = &srv;
  uv_timer_start(&srv.sweep, on_sweep, DS_SWEEP_MS, DS_SWEEP_MS);

  char uuid[37];
  geom_uuid_format(srv.def.uuid, uuid);
  log_info("serving %s (%s, %u x %llu blocks of %u bytes%s) on %s:%u",
           opts.dir ? opts.dir : "region", uuid, srv.def.extent_count,
           (unsigned long long) srv.def.extent_size, srv.def.block_size,
           srv.def.encrypted ? ", encrypted" : "", opts.addr, opts.port);
  if (opts.auth && opts.auth->len)
    log_info("peers must authenticate (--auth-key)");
  else
    log_warn("no --auth-key: anyone who can reach %s:%u can take over "
             "(fence) this region and read or overwrite its blocks",
             opts.addr, opts.port);
  uv_run(&srv.loop, UV_RUN_DEFAULT);
  loop_teardown(&srv);
  log_info("stopped");
  return 0;
}
