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
 * This file: listener, accept, per-connection reading and framing,
 * writing, closing, idle sweep, signals.  server_hello.c: HELLO and
 * ACTIVATE.  server_job.c: the jobs themselves.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/geom.h"
#include "../common/list.h"
#include "../common/log.h"
#include "extent.h"
#include "region_json.h"
#include "server_int.h"

#define DS_DEFAULT_MAX_CONNS 64
#define DS_DEFAULT_IDLE 120
#define DS_DEFAULT_HANDSHAKE 10
#define DS_SWEEP_MS 1000
/* Socket buffer we ask for: two 4 MiB jobs in flight keep the pipe full
 * while the previous frame is being parsed. */
#define DS_SOCKBUF (4 * 1024 * 1024)

/* Name of a connection state, for log lines. */
static const char *state_name(enum ds_conn_state s)
{
  return s == DS_NEW ? "NEW" : s == DS_NEGOTIATED ? "NEGOTIATED" : "ACTIVE";
}

static void conn_read_stop(struct ds_conn *c);

/* ---- back-pressure ---- */

static void conn_feed(struct ds_conn *c);

/* Bounded memory: past DS_MAX_CONN_JOBS jobs or DS_MAX_CONN_BYTES queued,
 * running or waiting to be written, stop reading.  The kernel buffers then
 * fill and TCP pushes back on the upstairs, which bounds its own queue
 * and faults us if we stay slow. */
void ds_conn_charge(struct ds_conn *c, size_t bytes)
{
  c->jobs++;
  c->bytes += bytes;
  if (!c->throttled && !c->closing &&
      (c->jobs > DS_MAX_CONN_JOBS || c->bytes > DS_MAX_CONN_BYTES)) {
    c->throttled = true;
    conn_read_stop(c);
    log_debug("%s: throttled (%zu jobs, %zu bytes)", c->peer, c->jobs,
              c->bytes);
  }
}

/* Resume below half of both bounds (hysteresis: no flapping per job). */
void ds_conn_release(struct ds_conn *c, bool job, size_t bytes)
{
  if (job)
    c->jobs--;
  c->bytes -= bytes;
  if (c->throttled && !c->closing && c->jobs <= DS_MAX_CONN_JOBS / 2 &&
      c->bytes <= DS_MAX_CONN_BYTES / 2) {
    c->throttled = false;
    c->last_frame_ms = uv_now(&c->srv->loop);
    conn_feed(c); /* frames already buffered first */
  }
}

/* ---- closing ---- */

static void on_close(uv_handle_t *h)
{
  struct ds_conn *c = h->data;
  struct ds_server *srv = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  srv->nconns--;
  framebuf_free(&c->rx);
  free(c);
}

/* Common part of both ways of closing. */
static void conn_closing(struct ds_conn *c)
{
  struct ds_server *srv = c->srv;
  ds_conn_uncork(c); /* what was sent before the close goes first */
  c->closing = true;
  srv->nlive--;
  c->closing_ms = uv_now(&srv->loop);
  conn_read_stop(c);
  if (srv->active == c)
    srv->active = NULL;
  ds_jobs_detach(srv, c);
}

/* Close now, dropping unsent frames (peer gone, write error, shutdown). */
void ds_conn_abort(struct ds_conn *c, const char *why)
{
  if (why)
    log_info("%s: closing: %s", c->peer, why);
  if (!c->closing)
    conn_closing(c);
  if (!uv_is_closing((uv_handle_t *) &c->tcp))
    uv_close((uv_handle_t *) &c->tcp, on_close);
}

/* Queued frames are flushed: now close. */
static void on_shutdown(uv_shutdown_t *req, int status)
{
  struct ds_conn *c = req->data;
  (void) status;
  if (!uv_is_closing((uv_handle_t *) &c->tcp))
    uv_close((uv_handle_t *) &c->tcp, on_close);
}

/* Close gracefully: log why, send ERROR(err, why) first if err > 0, let
 * queued frames drain (bounded by DS_CLOSE_GRACE_MS), then close. */
void ds_conn_close(struct ds_conn *c, int err, const char *why)
{
  if (c->closing)
    return;
  log_info("%s: closing: %s", c->peer, why);
  ds_conn_uncork(c);
  if (err > 0) {
    uint8_t f[PROTO_ERROR_HDR_LEN + PROTO_MAX_MSG];
    size_t n = proto_put_error(f, err, 0, why);
    ds_conn_send_copy(c, f, n);
    if (c->closing)
      return;
  }
  conn_closing(c);
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *) &c->tcp, on_shutdown) < 0)
    ds_conn_abort(c, NULL);
}

/* printf-style ds_conn_close. */
void ds_conn_fail(struct ds_conn *c, int err, const char *fmt, ...)
{
  char why[PROTO_MAX_MSG];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  ds_conn_close(c, err, why);
}

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

/* ---- reading and framing ---- */

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

/* Handle one whole frame.  Returns 0, or -1 if the connection closed. */
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
                 proto_type_name(m.type), state_name(c->state));
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

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* Start reading unless already reading (libuv 1.44 has no EALREADY). */
static void conn_read_start(struct ds_conn *c)
{
  if (c->reading)
    return;
  int r = uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read);
  if (r < 0) {
    char why[96];
    snprintf(why, sizeof why, "read start: %s", uv_strerror(r));
    ds_conn_abort(c, why);
    return;
  }
  c->reading = true;
}

/* Stop reading (back-pressure or closing). */
static void conn_read_stop(struct ds_conn *c)
{
  if (c->reading)
    uv_read_stop((uv_stream_t *) &c->tcp);
  c->reading = false;
}

/* Process every whole frame in the buffer (unless throttled); the
 * partial tail stays for the next read. */
static void conn_feed(struct ds_conn *c)
{
  const uint8_t *f;
  size_t fl;
  int r;
  if (c->feeding)
    return; /* re-entered from a callback: the outer loop continues */
  c->feeding = true;
  while (!c->closing && !c->throttled) {
    r = framebuf_next(&c->rx, frame_max(c), &f, &fl);
    if (r == 0)
      break;
    if (r < 0) {
      ds_conn_fail(c, EPROTO, "bad frame length %zu in state %s (max %zu)", fl,
                   state_name(c->state), frame_max(c));
      break;
    }
    c->last_frame_ms = uv_now(&c->srv->loop);
    r = conn_frame(c, f, fl);
    if (r < 0)
      break;
    framebuf_consume(&c->rx); /* nothing left to do if a job took it */
  }
  c->feeding = false;
  if (!c->closing && !c->throttled)
    conn_read_start(c);
}

uint8_t *ds_conn_take_frame(struct ds_conn *c)
{
  /* The new buffer is sized for a frame like this one, so a buffer grown
   * for a bigger frame goes with at most one job. */
  if (c->rx.cur < DS_TAKE_MIN)
    return NULL;
  return framebuf_take(&c->rx, c->rx.cur);
}

/* libuv wants a buffer: free space in the read buffer, grown (only for a
 * length frame_max allowed) to hold the next frame whole.  A big frame's
 * last read stops at its end, so its job can take the buffer without
 * copying a tail.  Out of memory: an empty buffer (UV_ENOBUFS). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  struct ds_conn *c = h->data;
  uint8_t *p;
  size_t room;
  (void) suggested;
  if (framebuf_space(&c->rx, 1, DS_TAKE_MIN, &p, &room) < 0)
    *b = uv_buf_init(NULL, 0);
  else
    *b = uv_buf_init((char *) p, (unsigned) room);
}

/* Bytes arrived (or EOF / an error): append and process frames. */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
  struct ds_conn *c = s->data;
  (void) b;
  if (nread == UV_EOF) {
    ds_conn_abort(c, "peer closed the connection");
    return;
  }
  if (nread == UV_ENOBUFS) {
    ds_conn_close(c, 0, "out of memory for the read buffer");
    return;
  }
  if (nread < 0) {
    char why[96];
    snprintf(why, sizeof why, "read: %s", uv_strerror((int) nread));
    ds_conn_abort(c, why);
    return;
  }
  framebuf_commit(&c->rx, (size_t) nread);
  conn_feed(c);
}

/* ---- accepting ---- */

/* Read an integer sysctl (e.g. /proc/sys/net/core/rmem_max); 0 if none. */
static long sysctl_long(const char *path)
{
  FILE *f = fopen(path, "r");
  long v = 0;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = 0;
    fclose(f);
  }
  return v;
}

/* Socket options for an accepted connection, each for a reason. */
static void conn_sockopts(struct ds_conn *c)
{
  const struct ds_server_opts *o = c->srv->opts;
  int fd;
  /* Replies are small (JOB_DONE is 24 bytes) and the upstairs waits for
   * them: Nagle would hold each one back until the previous is acked
   * (up to 40 ms with delayed ACKs). */
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_fileno((uv_handle_t *) &c->tcp, &fd) != 0)
    return;
  /* A peer that vanished (power loss, cable) while we still have replies
   * queued would otherwise be retransmitted to for ~15 minutes
   * (tcp_retries2) before the write fails; the idle sweep does not cover
   * a connection we stopped reading.  Fail it after the idle timeout. */
  unsigned ms = o->idle_timeout * 1000u;
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
  /* Bigger buffers keep a 4 MiB WRITE or READ_DONE streaming while the
   * other side is busy.  Setting SO_RCVBUF/SO_SNDBUF turns off Linux's
   * autotuning and is capped by net.core.[rw]mem_max, so only do it when
   * the kernel would grant the full size; otherwise autotuning (which may
   * go higher) is the better choice. */
  int sz = DS_SOCKBUF;
  if (sysctl_long("/proc/sys/net/core/rmem_max") >= DS_SOCKBUF)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  if (sysctl_long("/proc/sys/net/core/wmem_max") >= DS_SOCKBUF)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
}

/* "addr:port" of the peer, for log lines. */
static void conn_peer_name(struct ds_conn *c)
{
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char ip[INET6_ADDRSTRLEN] = "?";
  unsigned port;
  snprintf(c->peer, sizeof c->peer, "?");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *) &ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *) &ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(c->peer, sizeof c->peer, "%s:%u", ip, port);
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *) &ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(c->peer, sizeof c->peer, "[%s]:%u", ip, port);
  }
}

/* A connection arrived: accept it (or refuse it past max_conns). */
static void on_connection(uv_stream_t *l, int status)
{
  struct ds_server *srv = l->data;
  if (status < 0) {
    log_error("accept: %s", uv_strerror(status));
    return;
  }
  struct ds_conn *c = calloc(1, sizeof *c);
  uint8_t *p;
  size_t room;
  if (!c || framebuf_space(&c->rx, DS_READ_CHUNK, DS_TAKE_MIN, &p, &room) < 0) {
    /* Leave it in the backlog; we retry on the next connection event. */
    log_error("accept: out of memory");
    free(c);
    return;
  }
  c->srv = srv;
  uv_tcp_init(&srv->loop, &c->tcp);
  c->tcp.data = c;
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  srv->nlive++;
  c->last_frame_ms = uv_now(&srv->loop);
  if (uv_accept(l, (uv_stream_t *) &c->tcp) != 0) {
    ds_conn_abort(c, NULL);
    return;
  }
  conn_peer_name(c);
  if (srv->nlive > srv->opts->max_conns) {
    log_warn("%s: refused: already %u connections (max %u)", c->peer,
             srv->nlive - 1, srv->opts->max_conns);
    ds_conn_abort(c, NULL);
    return;
  }
  conn_sockopts(c);
  log_info("%s: connected", c->peer);
  conn_read_start(c);
}

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
  uv_close((uv_handle_t *) &srv->listener, NULL);
  uv_close((uv_handle_t *) &srv->sigint, NULL);
  uv_close((uv_handle_t *) &srv->sigterm, NULL);
  uv_close((uv_handle_t *) &srv->sweep, NULL);
  ds_jobs_drop_waiting(srv);
  ds_jobs_fini(srv);
  for (struct ds_conn *c = srv->conns; c; c = c->next)
    ds_conn_abort(c, NULL);
}

/* SIGINT or SIGTERM: stop gracefully. */
static void on_signal(uv_signal_t *s, int signum)
{
  server_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* Listen on opts->listen_fd (bound by the caller: cli_listen).  0 or a
 * negative errno (logged). */
static int server_listen(struct ds_server *srv)
{
  const struct ds_server_opts *o = srv->opts;
  int r = uv_tcp_init(&srv->loop, &srv->listener);
  if (r == 0)
    r = uv_tcp_open(&srv->listener, o->listen_fd);
  srv->listener.data = srv;
  if (r == 0)
    r = uv_listen((uv_stream_t *) &srv->listener, 128, on_connection);
  if (r != 0) {
    log_error("listen %s:%u: %s", o->addr, o->port, uv_strerror(r));
    uv_close((uv_handle_t *) &srv->listener, NULL);
  }
  return r;
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
  r = server_listen(&srv);
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
