/* crucible-c upstairs: one downstairs connection (see client.h). */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/auth.h"
#include "../common/geom.h"
#include "../common/hash.h"
#include "../common/log.h"
#include "client.h"

/* Smallest free space offered to a read: amortises syscalls for small
 * frames (JOB_DONE is 24 bytes) without growing the buffer for each. */
#define CL_RX_CHUNK (64u * 1024)
/* READ_DONE frames up to this size (versions-only replies, a few data
 * blocks) are copied out of the receive buffer; larger ones take it. */
#define CL_RX_COPY_MAX (16u * 1024)

struct cl_copy {
  uv_write_t w;
  uint8_t data[];
};

/* Job frames for one downstairs, written together by one uv_write: the
 * frames (bufs, owned by their jobs) and the job each holds a loop
 * reference of.  Reused from the connection's pool. */
struct cl_batch {
  uv_write_t w;
  struct cl_batch *next; /* pool */
  unsigned n, cap;
  unsigned boff; /* bufs before it already written (cl_flush_now) */
  uv_buf_t *bufs;
  struct up_job **jobs;
};

static void cl_dispatch(struct cl *c, uint8_t *base, const uint8_t *frame,
                        const struct proto_msg *m, bool *taken);

/* -D crucible.net=1: one debug line per frame sent or received, with its
 * type and job id (PING/PONG: the value they carry). */
static void cl_net_frame(const struct cl *c, const char *dir,
                         const uint8_t *frame, size_t len)
{
  uint16_t type;
  uint64_t v;

  if (!up_debug_net || len < PROTO_FRAME_HDR_LEN)
    return;
  type = proto_rd16(frame + 4);
  v = len >= PROTO_FRAME_HDR_LEN + 8 ? proto_rd64(frame + 8) : 0;
  if ((type >= PROTO_T_WRITE && type <= PROTO_T_READ_DONE) ||
      type == PROTO_T_EXTENT_FLUSH || type == PROTO_T_EXTENT_MARK ||
      type == PROTO_T_EXTENT_MAP_REQ || type == PROTO_T_EXTENT_MAP)
    log_debug("net: %s: %s %s %sjob %llu (%zu bytes)", c->name, dir,
              proto_type_name(type), v & UP_REPAIR_ID_BIT ? "repair " : "",
              (unsigned long long) (v & ~UP_REPAIR_ID_BIT), len);
  else if (type == PROTO_T_PING || type == PROTO_T_PONG)
    log_debug("net: %s: %s %s %llu", c->name, dir, proto_type_name(type),
              (unsigned long long) v);
  else
    log_debug("net: %s: %s %s (%zu bytes)", c->name, dir, proto_type_name(type),
              len);
}

/* Set up c (no handle yet). */
void cl_init(struct cl *c, struct upstairs *up, const struct cl_env *env,
             int idx, const char *host, uint16_t port)
{
  memset(c, 0, sizeof *c);
  c->up = up;
  c->env = env;
  c->idx = idx;
  if (strchr(host, ':'))
    snprintf(c->name, sizeof c->name, "[%s]:%u", host, port);
  else
    snprintf(c->name, sizeof c->name, "%s:%u", host, port);
  snprintf(c->why, sizeof c->why, "no answer");
  c->dstate = -1;
}

/* Resolve host:port once, before the loop runs (getaddrinfo blocks). */
int cl_resolve(struct cl *c, const char *host, uint16_t port)
{
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
  char ps[8];
  int r;

  snprintf(ps, sizeof ps, "%u", port);
  r = getaddrinfo(host, ps, &hints, &res);
  if (r != 0 || !res) {
    snprintf(c->why, sizeof c->why, "cannot resolve: %s", gai_strerror(r));
    return -EHOSTUNREACH;
  }
  memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
  c->have_addr = true;
  freeaddrinfo(res);
  return 0;
}

/* A control frame copy was written (or cancelled by close). */
static void on_copy_written(uv_write_t *w, int status)
{
  struct cl *c = w->handle->data;

  free(w->data);
  if (status < 0 && status != UV_ECANCELED)
    cl_close(c, false, "write failed");
}

/* Send a prepared control frame (copied, so buf may be on the stack). */
int cl_send_copy(struct cl *c, const uint8_t *buf, size_t len)
{
  struct cl_copy *cp;
  uv_buf_t b;
  int r;

  cl_flush(c); /* frames leave in the order they were sent */
  if (c->state == CL_CLOSING || c->state == CL_GONE || c->state == CL_IDLE)
    return -ENOTCONN;
  cp = malloc(sizeof *cp + len);
  if (!cp)
    return -ENOMEM;
  memcpy(cp->data, buf, len);
  cp->w.data = cp;
  b = uv_buf_init((char *) cp->data, (unsigned) len);
  r = uv_write(&cp->w, (uv_stream_t *) &c->tcp, &b, 1, on_copy_written);
  if (r < 0) {
    free(cp);
    return r;
  }
  cl_net_frame(c, "sent", buf, len);
  c->last_tx_ms = uv_now(c->tcp.loop);
  return 0;
}

/* Drop the loop reference of every frame in batch q (written or
 * cancelled) and put q back into c's pool. */
static void cl_batch_release(struct cl *c, struct cl_batch *q)
{
  for (unsigned i = 0; i < q->n; i++)
    c->env->ev->job_put(q->jobs[i]);
  q->n = q->boff = 0;
  q->next = c->bpool;
  c->bpool = q;
}

/* A batch of job frames was written (or cancelled by close): drop the
 * loop reference each frame holds, exactly once. */
static void on_batch_written(uv_write_t *w, int status)
{
  struct cl *c = w->handle->data;

  cl_batch_release(c, w->data);
  if (status < 0 && status != UV_ECANCELED)
    cl_close(c, false, "write failed");
}

int cl_send_job_frame(struct cl *c, struct up_job *job, const uint8_t *frame,
                      size_t len)
{
  struct cl_batch *q = c->batch;

  if (c->state != CL_ACTIVE)
    return -ENOTCONN;
  if (!q) {
    if ((q = c->bpool) != NULL)
      c->bpool = q->next;
    else if (!(q = calloc(1, sizeof *q)))
      return -ENOMEM;
    c->batch = q;
  }
  if (q->n == q->cap) {
    unsigned cap = q->cap ? 2 * q->cap : 16;
    uv_buf_t *b = realloc(q->bufs, cap * sizeof *b);
    struct up_job **j = b ? realloc(q->jobs, cap * sizeof *j) : NULL;
    if (b)
      q->bufs = b;
    if (!j)
      return -ENOMEM;
    q->jobs = j;
    q->cap = cap;
  }
  q->bufs[q->n] = uv_buf_init((char *) frame, (unsigned) len);
  q->jobs[q->n++] = job;
  cl_net_frame(c, "sent", frame, len);
  c->last_tx_ms = uv_now(c->tcp.loop);
  return 0;
}

/* Hand the frames batched since the last flush to libuv as one uv_write
 * (one writev for the lot when the socket takes them at once). */
void cl_flush(struct cl *c)
{
  struct cl_batch *q = c->batch;
  int r;

  if (!q || q->n == 0)
    return;
  c->batch = NULL;
  q->w.data = q;
  r = uv_write(&q->w, (uv_stream_t *) &c->tcp, q->bufs + q->boff,
               q->n - q->boff, on_batch_written);
  if (r < 0) {
    cl_batch_release(c, q);
    cl_fault(c, "send failed: %s", uv_strerror(r));
  }
}

void cl_flush_now(struct cl *c)
{
  struct cl_batch *q = c->batch;
  size_t total = 0, done;
  unsigned k = 0;
  int w;

  if (!q || q->n == 0 || c->state != CL_ACTIVE ||
      uv_stream_get_write_queue_size((uv_stream_t *) &c->tcp) != 0) {
    cl_flush(c);
    return;
  }
  for (unsigned i = 0; i < q->n; i++)
    total += q->bufs[i].len;
  w = uv_try_write((uv_stream_t *) &c->tcp, q->bufs, q->n);
  if (w < 0 && w != UV_EAGAIN) {
    c->batch = NULL;
    cl_batch_release(c, q);
    cl_fault(c, "send failed: %s", uv_strerror(w));
    return;
  }
  done = w > 0 ? (size_t) w : 0;
  if (done == total) {
    c->batch = NULL;
    cl_batch_release(c, q);
    return;
  }
  /* The rest: whole buffers written drop out of the list (their jobs
   * keep their references until the batch is written), a partly written
   * one starts where the socket stopped. */
  while (done >= q->bufs[k].len) {
    done -= q->bufs[k].len;
    k++;
  }
  q->bufs[k].base += done;
  q->bufs[k].len -= (unsigned) done;
  q->boff = k;
  cl_flush(c);
}

/* The handle is closed: the connection may be retried unless final. */
static void on_closed(uv_handle_t *h)
{
  struct cl *c = h->data;

  c->state = c->final ? CL_GONE : CL_IDLE;
  framebuf_free(&c->rx);
  c->ping_out = false;
  c->env->ev->changed(c->up, c);
  if (c->state == CL_IDLE)
    c->env->ev->handshake(c->up);
}

/* Close the connection (idempotent).  Outstanding jobs are skipped. */
void cl_close(struct cl *c, bool final, const char *why)
{
  enum cl_state was = c->state;

  c->final |= final;
  if (why)
    snprintf(c->why, sizeof c->why, "%s", why);
  if (up_debug_net && was != CL_IDLE && was != CL_GONE && was != CL_CLOSING)
    log_debug("net: %s: closing: %s", c->name, c->why);
  if (was == CL_IDLE) {
    if (c->final)
      c->state = CL_GONE;
    c->env->ev->changed(c->up, c);
    return;
  }
  if (was == CL_CLOSING || was == CL_GONE) {
    c->env->ev->changed(c->up, c); /* final may have changed */
    return;
  }
  c->state = CL_CLOSING;
  if (c->batch) { /* never handed to libuv: cancelled here */
    cl_batch_release(c, c->batch);
    c->batch = NULL;
  }
  if (was == CL_ACTIVE)
    c->env->ev->lost(c->up, c);
  uv_close((uv_handle_t *) &c->tcp, on_closed);
  c->env->ev->changed(c->up, c);
}

void cl_fault(struct cl *c, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(c->why, sizeof c->why, fmt, ap);
  va_end(ap);
  cl_close(c, false, NULL);
}

/* Free what the connection owns (handle already closed). */
void cl_free(struct cl *c)
{
  framebuf_free(&c->rx);
  free(c->states);
  c->states = NULL;
  while (c->bpool) {
    struct cl_batch *q = c->bpool;
    c->bpool = q->next;
    free(q->bufs);
    free(q->jobs);
    free(q);
  }
}

/* Offer free space in the receive buffer, growing it so the frame being
 * received fits whole (zero-copy hand-over of READ_DONE). */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
  struct cl *c = h->data;
  uint8_t *p;
  size_t room;
  (void) hint;

  (void) framebuf_space(&c->rx, CL_RX_CHUNK, FRAMEBUF_NO_STOP, &p, &room);
  *buf = uv_buf_init((char *) p, (unsigned) room); /* empty: UV_ENOBUFS */
}

/* Decode and handle every whole frame in the receive buffer. */
static void cl_process(struct cl *c)
{
  while (c->state != CL_CLOSING && c->state != CL_GONE) {
    const uint8_t *frame;
    size_t fl;
    uint32_t bs = c->have_hello ? c->hello.region.block_size : 0;
    struct proto_msg m;
    uint8_t *base = c->rx.buf, *own = NULL; /* a copy of a small READ_DONE */
    bool taken = false;
    int r = framebuf_next(&c->rx, PROTO_MAX_FRAME, &frame, &fl);

    if (r < 0) {
      cl_close(c, false, "malformed frame length");
      return;
    }
    if (r == 0)
      return;
    cl_net_frame(c, "received", frame, fl);
    if (proto_rd16(frame + 4) == PROTO_T_READ_DONE && c->state == CL_ACTIVE &&
        fl <= CL_RX_COPY_MAX) {
      /* A small reply is copied out whole: cheaper than giving the
       * receive buffer away and allocating and filling a new one. */
      if (!(own = malloc(fl))) {
        cl_close(c, false, "out of memory");
        return;
      }
      memcpy(own, frame, fl);
      base = own;
      frame = own;
    }
    r = proto_decode(frame, fl, bs, &m);
    if (r < 0) {
      char why[96];
      snprintf(why, sizeof why, "bad frame (%s): %s",
               proto_type_name(proto_rd16(frame + 4)), log_strerror(-r));
      free(own);
      log_warn("downstairs %s: %s", c->name, why);
      cl_close(c, false, why);
      return;
    }
    if (m.type == PROTO_T_READ_DONE && c->state == CL_ACTIVE && !own) {
      /* The job takes the receive buffer; the bytes after go on in a
       * fresh one. */
      if (!(base = framebuf_take(&c->rx, CL_RX_CHUNK))) {
        cl_close(c, false, "out of memory");
        return;
      }
      cl_dispatch(c, base, frame, &m, &taken);
      if (!taken)
        free(base);
      continue;
    }
    cl_dispatch(c, base, frame, &m, &taken);
    if (own && !taken)
      free(own);
    framebuf_consume(&c->rx);
  }
}

/* Bytes arrived (or the connection ended). */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  struct cl *c = s->data;
  (void) buf;

  if (nread < 0) {
    char why[96];
    /* uv_strerror already says "connection reset by peer". */
    snprintf(why, sizeof why, "%s",
             nread == UV_EOF ? "connection closed" : uv_strerror((int) nread));
    cl_close(c, false, why);
    return;
  }
  if (nread == 0)
    return;
  framebuf_commit(&c->rx, (size_t) nread);
  c->last_rx_ms = uv_now(s->loop);
  cl_process(c);
}

/* Send HELLO: zero uuid ("tell me"), our session, encrypted = have key,
 * a fresh auth nonce (kept, with the frame, for the auth transcript). */
static int cl_send_hello(struct cl *c)
{
  struct proto_hello h = {0};

  h.version = PROTO_VERSION;
  h.role = c->env->snap ? PROTO_ROLE_SNAPSHOT : PROTO_ROLE_UPSTAIRS;
  h.encrypted = c->env->encrypted;
  h.session_id = c->env->session_id;
  if (auth_random(h.auth_nonce, sizeof h.auth_nonce) < 0)
    return UV_EIO;
  return cl_send_copy(c, c->hello_sent, proto_put_hello(c->hello_sent, &h));
}

/* TCP connected (or failed). */
static void on_connect(uv_connect_t *req, int status)
{
  struct cl *c = req->handle->data;
  int r;

  if (c->state != CL_CONNECTING)
    return; /* closed meanwhile */
  c->refused = status == UV_ECONNREFUSED;
  if (status < 0) {
    if (up_debug_net)
      log_debug("net: %s: connect failed: %s", c->name, uv_strerror(status));
    cl_close(c, false, uv_strerror(status));
    return;
  }
  if (up_debug_net)
    log_debug("net: %s: connected", c->name);
  c->env->ev->connected(c->up, c);
  /* Jobs are small request/response frames: Nagle would hold a JOB_DONE
   * or a READ behind the previous unacked segment for up to 40 ms. */
  uv_tcp_nodelay(&c->tcp, 1);
  /* Kernel keepalive catches a peer that vanished without a FIN while
   * idle; our own PING/timeout handles the busy case. */
  uv_tcp_keepalive(&c->tcp, 1, 10);
  c->state = CL_HELLO;
  c->last_rx_ms = c->last_tx_ms = uv_now(req->handle->loop);
  r = uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read);
  if (r == 0)
    r = cl_send_hello(c);
  if (r < 0)
    cl_close(c, false, uv_strerror(r));
  else
    c->env->ev->changed(c->up, c);
}

/* Start connecting from IDLE. */
int cl_connect(struct cl *c)
{
  int r;

  if (c->state != CL_IDLE || c->final || !c->have_addr)
    return -EINVAL;
  r = uv_tcp_init(c->env->loop, &c->tcp);
  if (r < 0)
    return r;
  c->tcp.data = c;
  c->state = CL_CONNECTING;
  c->conn_ms = uv_now(c->env->loop);
  if (up_debug_net)
    log_debug("net: %s: connecting", c->name);
  r = uv_tcp_connect(&c->conn, &c->tcp, (struct sockaddr *) &c->addr,
                     on_connect);
  if (r < 0) {
    snprintf(c->why, sizeof c->why, "%s", uv_strerror(r));
    c->state = CL_CLOSING;
    uv_close((uv_handle_t *) &c->tcp, on_closed);
  }
  c->env->ev->changed(c->up, c);
  return r;
}

/* Close c after a refusal or a protocol error.  Before the volume runs
 * the start fails with it anyway (final).  Once it runs, nothing but a
 * newer generation (fencing) is final: a daemon restarted with the right
 * options, an upgraded peer or a frame corrupted once all deserve another
 * try, with backoff (upstairs.c), while the daemon keeps being healthy. */
static void cl_drop(struct cl *c, const char *why)
{
  cl_close(c, !c->env->ev->running(c->up), why);
}

/* Log msg unless why is already c's close reason: a refusal that
 * persists while the volume runs comes back at every reconnect, and is
 * news only the first time (the status line keeps it). */
static void cl_log_refusal(struct cl *c, const char *why, const char *msg)
{
  if (strncmp(c->why, why, sizeof c->why - 1) != 0)
    log_error("downstairs %s: %s", c->name, msg);
}

/* Refuse this downstairs, with one reason for the user: for good during
 * start-up (which fails), until the next reconnect while running. */
static void cl_refuse(struct cl *c, const char *why, const char *msg)
{
  if (!c->env->ev->start_fail(c->up, "downstairs %s: %s", c->name, msg))
    cl_log_refusal(c, why, msg);
  cl_drop(c, why);
}

/* A snapshot reader, instead of the extent states: open the snapshot
 * (job id 0); SNAPSHOTS answers. */
static int cl_send_snap_open(struct cl *c)
{
  uint8_t buf[PROTO_SNAPSHOT_LEN];
  struct proto_snapshot s = {.op = PROTO_SNAP_OPEN};

  snprintf(s.name, sizeof s.name, "%s", c->env->snap);
  return cl_send_copy(c, buf, proto_put_snapshot(buf, &s));
}

/* Handshake done (authenticated if asked): the upstairs decides whether
 * this downstairs may join; if so, ask for its extent states (or open
 * the snapshot). */
static void cl_admit(struct cl *c)
{
  uint8_t buf[PROTO_EXTENT_STATES_REQ_LEN];
  int r = c->env->ev->hello(c->up, c);
  if (r > 0) {
    cl_close(c, false, "not admitted yet");
    return;
  }
  if (r < 0) { /* c->why says why (up_check_rejoin) */
    if (r == -ESTALE)
      cl_close(c, true, NULL);
    else
      cl_drop(c, r == -1 && !c->env->ev->running(c->up) ? "refused" : NULL);
    return;
  }
  c->state = CL_STATES;
  c->have_snap = false;
  if ((c->env->snap
           ? cl_send_snap_open(c)
           : cl_send_copy(c, buf, proto_put_extent_states_req(buf))) < 0)
    cl_close(c, false, "write failed");
}

/* SNAPSHOTS answering our open: keep the record (or the refusal); the
 * upstairs decides (up__snap_serve_rule).  A reader without the
 * snapshot stays READY, so start-up can name it. */
static void cl_on_snap_open(struct cl *c, const struct proto_snapshots *s)
{
  c->have_snap = true;
  c->snap_err = s->err ? s->err : s->n == 1 ? 0 : EPROTO;
  memset(&c->snap, 0, sizeof c->snap);
  if (c->snap_err == 0)
    proto_snap_entry_get(s->entries, &c->snap);
  c->state = CL_READY;
  c->env->ev->handshake(c->up);
}

/* HELLO_OK (frame as received): keep the region definition; prove the
 * auth key if the downstairs asks for it, else go on to admission.  The
 * two sides must agree on whether there is a key: a downstairs that does
 * not ask while we hold one may be an impostor (no silent downgrade). */
static void cl_on_hello_ok(struct cl *c, const uint8_t *frame,
                           const struct proto_msg *m)
{
  const struct auth_key *k = c->env->auth;
  uint8_t mac[AUTH_MAC_LEN], buf[PROTO_AUTH_LEN];

  if (m->u.hello_ok.version != PROTO_VERSION ||
      geom_check(&m->u.hello_ok.region) < 0) {
    cl_refuse(c, "bad HELLO_OK",
              "unsupported protocol version or region geometry");
    return;
  }
  c->hello = m->u.hello_ok;
  c->have_hello = true;
  if (m->u.hello_ok.auth_required && k->len == 0) {
    cl_refuse(c, "authentication required",
              "requires authentication: give auth-key=+FILE with the key "
              "of its --auth-key");
    return;
  }
  if (!m->u.hello_ok.auth_required && k->len > 0) {
    cl_refuse(c, "no authentication offered",
              "does not require authentication but auth-key= was given "
              "(start it with --auth-key, or drop auth-key=)");
    return;
  }
  if (k->len == 0) {
    cl_admit(c);
    return;
  }
  if (auth_transcript(c->hello_sent, sizeof c->hello_sent, frame,
                      PROTO_HELLO_OK_LEN, c->auth_t) < 0 ||
      auth_mac(k, AUTH_CLIENT, c->auth_t, mac) < 0) {
    cl_close(c, false, "computing the auth proof failed");
    return;
  }
  c->state = CL_AUTH;
  if (cl_send_copy(c, buf, proto_put_auth(buf, PROTO_T_AUTH, mac)) < 0)
    cl_close(c, false, "write failed");
  crypt_wipe(mac, sizeof mac);
}

/* AUTH_OK: the downstairs must prove the key too (it could be an impostor
 * that accepts anything). */
static void cl_on_auth_ok(struct cl *c, const struct proto_msg *m)
{
  if (auth_check(c->env->auth, AUTH_SERVER, c->auth_t, m->u.auth_mac) < 0) {
    cl_refuse(c, "bad auth proof",
              "failed to prove the auth key (wrong --auth-key on that "
              "host, or not a crucible-c downstairs)");
    return;
  }
  if (up_debug_net)
    log_debug("net: %s: authenticated", c->name);
  cl_admit(c);
}

/* EXTENT_STATES: keep a copy; this downstairs is ready to activate. */
static void cl_on_states(struct cl *c, const struct proto_msg *m)
{
  size_t len = (size_t) m->u.extent_states.count * PROTO_EXTENT_STATE_LEN;

  /* More than HELLO_OK said: an EXTEND of an earlier session finished in
   * between (the states are a barrier behind it): the newer count. */
  if (m->u.extent_states.count > c->hello.region.extent_count)
    c->hello.region.extent_count = m->u.extent_states.count;
  if (m->u.extent_states.count != c->hello.region.extent_count) {
    cl_drop(c, "extent count mismatch in EXTENT_STATES");
    c->env->ev->start_fail(c->up,
                           "downstairs %s: sent %u extent states for %u "
                           "extents",
                           c->name, m->u.extent_states.count,
                           c->hello.region.extent_count);
    return;
  }
  free(c->states);
  c->states = malloc(len ? len : 1);
  if (!c->states) {
    cl_close(c, false, "out of memory");
    return;
  }
  memcpy(c->states, m->u.extent_states.states, len);
  c->nstates = m->u.extent_states.count;
  c->state = CL_READY;
  c->env->ev->handshake(c->up);
}

/* Frames the state does not expect close the connection. */
static void cl_unexpected(struct cl *c, const struct proto_msg *m)
{
  char why[96];

  snprintf(why, sizeof why, "unexpected %s frame", proto_type_name(m->type));
  log_warn("downstairs %s: %s", c->name, why);
  cl_close(c, false, why);
}

/* Handle one decoded frame.  *taken is set if base now belongs to a job. */
static void cl_dispatch(struct cl *c, uint8_t *base, const uint8_t *frame,
                        const struct proto_msg *m, bool *taken)
{
  uint8_t buf[PROTO_PING_LEN];

  switch (m->type) {
  case PROTO_T_ERROR:
    /* The downstairs refused something (a malformed frame of ours names
     * its type and the reason) and closes.  ESTALE is its answer to an
     * ACTIVATE below a generation it accepted: a newer upstairs exists,
     * the one refusal that is final while running. */
    if (c->state == CL_ACTIVE ||
        !c->env->ev->start_fail(c->up, "downstairs %s: %s", c->name,
                                m->u.error.text))
      cl_log_refusal(c, m->u.error.text, m->u.error.text);
    if (m->u.error.err == ESTALE)
      cl_close(c, true, m->u.error.text);
    else
      cl_drop(c, m->u.error.text);
    return;
  case PROTO_T_HELLO_OK:
    if (c->state != CL_HELLO)
      break;
    cl_on_hello_ok(c, frame, m);
    return;
  case PROTO_T_AUTH_OK:
    if (c->state != CL_AUTH)
      break;
    cl_on_auth_ok(c, m);
    return;
  case PROTO_T_EXTENT_STATES:
    if (c->state != CL_STATES)
      break;
    cl_on_states(c, m);
    return;
  case PROTO_T_ACTIVATE_OK:
    if (c->state != CL_ACTIVATING || !c->env->ev->activated(c->up, c, m->u.gen))
      break;
    return;
  case PROTO_T_NO_LONGER_ACTIVE: c->env->ev->fenced(c->up, c, m->u.gen); return;
  case PROTO_T_JOB_DONE:
    /* Activated, held by extend.c until its EXTEND is answered. */
    if (c->state == CL_ACTIVATING &&
        c->env->ev->held_done(c->up, c, &m->u.job_done))
      return;
    if (c->state != CL_ACTIVE)
      break;
    c->env->ev->job_done(c->up, c, &m->u.job_done);
    return;
  case PROTO_T_READ_DONE:
    if (c->state != CL_ACTIVE)
      break;
    *taken = true;
    c->env->ev->read_done(c->up, c, base, &m->u.read_done);
    return;
  case PROTO_T_EXTENT_MAP:
    if (c->state != CL_ACTIVE)
      break;
    c->env->ev->extent_map(c->up, c, &m->u.map);
    return;
  case PROTO_T_SNAPSHOTS:
    if (c->state == CL_STATES && c->env->snap) {
      cl_on_snap_open(c, &m->u.snaps);
      return;
    }
    if (c->state != CL_ACTIVE)
      break;
    c->env->ev->snapshots(c->up, c, &m->u.snaps);
    return;
  case PROTO_T_PING:
    if (cl_send_copy(c, buf, proto_put_ping(buf, PROTO_T_PONG, m->u.ping)))
      cl_close(c, false, "write failed");
    return;
  case PROTO_T_PONG: c->ping_out = false; return;
  default: break;
  }
  cl_unexpected(c, m);
}
