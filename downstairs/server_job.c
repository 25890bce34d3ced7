/* crucible-c downstairs: IO jobs (WRITE, READ, TRIM, FLUSH), block status
 * (EXTENT_MAP_REQ: a READ as far as ordering goes), the extent
 * jobs (EXTENT_FLUSH, EXTENT_MARK), FILE_REQ from a repair peer (clone)
 * and the EXTENT_STATES request, run on the libuv thread pool in the
 * order the scheduler allows (server_sched.h: jobs on one extent one at
 * a time in arrival order, FLUSH alone).  server_work.c does the disk
 * work; this file turns frames into jobs, runs them in batches and
 * turns results into reply frames.
 *
 * A job is validated before it is queued: it must lie inside the region
 * and inside one extent (else EINVAL, answered at once without touching
 * the disk), and a read-only session may not WRITE, TRIM, EXTENT_FLUSH
 * or EXTENT_MARK (EROFS); it may READ and ask for block status.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/geom.h"
#include "../common/list.h"
#include "../common/log.h"
#include "repair.h"
#include "server_int.h"

/* Bytes of job data a job keeps in memory (request or reply). */
static size_t job_bytes(const struct ds_job *j, uint32_t block_size)
{
  if (j->kind == DS_J_WRITE || j->kind == DS_J_READ)
    return (size_t) j->n * block_size;
  if (j->kind == DS_J_FILE)
    return DS_REPAIR_CHUNK;
  if (j->kind == DS_J_MAP)
    return proto_map_bytes(j->n);
  return 0;
}

/* Free a job and the frame it took, if any. */
static void job_free(struct ds_job *j)
{
  if (j) {
    free(j->frame);
    free(j->snap);
    free(j->snap_read);
  }
  free(j);
}

/* 0 if [lba, lba + n) lies in the region and in one extent, within the
 * job limit of its type, else EINVAL. */
static int io_check(const struct proto_region *d, uint16_t type, uint64_t lba,
                    uint32_t n)
{
  uint64_t blocks = geom_blocks(d);
  if (n == 0 || lba >= blocks || n > blocks - lba)
    return EINVAL;
  if (n > geom_left_in_extent(d, lba))
    return EINVAL;
  if (n > proto_max_job_blocks(type, d->block_size))
    return EINVAL;
  return 0;
}

/* Build and send JOB_DONE or (error-only) READ_DONE for job_id.  The
 * caller has charged one job and `bytes` to c. */
static void reply_status(struct ds_conn *c, enum ds_job_kind kind,
                         uint64_t job_id, int err, size_t bytes)
{
  size_t len = kind == DS_J_READ   ? PROTO_READ_DONE_HDR_LEN
               : kind == DS_J_FILE ? PROTO_FILE_DATA_HDR_LEN
               : kind == DS_J_MAP  ? PROTO_EXTENT_MAP_HDR_LEN
                                   : PROTO_JOB_DONE_LEN;
  struct ds_wreq *w = ds_wreq_new(len);
  if (!w) {
    ds_conn_release(c, true, bytes);
    ds_conn_close(c, 0, "out of memory for a reply");
    return;
  }
  w->acct_job = true;
  w->acct_bytes = bytes;
  if (kind == DS_J_READ)
    proto_put_read_done_hdr(w->data, job_id, err, 0, c->srv->def.block_size, 0);
  else if (kind == DS_J_FILE)
    proto_put_file_data_hdr(
        w->data, &(struct proto_file_data){.job_id = job_id, .err = err});
  else if (kind == DS_J_MAP)
    proto_put_extent_map_hdr(w->data, job_id, err, 0);
  else
    proto_put_job_done(w->data, job_id, err);
  ds_conn_send(c, w);
}

/* Send the finished job's reply, if its connection is still there. */
static void job_reply(struct ds_job *j)
{
  struct ds_conn *c = j->conn;
  if (!c) {
    free(j->reply);
    return;
  }
  if (j->kind == DS_J_STATES && !j->reply) {
    ds_conn_release(c, true, j->acct);
    ds_conn_close(c, j->err, "extent states failed");
    return;
  }
  if (!j->reply) {
    reply_status(c, j->kind, j->job_id, j->err, j->acct);
    return;
  }
  j->reply->acct_job = true;
  j->reply->acct_bytes = j->acct;
  ds_conn_send(c, j->reply);
}

/* Thread pool: a batch's jobs in order (those of one extent are in
 * arrival order; consecutive WRITEs of one extent are a group). */
static void batch_work(uv_work_t *req)
{
  for (struct ds_job *j = req->data; j; j = j->rnext) {
    if (j->done)
      continue;
    if (j->kind == DS_J_WRITE)
      ds_work_write_group(j);
    else
      ds_work_one(j);
  }
}

static void job_start(struct sched_job *s, void *arg);

/* Loop thread: the job finished; let the ones it held back start. */
static void job_after_one(struct ds_job *j)
{
  struct ds_server *srv = j->srv;
  sched_done(&srv->sched, &j->s, job_start, srv);
  /* Jobs to the new extents pass io_check from now on (before the
   * reply: the upstairs sends them once it has it). */
  if (j->kind == DS_J_EXTEND && !j->err)
    srv->def.extent_count = region_def(srv->region)->extent_count;
  job_reply(j); /* the log line after it: not in the reply's latency */
  if (j->kind == DS_J_XFLUSH || j->kind == DS_J_XMARK) {
    if (j->err)
      log_error("%s job %llu extent %u: %s",
                j->kind == DS_J_XMARK ? "mark" : "extent flush",
                (unsigned long long) j->job_id, j->eid, log_strerror(j->err));
    else if (j->kind == DS_J_XMARK)
      log_debug("extent %u marked for repair (job %llu)", j->eid,
                (unsigned long long) j->job_id);
  } else if (j->kind == DS_J_EXTEND) {
    if (j->err)
      log_error("extend to %u extents (job %llu): %s", j->eid,
                (unsigned long long) j->job_id, log_strerror(j->err));
    else
      log_info("extended to %u extents (job %llu)", j->eid,
               (unsigned long long) j->job_id);
  } else if (j->kind == DS_J_SNAP) {
    ds_snap_done(j);
  } else if (j->kind == DS_J_FLUSH && !j->err) {
    /* Debug: a database's fsyncs are a thousand flushes a second. */
    log_debug("flush %llu gen %llu: %u extents (job %llu)",
              (unsigned long long) j->flush_no, (unsigned long long) j->gen,
              j->nflushed, (unsigned long long) j->job_id);
  } else if (j->err && j->err != EBADMSG)
    log_error("%s job %llu lba %llu n %u: %s",
              j->kind == DS_J_FLUSH ? "flush" : "io",
              (unsigned long long) j->job_id, (unsigned long long) j->lba, j->n,
              log_strerror(j->err));
  job_free(j);
}

/* Loop thread: a batch finished.  Its replies to one connection leave in
 * one write (cork); jobs it held back go to the ready list. */
static void batch_after(uv_work_t *req, int status)
{
  struct ds_job *j = req->data;
  struct ds_conn *c = j->conn;
  assert(status == 0); /* we never uv_cancel */
  (void) status;
  if (c)
    ds_conn_cork(c);
  while (j) {
    struct ds_job *next = j->rnext;
    job_after_one(j);
    j = next;
  }
  if (c)
    ds_conn_uncork(c);
}

/* A batch of READs on the loop thread, each as long as it needs no
 * disk and no wait (region_read_now: the hand-off to a worker and back
 * costs more than a cached read); from the first that would wait on, the
 * rest goes to a worker as a batch. */
static void batch_queue(struct ds_server *srv, struct ds_job *lead);

/* WRITE batches of at most this many bytes may run on the loop thread
 * (hashing bigger ones is better spread over the workers). */
#define DS_NOW_WRITE_MAX (256u * 1024)
#define DS_NOW_WRITES 64

/* All READs (1), all WRITEs small enough (2), else 0. */
static int batch_now_kind(const struct ds_job *j)
{
  size_t bytes = 0;
  unsigned n = 0;
  enum ds_job_kind k = j->kind;
  if (k != DS_J_READ && k != DS_J_WRITE)
    return 0;
  for (; j; j = j->rnext, n++) {
    if (j->kind != k)
      return 0;
    bytes += (size_t) j->n * j->srv->def.block_size;
  }
  if (k == DS_J_READ)
    return 1;
  return bytes <= DS_NOW_WRITE_MAX && n <= DS_NOW_WRITES ? 2 : 0;
}

/* A small WRITE batch (one extent) on the loop thread in one group, or
 * (-EAGAIN: it would wait) all of it to a worker. */
static void batch_now_writes(struct ds_server *srv, struct ds_job *lead)
{
  struct region_wr w[DS_NOW_WRITES];
  unsigned n = 0;
  for (struct ds_job *j = lead; j; j = j->rnext)
    w[n++] = (struct region_wr){
        .lba = j->lba, .n = j->n, .ctxs = j->ctxs, .data = j->data};
  if (region_write_group_now(srv->region, w, n) == -EAGAIN) {
    batch_queue(srv, lead);
    return;
  }
  struct ds_conn *c = lead->conn;
  if (c)
    ds_conn_cork(c);
  n = 0;
  for (struct ds_job *j = lead, *next; j; j = next) {
    next = j->rnext;
    j->err = w[n].err < 0 ? -w[n].err : 0;
    n++;
    job_after_one(j);
  }
  if (c)
    ds_conn_uncork(c);
}

static void batch_now(struct ds_server *srv, struct ds_job *j)
{
  struct ds_conn *c = j->conn;
  if (c)
    ds_conn_cork(c);
  while (j) {
    if (ds_work_read(j, true) == -EAGAIN) {
      batch_queue(srv, j);
      break;
    }
    struct ds_job *next = j->rnext;
    job_after_one(j);
    j = next;
  }
  if (c)
    ds_conn_uncork(c);
}

static void batch_queue(struct ds_server *srv, struct ds_job *lead)
{
  lead->work.data = lead;
  /* Only fails for a NULL work_cb. */
  int r = uv_queue_work(&srv->loop, &lead->work, batch_work, batch_after);
  assert(r == 0);
  (void) r;
}

/* Grow the extent -> batch table to hold 2 * n slots; false on ENOMEM. */
static bool bslot_reserve(struct ds_server *srv, size_t n)
{
  size_t cap = srv->bslot_cap ? srv->bslot_cap : 64;
  while (cap < 2 * n)
    cap *= 2;
  if (cap == srv->bslot_cap)
    return true;
  struct ds_batch_slot *t = malloc(cap * sizeof *t);
  if (!t)
    return false;
  free(srv->bslot);
  srv->bslot = t;
  srv->bslot_cap = cap;
  return true;
}

static void ready_flush_once(struct ds_server *srv);

/* Run a batch: READs and small WRITEs on the loop thread where they need
 * no wait, else a worker. */
static void batch_run(struct ds_server *srv, struct ds_job *lead)
{
  int k = srv->stopping ? 0 : batch_now_kind(lead);
  if (k == 1)
    batch_now(srv, lead);
  else if (k == 2)
    batch_now_writes(srv, lead);
  else
    batch_queue(srv, lead);
}

/* Hand the ready jobs to the thread pool: one batch per extent (its
 * jobs in start order: a group, server_sched.h), jobs of different
 * extents in parallel; a barrier is alone (it starts only when nothing
 * else runs).  Without memory for the table, one batch for all.  Jobs
 * the batches run here start others: those go out in the next round. */
static void ready_flush(struct ds_server *srv)
{
  if (srv->flushing) /* a job started inside (stopping): the loop below */
    return;
  srv->flushing = true;
  while (srv->ready_head)
    ready_flush_once(srv);
  srv->flushing = false;
}

static void ready_flush_once(struct ds_server *srv)
{
  struct ds_job *j = srv->ready_head, *next;
  size_t n = srv->nready;
  srv->ready_head = srv->ready_tail = NULL;
  srv->nready = 0;
  bool table = n > 1 && bslot_reserve(srv, n);
  size_t mask = srv->bslot_cap - 1;
  if (table)
    for (size_t i = 0; i <= mask; i++)
      srv->bslot[i].lead = NULL;
  struct ds_job *one = NULL, *one_tail = NULL;
  for (; j; j = next) {
    next = j->rnext;
    j->rnext = NULL;
    sched_submitted(&j->s);
    if (!table) {
      if (one_tail)
        one_tail->rnext = j;
      else
        one = j;
      one_tail = j;
      continue;
    }
    size_t i = ((uint32_t) (j->s.eid * 2654435761u)) & mask;
    while (srv->bslot[i].lead && srv->bslot[i].eid != j->s.eid)
      i = (i + 1) & mask;
    struct ds_batch_slot *b = &srv->bslot[i];
    if (b->lead) {
      b->tail->rnext = j;
    } else {
      b->eid = j->s.eid;
      b->lead = j;
    }
    b->tail = j;
  }
  if (one)
    batch_run(srv, one);
  if (table) /* collect first: batch_run may start jobs (not here: ready) */
    for (size_t i = 0; i <= mask; i++)
      if (srv->bslot[i].lead)
        batch_run(srv, srv->bslot[i].lead);
}

static void on_ready_prepare(uv_prepare_t *h)
{
  ready_flush(h->data);
}

static void on_ready_check(uv_check_t *h)
{
  ready_flush(h->data);
}

void ds_jobs_init(struct ds_server *srv)
{
  uv_prepare_init(&srv->loop, &srv->ready_prepare);
  uv_check_init(&srv->loop, &srv->ready_check);
  srv->ready_prepare.data = srv->ready_check.data = srv;
  /* Before the loop blocks (jobs started by timers or close callbacks)
   * and after each poll (frames read, batches finished).  Unref'd: they
   * keep nothing alive. */
  uv_prepare_start(&srv->ready_prepare, on_ready_prepare);
  uv_check_start(&srv->ready_check, on_ready_check);
  uv_unref((uv_handle_t *) &srv->ready_prepare);
  uv_unref((uv_handle_t *) &srv->ready_check);
}

void ds_jobs_fini(struct ds_server *srv)
{
  ready_flush(srv); /* started jobs run; their replies are dropped */
  uv_close((uv_handle_t *) &srv->ready_prepare, NULL);
  uv_close((uv_handle_t *) &srv->ready_check, NULL);
  free(srv->bslot);
  srv->bslot = NULL;
  srv->bslot_cap = 0;
}

/* Scheduler callback: the job joins the ready list (submitted at the
 * end of this loop turn, or at once when the server is stopping). */
static void job_start(struct sched_job *s, void *arg)
{
  struct ds_job *j = (struct ds_job *) s;
  struct ds_server *srv = arg;
  FIFO_PUSH(srv->ready_head, srv->ready_tail, j, rnext);
  srv->nready++;
  if (srv->stopping)
    ready_flush(srv);
}

/* Allocate a job for msg.  A big WRITE takes the read buffer holding its
 * frame; a small one's data is copied (the read buffer is reused for the
 * next frames).  NULL on ENOMEM. */
static struct ds_job *job_new(struct ds_conn *c, const struct proto_msg *m,
                              enum ds_job_kind kind)
{
  uint32_t bs = c->srv->def.block_size;
  size_t extra = 0;
  uint8_t *frame = NULL;
  if (kind == DS_J_WRITE) {
    frame = ds_conn_take_frame(c);
    extra = (size_t) m->u.io.n * sizeof(struct proto_ctx);
    if (!frame)
      extra += (size_t) m->u.io.n * bs;
  }
  /* Only the job itself needs zeroing: the WRITE payload behind it is
   * overwritten at once (zeroing 4 MiB per job was measurable). */
  struct ds_job *j = malloc(sizeof *j + extra);
  if (!j) {
    free(frame);
    return NULL;
  }
  memset(j, 0, sizeof *j);
  j->frame = frame;
  j->srv = c->srv;
  j->conn = c;
  j->kind = kind;
  if (kind == DS_J_FLUSH) {
    j->job_id = m->u.flush.job_id;
    j->flush_no = m->u.flush.flush_no;
    j->gen = m->u.flush.gen;
    j->s.barrier = true;
  } else if (kind == DS_J_STATES) {
    j->s.barrier = true;
  } else if (kind == DS_J_FILE) {
    j->job_id = m->u.file_req.job_id;
    j->s.eid = j->eid = m->u.file_req.eid;
    j->file = m->u.file_req.file;
    j->offset = m->u.file_req.offset;
    j->n = m->u.file_req.len;
  } else if (kind == DS_J_SNAP) {
    if (ds_snap_job(j, m) < 0) {
      job_free(j);
      return NULL;
    }
  } else if (kind == DS_J_EXTEND) {
    j->job_id = m->u.ext.job_id;
    j->eid = m->u.ext.eid; /* the new extent count */
    j->s.barrier = true;
  } else if (kind == DS_J_XFLUSH || kind == DS_J_XMARK) {
    /* One extent: ordered with the IO on it like a WRITE there. */
    j->job_id = m->u.ext.job_id;
    j->s.eid = j->eid = m->u.ext.eid;
    j->flush_no = m->u.ext.flush_no;
    j->gen = m->u.ext.gen;
  } else {
    j->job_id = m->u.io.job_id;
    j->lba = m->u.io.lba;
    j->n = m->u.io.n;
    j->version = m->u.io.version;
    j->ctx_only = m->type == PROTO_T_READ && (m->flags & PROTO_F_CTX_ONLY);
    j->versions = m->type == PROTO_T_READ && (m->flags & PROTO_F_VERSIONS);
    j->s.eid = geom_extent_of(&c->srv->def, j->lba);
  }
  if (kind == DS_J_WRITE) {
    j->ctxs = (struct proto_ctx *) (j + 1);
    for (uint32_t i = 0; i < j->n; i++)
      proto_ctx_get(m->u.io.ctxs + (size_t) i * PROTO_CTX_LEN, &j->ctxs[i]);
    if (frame) {
      j->data = m->u.io.data; /* inside frame */
    } else {
      uint8_t *d = (uint8_t *) (j->ctxs + j->n);
      memcpy(d, m->u.io.data, (size_t) j->n * bs);
      j->data = d;
    }
  }
  if (kind == DS_J_READ && c->snap_reader) {
    j->snap_read = strdup(c->snap_name);
    if (!j->snap_read) {
      job_free(j);
      return NULL;
    }
  }
  j->acct = job_bytes(j, bs);
  return j;
}

/* Refuse (answered at once) an extent job or FILE_REQ naming no extent
 * of the region (EINVAL), an EXTENT_FLUSH or EXTENT_MARK of a read-only
 * session (EROFS), or an EXTENT_FLUSH of a foreign generation (EINVAL).
 * 0, or -1 when answered. */
static int extent_check(struct ds_conn *c, const struct proto_msg *m,
                        enum ds_job_kind kind)
{
  struct ds_server *srv = c->srv;
  uint32_t eid = kind == DS_J_FILE ? m->u.file_req.eid : m->u.ext.eid;
  uint64_t id = kind == DS_J_FILE ? m->u.file_req.job_id : m->u.ext.job_id;
  int err = 0;
  if (eid >= srv->def.extent_count)
    err = EINVAL;
  else if (kind != DS_J_FILE && c->read_only)
    err = EROFS;
  else if (kind == DS_J_XFLUSH &&
           m->u.ext.gen != region_highest_gen(srv->region))
    err = EINVAL;
  if (!err)
    return 0;
  log_warn("%s: %s job %llu extent %u refused: %s", c->peer,
           proto_type_name(m->type), (unsigned long long) id, eid,
           log_strerror(err));
  ds_conn_charge(c, 0);
  reply_status(c, kind, id, err, 0);
  return -1;
}

/* Any job but READ from a snapshot reader: EROFS, answered at once (a
 * JOB_DONE, or the error-only reply of its kind); 0. */
static int snap_reader_refuse(struct ds_conn *c, const struct proto_msg *m,
                              enum ds_job_kind kind)
{
  uint64_t id = 0;
  switch (kind) {
  case DS_J_WRITE:
  case DS_J_TRIM:
  case DS_J_MAP: id = m->u.io.job_id; break;
  case DS_J_FLUSH: id = m->u.flush.job_id; break;
  case DS_J_XFLUSH:
  case DS_J_XMARK:
  case DS_J_EXTEND: id = m->u.ext.job_id; break;
  case DS_J_SNAP: id = m->u.snap.job_id; break;
  case DS_J_FILE: id = m->u.file_req.job_id; break;
  default: break;
  }
  log_warn("%s: %s job %llu from a snapshot reader refused: %s", c->peer,
           proto_type_name(m->type), (unsigned long long) id,
           log_strerror(EROFS));
  ds_conn_charge(c, 0);
  reply_status(c, kind, id, EROFS, 0);
  return 0;
}

int ds_job_submit(struct ds_conn *c, const struct proto_msg *m)
{
  struct ds_server *srv = c->srv;
  enum ds_job_kind kind;
  switch (m->type) {
  case PROTO_T_WRITE: kind = DS_J_WRITE; break;
  case PROTO_T_READ: kind = DS_J_READ; break;
  case PROTO_T_TRIM: kind = DS_J_TRIM; break;
  case PROTO_T_FLUSH: kind = DS_J_FLUSH; break;
  case PROTO_T_FILE_REQ: kind = DS_J_FILE; break;
  case PROTO_T_EXTENT_FLUSH: kind = DS_J_XFLUSH; break;
  case PROTO_T_EXTENT_MARK: kind = DS_J_XMARK; break;
  case PROTO_T_EXTEND: kind = DS_J_EXTEND; break;
  case PROTO_T_EXTENT_MAP_REQ: kind = DS_J_MAP; break;
  case PROTO_T_SNAPSHOT: kind = DS_J_SNAP; break;
  default: kind = DS_J_STATES; break;
  }
  /* The active upstairs reconnecting (same session, authenticated by
   * now): its old connection is dead to it.  Closed here, before the
   * states barrier, so that jobs still in transit on it can no longer
   * change an extent after its state was reported (live repair trusts
   * the states it gets). */
  if (kind == DS_J_STATES && !c->repair_peer && srv->active &&
      srv->active != c && srv->active->session_id == c->session_id) {
    struct ds_conn *old = srv->active;
    srv->active = NULL;
    ds_conn_close(old, 0, "replaced by a new connection of its session");
  }
  /* A snapshot reader reads its snapshot and nothing else. */
  if (c->snap_reader && kind != DS_J_READ)
    return snap_reader_refuse(c, m, kind);
  /* Defence in depth (the state check in frame_allowed stops it too):
   * IO and extent frames only from the one active connection. */
  if (kind != DS_J_STATES && kind != DS_J_FILE && c != srv->active &&
      !c->snap_reader) {
    ds_conn_fail(c, EPERM,
                 "%s from a connection that is not the active "
                 "one",
                 proto_type_name(m->type));
    return -EPERM;
  }
  if ((kind == DS_J_XFLUSH || kind == DS_J_XMARK || kind == DS_J_FILE) &&
      extent_check(c, m, kind) < 0)
    return 0;
  if (kind == DS_J_WRITE || kind == DS_J_READ || kind == DS_J_TRIM ||
      kind == DS_J_MAP) {
    int err = io_check(&srv->def, m->type, m->u.io.lba, m->u.io.n);
    if (!err && c->read_only && kind != DS_J_READ && kind != DS_J_MAP)
      err = EROFS;
    if (err) {
      ds_conn_charge(c, 0);
      reply_status(c, kind, m->u.io.job_id, err, 0);
      return 0;
    }
  }
  if (kind == DS_J_SNAP && ds_snap_refuse(c, m) < 0)
    return 0;
  /* A read-only session may not grow the region. */
  if (kind == DS_J_EXTEND && c->read_only) {
    ds_conn_charge(c, 0);
    reply_status(c, kind, m->u.ext.job_id, EROFS, 0);
    return 0;
  }
  /* A flush records its generation in every dirty extent, and
   * reconciliation trusts it: only the generation this connection
   * activated (the region's highest) may be written. */
  if (kind == DS_J_FLUSH && m->u.flush.gen != region_highest_gen(srv->region)) {
    ds_conn_charge(c, 0);
    reply_status(c, kind, m->u.flush.job_id, EINVAL, 0);
    return 0;
  }
  struct ds_job *j = job_new(c, m, kind);
  int r = j ? sched_add(&srv->sched, &j->s) : -ENOMEM;
  if (r < 0) {
    job_free(j);
    ds_conn_close(c, ENOMEM, "out of memory for a job");
    return -ENOMEM;
  }
  ds_conn_charge(c, j->acct);
  if (r == 1)
    job_start(&j->s, srv);
  return 0;
}

void ds_jobs_detach(struct ds_server *srv, const struct ds_conn *c)
{
  for (struct sched_job *s = srv->sched.head; s; s = s->next) {
    struct ds_job *j = (struct ds_job *) s;
    if (j->conn == c)
      j->conn = NULL;
  }
}

void ds_jobs_drop_waiting(struct ds_server *srv)
{
  struct sched_job *s = srv->sched.head, *next;
  for (; s; s = next) {
    next = s->next;
    if (!s->running) {
      sched_remove(&srv->sched, s);
      job_free((struct ds_job *) s);
    }
  }
}
