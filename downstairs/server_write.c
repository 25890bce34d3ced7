/* crucible-c downstairs: a connection's outgoing frames (server_int.h):
 * one uv_write per frame, or per corked run of frames (ds_conn_cork: the
 * replies of one batch leave in one writev); each frame's back-pressure
 * accounting is released when it is written or dropped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/list.h"
#include "../common/log.h"
#include "server_int.h"

struct ds_wreq *ds_wreq_new(size_t len)
{
  struct ds_wreq *w = malloc(sizeof *w + len);
  if (!w)
    return NULL;
  memset(w, 0, sizeof *w);
  w->len = len;
  return w;
}

/* Release the accounting of a written (or dropped) frame and free it. */
static void wreq_done(struct ds_wreq *w)
{
  if (w->conn && (w->acct_job || w->acct_bytes))
    ds_conn_release(w->conn, w->acct_job, w->acct_bytes);
  free(w);
}

/* Frames were written (or dropped at close): release and free them (w
 * and the ones chained to it by a cork). */
static void on_write(uv_write_t *req, int status)
{
  struct ds_wreq *w = req->data;
  struct ds_conn *c = w->conn;
  if (status < 0 && status != UV_ECANCELED && !c->closing) {
    log_info("%s: write: %s", c->peer, uv_strerror(status));
    ds_conn_abort(c, NULL);
  }
  while (w) {
    struct ds_wreq *next = w->cnext;
    wreq_done(w);
    w = next;
  }
}

/* Queue w on c (takes ownership).  On a closing connection the frame is
 * dropped.  Returns 0 or a negative errno (the connection is then being
 * closed). */
int ds_conn_send(struct ds_conn *c, struct ds_wreq *w)
{
  w->conn = c;
  w->cnext = NULL;
  if (c->closing) {
    wreq_done(w);
    return 0;
  }
  if (c->corked) {
    FIFO_PUSH(c->cork_head, c->cork_tail, w, cnext);
    c->ncork++;
    return 0;
  }
  w->req.data = w;
  uv_buf_t b = uv_buf_init((char *) w->data, (unsigned) w->len);
  int r = uv_write(&w->req, (uv_stream_t *) &c->tcp, &b, 1, on_write);
  if (r < 0) {
    log_info("%s: write: %s", c->peer, uv_strerror(r));
    wreq_done(w);
    ds_conn_abort(c, NULL);
  }
  return r;
}

void ds_conn_cork(struct ds_conn *c)
{
  c->corked = true;
}

/* The corked frames in one uv_write: the first frame's request carries
 * the chain, freed together in on_write. */
void ds_conn_uncork(struct ds_conn *c)
{
  enum { MAXB = 64 };
  c->corked = false;
  while (c->cork_head) {
    uv_buf_t b[MAXB];
    unsigned n = 0;
    struct ds_wreq *first = c->cork_head, *w = first, *last = NULL;
    for (; w && n < MAXB; last = w, w = w->cnext)
      b[n++] = uv_buf_init((char *) w->data, (unsigned) w->len);
    c->cork_head = w;
    if (!w)
      c->cork_tail = NULL;
    last->cnext = NULL;
    c->ncork -= n;
    if (c->closing) {
      on_write(&first->req, UV_ECANCELED);
      continue;
    }
    first->req.data = first;
    int r = uv_write(&first->req, (uv_stream_t *) &c->tcp, b, n, on_write);
    if (r < 0) {
      log_info("%s: write: %s", c->peer, uv_strerror(r));
      on_write(&first->req, UV_ECANCELED);
      if (c->cork_tail)
        c->cork_tail->cnext = NULL;
      first = c->cork_head;
      c->cork_head = c->cork_tail = NULL;
      c->ncork = 0;
      if (first)
        on_write(&first->req, UV_ECANCELED);
      ds_conn_abort(c, NULL);
      return;
    }
  }
}

/* Send a copy of a small frame. */
int ds_conn_send_copy(struct ds_conn *c, const uint8_t *frame, size_t len)
{
  struct ds_wreq *w = ds_wreq_new(len);
  if (!w) {
    ds_conn_close(c, 0, "out of memory");
    return -ENOMEM;
  }
  memcpy(w->data, frame, len);
  return ds_conn_send(c, w);
}
