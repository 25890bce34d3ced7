/* crucible-c downstairs: the connection layer (server_int.h's layers):
 * the listener and accept, socket options, frames in (common/framebuf.h,
 * checked against the largest frame the layer above allows in the
 * connection's state, each whole frame reported up through srv->ev),
 * back-pressure, and closing.  Frames out: server_write.c.  It calls
 * nothing above it; the layer above learns of a closing connection
 * through ev->closing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/log.h"
#include "server_int.h"

/* Socket buffer we ask for: two 4 MiB jobs in flight keep the pipe full
 * while the previous frame is being parsed. */
#define DS_SOCKBUF (4 * 1024 * 1024)

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
  srv->ev->closing(c);
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

/* ---- reading and framing ---- */

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
    r = framebuf_next(&c->rx, c->srv->ev->frame_max(c), &f, &fl);
    if (r == 0)
      break;
    if (r < 0) {
      ds_conn_fail(c, EPROTO, "bad frame length %zu in state %s (max %zu)", fl,
                   ds_state_name(c->state), c->srv->ev->frame_max(c));
      break;
    }
    c->last_frame_ms = uv_now(&c->srv->loop);
    r = c->srv->ev->frame(c, f, fl);
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
 * length frame_max allowed) to hold the next frame whole.  At least
 * DS_READ_MIN: many small frames (READs) per read call, never a read
 * into a sliver left at the buffer's end.  A big frame's
 * last read stops at its end, so its job can take the buffer without
 * copying a tail.  Out of memory: an empty buffer (UV_ENOBUFS). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
  struct ds_conn *c = h->data;
  uint8_t *p;
  size_t room;
  (void) suggested;
  (void) framebuf_space(&c->rx, DS_READ_MIN, DS_TAKE_MIN, &p, &room);
  *b = uv_buf_init((char *) p, (unsigned) room); /* empty: UV_ENOBUFS */
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

/* ---- listening ---- */

/* Listen on opts->listen_fd (bound by the caller: cli_listen).  0 or a
 * negative errno (logged). */
int ds_conn_listen(struct ds_server *srv)
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

/* Stop accepting and close every connection now (server shutdown). */
void ds_conn_stop(struct ds_server *srv)
{
  uv_close((uv_handle_t *) &srv->listener, NULL);
  for (struct ds_conn *c = srv->conns; c; c = c->next)
    ds_conn_abort(c, NULL);
}
