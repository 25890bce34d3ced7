/* crucible-c downstairs: a job's disk work (server_int.h's layer 3):
 * READ (its reply frame built here), EXTENT_MAP_REQ, EXTENT_STATES_REQ,
 * FILE_REQ, groups of WRITEs, and the rest through the region.  Touches
 * only the job and the region (and builds reply frames, not yet sent):
 * it runs on a worker, or on the loop thread for the reads and small
 * writes server_job.c runs there.
 */
#include <errno.h>
#include <stdlib.h>

#include "repair.h"
#include "server_int.h"

/* READ on a worker: the reply frame is allocated and filled here.  A
 * contexts-only READ still reads the data, to say which blocks match
 * none of their contexts (PROTO_CTX_BAD), but sends none of it; with
 * PROTO_F_VERSIONS it reads only the metadata.  now: on the loop thread,
 * -EAGAIN (nothing done) where it would wait (region_read_now). */
int ds_work_read(struct ds_job *j, bool now)
{
  uint32_t bs = j->srv->def.block_size;
  uint16_t flags = j->ctx_only ? PROTO_F_CTX_ONLY : 0;
  size_t ctx_off = PROTO_READ_DONE_HDR_LEN;
  size_t data_off = ctx_off + (size_t) j->n * PROTO_CTX_LEN;
  size_t dlen = (size_t) j->n * bs;
  struct ds_wreq *w = ds_wreq_new(data_off + (j->ctx_only ? 0 : dlen));
  struct proto_ctx *ctxs = calloc(j->n, sizeof *ctxs);
  uint8_t *data = j->versions   ? NULL
                  : j->ctx_only ? malloc(dlen)
                  : w           ? w->data + data_off
                                : NULL;
  if (!w || !ctxs || (!data && !j->versions)) {
    free(w);
    free(ctxs);
    if (j->ctx_only)
      free(data);
    if (now)
      return -EAGAIN; /* let a worker try */
    j->err = ENOMEM;  /* the loop thread sends a short READ_DONE */
    return 0;
  }
  /* A snapshot reader's READ: the snapshot by the chain rule, under the
   * extent's lock the copy-on-first-write holds (region_snap.c), always
   * on a worker. */
  int r = j->snap_read && now ? -EAGAIN
          : j->snap_read ? region_snapshot_read(j->srv->region, j->snap_read,
                                                j->lba, j->n, ctxs, data)
          : now ? region_read_now(j->srv->region, j->lba, j->n, ctxs, data)
                : region_read(j->srv->region, j->lba, j->n, ctxs, data);
  if (r == -EAGAIN && now) {
    free(w);
    free(ctxs);
    if (j->ctx_only)
      free(data);
    return r;
  }
  if (r < 0) {
    j->err = -r;
    w->len = proto_put_read_done_hdr(w->data, j->job_id, j->err, 0, bs, 0);
  } else {
    proto_put_read_done_hdr(w->data, j->job_id, 0, j->n, bs, flags);
    for (uint32_t i = 0; i < j->n; i++)
      proto_ctx_put(w->data + ctx_off + (size_t) i * PROTO_CTX_LEN, &ctxs[i]);
  }
  if (j->ctx_only)
    free(data);
  free(ctxs);
  j->reply = w;
  return 0;
}

/* EXTENT_MAP_REQ on a worker: the extent's block map (region.c), no
 * data read.  On failure no reply is built (an error-only EXTENT_MAP
 * follows, reply_status). */
static void work_map(struct ds_job *j)
{
  struct ds_wreq *w =
      ds_wreq_new(PROTO_EXTENT_MAP_HDR_LEN + proto_map_bytes(j->n));
  if (!w) {
    j->err = ENOMEM;
    return;
  }
  int r = region_extent_map(j->srv->region, j->lba, j->n,
                            w->data + PROTO_EXTENT_MAP_HDR_LEN);
  if (r < 0) {
    j->err = -r;
    free(w);
    return;
  }
  proto_put_extent_map_hdr(w->data, j->job_id, 0, j->n);
  j->reply = w;
}

/* EXTENT_STATES_REQ on a worker: every extent's (gen, flush, dirty). */
static void work_states(struct ds_job *j)
{
  uint32_t count = j->srv->def.extent_count;
  uint64_t len =
      PROTO_EXTENT_STATES_HDR_LEN + (uint64_t) count * PROTO_EXTENT_STATE_LEN;
  if (len > PROTO_MAX_FRAME) {
    j->err = EMSGSIZE;
    return;
  }
  struct proto_extent_state *st = calloc(count, sizeof *st);
  struct ds_wreq *w = ds_wreq_new(len);
  if (!st || !w) {
    free(st);
    free(w);
    j->err = ENOMEM;
    return;
  }
  int r = region_extent_states(j->srv->region, st);
  if (r < 0) {
    j->err = -r;
    free(w);
  } else {
    size_t off = proto_put_extent_states_hdr(w->data, count);
    for (uint32_t i = 0; i < count; i++, off += PROTO_EXTENT_STATE_LEN)
      proto_extent_state_put(w->data + off, &st[i]);
    j->reply = w;
  }
  free(st);
}

/* FILE_REQ on a worker (source side of a repair): close the extent so
 * its database is whole, then read the chunk into the reply frame. */
static void work_file(struct ds_job *j)
{
  struct ds_wreq *w = ds_wreq_new(PROTO_FILE_DATA_HDR_LEN + j->n);
  struct proto_file_data d = {.job_id = j->job_id, .offset = j->offset};
  if (!w) {
    j->err = ENOMEM;
    return;
  }
  int r = region_extent_close(j->srv->region, j->eid, false);
  if (r == 0)
    r = ds_repair_read_chunk(region_dirfd(j->srv->region), j->eid, j->file,
                             j->offset, j->n, w->data + PROTO_FILE_DATA_HDR_LEN,
                             &d.n, &d.file_size);
  if (r < 0) {
    d.err = -r;
    d.n = 0;
    d.file_size = 0;
    d.offset = 0;
  }
  w->len = PROTO_FILE_DATA_HDR_LEN + d.n;
  proto_put_file_data_hdr(w->data, &d);
  j->reply = w;
}

/* Do one job's disk work.  Touches only the job and the region. */
void ds_work_one(struct ds_job *j)
{
  struct region *rg = j->srv->region;
  int r = 0;
  switch (j->kind) {
  case DS_J_WRITE: r = region_write(rg, j->lba, j->n, j->ctxs, j->data); break;
  case DS_J_TRIM: r = region_trim(rg, j->lba, j->n, j->version); break;
  case DS_J_FLUSH:
    r = region_flush_n(rg, j->flush_no, j->gen, &j->nflushed);
    break;
  case DS_J_READ: ds_work_read(j, false); return;
  case DS_J_STATES: work_states(j); return;
  case DS_J_FILE: work_file(j); return;
  case DS_J_MAP: work_map(j); return;
  case DS_J_XFLUSH:
    r = region_extent_flush(rg, j->eid, j->flush_no, j->gen);
    break;
  case DS_J_XMARK: r = region_extent_mark(rg, j->eid); break;
  case DS_J_EXTEND: r = region_extend(rg, j->eid); break;
  case DS_J_SNAP: ds_snap_work(j); return;
  }
  j->err = r < 0 ? -r : 0;
}

/* The WRITEs of the group starting at j (j and the next jobs of its
 * extent in the batch, up to one that is not a WRITE), in one call:
 * rows in one transaction.  Marks them done. */
void ds_work_write_group(struct ds_job *j)
{
  enum { MAXG = 64 };
  struct region_wr w[MAXG];
  struct ds_job *g[MAXG];
  unsigned n = 0;
  for (struct ds_job *p = j; p && n < MAXG; p = p->rnext) {
    if (p->s.eid != j->s.eid || p->done)
      continue;
    if (p->kind != DS_J_WRITE)
      break;
    g[n] = p;
    w[n++] = (struct region_wr){
        .lba = p->lba, .n = p->n, .ctxs = p->ctxs, .data = p->data};
  }
  region_write_group(j->srv->region, w, n);
  for (unsigned k = 0; k < n; k++) {
    g[k]->err = w[k].err < 0 ? -w[k].err : 0;
    g[k]->done = true;
  }
}
