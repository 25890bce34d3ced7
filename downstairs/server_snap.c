/* crucible-c downstairs: the SNAPSHOT job (create, delete, list), a
 * barrier of the job stream like FLUSH: every job before it is done
 * before it starts, none after it starts before it is done (the
 * scheduler, server_sched.h), so a create contains exactly the writes
 * acknowledged before it.  The disk work is region_snapshot_* on a
 * worker; a list is answered by SNAPSHOTS, the rest by JOB_DONE.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "region.h"
#include "server_int.h"
#include "snapshot.h"

static void refuse(struct ds_conn *c, uint64_t job_id, int err)
{
  uint8_t f[PROTO_JOB_DONE_LEN];
  ds_conn_charge(c, 0);
  proto_put_job_done(f, job_id, err);
  /* Released when written, as every reply. */
  struct ds_wreq *w = ds_wreq_new(sizeof f);
  if (!w) {
    ds_conn_release(c, true, 0);
    ds_conn_close(c, 0, "out of memory for a reply");
    return;
  }
  memcpy(w->data, f, sizeof f);
  w->acct_job = true;
  ds_conn_send(c, w);
}

int ds_snap_refuse(struct ds_conn *c, const struct proto_msg *m)
{
  const struct proto_snapshot *s = &m->u.snap;
  int err = 0;
  if (s->op == PROTO_SNAP_OPEN) /* a snapshot reader's, before any job */
    err = EINVAL;
  else if (s->op != PROTO_SNAP_LIST && c->read_only)
    err = EROFS;
  /* Its flush records the generation in every dirty extent: only the
   * one this connection activated, as for FLUSH. */
  else if (s->op == PROTO_SNAP_CREATE &&
           s->gen != region_highest_gen(c->srv->region))
    err = EINVAL;
  if (!err)
    return 0;
  log_warn("%s: SNAPSHOT job %llu (%s) refused: %s", c->peer,
           (unsigned long long) s->job_id, s->name, log_strerror(err));
  refuse(c, s->job_id, err);
  return -1;
}

int ds_snap_job(struct ds_job *j, const struct proto_msg *m)
{
  j->snap = malloc(sizeof *j->snap);
  if (!j->snap)
    return -ENOMEM;
  *j->snap = m->u.snap;
  j->job_id = m->u.snap.job_id;
  j->flush_no = m->u.snap.flush_no;
  j->gen = m->u.snap.gen;
  j->s.barrier = true;
  return 0;
}

/* The list, as a SNAPSHOTS frame (an error in it, no entries). */
static void work_list(struct ds_job *j)
{
  static __thread struct region_snap_info info[PROTO_MAX_SNAPS];
  unsigned n = 0;
  int r = region_snapshot_list(j->srv->region, info, PROTO_MAX_SNAPS, &n);
  if (r < 0)
    n = 0;
  struct ds_wreq *w =
      ds_wreq_new(PROTO_SNAPSHOTS_HDR_LEN + (size_t) n * PROTO_SNAP_ENTRY_LEN);
  if (!w) {
    j->err = ENOMEM;
    return;
  }
  size_t off = proto_put_snapshots_hdr(w->data, j->job_id, r < 0 ? -r : 0, n);
  for (unsigned i = 0; i < n; i++, off += PROTO_SNAP_ENTRY_LEN) {
    struct proto_snap_entry e = {.seq = info[i].seq,
                                 .extent_count = info[i].extent_count,
                                 .copies = info[i].copies,
                                 .time = info[i].time,
                                 .gen = info[i].gen,
                                 .flush = info[i].flush,
                                 .bytes = info[i].bytes};
    memcpy(e.name, info[i].name, sizeof e.name);
    proto_snap_entry_put(w->data + off, &e);
  }
  j->reply = w;
}

void ds_snap_work(struct ds_job *j)
{
  struct region *rg = j->srv->region;
  const struct proto_snapshot *s = j->snap;
  int r = 0;
  switch (s->op) {
  case PROTO_SNAP_CREATE:
    r = region_snapshot_create(rg, s->name, s->flush_no, s->gen, s->time);
    break;
  case PROTO_SNAP_DELETE: r = region_snapshot_delete(rg, s->name); break;
  default: work_list(j); return;
  }
  j->err = r < 0 ? -r : 0;
}

void ds_snap_done(const struct ds_job *j)
{
  static const char *const op[] = {"?", "create", "delete", "list"};
  if (j->err)
    log_error("snapshot %s %s (job %llu): %s", op[j->snap->op & 3],
              j->snap->name, (unsigned long long) j->job_id,
              log_strerror(j->err));
}

int ds_snap_open(struct ds_conn *c, const struct proto_snapshot *s)
{
  struct region_snap_info info;
  int r = s->op == PROTO_SNAP_OPEN
              ? region_snapshot_find(c->srv->region, s->name, &info)
              : -EINVAL;
  uint32_t n = r == 0 ? 1 : 0;
  uint8_t f[PROTO_SNAPSHOTS_HDR_LEN + PROTO_SNAP_ENTRY_LEN];
  size_t len = proto_put_snapshots_hdr(f, s->job_id, r < 0 ? -r : 0, n);
  if (r == 0) {
    struct proto_snap_entry e;
    memset(&e, 0, sizeof e);
    memcpy(e.name, info.name, sizeof e.name);
    e.seq = info.seq;
    e.extent_count = info.extent_count;
    e.time = info.time;
    e.gen = info.gen;
    e.flush = info.flush;
    proto_snap_entry_put(f + len, &e);
    len += PROTO_SNAP_ENTRY_LEN;
    memcpy(c->snap_name, info.name, sizeof c->snap_name);
    c->state = DS_ACTIVE;
    log_info("%s: snapshot reader of %s (seq %" PRIu32 ", flush %" PRIu64
             " gen %" PRIu64 ")",
             c->peer, info.name, info.seq, info.flush, info.gen);
  } else {
    log_warn("%s: snapshot reader: %s: %s", c->peer, s->name,
             r == -ENOENT ? "no such snapshot" : log_strerror(-r));
  }
  return ds_conn_send_copy(c, f, len) < 0 ? -1 : 0;
}
